"""Self-describing checkpoints: weights + model config + ModelInfo + training config + git rev.

A checkpoint is a ``torch.save`` dict::

    {"format": "dasp-checkpoint", "format_version": 1,
     "model_info": ModelInfo as dict,          # input size, depth range, scale, version
     "depth_config": DepthNetConfig as dict,
     "depth_state": state_dict,                 # may be fp16 (shipped model); loaded as fp32
     "pose_config"/"pose_state", "disc_config"/"disc_state": optional (training resume),
     "train_config": dict | None, "train_state": dict | None (optimizer, step, epoch, rng),
     "git_rev": str}

``dasp export``, the node and ``dasp eval`` need nothing but this file.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from dasp_core import __version__
from dasp_core.errors import ModelFileError
from dasp_core.models.depth_net import DepthNet, DepthNetConfig
from dasp_core.runtime.base import ModelInfo

FORMAT = "dasp-checkpoint"
FORMAT_VERSION = 1


def git_revision() -> str:
    """Short git revision of the source tree, or ``"unknown"`` outside a checkout."""
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def save_checkpoint(path: str | os.PathLike, depth_net: DepthNet, info: ModelInfo,
                    extra: Optional[Dict[str, Any]] = None, half: bool = False) -> Path:
    """Write a checkpoint atomically (temp file + rename, so a kill never leaves half a file).

    Args:
        path: destination ``.pt`` file.
        depth_net: the depth network (its config is stored).
        info: deployment description; ``version`` is filled with the dasp version if empty.
        extra: further entries (``pose_config``, ``pose_state``, ``train_config``, ...).
        half: store depth weights as fp16 (halves the file; loaded back as fp32).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not info.version:
        info.version = __version__
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu()
             for k, v in depth_net.state_dict().items()}
    ckpt = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "model_info": info.__dict__.copy(), "depth_config": depth_net.cfg.to_dict(),
            "depth_state": state, "git_rev": git_revision()}
    ckpt.update(extra or {})
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | os.PathLike) -> Dict[str, Any]:
    """Load and check a checkpoint dict; raise :class:`ModelFileError` naming the problem."""
    p = str(path)
    if not os.path.isfile(p):
        raise ModelFileError(p, "not found", "a dasp checkpoint (.pt)")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ModelFileError(p, f"cannot be read ({type(e).__name__}: {e})",
                             "a dasp checkpoint written by torch.save") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ModelFileError(p, "is not a dasp checkpoint", f"a dict with format={FORMAT!r}")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise ModelFileError(p, f"format_version {ckpt.get('format_version')} is newer than "
                                f"this dasp ({FORMAT_VERSION})", "an older checkpoint or newer dasp")
    for key in ("model_info", "depth_config", "depth_state"):
        if key not in ckpt:
            raise ModelFileError(p, f"has no {key!r}", "a complete dasp checkpoint")
    return ckpt


def load_depth_model(path: str | os.PathLike, device: str | torch.device = "cpu"
                     ) -> Tuple[DepthNet, ModelInfo, Dict[str, Any]]:
    """Checkpoint → (DepthNet in eval mode on ``device`` as fp32, ModelInfo, raw dict)."""
    ckpt = read_checkpoint(path)
    cfg = DepthNetConfig.from_dict(dict(ckpt["depth_config"]))
    cfg.pretrained_path = None  # weights come from the checkpoint
    net = DepthNet(cfg)
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["depth_state"].items()}
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise ModelFileError(str(path), f"weights do not match its config ({e})",
                             "depth_state written from the stored depth_config") from None
    net.eval().to(device)
    return net, ModelInfo.from_dict(ckpt["model_info"]), ckpt
