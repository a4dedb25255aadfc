#!/usr/bin/env python3
"""Where does the 3D consistency loss pull a trained model's depth scale and spread?

For night clips with ground-truth camera poses (the odometry the training uses), the
model's depths of all frames are multiplied by one global factor ``s``; the gradient of the
3D consistency loss with respect to ``log s`` is measured with the poses as fixed inputs
(the loss's form for a pose network's output, fed metric odometry) and with
``metric_pose=True`` (the translation follows the depth scale in the gradient). A negative
gradient pulls the depths farther. The scale the ground truth asks for is
``median(GT) / median(pred)`` of the target frames.

Second table (spread): the depths are remapped to ``M * (D / M)**a`` (``M``: the clip's
median predicted depth, one number for all three frames), which stretches (``a > 1``) or
compresses (``a < 1``) the depth range about ``M``; the gradient with respect to ``a`` is
measured for every normaliser (``pixel``, ``scene``, ``spread``) with ``metric_pose=True``.
A positive gradient compresses. The spread the ground truth asks for is
``log(GT p98/p2) / log(pred p98/p2)`` of the target frames.

    python scripts/diag_3d_scale.py --checkpoint runs/bench96/seed0/night_selfsup/final.pt \\
        --clips 32 --report docs/consistency3d_scale.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dasp_core.checkpoint import load_depth_model  # noqa: E402
from dasp_core.data.synthetic.dataset import SyntheticClipDataset  # noqa: E402
from dasp_core.data.synthetic.config import SyntheticConfig  # noqa: E402
from dasp_core.losses.consistency3d import NORMALISERS, consistency_3d_loss  # noqa: E402
from dasp_core.geometry import disp_to_depth, warp_image  # noqa: E402
from dasp_core.losses.photometric import min_reprojection_loss  # noqa: E402
from dasp_core.train.poses import odometry_poses  # noqa: E402


@dataclass
class NightClip:
    """One night clip (target, source -1, source +1) with the model's depth and odometry."""
    frames: torch.Tensor   # [3, 3, H, W] RGB in [0, 1]
    depth: torch.Tensor    # [3, 1, H, W] predicted depth, metres
    gt: np.ndarray         # [H, W] ground-truth depth of the target, metres
    T_s_t: torch.Tensor    # [2, 1, 4, 4] target -> source transforms (ground-truth poses)
    K: torch.Tensor        # [1, 3, 3] pixel intrinsics

    def loss_3d(self, depth: torch.Tensor, **kw) -> torch.Tensor:
        """The 3D consistency loss of ``depth`` (``[3, 1, H, W]``), mean over both sources."""
        return torch.stack([consistency_3d_loss(depth[0:1], depth[j:j + 1], T, self.K, **kw)[0]
                            for j, T in zip((1, 2), self.T_s_t)]).mean()


def load_night_clips(checkpoint: str, seeds: Sequence[int], clips: int, cache_dir: str
                     ) -> Tuple[str, List[NightClip]]:
    """``("HxW", clips)``: ``clips`` evenly spaced night clips of drives ``seeds`` at the
    model's input size, with its depth predictions (eval mode, no gradient)."""
    net, info, _ = load_depth_model(checkpoint)
    H, W = info.input_height, info.input_width
    ds = SyntheticClipDataset("night", seeds, 16, cfg=SyntheticConfig(height=H, width=W),
                              offsets=(0, -1, 1), cache_dir=cache_dir)
    out = []
    for i in np.linspace(0, len(ds) - 1, min(clips, len(ds))).round().astype(int):
        clip = ds[int(i)]
        frames = torch.from_numpy(clip.frames).permute(0, 3, 1, 2).float().div(255)
        with torch.no_grad():
            depth = disp_to_depth(net(frames)[0], net.cfg.min_depth, net.cfg.max_depth)[1]
        T_s_t, _ = odometry_poses(torch.from_numpy(clip.poses)[None],
                                  torch.ones(1, dtype=torch.bool), 0, (1, 2))
        out.append(NightClip(frames, depth, clip.depth, T_s_t,
                             torch.from_numpy(clip.K).float()[None]))
    return f"{H}x{W}", out


def gradient_curve(points: torch.Tensor, loss_of: Callable[[torch.Tensor], torch.Tensor]
                   ) -> np.ndarray:
    """``d loss_of(v) / d v`` at each scalar ``v`` of ``points``."""
    out = []
    for v in points:
        v = v.clone().requires_grad_(True)
        loss_of(v).backward()
        out.append(float(v.grad))
    return np.array(out)


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
    size, clips = load_night_clips(a.checkpoint, a.seeds, a.clips, a.cache_dir)
    log_s = torch.linspace(-0.4, 0.4, 17)
    FORMS = {"fixed": dict(), "metric_pose": dict(metric_pose=True)}
    grads: Dict[str, List[np.ndarray]] = {k: [] for k in FORMS}
    alphas = torch.linspace(0.6, 1.4, 9)
    SPREAD = {n: dict(metric_pose=True, normaliser=n) for n in NORMALISERS}
    spread_grads: Dict[str, List[np.ndarray]] = {k: [] for k in (*SPREAD, "photometric")}
    gt_scale, gt_alpha = [], []
    for c in clips:
        frames, depth, gt, T_s_t, K, c3d = c.frames, c.depth, c.gt, c.T_s_t, c.K, c.loss_3d
        valid = (gt > 1e-3) & (gt < 80)
        pv = depth[0, 0].numpy()[valid]
        gt_scale.append(float(np.median(gt[valid]) / np.median(pv)))
        gt_alpha.append(float(np.log(np.percentile(gt[valid], 98) / np.percentile(gt[valid], 2))
                              / np.log(np.percentile(pv, 98) / np.percentile(pv, 2))))

        def photometric(d: torch.Tensor) -> torch.Tensor:  # the training's term, full scale
            warped = [warp_image(frames[j:j + 1], d[0:1], T, K, padding_mode="border")[0]
                      for j, T in zip((1, 2), T_s_t)]
            return min_reprojection_loss(frames[0:1], warped, [frames[1:2], frames[2:3]],
                                         generator=torch.Generator().manual_seed(0))[0]

        M = depth.median()
        for form, kw in FORMS.items():
            grads[form].append(gradient_curve(log_s, lambda v: c3d(depth * v.exp(), **kw)))
        for form, kw in SPREAD.items():
            spread_grads[form].append(
                gradient_curve(alphas, lambda v: c3d(M * (depth / M) ** v, **kw)))
        spread_grads["photometric"].append(
            gradient_curve(alphas, lambda v: photometric(M * (depth / M) ** v)))
    lines = ["# 3D consistency loss: which depth scale it pulls towards, with metric poses", "",
             f"Reproduce: `python scripts/diag_3d_scale.py {' '.join(sys.argv[1:])}`", "",
             f"Model `{a.checkpoint}` ({size}), {len(clips)} night clips of drives {a.seeds}, "
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
    ga = {n: np.mean(v, 0) for n, v in spread_grads.items()}
    lines += ["", "## Spread", "",
              "Depths remapped to `M * (D / M)**a` (M: the clip's median predicted depth), "
              "`metric_pose=True`; mean gradient of the loss with respect to `a` (positive: "
              "compresses the depth range). For scale, the same gradient of the training's "
              "photometric term (min-reprojection with auto-masking, full resolution; weight 1 "
              "in training, the 3D loss's is `loss.lambda_3d`).", "",
              f"Ground truth asks for a = {np.median(gt_alpha):.3f} (median over clips of "
              "log(GT p98/p2) / log(pred p98/p2)).", "",
              "| a | " + " | ".join(f"3D, normaliser={n}" for n in NORMALISERS)
              + " | photometric |", "|---" * (len(NORMALISERS) + 2) + "|"]
    for k, al in enumerate(alphas.tolist()):
        lines.append(f"| {al:.2f} | " + " | ".join(f"{ga[n][k]:+.5f}" for n in NORMALISERS)
                     + f" | {ga['photometric'][k]:+.5f} |")

    def zero_a(g: np.ndarray) -> str:
        for k in range(len(g) - 1):
            if g[k] <= 0 < g[k + 1] or g[k] < 0 <= g[k + 1]:
                x0, x1 = float(alphas[k]), float(alphas[k + 1])
                return f"a = {x0 - g[k] * (x1 - x0) / (g[k + 1] - g[k]):.3f}"
        return "none in a = 0.6..1.4 (" + ("compresses" if g.mean() > 0 else "stretches") + \
            " everywhere)"
    lines += ["", "Equilibrium (gradient zero): "
              + "; ".join(f"normaliser={n} " + zero_a(ga[n]) for n in NORMALISERS)
              + "; photometric " + zero_a(ga["photometric"]) +
              f"; ground truth asks for a = {np.median(gt_alpha):.3f}."]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.report:
        a.report.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
