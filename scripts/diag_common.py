"""Shared set-up of the 3D-loss diagnostics (``diag_3d_drift.py``, ``diag_3d_regions.py``).

Both look at the night stage's loss terms on training batches of a given checkpoint, without
training: the same arguments and the same trainer, built here once.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, Tuple

import torch

if TYPE_CHECKING:
    from dasp_core.train.config import TrainingConfig
    from dasp_core.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


def diag_arguments(doc: str, batches: int) -> argparse.ArgumentParser:
    """``--checkpoint``, ``--config``, ``--batches``, ``--threads`` and config overrides."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="depth checkpoint (day or night)")
    p.add_argument("--config", default=str(ROOT / "config/train_synthetic_small.yaml"))
    p.add_argument("--batches", type=int, default=batches)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("overrides", nargs="*", help="config overrides (key=value), e.g. "
                   "loss.lambda_3d=0.2 loss.consistency_normaliser=spread")
    return p


def night_trainer(args: argparse.Namespace, forced: Sequence[str] = ()
                  ) -> Tuple["TrainingConfig", "Trainer"]:
    """``(cfg, trainer)``: the night stage started from ``args.checkpoint`` on the CPU, 3D loss
    on, no discriminator, no data workers; ``args.overrides`` then ``forced`` applied last."""
    from dasp_core.train.config import load_config
    from dasp_core.train.trainer import Trainer

    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, [
        "train.stage=night", f"train.day_checkpoint={args.checkpoint}", "loss.adversarial=none",
        "loss.use_3d=true", "train.device=cpu", f"train.threads={args.threads}",
        "data.num_workers=0"] + list(args.overrides) + list(forced))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, tmp)
    return cfg, trainer
