"""``dasp demo``: the shipped model on a synthetic night drive, without ROS — pictures and scores.

Renders a night drive from the reserved test seeds, runs the model on every frame with the
chosen backend, and writes ``strip.png`` (camera | depth | ground truth | error),
``drive.gif``, ``points.ply`` (one frame, coloured) and ``report.md`` into ``--out``.
For the same job through the ROS node over DDS, run ``python -m dasp_ros.night_drive``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP = "run the shipped model on a synthetic night drive, write pictures"
log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="", help="model file (default: the shipped ONNX model)")
    p.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "openvino",
                                                         "torch", "tensorrt"))
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--size", default="240x800", help="camera size HxW")
    p.add_argument("--seed", type=int, default=10_000, help="night test seed (>= 10000)")
    p.add_argument("--out", default="outputs/demo")


def run(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np
    from tqdm import tqdm

    from dasp_core import viz
    from dasp_core.assets import default_model_path
    from dasp_core.data.synthetic import SyntheticConfig, render_sequence
    from dasp_core.eval.evaluate import is_test_seed
    from dasp_core.eval.metrics import MetricAccumulator, get_protocol
    from dasp_core.ply import write_ply
    from dasp_core.runtime.factory import create_estimator

    if not is_test_seed(args.seed):
        log.warning("seed %d is not a reserved test seed: the model may have seen this drive",
                    args.seed)
    h, w = (int(v) for v in args.size.lower().split("x"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    est = create_estimator(args.model or default_model_path("onnx"), backend=args.backend)
    seq = render_sequence(args.seed, "night", args.frames, SyntheticConfig(height=h, width=w),
                          progress=True)
    proto = get_protocol("synthetic")
    acc = MetricAccumulator(proto.min_depth, proto.max_depth, median_scaling=True)
    acc_metric = MetricAccumulator(proto.min_depth, proto.max_depth, median_scaling=False)
    gif, preds = [], []
    for i in tqdm(range(args.frames), desc="depth", unit="frame"):
        depth = est.predict(seq.frames[i], output_size=(h, w))
        preds.append(depth)
        acc.update(depth, seq.depth[i], masks={k: v[i] for k, v in seq.masks.items()})
        acc_metric.update(depth, seq.depth[i])
        gif.append(viz.make_strip([seq.frames[i], viz.colorize_depth(depth, 1.0, 60.0)],
                                  vertical=True))
    mid = args.frames // 2
    d, gt = preds[mid], seq.depth[mid]
    s = float(np.median(gt[gt > 0]) / np.median(d[gt > 0]))
    strip = viz.make_strip([seq.frames[mid], viz.colorize_depth(d, 1.0, 60.0),
                            viz.colorize_depth(gt, 1.0, 60.0), viz.error_map(d * s, gt)],
                           ["camera (night)", "DASP depth", "ground truth", "abs. rel. error"])
    cv2.imwrite(str(out / "strip.png"), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    viz.write_gif(gif, out / "drive.gif", fps=8)
    K = seq.K
    v, u = np.mgrid[0:h, 0:w]
    pts = np.stack([(u - K[0, 2]) / K[0, 0] * d, (v - K[1, 2]) / K[1, 1] * d, d], -1)
    keep = d < proto.max_depth
    write_ply(out / "points.ply", pts[keep], seq.frames[mid][keep])
    m, mm = acc.metrics(), acc_metric.metrics()
    names = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
    lines = [f"# dasp demo: {args.frames} night frames, seed {args.seed}, {h}x{w}",
             f"model `{args.model or default_model_path('onnx')}`, backend `{est.backend}`", "",
             proto.header(), "", "| scaling | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names),
             "| median | " + " | ".join(f"{m[k]:.3f}" for k in names) + " |",
             "| none (metric) | " + " | ".join(f"{mm[k]:.3f}" for k in names) + " |"]
    regions = acc.per_region()
    if regions:
        lines += ["", "| region | AbsRel | images |", "|---|---|---|"]
        lines += [f"| {k} | {r['abs_rel']:.3f} | {r['n_images']} |" for k, r in regions.items()]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    for name in ("strip.png", "drive.gif", "points.ply", "report.md"):
        print(f"wrote {out / name}")
    return 0
