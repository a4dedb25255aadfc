#!/usr/bin/env python3
"""Two ONNX depth graphs timed side by side (ONNX Runtime fp32 and OpenVINO f32), interleaved
so that machine drift hits both alike; prints a markdown table of per-call p50/p90 in ms.

    git show 4399d98:dasp_core/assets/dasp_demo.onnx > /tmp/old_demo.onnx
    python scripts/time_onnx_pair.py /tmp/old_demo.onnx dasp_core/assets/dasp_demo.onnx
"""

from __future__ import annotations

import argparse
import time
from typing import Callable, Dict, List

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("graphs", nargs=2, help="two .onnx files with one input 'image' [1,3,H,W]")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=300)
    a = p.parse_args()
    import onnxruntime as ort
    import openvino as ov

    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    core = ov.Core()
    runs: Dict[str, Callable[[], object]] = {}
    for path in a.graphs:
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        shape = [d if isinstance(d, int) else 1 for d in sess.get_inputs()[0].shape]
        x = np.random.default_rng(0).random(shape, dtype=np.float32) * 0.1  # night-dark
        comp = core.compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                "INFERENCE_NUM_THREADS": a.threads})
        runs[f"`{path}`, ONNX Runtime fp32"] = lambda s=sess, x=x: s.run(None, {"image": x})
        runs[f"`{path}`, OpenVINO f32"] = lambda c=comp, x=x: c([x])
    for f in runs.values():
        for _ in range(20):
            f()
    times: Dict[str, List[float]] = {k: [] for k in runs}
    for _ in range(a.iters):
        for k, f in runs.items():
            t0 = time.perf_counter()
            f()
            times[k].append((time.perf_counter() - t0) * 1e3)
    print(f"| graph, runtime ({a.threads} threads) | p50 ms | p90 ms |\n|---|---|---|")
    for k, v in times.items():
        print(f"| {k} | {np.percentile(v, 50):.2f} | {np.percentile(v, 90):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
