#!/usr/bin/env python3
"""Where onnxruntime spends a frame: time per op type of one or more ONNX graphs (CPU EP).

Used to find out why the Q/DQ int8 graph runs slower than fp32 (docs/performance.md): which
convolutions onnxruntime fuses into ``QLinearConv`` and which stay ``DequantizeLinear → Conv →
QuantizeLinear``, and what the Q/DQ nodes cost.

    python scripts/ort_op_profile.py model.onnx model_int8_qdq.onnx --threads 1 --runs 10
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
from typing import Dict, List, Tuple

import numpy as np


def profile(path: str, threads: int, runs: int) -> Tuple[float, List[Tuple[str, float, int]]]:
    """``(ms per frame, [(op type, ms per frame, nodes run per frame), ...])``, slowest first."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    with tempfile.TemporaryDirectory() as tmp:
        opts.profile_file_prefix = os.path.join(tmp, "ort")
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        shape = [int(d) for d in sess.get_inputs()[0].shape]
        x = np.random.default_rng(0).random(shape, dtype=np.float32)
        for _ in range(runs):
            sess.run(None, {sess.get_inputs()[0].name: x})
        with open(sess.end_profiling()) as f:
            events = json.load(f)
    us: Dict[str, float] = collections.Counter()
    count: Dict[str, int] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            us[e["args"]["op_name"]] += e["dur"]
            count[e["args"]["op_name"]] += 1
    rows = sorted(((op, t / runs / 1e3, count[op] // runs) for op, t in us.items()),
                  key=lambda r: -r[1])
    return sum(us.values()) / runs / 1e3, rows


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("models", nargs="+", help="ONNX files")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--top", type=int, default=12, help="op types listed per model")
    args = p.parse_args(argv)
    print(f"load average before: {[round(v, 2) for v in os.getloadavg()]}")
    for path in args.models:
        total, rows = profile(path, args.threads, args.runs)
        print(f"\n{os.path.basename(path)}: {total:.1f} ms per frame in kernels "
              f"({args.threads} thread(s), {args.runs} runs)\n")
        print("| op type | ms per frame | nodes |\n|---|---|---|")
        for op, ms, n in rows[:args.top]:
            print(f"| {op} | {ms:.2f} | {n} |")
    print(f"\nload average after: {[round(v, 2) for v in os.getloadavg()]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
