#!/usr/bin/env python3
"""Training-step speed of a recipe on this machine: threads, channels_last, torch.compile.

Each variant builds the real :class:`~dasp_core.train.trainer.Trainer` from ``--config``
(with ``--set`` overrides), runs ``--warmup`` untimed steps, then times ``--steps`` calls of
``Trainer.train_step()`` (data loading, forward, backward and optimiser, as in training).
Variants run one after another in this process, so compare them only within one report.

    python scripts/bench_train_step.py --config config/train_synthetic_small.yaml \\
        --steps 20 --report docs/bench/train_step.md

``compile`` wraps the depth network in ``torch.compile`` (inductor); its compile time is
reported separately from the step time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dasp_core.runtime.bench import cpu_model  # noqa: E402
from dasp_core.train.config import load_config  # noqa: E402
from dasp_core.train.trainer import Trainer  # noqa: E402

#: name -> (threads, channels_last, compile)
VARIANTS: Dict[str, tuple] = {
    "1 thread": (1, False, False),
    "2 threads": (2, False, False),
    "2 threads, channels_last": (2, True, False),
    "2 threads, torch.compile": (2, False, True),
}


def time_variant(config: str, overrides: List[str], threads: int, channels_last: bool,
                 compile_net: bool, warmup: int, steps: int) -> Dict[str, float]:
    """Seconds per ``train_step`` (median and mean over ``steps``) for one variant."""
    cfg = load_config(config, list(overrides) + [f"train.threads={threads}",
                                                 "train.image_interval=0"])
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(cfg, tmp)
        torch.set_num_threads(threads)
        if channels_last:
            tr.depth.to(memory_format=torch.channels_last)
        compile_s = 0.0
        if compile_net:
            tr.nets.depth = torch.compile(tr.depth)
        t0 = time.perf_counter()
        for _ in range(warmup):
            tr.train_step()
        if compile_net:
            compile_s = time.perf_counter() - t0
        times = []
        for _ in range(steps):
            t = time.perf_counter()
            tr.train_step()
            times.append(time.perf_counter() - t)
    return {"median_s": float(np.median(times)), "mean_s": float(np.mean(times)),
            "warmup_s": compile_s}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="config/train_synthetic_small.yaml")
    p.add_argument("--set", nargs="*", default=[], help="config overrides key=value")
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--report", type=Path, default=None, help="markdown report (+ .json beside)")
    a = p.parse_args()
    rows = {}
    for name in a.variants:
        th, cl, comp = VARIANTS[name]
        rows[name] = time_variant(a.config, a.set, th, cl, comp, a.warmup, a.steps)
        print(f"{name}: {rows[name]['median_s']:.3f} s/step (median), "
              f"{rows[name]['mean_s']:.3f} mean, warm-up {rows[name]['warmup_s']:.1f} s",
              flush=True)
    if a.report:
        base = rows.get("1 thread", next(iter(rows.values())))["median_s"]
        cmd = "python scripts/bench_train_step.py " + " ".join(sys.argv[1:])
        lines = [
            "# Training-step speed", "",
            f"Reproduce: `{cmd}`", "",
            f"Machine: {cpu_model()}, {os.cpu_count()} cores, nothing else running, "
            f"torch {torch.__version__}. Config `{a.config}` {' '.join(a.set)}; "
            f"{a.warmup} untimed steps, then {a.steps} timed `Trainer.train_step()` calls "
            "(data, forward, backward, optimiser).", "",
            "| variant | s/step (median) | s/step (mean) | speed-up vs 1 thread | "
            "untimed warm-up (s) |",
            "|---|---|---|---|---|",
        ]
        for name, r in rows.items():
            lines.append(f"| {name} | {r['median_s']:.3f} | {r['mean_s']:.3f} | "
                         f"{base / r['median_s']:.2f}x | {r['warmup_s']:.1f} |")
        a.report.parent.mkdir(parents=True, exist_ok=True)
        a.report.write_text("\n".join(lines) + "\n")
        a.report.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
        print(f"report: {a.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
