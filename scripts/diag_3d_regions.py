#!/usr/bin/env python3
"""Where, in the depth map, does each loss term want the depth to go?

``scripts/diag_3d_drift.py`` measures how a loss term moves the *mean* log depth through the
network. At night the 3D consistency loss also bends the depth's structure (near and middle
range pushed out, sky pulled in, log-depth correlation with ground truth 0.91 → 0.68 at
λ_3d 0.2; docs/training_recipe.md). This script looks at the depth-space gradient itself, on
night training batches (train mode, as trained), per range of the target's ground truth:
near (< 8 m), middle (8–20 m), far (20–80 m) and sky (no ground truth or ≥ 80 m).

Per term (weighted as in training) and region it prints, over the target frames:

* ``desc``: mean over the region's pixels of the steepest-descent step in log depth,
  ``-∂L/∂log D`` ×1e6 (positive: the term wants those pixels farther);
* ``align``: cosine between that descent field and the direction towards ground truth,
  ``log D_gt − log D − c`` (``c`` the frame's median log ratio, so a global scale does not
  count), over pixels with ground truth; positive: the term moves the structure towards
  the truth;
* the 3D loss also split by source (``3D, source -1`` and ``+1``: their sum is the 3D row),
  and the share of the region inside its mask (target→source, either source).

    python scripts/diag_3d_regions.py --checkpoint runs/lock/l0/best.pt --batches 6 \\
        model.depth.exposure=log_mean loss.consistency_normaliser=spread loss.lambda_3d=0.2
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dasp_core.geometry import disp_to_depth  # noqa: E402
from dasp_core.train.loader import to_device  # noqa: E402
from dasp_core.train.stages import (consistency_3d_per_source, predict_poses,  # noqa: E402
                                    run_depth, self_supervised_terms)
from diag_common import diag_arguments, night_trainer  # noqa: E402

REGIONS = ("near", "middle", "far", "sky")


def region_masks(gt: torch.Tensor) -> Dict[str, torch.Tensor]:
    """``[B, 1, H, W]`` ground-truth metres → bool masks per region (sky: no GT or ≥ 80 m)."""
    has = gt > 0
    return {"near": has & (gt < 8), "middle": has & (gt >= 8) & (gt < 20),
            "far": has & (gt >= 20) & (gt < 80), "sky": ~has | (gt >= 80)}


def main() -> int:
    args = diag_arguments(__doc__, batches=6).parse_args()
    cfg, trainer = night_trainer(args)
    net = trainer.depth.train()
    layout, lc, dc = trainer.layout, cfg.loss, cfg.model.depth
    span = 1.0 / dc.min_depth - 1.0 / dc.max_depth  # d(1/D)/d(disp)
    scales = sorted(dc.scales)
    acc: Dict[str, Dict[str, List[float]]] = {}

    def add(key: str, region: str, value: float) -> None:
        acc.setdefault(key, {}).setdefault(region, []).append(value)

    for b in range(args.batches):
        batch = to_device(next(trainer.primary), torch.device("cpu"))
        if not bool(batch["has_depth"].all()):
            raise SystemExit("these clips carry no ground-truth depth")
        with torch.no_grad():
            disps = run_depth(net, batch.get("frames_aug", batch["frames"]))
        leaves = [d.detach().requires_grad_(True) for d in disps]
        T_s_t, _ = predict_poses(trainer.nets, batch, cfg, layout)
        frames, K = batch["frames"], batch["K"]
        target = frames[:, layout.target]
        photo, _, _ = self_supervised_terms([d[:, layout.target] for d in leaves], scales, target,
                                            [frames[:, i] for i in layout.sources], T_s_t, K, cfg)
        _, depth_all = disp_to_depth(leaves[0], dc.min_depth, dc.max_depth)
        c3d, masks = consistency_3d_per_source(depth_all, T_s_t, K, cfg, layout)
        terms = {"photometric": photo, "consistency_3d": lc.lambda_3d * torch.stack(c3d).mean()}
        for i, loss in zip(layout.sources, c3d):  # each source's share
            terms[f"3D, source {layout.offsets[i]:+d}"] = lc.lambda_3d * loss / len(c3d)
        depth_t = depth_all[:, layout.target].detach()
        log_d = depth_t.log()
        gt = batch["depth"]
        regions = region_masks(gt)
        has = gt > 0
        ratio = torch.where(has, gt.clamp(min=1e-3).log() - log_d, torch.zeros_like(log_d))
        for bi in range(ratio.shape[0]):  # remove each frame's median log ratio (its scale)
            ratio[bi][has[bi]] -= ratio[bi][has[bi]].median()
        for name, term in terms.items():
            g = torch.autograd.grad(term, leaves[0], retain_graph=True)[0][:, layout.target]
            desc = g / (span * depth_t)  # -dL/dlogD = (dL/ddisp) / (span * D)
            for r in REGIONS:
                m = regions[r]
                if m.any():
                    add(f"{name} desc", r, float(desc[m].mean()) * 1e6)
                    if r != "sky":
                        add(f"{name} align", r, float(torch.nn.functional.cosine_similarity(
                            desc[m], ratio[m], dim=0)))
            add(f"{name} align", "all GT", float(torch.nn.functional.cosine_similarity(
                desc[has], ratio[has], dim=0)))
        with torch.no_grad():
            inside = masks[0] | masks[1] if len(masks) > 1 else masks[0]
            for r in REGIONS:
                m = regions[r]
                if m.any():
                    add("3D mask share", r, float(inside[m].float().mean()))
                    add("share of pixels", r, float(m.float().mean()))
                    add("log D - log GT", r, float((-ratio)[m & has].mean()) if r != "sky"
                        else float(log_d[m].mean()))
        print(f"batch {b}: photometric {photo.item():.4f} 3D {terms['consistency_3d'].item():.4f}",
              flush=True)
    cols = REGIONS + ("all GT",)
    print(f"\n{'quantity':<26}" + "".join(f"{c:>18}" for c in cols))
    for key, per in acc.items():
        cells = []
        for c in cols:
            a = np.asarray(per.get(c, []))
            cells.append("" if a.size == 0 else
                         f"{a.mean():+.3f} ± {a.std(ddof=1) / np.sqrt(a.size):.3f}"
                         if a.size > 1 else f"{a.mean():+.3f}")
        print(f"{key:<26}" + "".join(f"{c:>18}" for c in cells))
    print("\n'log D - log GT' in the sky column: mean log depth (log metres) of sky pixels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
