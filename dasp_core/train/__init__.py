"""Training of DASP: configuration, per-stage losses, the loop, DDP and metric scale.

* :mod:`~dasp_core.train.config` — ``TrainingConfig`` (nested dataclasses ↔ YAML, validated);
* :mod:`~dasp_core.train.config_schema` — the generic machinery behind it (documented
  fields, coercion, range/choice checks, ``key=value`` overrides);
* :mod:`~dasp_core.train.stages` — loss computation of a day / night step;
* :mod:`~dasp_core.train.poses` — camera motion of the reprojection loss (odometry or PoseNet);
* :mod:`~dasp_core.train.loader` / :mod:`~dasp_core.train.schedule` /
  :mod:`~dasp_core.train.precise_bn` / :mod:`~dasp_core.train.run_log` — data plumbing, the
  learning-rate schedule, BatchNorm statistics, ``train.log`` and TensorBoard;
* :mod:`~dasp_core.train.networks` — a stage's networks and what the day checkpoint gives them;
* :mod:`~dasp_core.train.validation` — depth metrics of the network on validation clips;
* :mod:`~dasp_core.train.resume` / :mod:`~dasp_core.train.rng` — what a resumed checkpoint
  must match, and the random-generator states it restores;
* :mod:`~dasp_core.train.trainer` — ``Trainer`` (the loop: optimisers, AMP, checkpoints, resume);
* :mod:`~dasp_core.train.distributed` — torchrun / DistributedDataParallel helpers;
* :mod:`~dasp_core.train.scale` — weak velocity supervision (metric scale);
* :mod:`~dasp_core.train.recipes` — named night-stage recipes (the benchmark's variants, the
  shipped one);
* :mod:`~dasp_core.train.cli` — the ``dasp train`` command.

Attributes are imported lazily so ``dasp train --help`` does not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainingConfig": "dasp_core.train.config",
    "load_config": "dasp_core.train.config",
    "describe_config": "dasp_core.train.config",
    "Trainer": "dasp_core.train.trainer",
    "TrainingDivergedError": "dasp_core.train.trainer",
    "TrainSummary": "dasp_core.train.trainer",
    "velocity_loss": "dasp_core.train.scale",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dasp_core.train' has no attribute {name!r}")
