#!/usr/bin/env python3
"""The measured claim: DASP vs its baselines and ablations on the synthetic night world.

Same data, same step budget, several seeds; the night test set comes from the reserved test
seeds (10 000+) that training never renders. Variants:

    (a) day_only        day model evaluated on night images
    (b) night_selfsup   night stage, self-supervised only (Monodepth2-style)
    (c) rnw             night stage + adversarial prior on single depth maps (RNW-style)
    (d) dasp            full DASP: SPLB temporal discriminator + 3D consistency loss
    (d) dasp_spread     full DASP, the 3D loss's ``spread`` normaliser (neutral to squashing
                        the depth range; ``dasp`` uses the default ``pixel`` form)
    (d) dasp_lock       ``dasp_spread`` + ``loss.consistency_scale_lock`` (the 3D loss's
                        weight gradient may not move the depth scale)
    (d) dasp_ref        ``dasp_spread`` with the sources' depths as fixed references and
                        the symmetric mask (docs/training_recipe.md, eleventh session)
    (e) no_stlm / no_aslm / no_3d   DASP ablations
    (e) ref_no_stlm / ref_no_aslm   ablations of ``dasp_ref`` (its 3D form kept)
    supervised  diagnostic ceiling: the same network and budget trained on the night clips'
                ground-truth depth (``train.supervision=depth``); never shipped, never DASP

Two image-blind references are scored on the same test frames, so that a table can be read
against what costs no learning at all: a constant depth, and the per-pixel median of the
ground truth of the day *training* drives (a "road layout prior" that never looks at the
image; it uses ground truth the methods never see). A model below that prior has learned
nothing useful yet. Each model's depth spread on test frames (p98/p2 of predicted depth over all
scored pixels, against the ground truth's; from ``dasp eval``) and the correlation of log
depths catch collapse to a constant.
The day model is also scored on the day test set (how good the teacher is).

Runs ``dasp train`` / ``dasp eval`` as subprocesses (``--jobs`` at a time, each with
``--threads`` threads), then writes ``--report`` (Markdown with the command, machine, table,
goal checks) and a bar chart next to it.

    python scripts/benchmark_dasp.py --seeds 0 1 --day-steps 600 --night-steps 400 \\
        --out runs/benchmark --report docs/benchmark.md

A benchmark too long for one sitting is filled in pieces: the same command restricted with
``--seeds``/``--variants`` and ``--skip-existing`` trains only the missing runs and merges what
it scores into ``OUT/results.json`` cell by cell; ``--report-only`` over all seeds and variants
then writes the whole table (``--preface``/``--notes`` add the hand-written parts).

A difference between two variants of one seed is one training run against another. The report
pairs each ablation (and night-only) with the variant ``--full`` names on the same test frames,
with an interval over test drives; ``--night-seed K`` trains a second night run of each
variant from the same day models (``seedS/nightseedK_VARIANT``), which the report pairs the
same way, so a difference can be checked against the training seed too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

if TYPE_CHECKING:
    from dasp_core.eval.paired import PairedDifference
    from dasp_core.eval.result import EvalResult, ScoreSet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dasp_core.eval.cli import eval_argv  # noqa: E402
from dasp_core.eval.report import load_result  # noqa: E402
from dasp_core.train.recipes import NIGHT_RECIPES, RECIPE_LABELS  # noqa: E402

LABELS = {"day_only": "(a) day-only model",
          "day_exposure": "(a) day-only model + exposure normalisation", **RECIPE_LABELS}
# full variant -> its ablations (what "each ablation worse than full DASP" compares)
ABLATIONS: Dict[str, Tuple[str, ...]] = {"dasp": ("no_stlm", "no_aslm", "no_3d"),
                                         "dasp_ref": ("ref_no_stlm", "ref_no_aslm", "no_3d")}
# baselines the full variant is also paired with on the same frames (when their runs exist):
# the single-map adversarial prior DASP's temporal one is meant to beat, and no prior at all
PAIRED_BASELINES = ("rnw", "night_selfsup")
REF_LABELS = {"constant": "reference: constant depth (image-blind)",
              "pixel_prior": "reference: per-pixel day-GT median (image-blind)"}
METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")


def override_value(overrides: Sequence[str], key: str) -> Optional[str]:
    """The last ``key=value`` of ``overrides`` for ``key``, as written (None if absent)."""
    found = None
    for item in overrides:
        k, sep, v = item.partition("=")
        if sep and k.strip() == key:
            found = v.strip()
    return found


def exposure_checkpoint(day_ckpt: Path, exposure: str, out_path: Path) -> Path:
    """The day checkpoint with ``model.depth.exposure`` set: same weights (the normalisation
    has none), so the day model can be scored on the input the night variants get."""
    from dasp_core.checkpoint import load_depth_model, save_checkpoint
    from dasp_core.models import DepthNet

    net, info, raw = load_depth_model(day_ckpt)
    cfg = net.cfg
    cfg.exposure = exposure
    changed = DepthNet(cfg.validate())
    changed.load_state_dict(net.state_dict())
    return save_checkpoint(out_path, changed, info, extra={"derived_from": str(day_ckpt)})


def sh(cmd: Sequence[str], log: Path, env: Dict[str, str]) -> float:
    """Run a command, log to a file, raise with the log's tail on failure; return seconds."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(log, "w") as f:
        f.write("$ " + shlex.join(cmd) + "\n")
        f.flush()
        rc = subprocess.call(list(cmd), stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    if rc != 0:
        tail = "".join(open(log).readlines()[-30:])
        raise RuntimeError(f"command failed ({rc}): {shlex.join(cmd)}\n--- {log} ---\n{tail}")
    return time.monotonic() - t0


def run_seconds(run_dir: Path, ckpt: Path) -> float:
    """Training time of a finished run, from file times: ``dasp train`` writes config.yaml
    first and the final checkpoint last (within a second of what ``sh`` measures)."""
    return ckpt.stat().st_mtime - (run_dir / "config.yaml").stat().st_mtime


def find_checkpoint(run_dir: Path) -> Path:
    """The checkpoint of a *finished* run: ``dasp train`` writes final.pt last. An interrupted
    run (best.pt / last.pt only) counts as not there: it is neither scored nor timed."""
    if (run_dir / "final.pt").is_file():
        return run_dir / "final.pt"
    raise FileNotFoundError(f"no final.pt in {run_dir} (not trained, or interrupted)")


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="config/train_synthetic_small.yaml")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--day-steps", type=int, default=600)
    p.add_argument("--night-steps", type=int, default=400)
    p.add_argument("--variants", nargs="+", default=list(NIGHT_RECIPES))
    p.add_argument("--jobs", type=int, default=2, help="runs at a time")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--eval-sequences", type=int, default=12)
    p.add_argument("--val-sequences", type=int, default=0,
                   help="also score every night run on this many night *validation* drives "
                        "(synthetic-night-val, 8 frames each; into eval_night_val/) and pair "
                        "the variants on them too: other drives than the test's, for checking "
                        "a test-set difference (0 = off)")
    p.add_argument("--eval-frames", type=int, default=0,
                   help="max images scored (0 = all frames of the sequences)")
    p.add_argument("--out", default="runs/benchmark")
    p.add_argument("--report", default="docs/benchmark.md")
    p.add_argument("--extra", nargs="*", default=[], help="overrides added to every run")
    p.add_argument("--night-extra", nargs="*", default=[],
                   help="overrides added to every night-stage run (e.g. a lower optim.lr for "
                        "fine-tuning from the day model)")
    p.add_argument("--skip-existing", action="store_true",
                   help="reuse finished runs (those with a final.pt) and their evaluations; "
                        "continue interrupted ones from their last.pt")
    p.add_argument("--shipped", default=None, choices=list(NIGHT_RECIPES),
                   help="the variant the demo model is trained with, when it is not full "
                        "DASP: the report checks the targets for it too")
    p.add_argument("--night-seed", type=int, default=None,
                   help="experiment.seed of the night runs (default: the seed of their day "
                        "model). Another value trains a second night run of each variant from "
                        "the same day model, in seedS/nightseedK_VARIANT; the report pairs "
                        "those with each other and keeps them out of the per-variant table")
    p.add_argument("--full", default="dasp", choices=list(ABLATIONS),
                   help="the variant the goals call full DASP; its ablations are compared "
                        "with it, also paired per test drive when the runs' eval.json are there")
    p.add_argument("--preface", default=None,
                   help="a Markdown file whose text goes under the report's machine line "
                        "(how the runs were made, when that is more than the command)")
    p.add_argument("--notes", default=None,
                   help="a Markdown file whose text goes after the goal checks (the reading "
                        "of the numbers)")
    p.add_argument("--report-only", action="store_true",
                   help="train and evaluate nothing: rebuild --report from OUT/results.json "
                        "(run times from the runs' file times)")
    args = p.parse_args(argv)
    if args.report_only:
        return rebuild_report(args, argv)

    from tqdm import tqdm

    out = (ROOT / args.out).resolve()
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1")
    dasp = [sys.executable, "-m", "dasp_core.cli"]
    common = [f"train.threads={args.threads}", "train.device=cpu"] + list(args.extra)
    timings: Dict[str, float] = {}
    reused: Dict[str, float] = {}  # runs an earlier invocation trained (--skip-existing)

    def train(name: str, seed: int, overrides: List[str], steps: int,
              run_seed: Optional[int] = None) -> Path:
        run_dir = out / f"seed{seed}" / name
        if args.skip_existing:
            try:
                ckpt = find_checkpoint(run_dir)
            except FileNotFoundError:
                pass
            else:
                reused[f"{name}/seed{seed}"] = run_seconds(run_dir, ckpt)
                return ckpt
        # With --skip-existing an interrupted run (best.pt / last.pt, no final.pt) is continued,
        # never scored as if it had finished; without a last.pt --resume is a fresh start.
        cmd = dasp + ["train"] + (["--resume"] if args.skip_existing else []) + [
            args.config, "--out", str(run_dir),
            f"experiment.seed={seed if run_seed is None else run_seed}",
            f"train.max_steps={steps}"] + common + overrides
        timings[f"{name}/seed{seed}"] = sh(cmd, run_dir / "benchmark.log", env)
        return find_checkpoint(run_dir)

    def run_eval(ckpt: Path, data: str, sequences: int, ev_dir: Path, label: str,
                 samples: int, extra: Sequence[str] = ()) -> None:
        if not (args.skip_existing and (ev_dir / "eval.json").is_file()):
            sh(dasp + eval_argv(ckpt, data, ev_dir, label=label, sequences=sequences,
                                samples=samples, threads=args.threads, extra=extra),
               ev_dir / "benchmark.log", env)

    def evaluate(cell: str, seed: int, ckpt: Path) -> Dict[str, float]:
        path = eval_file(out, cell, seed)
        run_eval(ckpt, f"synthetic-{eval_domain(path)}-test", args.eval_sequences, path.parent,
                 path.parent.parent.name, 2,
                 ["--max-images", str(args.eval_frames)] if args.eval_frames else [])
        return read_cell(path)

    results: Dict[str, Dict[int, Dict[str, float]]] = {}
    n_jobs = len(args.seeds) * (1 + len(args.variants))
    bar = tqdm(total=n_jobs, desc="benchmark runs", unit="run")
    t_start = time.monotonic()

    night_exposure = override_value(list(args.extra) + list(args.night_extra),
                                    "model.depth.exposure")

    def seed_pipeline_day(seed: int) -> Path:
        ckpt = train("day", seed, ["train.stage=day"], args.day_steps)
        results.setdefault("day_only", {})[seed] = evaluate("day_only", seed, ckpt)
        results.setdefault("day_on_day", {})[seed] = evaluate("day_on_day", seed, ckpt)
        day_exposure = override_value(args.extra, "model.depth.exposure") or "none"
        if night_exposure and night_exposure != day_exposure:
            derived = exposure_checkpoint(ckpt, night_exposure,
                                          out / f"seed{seed}" / "day_exposure" / "final.pt")
            results.setdefault("day_exposure", {})[seed] = evaluate("day_exposure", seed,
                                                                    derived)
        bar.update(1)
        return ckpt

    def night_job(seed: int, variant: str, day_ckpt: Path) -> None:
        night_seed = seed if args.night_seed is None else args.night_seed
        name = night_run_name(variant, seed, night_seed)
        ckpt = train(name, seed, ["train.stage=night", f"train.day_checkpoint={day_ckpt}"]
                     + list(args.night_extra) + NIGHT_RECIPES[variant], args.night_steps,
                     run_seed=night_seed)
        results.setdefault(name, {})[seed] = evaluate(name, seed, ckpt)
        if args.val_sequences:
            run_eval(ckpt, "synthetic-night-val", args.val_sequences,
                     out / f"seed{seed}" / name / "eval_night_val", name, 0)
        bar.update(1)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        day_ckpts = dict(zip(args.seeds, pool.map(seed_pipeline_day, args.seeds)))
        # Seed-major, so a benchmark cut short by the end of a session has whole seeds.
        futures = [pool.submit(night_job, s, v, day_ckpts[s])
                   for s in args.seeds for v in args.variants]
        for f in futures:
            f.result()
    bar.close()
    wall = time.monotonic() - t_start
    refs = reference_scores(args.eval_sequences)
    merge_results(out / "results.json", {"results": results, "timings": timings,
                                         "reused": reused, "references": refs})
    write_report(args, results, timings, wall, ROOT / args.report, argv, refs, reused, out)
    print((ROOT / args.report).read_text())
    return 0


def night_run_name(variant: str, seed: int, night_seed: int) -> str:
    """The run folder (and results.json key) of a night run: the variant's name when its
    training seed is its day model's, else ``nightseedK_VARIANT``."""
    return variant if night_seed == seed else f"nightseed{night_seed}_{variant}"


def merge_results(path: Path, new: Dict[str, Any]) -> Dict[str, Any]:
    """Write ``new`` into ``path`` (results.json) over what an earlier invocation left there.

    A benchmark spread over sessions runs a few seeds or variants at a time; each invocation
    replaces the cells it scored (variant, seed) and its run times, and keeps every other
    cell, so ``--report-only`` over all seeds shows the whole table. Returns what was written.
    """
    merged: Dict[str, Any] = {"results": {}, "timings": {}, "reused": {}, "references": {}}
    if path.is_file():
        old = json.loads(path.read_text())
        for key in merged:   # JSON keys are strings: seeds come back as "0", "1", ...
            merged[key] = dict(old.get(key) or {})
    for variant, per_seed in new.get("results", {}).items():
        merged["results"].setdefault(variant, {}).update(
            {str(s): r for s, r in per_seed.items()})
    for key in ("timings", "reused"):
        merged[key].update(new.get(key) or {})
        # a run timed by this invocation is no longer "reused", and the other way round
        other = "reused" if key == "timings" else "timings"
        for k in new.get(key) or {}:
            merged[other].pop(k, None)
    merged["references"] = new.get("references") or merged["references"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=2))
    return merged


def _test_clips(domain: str, n_sequences: int, max_images: int = 0) -> list:
    from dasp_core.eval.evaluate import build_preset

    ds = build_preset(f"synthetic-{domain}-test", n_sequences=n_sequences)
    n = len(ds) if not max_images else min(max_images, len(ds))
    return [ds[i] for i in range(n)]


def reference_scores(n_sequences: int, prior_sequences: int = 8) -> Dict[str, Dict[str, float]]:
    """Image-blind references on the night test frames (same protocol as ``dasp eval``).

    ``constant``: one depth everywhere (median scaling makes its value irrelevant).
    ``pixel_prior``: per-pixel median of the ground truth of the first ``prior_sequences``
    day training drives (seeds 0…, frames as the test set); sky/invalid pixels get 80 m.
    """
    import numpy as np

    from dasp_core.data.synthetic import SyntheticClipDataset, SyntheticConfig
    from dasp_core.eval.evaluate import SYNTHETIC_TEST_FRAMES
    from dasp_core.eval.metrics import compute_depth_metrics, mean_metrics

    train = SyntheticClipDataset(domain="day", seeds=list(range(prior_sequences)),
                                 frames_per_sequence=SYNTHETIC_TEST_FRAMES,
                                 cfg=SyntheticConfig(), offsets=(0,), max_cached_frames=4)
    gts = np.stack([train[i].depth for i in range(len(train))]).astype(np.float64)
    gts[~(gts > 0)] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-sky pixels
        prior = np.nanmedian(gts, axis=0)
    prior = np.where(np.isfinite(prior), prior, 80.0).astype(np.float32)
    per: Dict[str, List[Dict[str, float]]] = {"constant": [], "pixel_prior": []}
    for clip in _test_clips("night", n_sequences):
        gt = clip.depth
        per["constant"].append(compute_depth_metrics(np.full_like(gt, 10.0), gt))
        per["pixel_prior"].append(compute_depth_metrics(prior, gt))
    return {k: {m: float(v) for m, v in mean_metrics(rows).items()} for k, rows in per.items()}


def score_row(result: "EvalResult", spread: bool = True) -> Dict[str, float]:
    """One results.json cell from a ``dasp eval`` result: the median-scaled metrics, the
    metric-mode AbsRel and RMSE (no median scaling; metres) when they were computed, the
    per-region AbsRel and, with ``spread``, the collapse check of :func:`spread_of`."""
    med = result.scores["median"]
    row = {k: float(med.metrics[k]) for k in METRICS}
    if "metric" in result.scores:
        row["metric_abs_rel"] = float(result.scores["metric"].metrics["abs_rel"])
        row["metric_rmse"] = float(result.scores["metric"].metrics["rmse"])
    for region, m in med.per_region.items():
        row[f"region_{region}_abs_rel"] = float(m["abs_rel"])
    if spread:
        row.update(spread_of(med))
    return row


def spread_of(median: "ScoreSet") -> Dict[str, float]:
    """The collapse check, from ``dasp eval``'s own pooled depth spread (all scored pixels of
    the test frames, median-scaled mode; :mod:`dasp_core.eval.spread`): predicted and
    ground-truth p98/p2 and the log-depth correlation (0 for a constant prediction, whose
    correlation is undefined, as the benchmark's first definition had it). Empty for an
    eval.json written before the spread existed."""
    sp = median.spread
    if not sp:
        return {}
    corr = sp.get("log_corr")
    return {"spread": float(sp["pred_ratio"]), "gt_spread": float(sp["gt_ratio"]),
            "log_corr": float(corr) if corr is not None and math.isfinite(corr) else 0.0,
            "spread_pooled": 1.0}


def _mean_std(vals: Sequence[float]) -> str:
    import numpy as np

    a = np.asarray(vals, dtype=float)
    return f"{a.mean():.3f} ± {a.std():.3f}" if a.size > 1 else f"{a.mean():.3f}"


def eval_file(out: Path, cell: str, seed: int) -> Path:
    """The eval.json behind results.json's cell ``cell`` of ``seed``: the day model's night
    and day test evaluations for ``day_only`` / ``day_on_day``, ``RUN/eval_night`` else."""
    run, domain = {"day_only": ("day", "night"), "day_on_day": ("day", "day")}.get(
        cell, (cell, "night"))
    return out / f"seed{seed}" / run / f"eval_{domain}" / "eval.json"


def eval_domain(path: Path) -> str:
    """``"night"`` or ``"day"``: the test set of an :func:`eval_file` path."""
    return path.parent.name[len("eval_"):]


def read_cell(path: Path) -> Dict[str, float]:
    """The results.json cell of the :func:`eval_file` ``path`` (:func:`score_row`; the
    collapse check only for night test sets)."""
    return score_row(load_result(path)[0], spread=eval_domain(path) == "night")


def refresh_cells(out: Path, results: Dict[str, Dict[int, Dict[str, float]]]) -> int:
    """Re-read every cell of ``results`` whose eval.json is in ``out`` (in place), so that a
    report rebuilt with ``--report-only`` shows the columns this version reads even for runs
    scored before it read them; cells without their eval file, or with one an older
    ``dasp eval`` wrote, stay as saved. Returns how many cells were re-read."""
    from dasp_core.errors import ConfigError

    n = 0
    for cell, per_seed in results.items():
        for seed, row in per_seed.items():
            path = eval_file(out, cell, seed)
            if not path.is_file():
                continue
            try:
                row.update(read_cell(path))
            except ConfigError:   # a format this version no longer reads: keep the saved cell
                continue
            n += 1
    return n


def rebuild_report(args, argv) -> int:
    """``--report-only``: the report of the runs in ``--out`` from their results.json."""
    out = (ROOT / args.out).resolve()
    saved = json.loads((out / "results.json").read_text())
    # JSON keys are strings; keep only the seeds asked for
    results = {v: {int(s): r for s, r in per_seed.items() if int(s) in args.seeds}
               for v, per_seed in saved["results"].items()}
    refresh_cells(out, results)
    reused = {}
    second_nights = sorted({k for k in results if k.startswith("nightseed")})
    for v in ["day"] + list(args.variants) + second_nights:
        for seed in args.seeds:
            run_dir = out / f"seed{seed}" / v
            try:
                reused[f"{v}/seed{seed}"] = run_seconds(run_dir, find_checkpoint(run_dir))
            except FileNotFoundError:
                pass
    # The command that reproduces the runs is the same one without the report-only flags.
    argv = [a for a in (argv if argv is not None else sys.argv[1:])
            if a not in ("--report-only", "--skip-existing")]
    write_report(args, results, {}, None, ROOT / args.report, argv, saved.get("references"),
                 reused, out)
    print((ROOT / args.report).read_text())
    return 0


def _seed_list(seeds) -> str:
    seeds = sorted(seeds)
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(str(s) for s in seeds)


def _row_label(variant: str, per_seed: Dict[int, Any], all_seeds: Sequence[int]) -> str:
    """The variant's label, naming its seeds when it was not run on all of the report's."""
    partial = sorted(per_seed) != list(all_seeds)
    return LABELS[variant] + (f" ({_seed_list(per_seed)} only)" if partial else "")


def common_means(results: Dict[str, Dict[int, Dict[str, float]]], a: str, b: str
                 ) -> Optional[Tuple[float, float, str]]:
    """Mean night AbsRel of variants ``a`` and ``b`` over the seeds both were run on, and a
    note naming those seeds when either has others (``""`` when both have the same seeds);
    ``None`` without a common seed. Each seed has its own day model, and seed-to-seed
    differences are as large as the effects compared, so means over different seed sets
    would compare day models, not variants."""
    import numpy as np

    ra, rb = results.get(a, {}), results.get(b, {})
    common = sorted(set(ra) & set(rb))
    if not common:
        return None
    note = "" if set(ra) == set(rb) else f" (on {_seed_list(common)}, which both ran)"
    return (float(np.mean([ra[s]["abs_rel"] for s in common])),
            float(np.mean([rb[s]["abs_rel"] for s in common])), note)


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def goal_lines(results: Dict[str, Dict[int, Dict[str, float]]],
               refs: Dict[str, Dict[str, float]], variant: str = "dasp",
               name: str = "DASP", with_day: bool = True) -> List[str]:
    """Issue 14's targets for ``variant`` (``name`` in the text), each with its number and
    met / NOT met (means over seeds unless the target says per seed); ``with_day`` adds the
    day-model target (written once, with the full variant's lines)."""
    import numpy as np

    out: List[str] = []
    runs = results.get(variant, {})
    if with_day and results.get("day_on_day"):
        v = float(np.mean([r["abs_rel"] for r in results["day_on_day"].values()]))
        out.append(f"- Day model on day test AbsRel {v:.3f} (target ≤ 0.15): {_met(v <= 0.15)}.")
    if runs:
        v = float(np.mean([r["abs_rel"] for r in runs.values()]))
        out.append(f"- {name} night AbsRel {v:.3f} (target ≤ 0.20): {_met(v <= 0.20)}.")
        per = {s: r["abs_rel"] for s, r in sorted(runs.items())}
        shown = ", ".join(f"seed {s} {a:.3f}" for s, a in per.items())
        out.append(f"- {name} night AbsRel ≤ 0.26 (1.5x better than the image-blind prior) on "
                   f"every seed ({shown}): {_met(all(a <= 0.26 for a in per.values()))}.")
        night = results.get("night_selfsup", {})
        ratios = {s: runs[s]["abs_rel"] / night[s]["abs_rel"] for s in runs if s in night}
        if ratios:
            shown = ", ".join(f"seed {s} {r:.3f}" for s, r in sorted(ratios.items()))
            out.append(f"- {name} / night-only ≤ 0.80 on every seed ({shown}): "
                       f"{_met(all(r <= 0.8 for r in ratios.values()))}.")
        spread = [(r["spread"], r["gt_spread"]) for r in runs.values() if "spread" in r]
        if spread:
            rel = float(np.mean([abs(p / g - 1.0) for p, g in spread]))
            out.append(f"- {name} depth spread p98/p2 within 30 % of the ground truth's "
                       f"(mean relative difference {rel:.0%}): {_met(rel <= 0.3)}.")
        metric = [(r["metric_abs_rel"], r["abs_rel"]) for r in runs.values()
                  if "metric_abs_rel" in r]
        if metric:
            rel = float(np.mean([m / a - 1.0 for m, a in metric]))
            out.append(f"- {name} metric AbsRel (no median scaling) within 10 % of the "
                       f"median-scaled one ({rel:+.0%}): {_met(abs(rel) <= 0.1)}.")
    return out


def paired_against(out: Path, seeds: Sequence[int], full: str, others: Sequence[str],
                   folder: str = "eval_night"
                   ) -> List[Tuple[str, str, "PairedDifference", "PairedDifference"]]:
    """Per seed, ``other − full`` on the same frames for each of ``others`` whose night
    evaluation (``RUN/folder/eval.json``: ``eval_night`` the test drives, ``eval_night_val``
    the validation drives) and the full variant's are both in ``out``: (variant, seed label,
    median-scaled AbsRel difference, metric RMSE difference), each a
    :class:`~dasp_core.eval.paired.PairedDifference` with its interval over drives.
    Second night runs from the same day model (``nightseedK_*``, ``--night-seed``) are paired
    with each other, labelled ``"S, night seed K"``."""
    import re

    from dasp_core.errors import ConfigError
    from dasp_core.eval.paired import paired_difference

    def per_image(variant: str, seed: int) -> Optional[list]:
        path = out / f"seed{seed}" / variant / folder / "eval.json"
        try:
            return load_result(path)[0].per_image if path.is_file() else None
        except ConfigError:   # written by an older `dasp eval`: no per-image scores to pair
            return None

    rows = []
    for seed in seeds:
        found = (re.fullmatch(rf"nightseed(\d+)_{full}", d.name)
                 for d in (out / f"seed{seed}").glob(f"nightseed*_{full}"))
        night_seeds = sorted(int(m.group(1)) for m in found if m)
        for night_seed in [seed] + [k for k in night_seeds if k != seed]:
            ref = per_image(night_run_name(full, seed, night_seed), seed)
            if not ref:
                continue
            label = str(seed) if night_seed == seed else f"{seed}, night seed {night_seed}"
            for other in others:
                items = per_image(night_run_name(other, seed, night_seed), seed)
                if items:
                    rows.append((other, label,
                                 paired_difference(items, ref, "abs_rel", "median"),
                                 paired_difference(items, ref, "rmse", "metric")))
    return rows


def adversarial_branch_table(out: Path, seeds: Sequence[int]) -> List[str]:
    """Markdown lines: the SPLB adversarial branch on its own, night-only − DASP w/o 3D loss
    (``no_3d``: the same runs as night-only plus the discriminator), paired per drive on the
    test and the validation drives, for each of ``seeds`` (day models, ``out/seedK``) where both ran.
    Positive = night-only is worse, i.e. the branch helps. Empty when no pair exists.

    The main paired tables compare everything with full DASP; this one isolates the branch the
    method is named for, so a reader can tell its effect from the 3D loss's."""
    rows = []
    for folder, drives in (("eval_night", "test"), ("eval_night_val", "validation")):
        for _, seed, d_abs, d_rmse in paired_against(out, seeds, "no_3d", ["night_selfsup"],
                                                     folder):
            rows.append(f"| {seed} | {drives} | {_interval(d_abs)} | {_interval(d_rmse)} | "
                        f"{d_abs.groups_a_lower}/{d_abs.n_groups} |")
    if not rows:
        return []
    return ["", f"The adversarial branch on its own: {LABELS['night_selfsup']} − "
            f"{LABELS['no_3d']} (the same night training plus the SPLB discriminator), paired "
            "per drive as above. Positive = night-only is worse, i.e. the branch helps:", "",
            "| seed | drives | AbsRel (median-scaled) | metric RMSE m | drives where night-only "
            "has the lower AbsRel |", "|---|---|---:|---:|---:|"] + rows


def _paired_rows(paired: Sequence[Tuple[str, str, "PairedDifference", "PairedDifference"]]
                 ) -> List[str]:
    return [f"| {LABELS[other]} | {seed} | {_interval(d_abs)} | {_interval(d_rmse)} | "
            f"{d_abs.n_groups - d_abs.groups_a_lower}/{d_abs.n_groups} |"
            for other, seed, d_abs, d_rmse in paired]


def _interval(d: "PairedDifference") -> str:
    return f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"


def write_report(args, results, timings, wall, path: Path, argv,
                 refs: Optional[Dict[str, Dict[str, float]]] = None,
                 reused: Optional[Dict[str, float]] = None, out: Optional[Path] = None) -> None:
    import numpy as np

    refs = refs or {}
    full = getattr(args, "full", "dasp")
    full_name = "DASP" if full == "dasp" else f"DASP ({full})"
    order = ["day_only", "day_exposure"] + [v for v in NIGHT_RECIPES if v in results]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), platform.processor())
    import torch

    cmd = "python scripts/benchmark_dasp.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    if wall is None:
        timing = ("Report rebuilt from results.json (--report-only); run times below from the "
                  "runs' file times.")
    elif reused:
        timing = (f"Total wall time {wall / 60:.1f} min (this invocation; {len(reused)} "
                  "finished runs were reused from an earlier one, --skip-existing).")
    else:
        timing = f"Total wall time {wall / 60:.1f} min."
    lines = [
        "# Benchmark: DASP vs baselines and ablations on the synthetic night world", "",
        f"Reproduce: `{cmd}`", "",
        f"Machine: {cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{args.threads} thread(s) per run, {args.jobs} run(s) at a time. {timing}", ""]
    preface = getattr(args, "preface", None)
    if preface:
        lines += [(ROOT / preface).read_text().strip(), ""]
    lines += [
        f"Training: `{args.config}` ({', '.join(args.extra) or 'no extra overrides'}); day stage "
        f"{args.day_steps} steps, each night variant {args.night_steps} steps from that seed's "
        f"day model; seeds {args.seeds}.", "",
        f"Test: `dasp eval --data synthetic-night-test --sequences {args.eval_sequences}` "
        f"(reserved test seeds 10 000+, never rendered in training), protocol `synthetic` "
        f"(GT valid in (0.001, 80) m, per-image median scaling, per-image averaging). "
        f"Mean ± std over seeds.", "",
        "| variant | " + " | ".join(METRICS) + " | metric AbsRel (no median) | metric RMSE m "
        "(no median) | dark AbsRel | lit AbsRel | moving AbsRel | depth spread p98/p2 | "
        "log-depth corr |",
        "|---|" + "---|" * (len(METRICS) + 7)]
    extra_cols = ("metric_abs_rel", "metric_rmse", "region_dark_abs_rel", "region_lit_abs_rel",
                  "region_moving_abs_rel", "spread", "log_corr")
    means: Dict[str, float] = {}
    all_seeds = sorted({s for v in order for s in results.get(v, {})})
    for v in order:
        per_seed = results.get(v, {})
        if not per_seed:
            continue
        row = [_row_label(v, per_seed, all_seeds)]
        for k in METRICS:
            row.append(_mean_std([r[k] for r in per_seed.values()]))
        for k in extra_cols:
            vals = [r[k] for r in per_seed.values() if k in r]
            row.append(_mean_std(vals) if vals else "–")
        means[v] = float(np.mean([r["abs_rel"] for r in per_seed.values()]))
        lines.append("| " + " | ".join(row) + " |")
    gt_spread = [r["gt_spread"] for v in order for r in results.get(v, {}).values()
                 if "gt_spread" in r]
    for ref in ("constant", "pixel_prior"):
        if ref in refs:
            row = [REF_LABELS[ref]] + [f"{refs[ref][k]:.3f}" for k in METRICS]
            row += ["–"] * 5 + (["1.000", "0"] if ref == "constant" else ["–", "–"])
            lines.append("| " + " | ".join(row) + " |")
    if gt_spread:
        older = sum(1 for v in order for r in results.get(v, {}).values()
                    if "spread" in r and "spread_pooled" not in r)
        lines += ["", f"Depth spread p98/p2: all scored pixels of the test frames pooled "
                      f"(`dasp eval`'s Depth spread section); ground truth "
                      f"{np.median(gt_spread):.1f}."
                  + (f" {older} older entries hold the median over 16 images of each "
                     f"image's own p98/p2 instead (the benchmark's first definition)."
                     if older else "")]
    if "day_on_day" in results:
        lines += ["", "Day model on the **day** test set (the teacher's own quality): AbsRel "
                  + _mean_std([r["abs_rel"] for r in results["day_on_day"].values()])
                  + ", δ<1.25 " + _mean_std([r["a1"] for r in results["day_on_day"].values()])
                  + (f"; image-blind pixel prior on night: AbsRel "
                     f"{refs['pixel_prior']['abs_rel']:.3f}." if "pixel_prior" in refs else ".")]
    if len(all_seeds) > 1:
        # Seed-to-seed spread on 96 test frames is large; the paired (same seed, same day
        # model) comparison is what a reader needs to judge a gap.
        lines += ["", "Night AbsRel per seed (each night variant starts from that seed's day "
                  "model):", "", "| variant | " + " | ".join(f"seed {s}" for s in all_seeds) + " |",
                  "|---|" + "---|" * len(all_seeds)]
        for v in order:
            if results.get(v):
                lines.append(f"| {LABELS[v]} | " + " | ".join(
                    f"{results[v][s]['abs_rel']:.3f}" if s in results[v] else "–"
                    for s in all_seeds) + " |")
        if results.get(full) and results.get("night_selfsup"):
            lines.append(f"| {full_name} / night-only | " + " | ".join(
                f"{results[full][s]['abs_rel'] / results['night_selfsup'][s]['abs_rel']:.3f}"
                if s in results[full] and s in results["night_selfsup"] else "–"
                for s in all_seeds) + " |")
    pair_with = list(ABLATIONS[full]) + list(PAIRED_BASELINES)
    paired = paired_against(out, all_seeds, full, pair_with) if out is not None else []
    if paired:
        # A mean over a few seeds cannot tell a tie from a loss; the same frames scored by
        # both models can, within one seed (the interval covers test drives, not training).
        lines += ["", f"Paired against {LABELS[full]} on the same test frames, per seed "
                  "(variant − full; 95 % bootstrap interval over test drives; "
                  "`dasp_core.eval.paired`). Positive = the variant is worse:", "",
                  "| variant | seed | AbsRel (median-scaled) | metric RMSE m | drives where "
                  "full DASP has the lower AbsRel |", "|---|---|---:|---:|---:|"]
        lines += _paired_rows(paired)
    paired_val = (paired_against(out, all_seeds, full, pair_with, "eval_night_val")
                  if out is not None else [])
    if paired_val:
        n_drives = paired_val[0][2].n_groups
        lines += ["", f"The same pairs on {n_drives} night *validation* drives (`dasp eval "
                  f"--data synthetic-night-val --sequences {n_drives}`; other drives than the "
                  "test's, never trained on): a test-set difference that is real shows here "
                  "too. Positive = the variant is worse:", "",
                  "| variant | seed | AbsRel (median-scaled) | metric RMSE m | drives where "
                  "full DASP has the lower AbsRel |", "|---|---|---:|---:|---:|"]
        lines += _paired_rows(paired_val)
    lines += adversarial_branch_table(out, all_seeds) if out is not None else []
    lines += ["", "## Goals", ""]
    both = common_means(results, full, "night_selfsup")
    if both:
        m_full, m_night, note = both
        ratio = m_full / m_night
        lines.append(f"- {full_name} night AbsRel / night-only AbsRel = {ratio:.3f}{note} "
                     f"(goal ≤ 0.8): {'met' if ratio <= 0.8 else 'NOT met'}.")
    for ab in ABLATIONS[full]:
        both = common_means(results, ab, full)
        if both:
            m_ab, m_full, note = both
            pairs = [d for other, _, d, _ in paired if other == ab]
            rmse_pairs = [d for other, _, _, d in paired if other == ab]
            clear = (f" (paired: worse beyond the interval in {sum(d.low > 0 for d in pairs)}"
                     f"/{len(pairs)} runs; on metric RMSE, which the verdict does not use, in "
                     f"{sum(d.low > 0 for d in rmse_pairs)}/{len(rmse_pairs)})" if pairs else "")
            # With per-drive pairs a higher mean is not enough: a few thousandths on 96
            # frames is noise, so "worse" must hold beyond the interval in every run.
            if m_ab <= m_full:
                verdict = "NOT worse than DASP"
            elif pairs and not all(d.low > 0 for d in pairs):
                verdict = "worse on the mean only, NOT beyond the paired interval in every run"
            else:
                verdict = "worse than DASP, as hoped"
            lines.append(f"- {LABELS[ab]}: AbsRel {m_ab:.3f} vs {full_name} "
                         f"{m_full:.3f}{note} — {verdict}{clear}.")
    if "pixel_prior" in refs:
        floor = refs["pixel_prior"]["abs_rel"]
        below = [LABELS[v] for v in means if means[v] < floor]
        lines.append(f"- Beats the image-blind pixel prior (AbsRel {floor:.3f}): "
                     + (", ".join(below) if below else "no variant") + ".")
    lines += goal_lines(results, refs, full, full_name)
    shipped = getattr(args, "shipped", None)
    if shipped and shipped != full and results.get(shipped):
        lines += ["", f"The same targets for the shipped recipe, {LABELS[shipped]}:", ""]
        lines += goal_lines(results, refs, shipped, "Shipped recipe", with_day=False)
    notes = getattr(args, "notes", None)
    if notes:
        lines += ["", (ROOT / notes).read_text().strip()]
    lines += ["", "## Run times", "", "| run | minutes |", "|---|---|"]
    every = {k: (t, "") for k, t in timings.items()}
    every.update({k: (t, " (reused run; from its file times)") for k, t in (reused or {}).items()})
    lines += [f"| {k} | {t / 60:.1f}{note} |" for k, (t, note) in sorted(every.items())]
    png = path.with_suffix(".png")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(9, 4))
        names = [v for v in order if v in results]
        vals = [[r["abs_rel"] for r in results[v].values()] for v in names]
        ax.bar(range(len(names)), [np.mean(x) for x in vals],
               yerr=[np.std(x) for x in vals], color=["#888"] * len(names), capsize=4)
        if full in names:
            ax.patches[names.index(full)].set_color("#d62728")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([_row_label(n, results[n], all_seeds) for n in names], rotation=25,
                           ha="right", fontsize=8)
        ax.set_ylabel("night AbsRel (median-scaled) ↓")
        ax.set_title("Synthetic night test set")
        fig.tight_layout()
        fig.savefig(png, dpi=110)
        lines += ["", f"![night AbsRel per variant]({png.name})"]
    except Exception as e:  # the table is the result; the plot is a convenience
        lines += ["", f"(plot not written: {e})"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
