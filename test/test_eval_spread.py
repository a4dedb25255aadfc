"""Pooled depth spread (dasp_core.eval.spread) and its place in evaluation results."""

import math

import numpy as np
import pytest

from dasp_core.errors import ConfigError
from dasp_core.eval.metrics import MetricAccumulator
from dasp_core.eval.spread import SpreadAccumulator

LO, HI = 1e-3, 80.0
BIN = math.log(HI / LO) / 4096  # one bin width in log depth


def _lognormal(n, seed, mu=2.5, sigma=0.8):
    rng = np.random.default_rng(seed)
    return np.clip(np.exp(rng.normal(mu, sigma, n)), 0.5, 79.0)


def test_percentiles_match_numpy_within_a_bin():
    g = _lognormal(200_000, 0)
    p = _lognormal(200_000, 1, mu=2.0, sigma=0.5)
    acc = SpreadAccumulator(LO, HI)
    acc.add(p, g)
    r = acc.result()
    for name, v in (("pred", p), ("gt", g)):
        for q in (2, 50, 98):
            ref = np.percentile(v, q)
            assert abs(math.log(r[f"{name}_p{q}"] / ref)) < 1.5 * BIN, (name, q)
    assert r["n_pixels"] == 200_000
    assert r["gt_ratio"] == pytest.approx(np.percentile(g, 98) / np.percentile(g, 2), rel=3 * BIN)


def test_perfect_prediction_has_the_ground_truths_spread():
    g = _lognormal(50_000, 2)
    acc = SpreadAccumulator(LO, HI)
    acc.add(g, g)
    r = acc.result()
    assert r["ratio_rel"] == pytest.approx(1.0, abs=1e-9)
    assert r["log_corr"] == pytest.approx(1.0, abs=1e-9)


def test_known_values_square_root_halves_the_log_spread():
    # pred = sqrt(gt): log pred = log gt / 2, so the spread is the square root and the
    # correlation is exactly 1
    g = _lognormal(100_000, 3)
    acc = SpreadAccumulator(LO, HI)
    acc.add(np.sqrt(g), g)
    r = acc.result()
    assert r["pred_ratio"] == pytest.approx(math.sqrt(r["gt_ratio"]), rel=3 * BIN)
    assert r["log_corr"] == pytest.approx(1.0, abs=1e-9)
    # an anti-correlated prediction (far predicted near) correlates -1
    acc = SpreadAccumulator(LO, HI)
    acc.add(1.0 / g * 30.0, g)
    assert acc.result()["log_corr"] == pytest.approx(-1.0, abs=1e-9)


def test_spread_ratio_and_correlation_are_scale_free():
    g = _lognormal(50_000, 4, mu=2.0, sigma=0.5)
    p = g * np.exp(np.random.default_rng(5).normal(0, 0.2, g.size))
    a, b = SpreadAccumulator(LO, HI), SpreadAccumulator(LO, HI)
    a.add(p, g)
    b.add(p * 1.7, g)  # stays inside the range
    ra, rb = a.result(), b.result()
    assert rb["pred_ratio"] == pytest.approx(ra["pred_ratio"], rel=3 * BIN)
    assert rb["pred_p50"] == pytest.approx(1.7 * ra["pred_p50"], rel=3 * BIN)
    assert rb["log_corr"] == pytest.approx(ra["log_corr"], abs=1e-9)


def test_streaming_in_chunks_equals_one_shot():
    g = _lognormal(30_000, 6)
    p = _lognormal(30_000, 7)
    one, many = SpreadAccumulator(LO, HI), SpreadAccumulator(LO, HI)
    one.add(p, g)
    for i in range(0, 30_000, 7_000):
        many.add(p[i:i + 7_000], g[i:i + 7_000])
    r1, r2 = one.result(), many.result()
    for k in r1:
        assert r2[k] == pytest.approx(r1[k], rel=1e-9, abs=1e-12), k


def test_constant_prediction_has_no_spread_and_no_correlation():
    g = _lognormal(10_000, 8)
    acc = SpreadAccumulator(LO, HI)
    acc.add(np.full_like(g, 12.0), g)
    r = acc.result()
    assert r["pred_ratio"] == pytest.approx(1.0, rel=3 * BIN)
    assert r["ratio_rel"] < 0.2
    assert math.isnan(r["log_corr"])


def test_empty_and_bad_input():
    acc = SpreadAccumulator(LO, HI)
    r = acc.result()
    assert r["n_pixels"] == 0 and math.isnan(r["pred_p50"]) and math.isnan(r["log_corr"])
    with pytest.raises(ValueError, match="finite and positive"):
        acc.add(np.array([1.0, -2.0]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="values"):
        acc.add(np.ones(3), np.ones(4))
    with pytest.raises(ConfigError, match="max_depth"):
        SpreadAccumulator(10.0, 5.0)


def test_metric_accumulator_pools_only_the_scored_pixels_as_scored():
    # half the image is beyond the protocol's 40 m cap: it must not enter the spread, and a
    # prediction beyond the cap is clipped to it, exactly as the metrics see it
    gt = np.full((8, 16), 10.0)
    gt[:, 8:] = 60.0
    pred = np.full((8, 16), 5.0)
    pred[0, :8] = 200.0
    acc = MetricAccumulator(1e-3, 40.0, median_scaling=False)
    acc.update(pred, gt)
    sp = acc.spread()
    assert sp["n_pixels"] == 64
    assert sp["gt_p98"] == pytest.approx(10.0, rel=3 * BIN)
    assert sp["pred_p98"] == pytest.approx(40.0, rel=3 * BIN)  # 200 m clipped to the cap
    assert sp["pred_p2"] == pytest.approx(5.0, rel=3 * BIN)
    # median scaling: the spread is of the scaled prediction (x2 here: median 5 -> 10)
    acc = MetricAccumulator(1e-3, 40.0, median_scaling=True)
    acc.update(np.full((8, 16), 5.0), gt)
    assert acc.spread()["pred_p50"] == pytest.approx(10.0, rel=3 * BIN)
    assert "spread" in acc.summary()


def test_eval_report_shows_the_spread_and_json_round_trips(tmp_path):
    from dasp_core.eval.metrics import get_protocol
    from dasp_core.eval.report import load_result, markdown_report, write_json
    from dasp_core.eval.result import EvalResult, ScoreSet

    acc = MetricAccumulator(1e-3, 80.0, median_scaling=False)
    g = _lognormal(4096, 9).reshape(64, 64)
    acc.update(np.sqrt(g) * 3.0, g)
    sset = ScoreSet(median_scaling=False, metrics=acc.metrics(), scale=acc.scale_stats(),
                    spread=acc.spread())
    res = EvalResult(protocol=get_protocol("synthetic"), label="m", primary="metric",
                     scores={"metric": sset}, n_images=1)
    text = markdown_report([res])
    assert "## Depth spread" in text
    section = text.split("## Depth spread")[1].split("## ")[0]
    row = [line for line in section.splitlines() if line.startswith("| m | ")][0]
    assert f"{acc.spread()['pred_ratio']:.1f}" in row
    path = write_json([res], tmp_path / "r.json")
    back = load_result(path)[0]
    assert back.scores["metric"].spread["log_corr"] == pytest.approx(1.0, abs=1e-9)
    # results written before the spread existed still load and render
    old = res.to_dict()
    del old["scores"]["metric"]["spread"]
    legacy = EvalResult.from_dict(old)
    assert legacy.scores["metric"].spread == {}
    assert "## Depth spread" not in markdown_report([legacy])


def test_spread_plot_is_written_and_refuses_results_without_spread(tmp_path):
    pytest.importorskip("matplotlib")
    from dasp_core.eval.metrics import get_protocol
    from dasp_core.eval.report import plot_spread, write_report
    from dasp_core.eval.result import EvalResult, ScoreSet

    acc = MetricAccumulator(1e-3, 80.0, median_scaling=False)
    g = _lognormal(4096, 10).reshape(64, 64)
    acc.update(g ** 0.7, g)

    def result(spread):
        s = ScoreSet(median_scaling=False, metrics=acc.metrics(), per_bin=acc.per_bin(),
                     spread=spread)
        return EvalResult(protocol=get_protocol("synthetic"), label="m", primary="metric",
                          scores={"metric": s}, n_images=1)

    files = write_report([result(acc.spread())], tmp_path)
    assert files["spread_plot"].stat().st_size > 1000
    with pytest.raises(ValueError, match="spread"):
        plot_spread([result({})], tmp_path / "none.png")
    assert "spread_plot" not in write_report([result({})], tmp_path / "old")


def test_dasp_report_joins_eval_files_and_refuses_mixed_protocols(tmp_path, capsys):
    from dasp_core.cli import main
    from dasp_core.eval.metrics import get_protocol
    from dasp_core.eval.report import write_json
    from dasp_core.eval.result import EvalResult, ScoreSet

    g = _lognormal(4096, 11).reshape(64, 64)
    paths = []
    for i, (label, proto) in enumerate((("a", "synthetic"), ("b", "synthetic"),
                                        ("c", "rnw_robotcar"))):
        acc = MetricAccumulator.for_protocol(proto, median_scaling=False)
        acc.update(g ** (0.5 + 0.2 * i), g)
        s = ScoreSet(median_scaling=False, metrics=acc.metrics(), per_bin=acc.per_bin(),
                     spread=acc.spread())
        res = EvalResult(protocol=get_protocol(proto), label=label, primary="metric",
                         scores={"metric": s}, n_images=1)
        paths.append(str(write_json(res, tmp_path / label / "eval.json")))
    out = tmp_path / "joined"
    assert main(["report", *paths[:2], "--out", str(out), "--title", "two"]) == 0
    text = (out / "report.md").read_text()
    assert text.startswith("# two") and "| a |" in text and "| b |" in text
    assert (out / "spread.png").exists() and (out / "comparison.png").exists()
    capsys.readouterr()
    assert main(["report", *paths, "--out", str(tmp_path / "mixed")]) == 2
    assert "protocol" in capsys.readouterr().err


def test_dasp_report_tells_repeated_labels_apart_by_their_folders():
    from dasp_core.eval.report_cli import distinct_labels

    got = distinct_labels([("supervised", "runs/b/seed0/supervised/eval_night/eval.json"),
                           ("dasp", "runs/b/seed1/dasp/eval_night/eval.json"),
                           ("supervised", "runs/b/seed1/supervised/eval_night/eval.json"),
                           ("x", "a/eval.json"), ("x", "a/eval.json")])
    assert got == ["supervised (seed0)", "dasp", "supervised (seed1)", "x", "x"]
    assert distinct_labels([("m", "a/b/eval.json"), ("m", "a/b/c/eval.json")]) == \
        ["m (eval.json)", "m (c)"]
