#!/usr/bin/env python3
"""Does the 3D consistency loss push a trained model's near or far pixels out?

For night clips with ground-truth camera poses, the model's depths of the pixels at or below
(``--half near``) or above (``--half far``) each clip's median depth are multiplied by one
factor ``s``; the mean gradient of the loss (``metric_pose=True``, ``--normaliser``) with
respect to ``log s`` is printed (positive: pulls that half nearer), once with the
translation following the pair's arithmetic mean depth (the loss as trained) and once with
it following the geometric mean (a variant, patched in here only). A global scale has zero
gradient in both, so the two halves' gradients are opposite.

    python scripts/diag_3d_tilt.py runs/spread3d/seed0/dasp_spread/final.pt --half near
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dasp_core.losses.consistency3d as c3  # noqa: E402
from diag_3d_scale import load_night_clips  # noqa: E402  (scripts/ is this script's folder)


def follows_geometric_mean(T: torch.Tensor, depth_a: torch.Tensor, depth_b: torch.Tensor
                           ) -> torch.Tensor:
    """``T`` with its translation times ``G / stopgrad(G)``, ``G`` the pair's geometric mean
    depth (the variant; the loss uses the arithmetic mean)."""
    g = c3._pair_log_depth_stats(depth_a, depth_b, 1e-3)[0].exp()
    ratio = (g / g.detach()).to(T.dtype)
    top = torch.cat([T[:, :3, :3], T[:, :3, 3:] * ratio[:, None, None]], dim=2)
    return torch.cat([top, T[:, 3:]], dim=1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--half", choices=("near", "far"), default="near")
    p.add_argument("--normaliser", choices=c3.NORMALISERS, default="spread")
    p.add_argument("--seeds", type=int, nargs="+", default=[9500, 9501])
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--cache-dir", default="runs/synthetic_cache")
    a = p.parse_args()
    torch.set_num_threads(1)
    _, clips = load_night_clips(a.checkpoint, a.seeds, a.clips, a.cache_dir)
    as_trained = c3._translation_follows_depth
    forms = {"arithmetic mean (as trained)": as_trained,
             "geometric mean (variant)": follows_geometric_mean}
    grads = {k: [] for k in forms}
    for clip in clips:
        med = clip.depth.flatten().median()
        half = (clip.depth <= med) if a.half == "near" else (clip.depth > med)
        for name, fn in forms.items():
            c3._translation_follows_depth = fn
            try:
                log_s = torch.zeros((), requires_grad=True)
                clip.loss_3d(clip.depth * (log_s * half).exp(), metric_pose=True,
                             normaliser=a.normaliser).backward()
            finally:
                c3._translation_follows_depth = as_trained
            grads[name].append(float(log_s.grad))
    for name, g in grads.items():
        print(f"{a.half} half, translation follows the {name}: d loss / d log s = "
              f"{np.mean(g):+.4f} ± {np.std(g) / np.sqrt(len(g)):.4f} (mean ± s.e., "
              f"{len(g)} clips)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
