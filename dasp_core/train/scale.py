"""Weak velocity supervision: make the self-supervised network metric (md4all / PackNet-SfM).

Monocular self-supervision recovers depth and pose only up to one global scale. When a clip
carries the vehicle speed (m/s, odometry/GPS/CAN) and the frame interval ``dt`` (s), the
length of the predicted camera translation between the target and a source ``k`` frames away
must be ``speed · dt · |k|`` metres. Penalising the difference pins the scale of the pose
network, and through the photometric loss the scale of the depth network (md4all, ICCV 2023,
following PackNet-SfM's velocity loss). The checkpoint then declares
``scale_source = "learned"``.

Two ways to use it (``scale.velocity_mode``):

* ``loss`` (md4all): the loss below is added to the training loss, so the pose network (and
  through the photometric loss the depth network) learns metres; the checkpoint declares
  ``scale_factor = 1``. With Adam and a pose head scaled by 0.01 (monodepth2) the translation
  moves by ~lr·0.01 per step, so on short budgets it stays far from metric (measured: the
  velocity loss did not decrease in 300 steps, docs/benchmark_rnw_lambda.md).
* ``recover`` (ours, the default): training stays scale-free (photometric, smoothness, 3D and
  adversarial terms are all invariant to one global scale) and the metric factor is measured
  instead: ``Σ speed·dt·|k| / Σ ‖t_pred‖`` per step (:func:`velocity_ratio`), its median over
  the last steps is the checkpoint's ``scale_factor``. The photometric loss ties the depth's
  scale to the translation's, so the same factor makes the depth metric.

Choice (ours): constant speed over the short clip (the target-frame speed times the number of
frame intervals); the loss is the mean absolute difference over the samples that have both
speed and dt (NaN marks "absent" in :func:`dasp_core.data.sample.clip_to_tensors`).
"""

from __future__ import annotations

import math
import statistics
from typing import Dict, Optional, Sequence, Tuple

import torch

__all__ = ["velocity_targets", "velocity_loss", "velocity_ratio", "recovered_scale",
           "median_scale_report"]


def velocity_targets(speed: torch.Tensor, dt: torch.Tensor, offset: int
                     ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Expected translation length for a source ``offset`` frames from the target.

    Args:
        speed: ``[B]`` m/s (NaN where unknown).
        dt: ``[B]`` seconds between consecutive frames (NaN where unknown).
        offset: frame offset of the source (±1 for neighbours).
    Returns:
        ``(target [B] metres, valid [B] bool)``; invalid entries of ``target`` are 0.
    """
    valid = torch.isfinite(speed) & torch.isfinite(dt) & (speed >= 0) & (dt > 0)
    target = torch.where(valid, speed.abs() * dt * abs(int(offset)), torch.zeros_like(speed))
    return target, valid


def velocity_loss(translations: Sequence[torch.Tensor], offsets: Sequence[int],
                  speed: torch.Tensor, dt: torch.Tensor) -> Tuple[torch.Tensor, int]:
    """``mean | ‖t_pred‖ − speed·dt·|k| |`` over sources and supervised samples.

    Args:
        translations: one ``[B, 3]`` predicted translation (metres, of ``T_s_t``) per source.
        offsets: frame offset ``k`` of each source (same order).
        speed: ``[B]`` m/s, NaN where the clip has no speed.
        dt: ``[B]`` s, NaN where the clip has no frame interval.
    Returns:
        ``(loss scalar metres, n)`` where ``n`` is the number of supervised (sample, source)
        pairs; the loss is an exact 0 with gradient 0 when ``n == 0``.
    """
    if len(translations) != len(offsets):
        raise ValueError(f"velocity_loss: {len(translations)} translations for "
                         f"{len(offsets)} offsets")
    terms = []
    count = 0
    for t, k in zip(translations, offsets):
        target, valid = velocity_targets(speed.to(t.dtype), dt.to(t.dtype), k)
        norm = torch.linalg.vector_norm(t, dim=-1)
        err = torch.where(valid, (norm - target).abs(), torch.zeros_like(norm))
        terms.append(err.sum())
        count += int(valid.sum())
    total = torch.stack(terms).sum()
    if count == 0:
        return total * 0.0, 0
    return total / count, count


def velocity_ratio(translations: Sequence[torch.Tensor], offsets: Sequence[int],
                   speed: torch.Tensor, dt: torch.Tensor) -> Tuple[float, float, int]:
    """Sums behind the recovered metric scale of one batch (no gradient).

    Args: as :func:`velocity_loss`.
    Returns:
        ``(target_m, predicted, n)``: ``Σ speed·dt·|k|`` in metres and ``Σ ‖t_pred‖`` in network
        units over the ``n`` supervised (sample, source) pairs; ``target_m / predicted`` is the
        factor that turns the network's translations (and depths) into metres.
    """
    if len(translations) != len(offsets):
        raise ValueError(f"velocity_ratio: {len(translations)} translations for "
                         f"{len(offsets)} offsets")
    target_m, predicted, count = 0.0, 0.0, 0
    with torch.no_grad():
        for t, k in zip(translations, offsets):
            target, valid = velocity_targets(speed.to(t.dtype), dt.to(t.dtype), k)
            norm = torch.linalg.vector_norm(t.detach(), dim=-1)
            target_m += float(target[valid].sum())
            predicted += float(norm[valid].sum())
            count += int(valid.sum())
    return target_m, predicted, count


def recovered_scale(ratios: Sequence[float]) -> Optional[float]:
    """Median of per-step ``target_m / predicted`` ratios (finite, positive ones), or None."""
    vals = [r for r in ratios if math.isfinite(r) and r > 0]
    return statistics.median(vals) if vals else None


def median_scale_report(scales: Sequence[float]) -> Dict[str, float]:
    """Summary of per-image median-GT scale factors (``median(gt)/median(pred)``).

    Reporting only — how far from metric the network is; it is never applied to the model.
    """
    vals = torch.tensor([s for s in scales if s == s and s > 0], dtype=torch.float64)
    if vals.numel() == 0:
        return {"median": float("nan"), "mean": float("nan"), "std": float("nan"), "n": 0}
    return {"median": float(vals.median()), "mean": float(vals.mean()),
            "std": float(vals.std(unbiased=False)), "n": int(vals.numel())}
