#!/usr/bin/env python3
"""Build the model the package ships (``dasp_core/assets/dasp_demo.{onnx,pt}``) and its report.

The shipped model is full DASP trained with the synthetic benchmark's settings
(``config/train_synthetic_small.yaml``: 96x320, odometry poses, so the depth is metric by
construction): a MobileNetV3-Large DepthNet, day stage, then the night stage with the SPLB
discriminator and the 3D consistency loss in its repaired form (recipe ``dasp_ref`` of
:mod:`dasp_core.train.recipes`, the same overrides ``scripts/benchmark_dasp.py`` measured;
docs/benchmark_dasp_ref.md) — exported to ONNX (what the node runs, no torch needed) plus an
fp16 checkpoint (for ``dasp eval``/``dasp export``/fine-tuning), each well under 25 MB.

    python scripts/train_demo_model.py     # day + night, 2 threads: about 1 h 50 min
    python scripts/train_demo_model.py --from-run runs/bench/seed*/dasp_ref  # pick, on validation

Writes ``docs/demo_model.md`` with the command, the training settings and the model's
evaluation on the synthetic night test set (reserved seeds never used in training).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dasp_core.eval.cli import eval_argv  # noqa: E402
from dasp_core.train.recipes import (DASP_RECIPES, NIGHT_FINE_TUNING,  # noqa: E402
                                     RECIPE_LABELS, SHIPPED_RECIPE, night_overrides)


def copy_training_logs(night_dir: Path, dest: Path) -> List[Path]:
    """Copy the night run's ``train.log`` and its day run's (the folder of the night config's
    ``train.day_checkpoint``) to ``dest`` as ``night_train.log`` / ``day_train.log``."""
    import shutil

    from dasp_core.checkpoint import read_checkpoint

    dest.mkdir(parents=True, exist_ok=True)
    out = []
    tc = read_checkpoint(night_dir / "final.pt").get("train_config") or {}
    day_ckpt = (tc.get("train") or {}).get("day_checkpoint")
    for name, folder in (("night", night_dir), ("day", Path(day_ckpt).parent if day_ckpt else None)):
        if folder is not None and (folder / "train.log").is_file():
            out.append(Path(shutil.copy(folder / "train.log", dest / f"{name}_train.log")))
    return out


def recipe_mismatches(run_config: dict, config_path: str, overrides: List[str]) -> List[str]:
    """What in a run's saved ``train_config`` differs from ``overrides`` (the recipe and the
    night settings), as ``"key: run has A, recipe sets B"``; empty when the run was trained with
    them. ``--from-run`` refuses a mismatch, so the report never describes another recipe than
    the one that trained the shipped weights."""
    from dasp_core.train.config import load_config

    expected = load_config(config_path, ["train.stage=night", "train.day_checkpoint=day.pt"]
                           + list(overrides))
    out = []
    for key in dict.fromkeys(ov.split("=", 1)[0].strip() for ov in overrides):
        want, got = expected, run_config
        for part in key.split("."):
            want = getattr(want, part)
            got = got.get(part) if isinstance(got, dict) else None
        if isinstance(want, tuple):
            want = list(want)
        if got != want:
            out.append(f"{key}: run has {got!r}, recipe sets {want!r}")
    return out


def validation_scores(dasp: List[str], run_dir: Path, out: Path, sequences: int) -> dict:
    """Score ``run_dir/final.pt`` on the first ``sequences`` synthetic night validation drives
    (``dasp eval --data synthetic-night-val``; reused when its ``eval.json`` exists) and
    return ``abs_rel`` (median-scaled), ``metric_abs_rel`` and ``metric_rmse`` (m)."""
    ev_dir = out / "_".join(run_dir.relative_to(ROOT).parts if run_dir.is_relative_to(ROOT)
                            else run_dir.parts[-3:])
    if not (ev_dir / "eval.json").is_file():
        run(dasp + eval_argv(run_dir / "final.pt", "synthetic-night-val", ev_dir,
                             label=run_dir.name, sequences=sequences, threads=1))
    from dasp_core.eval.report import load_result

    sc = load_result(ev_dir / "eval.json")[0].scores
    return {"abs_rel": float(sc["median"].metrics["abs_rel"]),
            "metric_abs_rel": float(sc["metric"].metrics["abs_rel"]),
            "metric_rmse": float(sc["metric"].metrics["rmse"])}


def selection_table(scores: dict, chosen: str, select_by: str, sequences: int) -> List[str]:
    """Markdown lines: each candidate run's validation scores, the shipped one marked."""
    from dasp_core.eval.evaluate import SYNTHETIC_NIGHT_VAL_SEEDS

    seeds = SYNTHETIC_NIGHT_VAL_SEEDS[:sequences]
    lines = [f"Chosen by `{select_by}` on the synthetic night validation drives "
             f"(`--data synthetic-night-val`, seeds {seeds[0]} … {seeds[-1]}, 8 frames "
             "each; never the test drives):", "",
             "| run | AbsRel (median-scaled) | metric AbsRel | metric RMSE m | |",
             "|---|---:|---:|---:|---|"]
    for r, sc in scores.items():
        lines.append(f"| `{r}` | {sc['abs_rel']:.3f} | {sc['metric_abs_rel']:.3f} | "
                     f"{sc['metric_rmse']:.2f} | {'shipped' if r == chosen else ''} |")
    return lines + [""]


def run(cmd: List[str]) -> None:
    print("$", shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def calibrate_scale(net, info, seeds: List[int], frames: int = 6) -> float:
    """Median over images of median(GT) / median(prediction) on synthetic night validation
    drives (seeds below the reserved test range, not used in training)."""
    import numpy as np
    import torch

    from dasp_core.data.synthetic import SyntheticConfig, render_sequence
    from dasp_core.geometry import disp_to_depth

    ratios = []
    cfg = SyntheticConfig(height=info.input_height, width=info.input_width)
    for seed in seeds:
        seq = render_sequence(seed, "night", frames, cfg)
        x = torch.from_numpy(seq.frames).permute(0, 3, 1, 2).float() / 255.0
        with torch.no_grad():
            _, depth = disp_to_depth(net(x)[0][:, 0], info.min_depth, info.max_depth)
        depth = depth.numpy() * info.scale_factor
        for d, g in zip(depth, seq.depth):
            v = g > 0
            ratios.append(float(np.median(g[v]) / np.median(d[v])))
    return float(np.median(ratios))


def depth_spread(model_path: Path, seeds: List[int], frames: int = 6) -> dict:
    """Spread of the deployed model's depth (ONNX Runtime, as the node runs it) on night
    validation drives, as ``dasp eval`` pools it (:mod:`dasp_core.eval.spread`): the pixels
    protocol ``synthetic`` scores (GT in (0.001, 80) m), the prediction unscaled and clipped
    to that range; percentiles in metres, their ratio against the ground truth's, and the
    Pearson correlation of log depth with log ground truth. Guards against shipping a
    collapsed (near-constant) model again."""
    from dasp_core.data.synthetic import SyntheticConfig, render_sequence
    from dasp_core.eval.metrics import MetricAccumulator
    from dasp_core.runtime.factory import create_estimator

    est = create_estimator(str(model_path), backend="onnxruntime", threads=1)
    h, w = est.info.input_height, est.info.input_width
    acc = MetricAccumulator.for_protocol("synthetic", median_scaling=False)
    for seed in seeds:
        seq = render_sequence(seed, "night", frames, SyntheticConfig(height=h, width=w))
        for img, g in zip(seq.frames, seq.depth):
            acc.update(est.predict(img), g)
    sp = acc.spread()
    return {"p2": sp["pred_p2"], "p98": sp["pred_p98"], "ratio": sp["pred_ratio"],
            "gt_ratio": sp["gt_ratio"], "log_corr": sp["log_corr"]}


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="config/train_synthetic_small.yaml")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--day-steps", type=int, default=5400)
    p.add_argument("--night-steps", type=int, default=1200)
    p.add_argument("--recipe", default=SHIPPED_RECIPE, choices=DASP_RECIPES,
                   help="night-stage recipe (dasp_core.train.recipes; default: full DASP with "
                        "the repaired 3D loss, docs/benchmark_dasp_ref.md)")
    p.add_argument("--night-set", action="append", default=list(NIGHT_FINE_TUNING),
                   metavar="KEY=VALUE", help="overrides of the night stage only (default: the "
                                             "benchmark's fine-tuning learning rate and the "
                                             "night input at day brightness, docs/exposure.md)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--from-run", nargs="+", default=None, metavar="RUN",
                   help="existing night runs of the recipe (skip training); with several, the "
                        "one with the lowest --select-by on the synthetic night *validation* "
                        "drives is shipped (never chosen on the test drives)")
    p.add_argument("--select-by", default="metric_abs_rel",
                   choices=("metric_abs_rel", "abs_rel", "metric_rmse"),
                   help="validation score that picks among several --from-run runs (default: "
                        "AbsRel of the unscaled depth, what the node publishes)")
    p.add_argument("--val-sequences", type=int, default=12,
                   help="validation drives (8 frames each) scored per candidate run")
    p.add_argument("--out-dir", default="runs/demo_model")
    p.add_argument("--assets", default="dasp_core/assets")
    p.add_argument("--report", default="docs/demo_model.md")
    p.add_argument("--eval-sequences", type=int, default=12)
    p.add_argument("--scale", choices=("model", "calibrated"), default="model",
                   help="ship the scale the run declares (default: metric from odometry "
                        "poses), or a fixed factor calibrated on validation drives")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override for both stages (repeatable), e.g. "
                        "model.depth.decoder_padding=zeros")
    p.add_argument("--notes", default=None,
                   help="a Markdown file whose text goes under the report's description (how "
                        "the shipped run was chosen, what it is not)")
    p.add_argument("--calib-seeds", type=int, nargs="+", default=[9500, 9501, 9502, 9503])
    args = p.parse_args(argv)

    from dasp_core.checkpoint import load_depth_model, read_checkpoint, save_checkpoint
    from dasp_core.export.onnx import export_checkpoint

    dasp = [sys.executable, "-m", "dasp_core.cli"]
    common = [f"experiment.seed={args.seed}", f"train.threads={args.threads}",
              "train.device=cpu", "val.interval=100000"] + list(args.set)
    selection: List[str] = []
    if args.from_run:
        for run_dir in args.from_run:
            bad = recipe_mismatches(
                read_checkpoint(ROOT / run_dir / "final.pt").get("train_config") or {},
                str(ROOT / args.config), night_overrides(args.recipe) + list(args.night_set))
            if bad:
                raise SystemExit(f"{run_dir} was not trained with recipe {args.recipe!r} and "
                                 "these night settings:\n  " + "\n  ".join(bad))
        chosen = args.from_run[0]
        if len(args.from_run) > 1:
            scores = {r: validation_scores(dasp, ROOT / r, ROOT / args.out_dir / "val",
                                           args.val_sequences) for r in args.from_run}
            chosen = min(args.from_run, key=lambda r: scores[r][args.select_by])
            selection = selection_table(scores, chosen, args.select_by, args.val_sequences)
        night_dir = ROOT / chosen
    else:
        out = ROOT / args.out_dir
        run(dasp + ["train", args.config, "--out", str(out / "day"), "train.stage=day",
                    f"train.max_steps={args.day_steps}"] + common)
        night_dir = out / "night"
        run(dasp + ["train", args.config, "--out", str(night_dir), "train.stage=night",
                    f"train.day_checkpoint={out / 'day' / 'final.pt'}",
                    f"train.max_steps={args.night_steps}"] + common
            + night_overrides(args.recipe) + list(args.night_set))
    src = night_dir / "final.pt"
    net, info, ckpt = load_depth_model(src)
    info.name = "dasp_demo"
    learned = (info.scale_source, info.scale_factor)
    ratio = calibrate_scale(net, info, args.calib_seeds)
    if args.scale == "calibrated":
        # The velocity-learned scale of a short CPU run is not trustworthy (docs/demo_model.md
        # gives how far off it was on held-out drives); ship a factor calibrated on held-out
        # validation drives instead, and say so in the model and the report.
        info.scale_factor = float(info.scale_factor * ratio)
        info.scale_source = "fixed"
    info.extra = dict(info.extra, learned_scale=list(learned), calibration_ratio=ratio,
                      calibration="median GT/pred over synthetic night validation seeds "
                                  f"{args.calib_seeds[0]}-{args.calib_seeds[-1]}")
    info.extra = dict(info.extra, trained_from=str(src.relative_to(ROOT)) if src.is_relative_to(ROOT)
                      else str(src), git_rev=ckpt.get("git_rev", "unknown"))
    assets = ROOT / args.assets
    pt = save_checkpoint(assets / "dasp_demo.pt", net, info, half=True,
                         extra={"train_config": ckpt.get("train_config")})
    onnx_path = export_checkpoint(pt, assets / "dasp_demo.onnx")[0]
    sizes = {f.name: f.stat().st_size / 1e6 for f in (pt, onnx_path)}
    for name, mb in sizes.items():
        if mb > 25:
            raise SystemExit(f"{name} is {mb:.1f} MB > 25 MB")

    # The evaluation and the logs sit beside the report (docs/demo_model.md ->
    # docs/demo_model_eval/, docs/demo_model_logs/), so a trial build never overwrites the
    # shipped model's.
    report = ROOT / args.report
    ev_dir = report.parent / f"{report.stem}_eval"
    run(dasp + eval_argv(onnx_path, "synthetic-night-test", ev_dir, label="dasp_demo (night)",
                         sequences=args.eval_sequences, samples=3))
    run(dasp + eval_argv(onnx_path, "synthetic-day-test", ev_dir / "day",
                         label="dasp_demo (day)", sequences=args.eval_sequences))
    logs = copy_training_logs(night_dir, report.parent / f"{report.stem}_logs")
    night_md = (ev_dir / "eval.md").read_text()
    day_md = (ev_dir / "day" / "eval.md").read_text()
    cmd = "python scripts/train_demo_model.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    cfg = (read_checkpoint(pt).get("train_config") or {})
    if args.from_run:
        tc = cfg or {}
        provenance = (f"the shipped files came from the existing night run `{chosen}` "
                      f"(seed {tc.get('experiment', {}).get('seed', '?')}, night "
                      f"{tc.get('train', {}).get('max_steps', '?')} steps, from day checkpoint "
                      f"`{tc.get('train', {}).get('day_checkpoint', '?')}`), trained with "
                      "the same commands this script runs without --from-run; from scratch: "
                      f"`python scripts/train_demo_model.py --seed "
                      f"{tc.get('experiment', {}).get('seed', args.seed)} --threads "
                      f"{tc.get('train', {}).get('threads', args.threads)}`")
    else:
        provenance = (f"trained here: day stage {args.day_steps} steps, then night stage "
                      f"{args.night_steps} steps (recipe `{args.recipe}`), "
                      f"seed {args.seed}, {args.threads} CPU thread(s), config `{args.config}` "
                      f"at {info.input_height}x{info.input_width}")
    spread = depth_spread(onnx_path, args.calib_seeds[:2])
    lines = [
        "# The shipped demo model" if args.assets == "dasp_core/assets"
        else f"# A build of the shipped recipe (seed {args.seed}), not the shipped files", "",
        f"Files: `{args.assets}/dasp_demo.onnx` ({sizes[onnx_path.name]:.1f} MB, fp32, what "
        f"the node runs with ONNX Runtime) and `{args.assets}/dasp_demo.pt` "
        f"({sizes[pt.name]:.1f} MB, fp16 weights, for `dasp eval`/`dasp export`/fine-tuning).", "",
        f"Reproduce: `{cmd}` ({provenance}).", "",
        f"What it is: recipe `{args.recipe}`, {RECIPE_LABELS[args.recipe]}: day stage, then "
        f"the night stage from the day model with "
        + ", ".join(f"`{o}`" for o in night_overrides(args.recipe) + list(args.night_set))
        + " (`dasp_core/train/recipes.py`).", "",
        *([Path(args.notes).read_text().strip(), ""] if args.notes else []),
        *selection,
        f"Model: DepthNet `{info.extra.get('encoder', cfg.get('model', {}).get('depth', {}).get('encoder', 'mobilenet_v3_large'))}`"
        f" with decoder padding `{net.cfg.decoder_padding}` and activation "
        f"`{net.cfg.decoder_activation}`"
        f", input {info.input_height}x{info.input_width}, depth range "
        f"{info.min_depth:g}–{info.max_depth:g} m, scale `{info.scale_source}` "
        f"(factor {info.scale_factor:g}; the run's own scale was "
        f"{learned[0]} × {learned[1]:g}, off by a median factor of {ratio:.2f} on held-out "
        f"validation drives{', so the shipped model uses the calibrated factor' if args.scale == 'calibrated' else ''}).", "",
        "Median scaling is for evaluation only: the node publishes `depth × scale_factor`, "
        "so the metric AbsRel below is what a robot gets.", "",
        f"Depth spread on held-out night validation frames (seeds {args.calib_seeds[0]}, "
        f"{args.calib_seeds[1]}; a collapsed model has p98/p2 near 1 and no correlation; "
        f"pixels with GT in (0.001, 80) m, as `dasp eval` scores them): "
        f"p2 {spread['p2']:.2f} m, p98 {spread['p98']:.2f} m, p98/p2 {spread['ratio']:.1f} "
        f"(ground truth {spread['gt_ratio']:.1f}), Pearson correlation of log depth with "
        f"ground truth {spread['log_corr']:.3f}.", "",
        "Training logs (plain text, as `dasp train` wrote them): "
        + (", ".join(f"[{q.name}]({report.stem}_logs/{q.name})" for q in logs) or "none found")
        + ".", "",
        "It is trained only on the synthetic world, at a small size, on 2 CPU cores: it is "
        "not a model for real roads. Train your own (README, 'Train on your own "
        "recordings').", "",
        "## Night (synthetic test seeds)", "", night_md, "", "## Day (synthetic test seeds)", "",
        day_md]
    report.write_text("\n".join(lines) + "\n")
    print(json.dumps({k: f"{v:.1f} MB" for k, v in sizes.items()}))
    print(f"wrote {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
