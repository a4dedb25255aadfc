"""The benchmark script's report: goal checks, per-seed table and reused-run times.

The benchmark itself takes an hour; these tests feed its report writer made-up scores so that
the arithmetic the published claim rests on (ratio to night-only, which ablation is worse)
is checked in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pytest
from dasp_core.eval import EvalResult, ScoreSet, get_protocol
from dasp_core.eval.report import write_json
from script_loader import load_script
from test_eval_paired import write_eval

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmark_dasp")


def _scores(abs_rel: float) -> dict:
    return {"abs_rel": abs_rel, "sq_rel": 1.0, "rmse": 2.0, "rmse_log": 0.3, "a1": 0.5,
            "a2": 0.7, "a3": 0.9}


def _args(**kw) -> argparse.Namespace:
    base = dict(config="config/train_synthetic_small.yaml", seeds=[0, 1], day_steps=10,
                night_steps=5, jobs=2, threads=1, eval_sequences=2, extra=[])
    base.update(kw)
    return argparse.Namespace(**base)


def _report(bench, tmp_path, results, **kw) -> str:
    path = tmp_path / "bench.md"
    bench.write_report(_args(), results, {"dasp/seed0": 60.0}, 120.0, path, ["--seeds", "0", "1"],
                       **kw)
    return path.read_text()


def test_goal_ratio_per_seed_and_ablations(bench, tmp_path):
    results = {"day_only": {0: _scores(0.6), 1: _scores(0.6)},
               "night_selfsup": {0: _scores(0.5), 1: _scores(0.7)},
               "dasp": {0: _scores(0.35), 1: _scores(0.63)},      # mean 0.49 / 0.6 = 0.817
               "no_stlm": {0: _scores(0.5), 1: _scores(0.6)},     # worse (0.55)
               "no_aslm": {0: _scores(0.3), 1: _scores(0.6)}}     # better (0.45)
    text = _report(bench, tmp_path, results)
    assert "= 0.817 (goal ≤ 0.8): NOT met" in text
    assert "| DASP / night-only | 0.700 | 0.900 |" in text
    assert "| (d) DASP (full) | 0.350 | 0.630 |" in text
    assert "w/o STLM: AbsRel 0.550 vs DASP 0.490 — worse than DASP" in text
    assert "w/o ASLM: AbsRel 0.450 vs DASP 0.490 — NOT worse than DASP" in text

    results["dasp"] = {0: _scores(0.35), 1: _scores(0.55)}       # 0.45 / 0.6 = 0.75
    assert "= 0.750 (goal ≤ 0.8): met" in _report(bench, tmp_path, results)


def test_reused_runs_are_timed_from_their_files_and_marked(bench, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("x")
    (run / "final.pt").write_text("y")
    now = time.time()
    os.utime(run / "config.yaml", (now - 450.0, now - 450.0))
    os.utime(run / "final.pt", (now, now))
    seconds = bench.run_seconds(run, run / "final.pt")
    assert seconds == pytest.approx(450.0, abs=0.01)
    results = {"day_only": {0: _scores(0.6)}, "dasp": {0: _scores(0.5)}}
    text = _report(bench, tmp_path, results, reused={"day/seed0": seconds})
    assert "| day/seed0 | 7.5 (reused run; from its file times) |" in text
    assert "| dasp/seed0 | 1.0 |" in text
    assert "1 finished runs were reused" in text


def test_report_only_rebuilds_from_results_json(bench, tmp_path):
    out = tmp_path / "runs"
    for seed in (0, 1):
        run = out / f"seed{seed}" / "dasp"
        run.mkdir(parents=True)
        (run / "config.yaml").write_text("x")
        (run / "final.pt").write_text("y")
        now = time.time()
        os.utime(run / "config.yaml", (now - 120.0, now - 120.0))
    # JSON turns the integer seed keys into strings; a third seed is in the file, not asked for
    saved = {"results": {"night_selfsup": {"0": _scores(0.5), "1": _scores(0.7), "2": _scores(9)},
                         "dasp": {"0": _scores(0.4), "1": _scores(0.5), "2": _scores(9)}},
             "timings": {}, "references": {}}
    (out / "results.json").write_text(json.dumps(saved))
    report = tmp_path / "r.md"
    argv = ["--seeds", "0", "1", "--out", str(out), "--report", str(report), "--report-only",
            "--skip-existing"]
    assert bench.main(argv) == 0
    text = report.read_text()
    assert "= 0.750 (goal ≤ 0.8): met" in text                 # (0.45 / 0.6), seed 2 left out
    reproduce = next(line for line in text.splitlines() if line.startswith("Reproduce:"))
    assert "--seeds 0 1" in reproduce
    assert "--report-only" not in reproduce and "--skip-existing" not in reproduce
    assert "Report rebuilt from results.json" in text
    assert "| dasp/seed1 | 2.0 (reused run; from its file times) |" in text


def test_every_night_variant_is_a_valid_configuration(bench):
    """A misspelt key or value in a variant would only show an hour into a benchmark."""
    from dasp_core.train.config import load_config

    assert {"dasp", "dasp_ref", "no_3d", "supervised"} <= set(bench.NIGHT_RECIPES)
    for variant, overrides in bench.NIGHT_RECIPES.items():
        assert variant in bench.LABELS
        cfg = load_config(str(ROOT / "config" / "train_synthetic_small.yaml"),
                          ["train.stage=night", "train.day_checkpoint=day.pt"] + overrides)
        assert cfg.train.stage == "night", variant


def test_override_value_takes_the_last_setting(bench):
    ov = ["optim.lr=0.0002", "model.depth.exposure=log_mean", "model.depth.exposure = none"]
    assert bench.override_value(ov, "model.depth.exposure") == "none"
    assert bench.override_value(ov, "optim.lr") == "0.0002"
    assert bench.override_value(ov, "model.depth.encoder") is None


def test_exposure_checkpoint_keeps_weights_and_sets_the_input_normalisation(bench, tmp_path):
    import torch

    from dasp_core.checkpoint import load_depth_model, save_checkpoint
    from dasp_core.models import DepthNet, DepthNetConfig
    from dasp_core.runtime.base import ModelInfo

    torch.manual_seed(0)
    net = DepthNet(DepthNetConfig(encoder="resnet18")).eval()
    src = save_checkpoint(tmp_path / "day.pt", net, ModelInfo(input_height=64, input_width=96))
    out = bench.exposure_checkpoint(src, "log_mean", tmp_path / "exp" / "final.pt")
    loaded, info, raw = load_depth_model(out)
    assert loaded.cfg.exposure == "log_mean" and raw["derived_from"] == str(src)
    assert (info.input_height, info.input_width) == (64, 96)
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    x = 0.03 * torch.rand(1, 3, 64, 96)
    with torch.no_grad():   # same weights, other input: the normalisation is really on
        assert not torch.equal(loaded(x)[0], net(x)[0])


def _eval_json(tmp_path: Path, spread: dict, metric: bool = True,
               folder: str = "eval_night") -> Path:
    """An eval.json as ``dasp eval`` writes it (NaN as null), with a region and a spread."""
    med = ScoreSet(True, _scores(0.21), per_region={"dark": dict(_scores(0.3), n_images=4)},
                   spread=spread)
    scores = {"median": med}
    if metric:
        scores["metric"] = ScoreSet(False, _scores(0.25))
    return write_json(EvalResult(protocol=get_protocol("synthetic"), label="m",
                                 primary="median", scores=scores, n_images=4),
                      tmp_path / folder / "eval.json")


def test_spread_of_reads_the_pooled_spread_from_eval_json(bench, tmp_path):
    sp = {"pred_ratio": 9.0, "gt_ratio": 18.0, "log_corr": 0.9}
    med = bench.load_result(_eval_json(tmp_path, sp))[0].scores["median"]
    assert bench.spread_of(med) == {
        "spread": 9.0, "gt_spread": 18.0, "log_corr": 0.9, "spread_pooled": 1.0}
    # a constant prediction has no correlation: 0, as the first definition reported it
    # (eval.json writes the NaN as null)
    flat = bench.load_result(_eval_json(tmp_path, dict(sp, log_corr=float("nan"))))[0]
    assert flat.scores["median"].spread["log_corr"] is None
    assert bench.spread_of(flat.scores["median"])["log_corr"] == 0.0
    old = bench.load_result(_eval_json(tmp_path, {}))[0]   # written before the spread existed
    assert bench.spread_of(old.scores["median"]) == {}


def test_score_row_is_the_results_cell_of_one_evaluation(bench, tmp_path):
    sp = {"pred_ratio": 9.0, "gt_ratio": 18.0, "log_corr": 0.9}
    res = bench.load_result(_eval_json(tmp_path, sp))[0]
    row = bench.score_row(res)
    assert {k: row[k] for k in bench.METRICS} == _scores(0.21)
    assert row["metric_abs_rel"] == 0.25 and row["region_dark_abs_rel"] == 0.3
    assert row["metric_rmse"] == 2.0
    assert row["spread"] == 9.0 and row["log_corr"] == 0.9
    day = bench.score_row(bench.load_result(_eval_json(tmp_path, sp, metric=False))[0],
                          spread=False)   # the day model on day frames: no collapse check
    assert "metric_abs_rel" not in day and "spread" not in day
    assert day["abs_rel"] == 0.21


def test_report_only_rereads_cells_from_their_eval_files(bench, tmp_path):
    out = tmp_path / "runs"
    sp = {"pred_ratio": 9.0, "gt_ratio": 18.0, "log_corr": 0.9}
    for run, domain in (("dasp_ref", "night"), ("day", "night"), ("day", "day")):
        _eval_json(out / "seed1" / run, sp, folder=f"eval_{domain}")
    assert bench.eval_file(out, "day_on_day", 1) == out / "seed1/day/eval_day/eval.json"
    assert bench.eval_file(out, "day_only", 1) == out / "seed1/day/eval_night/eval.json"
    stale = {"abs_rel": 0.9, "kept": 1.0}          # written before metric_rmse was read
    results = {"dasp_ref": {1: dict(stale)}, "day_only": {1: dict(stale)},
               "day_on_day": {1: dict(stale)}, "rnw": {1: dict(stale)}}
    assert bench.refresh_cells(out, results) == 3
    assert results["dasp_ref"][1]["abs_rel"] == 0.21 and results["dasp_ref"][1]["kept"] == 1.0
    assert results["dasp_ref"][1]["metric_rmse"] == 2.0 and "spread" in results["day_only"][1]
    assert "spread" not in results["day_on_day"][1]     # the day test has no collapse check
    assert results["rnw"][1] == stale                  # no eval file: the saved cell stays
    old = out / "seed1" / "rnw" / "eval_night" / "eval.json"   # an older eval.json layout
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps({"results": [{"scores": {}}]}))
    assert bench.refresh_cells(out, results) == 3 and results["rnw"][1] == stale


def test_results_of_several_invocations_merge_cell_by_cell(bench, tmp_path):
    path = tmp_path / "results.json"
    bench.merge_results(path, {"results": {"dasp": {0: _scores(0.4)},
                                           "night_selfsup": {0: _scores(0.5)}},
                               "timings": {"dasp/seed0": 60.0}, "reused": {},
                               "references": {"constant": {"abs_rel": 0.7}}})
    merged = bench.merge_results(path, {"results": {"dasp": {0: _scores(0.3), 2: _scores(0.35)}},
                                        "timings": {}, "reused": {"dasp/seed0": 61.0},
                                        "references": {}})
    assert merged == json.loads(path.read_text())
    assert merged["results"]["dasp"]["0"]["abs_rel"] == 0.3        # replaced
    assert merged["results"]["dasp"]["2"]["abs_rel"] == 0.35       # added
    assert merged["results"]["night_selfsup"]["0"]["abs_rel"] == 0.5  # kept
    assert merged["reused"] == {"dasp/seed0": 61.0} and merged["timings"] == {}
    assert merged["references"] == {"constant": {"abs_rel": 0.7}}  # not scored again: kept


def test_preface_and_notes_go_under_the_machine_line_and_after_the_goals(bench, tmp_path):
    preface = tmp_path / "how.md"
    preface.write_text("How these runs were made: by hand.\n")
    notes = tmp_path / "reading.md"
    notes.write_text("## Reading these numbers\n\n- They are made up.\n")
    path = tmp_path / "bench.md"
    bench.write_report(_args(preface=str(preface), notes=str(notes)),
                       {"dasp": {0: _scores(0.5)}}, {}, 1.0, path, [])
    lines = path.read_text().splitlines()
    machine = next(i for i, l in enumerate(lines) if l.startswith("Machine:"))
    assert lines[machine + 2] == "How these runs were made: by hand."
    assert lines[machine + 4].startswith("Training:")
    goals, reading, times = (lines.index(h) for h in ("## Goals", "## Reading these numbers",
                                                       "## Run times"))
    assert goals < reading < times and lines[reading + 2] == "- They are made up."


def test_targets_are_checked_for_the_shipped_variant_too(bench, tmp_path):
    results = {"night_selfsup": {0: _scores(0.25), 1: _scores(0.30)},
               "dasp": {0: _scores(0.30), 1: _scores(0.31)},
               "no_3d": {0: _scores(0.24), 1: _scores(0.27)}}
    path = tmp_path / "bench.md"
    bench.write_report(_args(shipped="no_3d"), results, {}, 1.0, path, [])
    text = path.read_text()
    assert "- DASP night AbsRel ≤ 0.26 (1.5x better than the image-blind prior) on every seed " \
           "(seed 0 0.300, seed 1 0.310): NOT met." in text
    shipped = text[text.index("The same targets for the shipped recipe, (e) DASP w/o 3D loss"):]
    assert "- Shipped recipe night AbsRel 0.255 (target ≤ 0.20): NOT met." in shipped
    assert "(seed 0 0.240, seed 1 0.270): NOT met." in shipped          # 0.27 > 0.26
    assert "- Shipped recipe / night-only ≤ 0.80 on every seed (seed 0 0.960, seed 1 0.900)" \
           in shipped
    assert shipped.count("Day model on day test") == 0


def _make_run(run: Path, files) -> None:
    """A run folder holding ``files`` (placeholders), as ``dasp train`` leaves one."""
    run.mkdir(parents=True)
    for f in files:
        (run / f).write_text("x")


def _fake_dasp(bench, monkeypatch, commands: list) -> None:
    """Replace the benchmark's subprocesses: ``dasp train`` writes final.pt, ``dasp eval``
    an eval.json with AbsRel 0.3 in both score sets; every command goes into ``commands``."""
    def fake_sh(cmd, log, env):
        commands.append(list(cmd))
        out = Path(cmd[cmd.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        if "train" in cmd:
            (out / "final.pt").write_text("trained")
        else:
            scores = {"median": ScoreSet(True, _scores(0.3)),
                      "metric": ScoreSet(False, _scores(0.3))}
            write_json(EvalResult(protocol=get_protocol("synthetic"), label="m",
                                  primary="median", scores=scores, n_images=2),
                       out / "eval.json")
        return 1.0

    monkeypatch.setattr(bench, "sh", fake_sh)
    monkeypatch.setattr(bench, "reference_scores", lambda n: {})


def test_skip_existing_reuses_finished_runs_and_resumes_interrupted_ones(bench, tmp_path,
                                                                         monkeypatch):
    """An interrupted run has best.pt / last.pt but no final.pt: it must be continued with
    --resume, not scored as if it had finished; a run with final.pt is reused untouched."""
    out = tmp_path / "runs"
    _make_run(out / "seed0" / "day", ("config.yaml", "final.pt"))
    _make_run(out / "seed0" / "dasp", ("config.yaml", "best.pt", "last.pt"))
    commands: list = []
    _fake_dasp(bench, monkeypatch, commands)
    argv = ["--seeds", "0", "--variants", "dasp", "--out", str(out), "--report",
            str(tmp_path / "r.md"), "--skip-existing", "--jobs", "1"]
    assert bench.main(argv) == 0
    trains = [c for c in commands if "train" in c]
    assert len(trains) == 1 and "--resume" in trains[0]
    assert trains[0][trains[0].index("--out") + 1] == str(out / "seed0" / "dasp")
    assert (out / "seed0" / "dasp" / "final.pt").read_text() == "trained"
    saved = json.loads((out / "results.json").read_text())
    assert saved["reused"].keys() == {"day/seed0"} and saved["timings"].keys() == {"dasp/seed0"}
    assert saved["results"]["dasp"]["0"]["abs_rel"] == 0.3


def test_report_only_does_not_time_an_interrupted_run(bench, tmp_path):
    out = tmp_path / "runs"
    _make_run(out / "seed0" / "dasp", ("config.yaml", "final.pt"))
    _make_run(out / "seed0" / "no_stlm", ("config.yaml", "best.pt", "last.pt"))
    (out / "results.json").write_text(json.dumps({"results": {"dasp": {"0": _scores(0.4)}}}))
    report = tmp_path / "r.md"
    assert bench.main(["--seeds", "0", "--variants", "dasp", "no_stlm", "--out", str(out),
                       "--report", str(report), "--report-only"]) == 0
    text = report.read_text()
    assert "| dasp/seed0 |" in text and "no_stlm/seed0" not in text


def test_night_runs_go_seed_by_seed(bench, tmp_path, monkeypatch):
    """A benchmark cut short (end of a session) should leave whole seeds, so with one job at
    a time every variant of seed 0 trains before any night run of seed 1."""
    out = tmp_path / "runs"
    commands: list = []
    _fake_dasp(bench, monkeypatch, commands)
    assert bench.main(["--seeds", "0", "1", "--variants", "no_stlm", "no_aslm", "--out",
                       str(out), "--report", str(tmp_path / "r.md"), "--jobs", "1"]) == 0
    runs = [Path(c[c.index("--out") + 1]) for c in commands if "train" in c]
    night = [(r.parent.name, r.name) for r in runs if r.name != "day"]
    assert night == [("seed0", "no_stlm"), ("seed0", "no_aslm"),
                     ("seed1", "no_stlm"), ("seed1", "no_aslm")]


def test_variants_run_on_fewer_seeds_are_compared_on_the_seeds_both_ran(bench, tmp_path):
    """An ablation run on seed 0 alone must be set against full DASP's seed-0 score, not
    against its mean over seeds 0 and 1: each seed has its own day model."""
    results = {"night_selfsup": {0: _scores(0.30), 1: _scores(0.20)},
               "dasp": {0: _scores(0.28), 1: _scores(0.18)},      # mean 0.23
               "no_stlm": {0: _scores(0.27)},                     # better than 0.28 on seed 0
               "supervised": {1: _scores(0.15)}}
    text = _report(bench, tmp_path, results)
    assert ("- (e) DASP w/o STLM: AbsRel 0.270 vs DASP 0.280 (on seed 0, which both ran) — "
            "NOT worse than DASP.") in text
    assert "= 0.920 (goal ≤ 0.8): NOT met" in text               # 0.23 / 0.25, same seeds
    assert "| (e) DASP w/o STLM (seed 0 only) | 0.270 |" in text
    assert "| ceiling: same network supervised with night GT depth (diagnostic) (seed 1 only) " \
           "| 0.150 |" in text
    assert "| (d) DASP (full) | 0.230 ± 0.050 |" in text
    assert bench.common_means(results, "no_stlm", "supervised") is None


def test_full_variant_picks_its_own_ablations_and_pairs_them_per_drive(bench, tmp_path):
    import numpy as np

    base = np.linspace(0.15, 0.30, 16)
    noise = np.tile([0.02, -0.02, 0.0, 0.0], 4)       # per-image, sums to 0 within each drive
    evals = {"dasp_ref": base, "ref_no_stlm": base + 0.01,    # worse on every drive
             "ref_no_aslm": base + noise,                      # a tie
             "no_3d": base - 0.005, "night_selfsup": base,     # better
             "rnw": base + 0.02}                               # the single-map prior: worse
    out = tmp_path / "runs"
    for v, vals in evals.items():
        write_eval(out / "seed0" / v / "eval_night" / "eval.json", vals)
    results = {v: {0: _scores(float(np.mean(vals)))} for v, vals in evals.items()}
    results["no_stlm"] = {0: _scores(0.9)}            # the pixel-form family: not compared
    path = tmp_path / "bench.md"
    bench.write_report(_args(seeds=[0], full="dasp_ref"), results, {}, 1.0, path, [], out=out)
    text = path.read_text()
    assert "DASP (dasp_ref) night AbsRel / night-only AbsRel = 1.000" in text
    assert ("(e) DASP (3D ref form) w/o STLM: AbsRel 0.235 vs DASP (dasp_ref) 0.225 — worse "
            "than DASP, as hoped (paired: worse beyond the interval in 1/1 runs; on metric RMSE, "
            "which the verdict does not use, in 1/1).") in text
    assert "(e) DASP (3D ref form) w/o ASLM: AbsRel 0.225 vs DASP (dasp_ref) 0.225 — NOT worse " \
           "than DASP (paired: worse beyond the interval in 0/1 runs; on metric RMSE, which the " \
           "verdict does not use, in 0/1)." in text
    assert "- (e) DASP w/o STLM:" not in text
    assert "| (e) DASP (3D ref form) w/o STLM | 0 | +0.010 [+0.010, +0.010] | " \
           "+0.100 [+0.100, +0.100] | 4/4 |" in text
    assert "| (e) DASP w/o 3D loss | 0 | -0.005 [-0.005, -0.005] | " \
           "-0.050 [-0.050, -0.050] | 0/4 |" in text
    # the baseline DASP's temporal prior is meant to beat is paired too, not only ablations
    assert "| (c) RNW-style single-map adversarial | 0 | +0.020 [+0.020, +0.020] | " \
           "+0.200 [+0.200, +0.200] | 4/4 |" in text
    rows = {v: (d_abs, d_rmse) for v, _, d_abs, d_rmse in
            bench.paired_against(out, [0], "dasp_ref", ["ref_no_aslm", "ref_no_stlm"])}
    d_abs = rows["ref_no_aslm"][0]                             # drive means tie exactly
    assert max(abs(d_abs.mean), abs(d_abs.low), abs(d_abs.high)) < 1e-12
    assert rows["ref_no_stlm"][1].mean == pytest.approx(0.1)  # metric RMSE, its own numbers
    assert "- DASP (dasp_ref) night AbsRel 0.225 (target ≤ 0.20): NOT met." in text


def test_validation_drives_get_their_own_paired_table(bench, tmp_path):
    """A test-set gain is checked on other drives: the validation evaluations are paired
    separately, and only the variants evaluated there appear."""
    import numpy as np

    base = np.linspace(0.15, 0.30, 16)
    out = tmp_path / "runs"
    for v, vals in {"dasp_ref": base, "night_selfsup": base + 0.02}.items():
        write_eval(out / "seed0" / v / "eval_night" / "eval.json", vals)
    # on the validation drives night-only is the better one
    for v, vals in {"dasp_ref": base + 0.01, "night_selfsup": base}.items():
        write_eval(out / "seed0" / v / "eval_night_val" / "eval.json", vals[:8])
    results = {v: {0: _scores(0.25)} for v in ("dasp_ref", "night_selfsup")}
    path = tmp_path / "bench.md"
    bench.write_report(_args(seeds=[0], full="dasp_ref"), results, {}, 1.0, path, [], out=out)
    text = path.read_text()
    test_part, val_part = text.split("night *validation* drives")
    assert "| (b) night-only self-supervised | 0 | +0.020 [+0.020, +0.020] |" in test_part
    assert "`dasp eval --data synthetic-night-val --sequences 2`" in val_part
    assert "| (b) night-only self-supervised | 0 | -0.010 [-0.010, -0.010] |" in val_part
    assert "| 0/2 |" in val_part          # full DASP lower on none of the 2 validation drives


def test_the_adversarial_branch_is_paired_with_night_only_on_its_own(bench, tmp_path):
    import numpy as np

    base = np.linspace(0.15, 0.30, 16)
    out = tmp_path / "runs"
    for v, vals in {"dasp_ref": base, "no_3d": base, "night_selfsup": base + 0.02}.items():
        write_eval(out / "seed0" / v / "eval_night" / "eval.json", vals)
    # validation: the branch loses on seed 0; seed 1 has no no_3d run, so no row
    for v, vals in {"no_3d": base + 0.01, "night_selfsup": base}.items():
        write_eval(out / "seed0" / v / "eval_night_val" / "eval.json", vals[:8])
    write_eval(out / "seed1" / "night_selfsup" / "eval_night" / "eval.json", base)
    lines = bench.adversarial_branch_table(out, [0, 1])
    text = "\n".join(lines)
    assert "| 0 | test | +0.020 [+0.020, +0.020] | +0.200 [+0.200, +0.200] | 0/4 |" in text
    assert "| 0 | validation | -0.010 [-0.010, -0.010] |" in text and "| 2/2 |" in text
    assert "| 1 |" not in text
    assert bench.adversarial_branch_table(tmp_path / "empty", [0, 1]) == []
    results = {v: {0: _scores(0.25)} for v in ("dasp_ref", "no_3d", "night_selfsup")}
    path = tmp_path / "bench.md"
    bench.write_report(_args(seeds=[0], full="dasp_ref"), results, {}, 1.0, path, [], out=out)
    assert "The adversarial branch on its own" in path.read_text()


def test_without_validation_evaluations_there_is_no_validation_table(bench, tmp_path):
    import numpy as np

    out = tmp_path / "runs"
    for v in ("dasp_ref", "night_selfsup"):
        write_eval(out / "seed0" / v / "eval_night" / "eval.json", np.linspace(0.15, 0.30, 16))
    path = tmp_path / "bench.md"
    bench.write_report(_args(seeds=[0], full="dasp_ref"),
                       {v: {0: _scores(0.25)} for v in ("dasp_ref", "night_selfsup")}, {}, 1.0,
                       path, [], out=out)
    assert "Paired against" in path.read_text()
    assert "validation* drives" not in path.read_text()


def test_without_eval_files_the_report_has_no_paired_section(bench, tmp_path):
    results = {"dasp": {0: _scores(0.3)}, "no_3d": {0: _scores(0.35)}}
    path = tmp_path / "bench.md"
    bench.write_report(_args(seeds=[0]), results, {}, 1.0, path, [], out=tmp_path / "empty")
    text = path.read_text()
    assert "Paired against" not in text
    assert "w/o 3D loss: AbsRel 0.350 vs DASP 0.300 — worse than DASP, as hoped." in text


def test_a_second_night_seed_trains_beside_the_first_from_the_same_day_model(bench, tmp_path,
                                                                              monkeypatch):
    out = tmp_path / "runs"
    _make_run(out / "seed0" / "day", ("config.yaml", "final.pt"))
    commands: list = []
    _fake_dasp(bench, monkeypatch, commands)
    assert bench.main(["--seeds", "0", "--variants", "dasp_ref", "no_3d", "--night-seed", "1",
                       "--out", str(out), "--report", str(tmp_path / "r.md"), "--jobs", "1",
                       "--skip-existing"]) == 0
    trains = [c for c in commands if "train" in c]
    assert [Path(c[c.index("--out") + 1]).name for c in trains] == [
        "nightseed1_dasp_ref", "nightseed1_no_3d"]
    for c in trains:
        assert "experiment.seed=1" in c and "experiment.seed=0" not in c
        assert f"train.day_checkpoint={out / 'seed0' / 'day' / 'final.pt'}" in c
    saved = json.loads((out / "results.json").read_text())
    assert {"nightseed1_dasp_ref", "nightseed1_no_3d"} <= saved["results"].keys()
    assert "dasp_ref" not in saved["results"]          # the seed-0 night cells stay free


def test_second_night_runs_are_paired_with_each_other(bench, tmp_path):
    import numpy as np

    base = np.linspace(0.15, 0.30, 16)
    out = tmp_path / "runs"
    for name, vals in (("dasp_ref", base), ("no_3d", base + 0.01),
                       ("nightseed1_dasp_ref", base + 0.1), ("nightseed1_no_3d", base + 0.08),
                       ("nightseed2_no_3d", base)):          # no full run to pair it with
        write_eval(out / "seed0" / name / "eval_night" / "eval.json", vals)
    rows = {label: d_abs for _, label, d_abs, _ in
            bench.paired_against(out, [0], "dasp_ref", ["no_3d", "ref_no_stlm"])}
    assert set(rows) == {"0", "0, night seed 1"}
    assert rows["0"].mean == pytest.approx(0.01)
    assert rows["0, night seed 1"].mean == pytest.approx(-0.02)   # against its own seed's run


def test_a_higher_mean_within_the_paired_interval_is_not_called_worse(bench, tmp_path):
    import numpy as np

    base = np.linspace(0.15, 0.30, 16)
    # +0.004 on average, but better on two drives: the interval crosses zero
    shift = np.repeat([0.03, -0.02, -0.01, 0.016], 4)
    out = tmp_path / "runs"
    for v, vals in {"dasp_ref": base, "ref_no_aslm": base + shift}.items():
        write_eval(out / "seed0" / v / "eval_night" / "eval.json", vals)
    results = {"dasp_ref": {0: _scores(0.225)}, "ref_no_aslm": {0: _scores(0.229)}}
    path = tmp_path / "bench.md"
    bench.write_report(_args(seeds=[0], full="dasp_ref"), results, {}, 1.0, path, [], out=out)
    text = path.read_text()
    assert ("w/o ASLM: AbsRel 0.229 vs DASP (dasp_ref) 0.225 — worse on the mean only, NOT "
            "beyond the paired interval in every run (paired: worse beyond the interval in 0/1 "
            "runs; on metric RMSE, which the verdict does not use, in 0/1).") in text
    assert "as hoped" not in text
