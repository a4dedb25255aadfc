#!/usr/bin/env python3
"""Short measured comparisons behind the from-scratch CPU training recipe.

Each variant is one day-stage run of ``--config`` with a few overrides, the same seed, data
and step budget; the score is the run's final validation on the held-out day validation drives
(``data.day_val``), median-scaled AbsRel and metric AbsRel (no median scaling), plus the
BatchNorm train/eval gap. Runs are subprocesses (``dasp train``) so each is what a user runs.

    python scripts/recipe_comparison.py --steps 300 --threads 1 \\
        --out runs/recipe_cmp --report docs/training_recipe_runs.md

A short budget ranks choices that matter early (pose source, warm-up, initial depth); it does
not say where a long run ends. ``--skip-existing`` reuses finished runs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_dasp import run_seconds  # noqa: E402  (the same file-time rule for reused runs)

sys.path.insert(0, str(ROOT))
from dasp_core.runtime.bench import cpu_model  # noqa: E402

#: name -> (overrides, what it tests). "recipe" is config/train_synthetic_small.yaml as shipped.
VARIANTS: Dict[str, tuple] = {
    "recipe": ([], "the recipe: odometry poses, lr 5e-4, 100-step warm-up, cosine, "
                   "initial depth 10 m, precise-BN"),
    "posenet": (["pose.source=posenet"], "PoseNet (temporally ordered pairs) instead of odometry"),
    "no_warmup": (["optim.warmup_steps=0"], "no learning-rate warm-up"),
    "init_default": (["model.depth.init_depth=null"], "PyTorch's default head bias "
                                                      "(initial depth ~0.2 m)"),
    "rnw_lr": (["optim.lr=0.0001", "optim.warmup_steps=0", "optim.schedule=step"],
               "RNW's lr 1e-4, step schedule, no warm-up"),
    "no_precise_bn": (["train.precise_bn_batches=0"], "BatchNorm running averages "
                                                      "(momentum 0.01) instead of precise-BN"),
}
SHOWN = ("abs_rel", "metric_abs_rel", "a1", "rmse", "bn_gap_log_depth")


def final_val(run: Path) -> Dict[str, float]:
    """Validation metrics stored in the run's final checkpoint."""
    from dasp_core.checkpoint import read_checkpoint

    info = read_checkpoint(run / "final.pt")["model_info"]
    extra = info["extra"] if isinstance(info, dict) else info.extra
    return dict(extra.get("val", {}))


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--config", default="config/train_synthetic_small.yaml")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/recipe_cmp")
    p.add_argument("--report", default="docs/training_recipe_runs.md")
    p.add_argument("--skip-existing", action="store_true")
    p.add_argument("--extra", nargs="*", default=[], help="overrides added to every run")
    args = p.parse_args(argv)

    out = (ROOT / args.out).resolve()
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1")
    rows = []
    for name in args.variants:
        overrides, what = VARIANTS[name]
        run = out / name
        minutes = float("nan")
        if args.skip_existing and (run / "final.pt").is_file():
            # reused run: its training time from its file times
            minutes = run_seconds(run, run / "final.pt") / 60
        else:
            cmd = [sys.executable, "-m", "dasp_core.cli", "train", args.config, "--out", str(run),
                   f"experiment.seed={args.seed}", f"train.max_steps={args.steps}",
                   f"train.threads={args.threads}", "train.device=cpu", "train.progress=false",
                   "val.interval=0"] + list(args.extra) + overrides
            run.mkdir(parents=True, exist_ok=True)
            t0 = time.monotonic()
            with open(run / "recipe.log", "w") as f:
                f.write("$ " + shlex.join(cmd) + "\n")
                f.flush()
                rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
            minutes = (time.monotonic() - t0) / 60
            if rc != 0:
                print(f"{name}: failed ({rc}), see {run / 'recipe.log'}", file=sys.stderr)
                continue
        val = final_val(run)
        rows.append((name, what, " ".join(overrides) or "(none)", val, minutes))
        print(f"{name}: " + ", ".join(f"{k} {val.get(k, float('nan')):.3f}" for k in SHOWN),
              flush=True)

    lines = [
        "# Training-recipe comparisons (day stage, short budget)", "",
        f"Reproduce: `python scripts/{Path(__file__).name} {shlex.join(argv or sys.argv[1:])}`",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, "
        f"{args.threads} torch thread(s) per run, runs one after another (other work shared "
        f"the cores). Config `{args.config}`, seed {args.seed}, {args.steps} steps each, "
        f"scores on the day validation drives (`data.day_val`, protocol synthetic, cap 80 m).",
        "", "| variant | change | overrides | AbsRel (median-scaled) | metric AbsRel | δ<1.25 "
            "| RMSE | BN train/eval gap (log depth) | minutes |",
        "|---|---|---|---|---|---|---|---|---|"]
    for name, what, ov, val, minutes in rows:
        cells = [f"{val[k]:.3f}" if k in val else "–" for k in SHOWN]
        lines.append(f"| {name} | {what} | `{ov}` | " + " | ".join(cells) +
                     f" | {minutes:.1f} |")
    report = ROOT / args.report
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines) + "\n")
    print(report.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
