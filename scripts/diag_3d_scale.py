#!/usr/bin/env python3
"""Where does the 3D consistency loss pull a trained model's depth scale, with metric poses?

For night clips with ground-truth camera poses (the odometry the training uses), the
model's depths of all frames are multiplied by one global factor ``s``; the gradient of the
3D consistency loss with respect to ``log s`` is measured with the poses as fixed inputs
(the loss's form for a pose network's output, fed metric odometry) and with
``metric_pose=True`` (the translation follows the depth scale in the gradient). A negative gradient pulls the depths farther. The scale the ground truth asks
for is ``median(GT) / median(pred)`` of the target frames.

    python scripts/diag_3d_scale.py --checkpoint runs/bench96/seed0/night_selfsup/final.pt \\
        --clips 32 --report docs/consistency3d_scale.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dasp_core.checkpoint import load_depth_model  # noqa: E402
from dasp_core.data.synthetic.dataset import SyntheticClipDataset  # noqa: E402
from dasp_core.data.synthetic.config import SyntheticConfig  # noqa: E402
from dasp_core.losses.consistency3d import consistency_3d_loss  # noqa: E402
from dasp_core.geometry import disp_to_depth  # noqa: E402
from dasp_core.train.poses import odometry_poses  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[9500, 9501],
                   help="night drives (default: the recipe's night validation drives)")
    p.add_argument("--clips", type=int, default=32)
    p.add_argument("--cache-dir", default="runs/synthetic_cache")
    p.add_argument("--report", type=Path, default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    net, info, ckpt = load_depth_model(a.checkpoint)
    H, W = info.input_height, info.input_width
    cfg = SyntheticConfig(height=H, width=W)
    ds = SyntheticClipDataset("night", a.seeds, 16, cfg=cfg, offsets=(0, -1, 1),
                              cache_dir=a.cache_dir)
    idx = np.linspace(0, len(ds) - 1, min(a.clips, len(ds))).round().astype(int)
    log_s = torch.linspace(-0.4, 0.4, 17)
    FORMS = {"fixed": dict(), "metric_pose": dict(metric_pose=True)}
    grads: Dict[str, List[np.ndarray]] = {k: [] for k in FORMS}
    gt_scale = []
    dc = net.cfg
    for i in idx:
        clip = ds[int(i)]
        frames = torch.from_numpy(clip.frames).permute(0, 3, 1, 2).float().div(255)
        with torch.no_grad():
            disp = net(frames)[0]
        depth = disp_to_depth(disp, dc.min_depth, dc.max_depth)[1]          # [T, 1, H, W]
        gt = clip.depth
        valid = (gt > 1e-3) & (gt < 80)
        gt_scale.append(float(np.median(gt[valid]) / np.median(depth[0, 0].numpy()[valid])))
        poses = torch.from_numpy(clip.poses)[None]
        T_s_t, _ = odometry_poses(poses, torch.ones(1, dtype=torch.bool), 0, (1, 2))
        K = torch.from_numpy(clip.K).float()[None]
        for form, kw in FORMS.items():
            g = []
            for ls in log_s:
                ls = ls.clone().requires_grad_(True)
                d = depth * ls.exp()
                loss = torch.stack([consistency_3d_loss(d[0:1], d[j:j + 1], T, K,
                                                        **kw)[0]
                                    for j, T in zip((1, 2), T_s_t)]).mean()
                loss.backward()
                g.append(float(ls.grad))
            grads[form].append(np.array(g))
    lines = ["# 3D consistency loss: which depth scale it pulls towards, with metric poses", "",
             f"Reproduce: `python scripts/diag_3d_scale.py {' '.join(sys.argv[1:])}`", "",
             f"Model `{a.checkpoint}` ({H}x{W}), {len(idx)} night clips of drives {a.seeds}, "
             "their ground-truth camera poses. Depths of all three frames scaled by `s`; "
             "mean gradient of the loss with respect to `log s` (negative: pulls depth "
             "farther).", "",
             f"Ground truth asks for s = {np.median(gt_scale):.3f} "
             f"(median over clips of median(GT)/median(pred)).", "",
             "| log s | s | gradient, poses as fixed inputs | gradient, metric_pose=True |",
             "|---|---|---|---|"]
    gi, gd = np.mean(grads["fixed"], 0), np.mean(grads["metric_pose"], 0)
    for k, ls in enumerate(log_s.tolist()):
        lines.append(f"| {ls:+.2f} | {np.exp(ls):.3f} | {gi[k]:+.5f} | {gd[k]:+.1e} |")

    def zero(g: np.ndarray) -> str:
        sign = np.sign(g)
        for k in range(len(g) - 1):
            if sign[k] < 0 <= sign[k + 1] or (sign[k] <= 0 < sign[k + 1]):
                x0, x1 = float(log_s[k]), float(log_s[k + 1])
                z = x0 - g[k] * (x1 - x0) / (g[k + 1] - g[k])
                return f"s = {np.exp(z):.3f}"
        return "none in the range (pulls " + ("farther" if g.mean() < 0 else "nearer") + \
               f" everywhere in s = {np.exp(-0.4):.2f}..{np.exp(0.4):.2f})"
    lines += ["", f"Equilibrium (gradient zero), poses as fixed inputs: {zero(gi)}; "
              f"ground truth asks for s = {np.median(gt_scale):.3f}. With metric_pose=True the "
              f"largest |gradient| is {np.abs(gd).max():.1e} (scale-neutral)."]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.report:
        a.report.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
