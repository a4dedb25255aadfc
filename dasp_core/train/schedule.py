"""Learning-rate schedule: optional linear warm-up, then RNW's steps or a cosine decay."""

from __future__ import annotations

import math
from typing import Sequence

__all__ = ["lr_factor"]


def lr_factor(step: int, milestones_steps: Sequence[int], gamma: float, *,
              total_steps: int = 0, warmup_steps: int = 0, schedule: str = "step",
              min_ratio: float = 0.0) -> float:
    """Learning-rate multiplier for the update after ``step`` completed steps.

    * warm-up (ours): ``(step + 1) / warmup_steps`` for the first ``warmup_steps`` updates —
      from random initialisation, Adam's first updates at lr ≥ 5e-4 saturate the sigmoid
      disparity (measured: collapse to a constant by step ~175 at lr 1e-3 without it);
    * ``step`` (RNW): ``gamma ** #{m <= step}``;
    * ``cosine``: from 1 after warm-up to ``min_ratio`` at ``total_steps``.
    """
    if warmup_steps > 0 and step < warmup_steps:
        warm = (step + 1) / warmup_steps
    else:
        warm = 1.0
    if schedule == "cosine":
        span = max(1, total_steps - warmup_steps)
        p = min(1.0, max(0.0, (step - warmup_steps) / span))
        return warm * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * p)))
    return warm * gamma ** sum(1 for m in milestones_steps if step >= m)
