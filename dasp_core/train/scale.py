"""Weak velocity supervision: make the self-supervised network metric (md4all / PackNet-SfM).

Monocular self-supervision recovers depth and pose only up to one global scale. When a clip
carries the vehicle speed (m/s, odometry/GPS/CAN) and the frame interval ``dt`` (s), the
length of the predicted camera translation between the target and a source ``k`` frames away
must be ``speed · dt · |k|`` metres. Penalising the difference pins the scale of the pose
network, and through the photometric loss the scale of the depth network (md4all, ICCV 2023,
following PackNet-SfM's velocity loss). The checkpoint then declares
``scale_source = "learned"`` with ``scale_factor = 1.0``: the network's depth is metres.

Choice (ours): constant speed over the short clip (the target-frame speed times the number of
frame intervals); the loss is the mean absolute difference over the samples that have both
speed and dt (NaN marks "absent" in :func:`dasp_core.data.sample.clip_to_tensors`).
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import torch

__all__ = ["velocity_targets", "velocity_loss", "median_scale_report"]


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


def median_scale_report(scales: Sequence[float]) -> Dict[str, float]:
    """Summary of per-image median-GT scale factors (``median(gt)/median(pred)``).

    Reporting only — how far from metric the network is; it is never applied to the model.
    """
    vals = torch.tensor([s for s in scales if s == s and s > 0], dtype=torch.float64)
    if vals.numel() == 0:
        return {"median": float("nan"), "mean": float("nan"), "std": float("nan"), "n": 0}
    return {"median": float(vals.median()), "mean": float(vals.mean()),
            "std": float(vals.std(unbiased=False)), "n": int(vals.numel())}
