"""Depth metrics of a network on validation clips, as training logs them.

Scores what :meth:`DepthNet.forward` predicts in eval mode for the target frame of each
clip, against the clip's ground-truth depth (``val.min_depth``..``val.max_depth`` metres),
per image then averaged (the protocol of :mod:`dasp_core.eval.metrics`). Also measures how far
eval mode is from the trained (batch-statistics) network, since a BatchNorm whose running
statistics drifted scores a network that was never trained (the ``bn_gap_log_depth`` key),
and the pooled depth spread (``spread``, ``spread_rel``, ``log_corr``; see
:mod:`dasp_core.eval.spread`), since a median-scaled AbsRel can look fair on depth that has
lost its near and far ends.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from dasp_core.geometry import disp_to_depth
from dasp_core.models import DepthNet
from dasp_core.train.config import ValConfig
from dasp_core.train.precise_bn import train_eval_gap
from dasp_core.train.scale import median_scale_report

__all__ = ["validate_depth"]

log = logging.getLogger(__name__)


@torch.no_grad()
def validate_depth(depth: DepthNet, val_set: Any, val: ValConfig, *, target: int,
                   batch_size: int, device: torch.device,
                   amp_ctx: Callable[[], Any] = contextlib.nullcontext,
                   metric_factor: Optional[float] = None, report_median_scale: bool = False,
                   name: str = "validation") -> Dict[str, float]:
    """Mean depth metrics of ``depth`` over ``val_set`` (``val.max_batches`` caps the batches).

    Args:
        depth: the network; left in train mode on return (as the training loop needs it).
        val_set: clips (``collate_clips`` dicts with ``frames`` (B, T, 3, H, W) in [0, 1],
            ``depth`` (B, 1, H', W') metres, ``has_depth`` (B,)).
        target: index of the target frame along T.
        metric_factor: the model's declared metres-per-unit factor when it claims metric
            depth; then ``metric_*`` keys score ``pred * metric_factor`` with no median scaling.
        report_median_scale: add ``median_scale``/``median_scale_std`` (GT/pred), for reporting.
        name: what the warning calls the set when no clip has valid depth.

    Returns:
        ``abs_rel``, ``sq_rel``, ``rmse``, ``rmse_log``, ``a1``..``a3``, ``n_images``, and
        where measured ``bn_gap_log_depth``, ``metric_abs_rel``/``metric_rmse``/``metric_a1``,
        ``median_scale``; ``spread`` (predicted p98/p2 over all scored pixels, unscaled),
        ``spread_rel`` (that over the ground truth's) and ``log_corr`` (left out where
        undefined). Empty when no image had valid ground truth.
    """
    from dasp_core.data.sample import collate_clips
    from dasp_core.eval.metrics import compute_depth_metrics, mean_metrics, valid_gt_mask
    from dasp_core.eval.spread import SpreadAccumulator

    dc = depth.cfg
    loader = torch.utils.data.DataLoader(val_set, batch_size=batch_size, shuffle=False,
                                         num_workers=0, collate_fn=collate_clips,
                                         generator=torch.Generator().manual_seed(0))
    gap: Optional[float] = None
    depth.eval()
    per_image: List[Dict[str, float]] = []
    metric_raw: List[Dict[str, float]] = []
    scales: List[float] = []
    spread = SpreadAccumulator(val.min_depth, val.max_depth)
    for i, batch in enumerate(loader):
        if val.max_batches and i >= val.max_batches:
            break
        frames = batch["frames"][:, target].to(device)
        if gap is None and frames.shape[0] > 1:  # train mode needs batch statistics
            with amp_ctx():
                gap = train_eval_gap(depth, frames, lambda d: disp_to_depth(
                    d, dc.min_depth, dc.max_depth)[1])  # restores eval mode
        with amp_ctx():
            disp = depth(frames)[0]
        _, pred_depth = disp_to_depth(disp.float(), dc.min_depth, dc.max_depth)
        depth_np = pred_depth[:, 0].cpu().numpy()
        for b in range(depth_np.shape[0]):
            if not bool(batch["has_depth"][b]):
                continue
            gt = batch["depth"][b, 0].numpy()
            pred = depth_np[b]
            if pred.shape != gt.shape:
                import cv2
                pred = cv2.resize(pred, (gt.shape[1], gt.shape[0]),
                                  interpolation=cv2.INTER_NEAREST)
            m = compute_depth_metrics(pred, gt, val.min_depth, val.max_depth,
                                      median_scaling=val.median_scaling)
            if m["n_valid"] == 0:
                continue
            per_image.append(m)
            v = valid_gt_mask(gt, val.min_depth, val.max_depth)
            spread.add(np.clip(pred[v], val.min_depth, val.max_depth), gt[v])
            if val.median_scaling:
                scales.append(m["scale"])
            elif report_median_scale:
                scales.append(compute_depth_metrics(pred, gt, val.min_depth, val.max_depth,
                                                    median_scaling=True)["scale"])
            if metric_factor is not None and val.median_scaling:
                metric_raw.append(compute_depth_metrics(pred * metric_factor, gt, val.min_depth,
                                                        val.max_depth, median_scaling=False))
    depth.train()
    if not per_image:
        log.warning("validation: no clip of %s has valid ground-truth depth in (%g, %g) m",
                    name, val.min_depth, val.max_depth)
        return {}
    out = dict(mean_metrics(per_image))
    out["n_images"] = float(len(per_image))
    sp = spread.result()
    out.update(spread=sp["pred_ratio"], spread_rel=sp["ratio_rel"])
    if np.isfinite(sp["log_corr"]):  # undefined for a constant prediction or ground truth
        out["log_corr"] = sp["log_corr"]
    if gap is not None:
        # what BatchNorm's running statistics change: ~0 means eval = trained network
        out["bn_gap_log_depth"] = gap
    if metric_raw:
        raw = mean_metrics(metric_raw)
        out.update({f"metric_{k}": raw[k] for k in ("abs_rel", "rmse", "a1")})
    if report_median_scale and scales:
        rep = median_scale_report(scales)
        out["median_scale"] = rep["median"]
        out["median_scale_std"] = rep["std"]
        log.info("validation: median GT/pred scale factor %.4f (std %.4f, %d images) — "
                 "reporting only, not applied to the model", rep["median"], rep["std"], rep["n"])
    return {k: float(v) for k, v in out.items() if isinstance(v, (int, float))}
