#!/usr/bin/env python3
"""Stack the sample strips of several ``dasp eval`` runs into one picture, run by run.

``dasp eval --save-samples N`` writes ``samples/sample_00000K.png`` for the first N test
frames of each run: input, prediction, ground truth and error. Runs scored on the same test
set show the same frames, so stacking them row by row compares models on identical inputs
(how the strips of ``docs/benchmark_dasp_ref*.md`` are made). Each row is labelled in its
bottom-left corner with its run (``--labels``, else the run folder and the one above it,
``dasp_ref, seed1`` for ``runs/bench/seed1/dasp_ref/eval_night``)::

    python scripts/stack_samples.py --out docs/strip.png --samples 0 1 --scale 0.6 \\
        runs/bench/seed1/night_selfsup/eval_night runs/bench/seed1/dasp_ref/eval_night
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence


def sample_paths(eval_dirs: Sequence[Path], samples: Sequence[int]) -> List[Path]:
    """The sample PNGs in stacking order (each run's samples together, runs in the order
    given); raises ``FileNotFoundError`` naming every missing file."""
    paths = [Path(d) / "samples" / f"sample_{k:06d}.png" for d in eval_dirs for k in samples]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError("no such sample strip (run `dasp eval --save-samples` with "
                                "enough samples): " + ", ".join(missing))
    return paths


def run_label(eval_dir: Path) -> str:
    """A row's default label: the run folder of a ``dasp eval`` output folder (``eval_*``) and
    the folder above it, e.g. ``dasp_ref, seed1``; the folder's own name otherwise."""
    eval_dir = Path(eval_dir).resolve()
    run = eval_dir.parent if eval_dir.name.startswith("eval") else eval_dir
    return f"{run.name}, {run.parent.name}" if run.parent.name else run.name


def stack(paths: Sequence[Path], out: Path, scale: float = 1.0,
          labels: Optional[Sequence[str]] = None) -> Path:
    """Write the images of ``paths`` one under the other, resized by ``scale`` (all must have
    the same width: strips of models evaluated at one size), each with its entry of
    ``labels`` (if given) in its bottom-left corner."""
    import numpy as np
    from PIL import Image

    from dasp_core.viz import draw_label, make_strip

    images = [np.array(Image.open(p).convert("RGB")) for p in paths]
    widths = {im.shape[1] for im in images}
    if len(widths) != 1:
        raise ValueError(f"sample strips differ in width {sorted(widths)}: evaluate the runs "
                         "at one size")
    if labels is not None:
        if len(labels) != len(images):
            raise ValueError(f"{len(labels)} labels for {len(images)} sample strips")
        for im, text in zip(images, labels):
            if text:
                draw_label(im, text, corner="bottom-left")
    canvas = make_strip(images, height=round(images[0].shape[1] * scale), gap=0, vertical=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(out)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("eval_dirs", nargs="+", type=Path,
                   help="output folders of `dasp eval` (each with samples/)")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--samples", type=int, nargs="+", default=[0, 1],
                   help="sample indices to take from each run (default: 0 1)")
    p.add_argument("--scale", type=float, default=1.0, help="resize factor (default 1)")
    p.add_argument("--labels", nargs="+", default=None,
                   help="one row label per eval folder (default: run folder and the one above "
                        "it, e.g. 'dasp_ref, seed1'); '' for none")
    args = p.parse_args(argv)
    if args.scale <= 0:
        p.error(f"--scale must be > 0, got {args.scale}")
    runs = args.labels if args.labels is not None else [run_label(d) for d in args.eval_dirs]
    if len(runs) != len(args.eval_dirs):
        p.error(f"--labels: {len(runs)} labels for {len(args.eval_dirs)} eval folders")
    labels = [text for text in runs for _ in args.samples]
    try:
        out = stack(sample_paths(args.eval_dirs, args.samples), args.out, args.scale,
                    labels=labels)
    except (FileNotFoundError, ValueError) as e:
        print(f"stack_samples: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
