#!/usr/bin/env python3
"""Does brightness normalisation of the input help a trained model see at night? (no training)

Each checkpoint is run on the reserved synthetic test drives three ways: raw input, the
model's :class:`~dasp_core.models.depth_net.ExposureNormalize` gamma (``log_mean``) put in
front of it, and a plain gain to the same geometric-mean intensity (clipped at 1). Scored with
the ``synthetic`` protocol's constants (GT in (0.001, 80) m, per-image median scaling,
per-image mean AbsRel); the prediction is resized bilinearly to the ground truth. A probe,
not the benchmark: ``dasp eval`` gives the reported numbers.

    python scripts/probe_exposure.py runs/long/seed0/day/final.pt runs/long/seed0/no_3d/final.pt \\
        --report docs/exposure_probe.md
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dasp_core.checkpoint import load_depth_model  # noqa: E402
from dasp_core.eval.evaluate import build_preset  # noqa: E402
from dasp_core.eval.metrics import compute_depth_metrics  # noqa: E402
from dasp_core.geometry import disp_to_depth  # noqa: E402
from dasp_core.models.depth_net import ExposureNormalize  # noqa: E402
from dasp_core.runtime.bench import cpu_model  # noqa: E402

TARGET = 0.4  # DepthNetConfig.exposure_target's default: the synthetic day drives' level


def gain(x: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` → same, scaled so the geometric-mean intensity is ``TARGET``."""
    mean_log = torch.log(x.clamp(min=ExposureNormalize.EPS)).mean(dim=(1, 2, 3), keepdim=True)
    return (x * torch.exp(math.log(TARGET) - mean_log)).clamp(max=1.0)


INPUTS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "raw": lambda x: x, "log_mean gamma": ExposureNormalize(TARGET), "gain": gain}


def score(net: torch.nn.Module, input_hw: tuple, clips: List, transform: Callable) -> float:
    """Mean per-image median-scaled AbsRel of ``net`` on ``clips`` with ``transform`` applied
    to its ``[1, 3, H, W]`` input."""
    out = []
    for c in clips:
        img = c.frames[c.target_index]
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255
        x = F.interpolate(x, size=input_hw, mode="area")
        with torch.no_grad():
            disp = net(transform(x))[0]
        depth = disp_to_depth(disp, net.cfg.min_depth, net.cfg.max_depth)[1]
        depth = F.interpolate(depth, size=c.depth.shape, mode="bilinear", align_corners=False)
        out.append(compute_depth_metrics(depth[0, 0].numpy(), c.depth)["abs_rel"])
    return float(np.mean(out))


def intensity_level(clips: List) -> float:
    """Geometric-mean intensity in (0, 1] of the clips' target frames."""
    return float(np.exp(np.mean([np.log(np.clip(c.frames[c.target_index] / 255.0,
                                                 ExposureNormalize.EPS, 1)).mean()
                                 for c in clips])))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--sequences", type=int, default=12)
    p.add_argument("--frames", type=int, default=4, help="frames per test drive")
    p.add_argument("--report", type=Path, default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    sets = {}
    for d in ("night", "day"):
        ds = build_preset(f"synthetic-{d}-test", frames_per_sequence=a.frames,
                          n_sequences=a.sequences)
        sets[d] = [ds[i] for i in range(len(ds))]
    lines = ["# Exposure normalisation of the depth network's input", "",
             f"Reproduce: `python scripts/probe_exposure.py {' '.join(sys.argv[1:])}`", "",
             f"Machine: {cpu_model()}, torch {torch.__version__}, 1 thread. "
             f"Python {platform.python_version()}.", "",
             f"Reserved test drives (seeds 10 000+), {a.sequences} drives x {a.frames} frames per "
             "domain, protocol `synthetic` constants (GT in (0.001, 80) m, per-image median "
             "scaling), prediction resized bilinearly to the 192x640 ground truth. No model "
             "is retrained: the same weights see three versions of the input.", "",
             f"Geometric-mean intensity of the test frames: day {intensity_level(sets['day']):.3f}, "
             f"night {intensity_level(sets['night']):.3f}; target {TARGET}.", "",
             "| checkpoint | test | " + " | ".join(INPUTS) + " |",
             "|---|---|" + "---|" * len(INPUTS)]
    for ck in a.checkpoints:
        net, info, _ = load_depth_model(ck)
        if not isinstance(net.exposure, torch.nn.Identity):
            raise SystemExit(f"{ck} already normalises exposure (model.depth.exposure="
                             f"{net.cfg.exposure}); probe models trained on raw input")
        hw = (info.input_height, info.input_width)
        for dom, clips in sets.items():
            row = [f"{score(net, hw, clips, t):.3f}" for t in INPUTS.values()]
            lines.append(f"| `{ck}` | {dom} | " + " | ".join(row) + " |")
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if a.report:
        a.report.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
