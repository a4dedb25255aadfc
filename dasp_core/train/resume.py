"""What a training checkpoint must agree on before ``--resume`` continues from it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict

from dasp_core.errors import ConfigError

__all__ = ["RESUME_MUST_MATCH", "check_resumable"]

log = logging.getLogger(__name__)

#: Config keys that must not change between a checkpoint and its resumption.
RESUME_MUST_MATCH = ("model", "data.height", "data.width", "data.offsets", "train.stage",
                     "loss.adversarial", "loss.disc_scale", "experiment.seed")


def _nested_get(d: Dict[str, Any], dotted: str) -> Any:
    node: Any = d
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def check_resumable(ckpt: Dict[str, Any], now: Dict[str, Any], path: Path) -> None:
    """Raise :class:`ConfigError` unless checkpoint ``ckpt`` (read from ``path``) can resume a
    run configured as ``now`` (``TrainingConfig.to_dict()``): same :data:`RESUME_MUST_MATCH`
    keys, and optimiser state present. Other changed sections are allowed, with a warning."""
    saved = ckpt.get("train_config") or {}
    for key in RESUME_MUST_MATCH:
        a, b = _nested_get(saved, key), _nested_get(now, key)
        if a != b:
            raise ConfigError(key, b, f"{a!r}, the value in {path} (resuming needs the same "
                                      f"{key}; use another --out for a new run)")
    diffs = [k for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
    if diffs:
        log.warning("resuming with changed config sections %s (allowed: not model/size/"
                    "stage)", ", ".join(diffs))
    if not ckpt.get("train_state") or "opt_g" not in ckpt["train_state"]:
        raise ConfigError("--resume", str(path), "a training checkpoint with train_state "
                                                 "(last.pt written by dasp train)")
