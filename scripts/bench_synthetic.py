#!/usr/bin/env python3
"""Benchmark the synthetic renderer and/or draw the overview picture of the world.

Examples::

    # frames/s, single process and with 2 worker processes, per-stage breakdown
    python scripts/bench_synthetic.py --frames 60 --size 192x640 --workers 2
    # the picture in docs/synthetic.md
    python scripts/bench_synthetic.py --picture docs/synthetic_world.png --no-bench

Single-process numbers run one thread (numpy and OpenCV); CPU time per frame is reported next
to wall time because on a shared machine the wall time mostly measures the other tenants.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def _parse_size(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def bench_single(domain: str, seed: int, frames: int, cfg, warmup: int) -> dict:
    """Render ``frames`` frames in this process (after ``warmup`` frames that build the
    shadow-map tiles); returns wall/CPU ms per frame and the stage breakdown."""
    from dasp_core.data.synthetic import SequenceRenderer

    r = SequenceRenderer(seed, domain, warmup + frames, cfg)
    for i in range(warmup):
        r.render(i)
    stages: dict = {}
    c0, w0 = time.process_time(), time.perf_counter()
    for i in range(warmup, warmup + frames):
        f = r.render(i)
        for k, v in f.timings.items():
            stages[k] = stages.get(k, 0.0) + v
    c1, w1 = time.process_time(), time.perf_counter()
    return {"wall_ms": (w1 - w0) / frames * 1e3, "cpu_ms": (c1 - c0) / frames * 1e3,
            "stages_ms": {k: v / frames * 1e3 for k, v in stages.items()}}


def bench_workers(domain: str, seed: int, frames: int, cfg, workers: int) -> tuple:
    """Throughput of ``render_sequence`` with ``workers`` processes (includes building the
    world and the shadow-map tiles in every worker: a conservative number).

    Returns ``(frames/s wall, frames/s if every worker had a core of its own)`` — the second
    is ``frames / (worker CPU seconds / workers)``, which other tenants of a shared machine do
    not distort.
    """
    import resource

    from dasp_core.data.synthetic import render_sequence

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    render_sequence(seed, domain, frames, cfg, workers=workers)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return frames / wall, frames / max(cpu / workers, 1e-9)


def draw_picture(path: str, cfg, day_seeds=(0, 1, 2), night_seeds=(100, 101, 104)) -> None:
    """Day frames, night frames (104: a wet road) and their depth colour maps in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dasp_core.data.synthetic import SequenceRenderer

    rows = []
    for domain, seeds in (("day", day_seeds), ("night", night_seeds)):
        for s in seeds:
            r = SequenceRenderer(s, domain, 60, cfg)
            f = r.render(30)
            rows.append((domain, s, f))
    n = len(rows)
    fig, axes = plt.subplots(n, 2, figsize=(2 * 6.4, n * 6.4 * cfg.height / cfg.width + 0.6 * n),
                             dpi=100)
    cmap = plt.get_cmap("turbo").copy()
    cmap.set_bad("white")
    for (domain, seed, f), (a0, a1) in zip(rows, axes):
        a0.imshow(f.image)
        a0.set_title(f"{domain}, seed {seed}: image (mean {f.image.mean():.0f}, "
                     f"dark {100 * f.masks['dark'].mean():.0f}%)", fontsize=9)
        inv = np.where(f.depth > 0, 1.0 / np.maximum(f.depth, 1e-3), np.nan)
        im = a1.imshow(inv, cmap=cmap, vmin=0.0, vmax=1.0 / 3.0)
        a1.set_title("ground-truth depth (white = sky, invalid)", fontsize=9)
        for a in (a0, a1):
            a.set_xticks([])
            a.set_yticks([])
    cb = fig.colorbar(im, ax=axes[:, 1].tolist(), fraction=0.02, pad=0.01)
    ticks = np.array([3, 4, 6, 10, 20, 50])
    cb.set_ticks(1.0 / ticks)
    cb.set_ticklabels([f"{t} m" for t in ticks])
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--size", default="192x640")
    p.add_argument("--domain", default="both", choices=["day", "night", "both"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2,
                   help="also measure throughput with this many processes (<= 1 to skip)")
    p.add_argument("--picture", default=None, help="write the overview PNG here")
    p.add_argument("--no-bench", action="store_true", help="only draw the picture")
    args = p.parse_args(argv)

    import cv2

    from dasp_core.data.synthetic import SyntheticConfig

    h, w = _parse_size(args.size)
    cfg = SyntheticConfig(height=h, width=w)
    if args.picture:
        draw_picture(args.picture, cfg)
    if args.no_bench:
        return 0
    cv2.setNumThreads(1)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()}, "
          f"python {sys.version.split()[0]}, numpy {np.__version__}, opencv {cv2.__version__}")
    domains = ["day", "night"] if args.domain == "both" else [args.domain]
    for d in domains:
        res = bench_single(d, args.seed, args.frames, cfg, args.warmup)
        st = ", ".join(f"{k} {v:.1f}" for k, v in res["stages_ms"].items() if k != "total")
        print(f"{d:5s} {h}x{w} 1 thread : {1e3 / res['wall_ms']:5.1f} frames/s wall "
              f"({res['wall_ms']:.1f} ms), {1e3 / res['cpu_ms']:5.1f} frames/s CPU "
              f"({res['cpu_ms']:.1f} ms)  [{st} ms]")
        if args.workers > 1:
            fps, fps_cpu = bench_workers(d, args.seed, args.frames * args.workers, cfg,
                                         args.workers)
            print(f"{d:5s} {h}x{w} {args.workers} processes: {fps:5.1f} frames/s wall, "
                  f"{fps_cpu:5.1f} frames/s by CPU time (incl. world build and warm-up)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
