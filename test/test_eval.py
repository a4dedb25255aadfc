"""Tests of dasp_core.eval: metrics (known values, an independent reference), protocols,
accumulation, evaluate() with test-double estimators, reports and the `dasp eval` command."""

from __future__ import annotations

import importlib
import json
import math
import sys
import types

import numpy as np
import pytest

from dasp_core.data.sample import Clip
from dasp_core.errors import ConfigError, DatasetError
from dasp_core.eval import cli as eval_cli
from dasp_core.eval.metrics import (METRIC_NAMES, PROTOCOLS, MetricAccumulator,
                                    compute_depth_metrics, default_bins, get_protocol,
                                    mean_metrics)
from dasp_core.eval.report import (check_same_protocol, load_result, markdown_report,
                                   save_sample_strip, write_report)
from dasp_core.runtime.base import ModelInfo

# the package re-exports the function evaluate(), which shadows the submodule's name
ev = importlib.import_module("dasp_core.eval.evaluate")

RNG = np.random.default_rng(0)


# ----------------------------------------------------------------------------- reference

def reference_metrics(pred, gt, min_depth, max_depth, median_scaling):
    """Straightforward per-pixel loop version of the RNW/monodepth2 evaluation."""
    pairs = [(float(p), float(g)) for p, g in zip(np.ravel(pred), np.ravel(gt))
             if math.isfinite(g) and min_depth < g < max_depth]
    ps = [p for p, _ in pairs]
    gs = [g for _, g in pairs]
    s = float(np.median(gs) / np.median(ps)) if median_scaling else 1.0
    ps = [min(max(p * s, min_depth), max_depth) for p in ps]
    n = len(ps)
    abs_rel = sum(abs(g - p) / g for p, g in zip(ps, gs)) / n
    sq_rel = sum((g - p) ** 2 / g for p, g in zip(ps, gs)) / n
    rmse = math.sqrt(sum((g - p) ** 2 for p, g in zip(ps, gs)) / n)
    rmse_log = math.sqrt(sum((math.log(g) - math.log(p)) ** 2 for p, g in zip(ps, gs)) / n)
    th = [max(g / p, p / g) for p, g in zip(ps, gs)]
    return {"abs_rel": abs_rel, "sq_rel": sq_rel, "rmse": rmse, "rmse_log": rmse_log,
            "a1": sum(t < 1.25 for t in th) / n, "a2": sum(t < 1.25 ** 2 for t in th) / n,
            "a3": sum(t < 1.25 ** 3 for t in th) / n, "scale": s, "n_valid": n}


def assert_metrics_close(a, b, rtol=1e-9, atol=1e-12):
    for k in METRIC_NAMES + ("scale", "n_valid"):
        assert a[k] == pytest.approx(b[k], rel=rtol, abs=atol), k


# ----------------------------------------------------------------------------- known values

def test_perfect_prediction():
    gt = RNG.uniform(1, 70, (12, 16))
    m = compute_depth_metrics(gt.copy(), gt, 1e-3, 80, median_scaling=False)
    for k in ("abs_rel", "sq_rel", "rmse", "rmse_log"):
        assert m[k] == pytest.approx(0.0, abs=1e-12)
    assert m["a1"] == m["a2"] == m["a3"] == 1.0
    assert m["n_valid"] == gt.size and m["scale"] == 1.0


def test_factor_two():
    gt = RNG.uniform(1, 30, (10, 10))
    m = compute_depth_metrics(2 * gt, gt, 1e-3, 80, median_scaling=False)
    assert m["abs_rel"] == pytest.approx(1.0)
    assert m["sq_rel"] == pytest.approx(gt.mean())
    assert m["rmse"] == pytest.approx(math.sqrt((gt ** 2).mean()))
    assert m["rmse_log"] == pytest.approx(math.log(2))
    assert m["a1"] == m["a2"] == m["a3"] == 0.0  # 2 > 1.25^3 = 1.953
    assert m["scale"] == 1.0 and m["ratio"] == pytest.approx(0.5)
    ms = compute_depth_metrics(2 * gt, gt, 1e-3, 80, median_scaling=True)
    assert ms["abs_rel"] == pytest.approx(0.0, abs=1e-12)
    assert ms["a1"] == 1.0 and ms["scale"] == pytest.approx(0.5)


def test_hand_computed_values():
    gt = np.array([[1.0, 2.0, 4.0]])
    pred = np.array([[1.1, 1.8, 5.0]])
    m = compute_depth_metrics(pred, gt, 1e-3, 80, median_scaling=False)
    assert m["abs_rel"] == pytest.approx((0.1 + 0.1 + 0.25) / 3)
    assert m["sq_rel"] == pytest.approx((0.01 + 0.02 + 0.25) / 3)
    assert m["rmse"] == pytest.approx(math.sqrt((0.01 + 0.04 + 1.0) / 3))
    logs = [math.log(1 / 1.1), math.log(2 / 1.8), math.log(4 / 5)]
    assert m["rmse_log"] == pytest.approx(math.sqrt(sum(x * x for x in logs) / 3))
    # thresh = 1.1, 1.111, 1.25: the inequality is strict, so 1.25 fails δ<1.25
    assert m["a1"] == pytest.approx(2 / 3)
    assert m["a2"] == 1.0 and m["a3"] == 1.0
    # median scaling: median(gt)=2, median(pred)=1.8
    ms = compute_depth_metrics(pred, gt, 1e-3, 80, median_scaling=True)
    assert ms["scale"] == pytest.approx(2 / 1.8)


@pytest.mark.parametrize("median", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_matches_independent_reference(median, seed):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0.5, 60, (9, 11))
    gt[rng.random(gt.shape) < 0.2] = 0.0
    gt[0, 0] = np.nan
    pred = gt * rng.lognormal(0.3, 0.4, gt.shape) + rng.uniform(0, 2, gt.shape)
    pred[np.isnan(pred)] = 5.0
    m = compute_depth_metrics(pred, gt, 1e-3, 40.0, median_scaling=median)
    assert_metrics_close(m, reference_metrics(pred, gt, 1e-3, 40.0, median))


def test_cap_and_invalid_pixels_ignored():
    gt = RNG.uniform(2, 30, (8, 8))
    pred = gt * RNG.uniform(0.8, 1.2, gt.shape)
    base = compute_depth_metrics(pred, gt, 1e-3, 40, median_scaling=True)
    gt2, pred2 = np.pad(gt, ((0, 0), (0, 5))), np.pad(pred, ((0, 0), (0, 5)), constant_values=7)
    gt2[:, 8] = 0.0          # no return
    gt2[:, 9] = np.nan       # NaN invalid (REP 117)
    gt2[:, 10] = 40.0        # exactly the cap: invalid (strict)
    gt2[:, 11] = 75.0        # beyond the cap
    gt2[:, 12] = np.inf
    m = compute_depth_metrics(pred2, gt2, 1e-3, 40, median_scaling=True)
    assert_metrics_close(m, base)


def test_predictions_clipped_to_range():
    gt = np.array([[10.0, 20.0]])
    m = compute_depth_metrics(np.array([[1000.0, np.inf]]), gt, 0.1, 40, median_scaling=False)
    assert m["abs_rel"] == pytest.approx((30 / 10 + 20 / 20) / 2)
    m = compute_depth_metrics(np.array([[0.0, -3.0]]), gt, 0.1, 40, median_scaling=False)
    assert m["abs_rel"] == pytest.approx((9.9 / 10 + 19.9 / 20) / 2)


def test_median_scaling_invariant_to_global_scale():
    rng = np.random.default_rng(3)
    for _ in range(5):
        gt = rng.uniform(1, 70, (7, 9))
        pred = gt * rng.lognormal(0, 0.3, gt.shape)
        k = float(rng.uniform(0.01, 100))
        a = compute_depth_metrics(pred, gt, 1e-3, 80)
        b = compute_depth_metrics(pred * k, gt, 1e-3, 80)
        for key in METRIC_NAMES:
            assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-12)
        assert b["scale"] == pytest.approx(a["scale"] / k)


def test_bad_inputs_raise_or_report_empty():
    gt = np.ones((4, 4)) * 5
    with pytest.raises(ValueError, match="shape"):
        compute_depth_metrics(np.ones((4, 5)), gt)
    pred = np.ones((4, 4))
    pred[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        compute_depth_metrics(pred, gt)
    with pytest.raises(ValueError, match="median"):
        compute_depth_metrics(np.zeros((4, 4)), gt, median_scaling=True)
    with pytest.raises(ConfigError, match="max_depth"):
        compute_depth_metrics(gt, gt, min_depth=10, max_depth=5)
    empty = compute_depth_metrics(pred, np.zeros((4, 4)))
    assert empty["n_valid"] == 0 and math.isnan(empty["abs_rel"])
    # NaN prediction outside the evaluated pixels is fine
    gt2 = gt.copy()
    gt2[1, 1] = 0
    assert compute_depth_metrics(pred, gt2)["n_valid"] == 15


def test_accepts_channel_dim():
    gt = RNG.uniform(1, 10, (5, 6))
    a = compute_depth_metrics(gt[None] * 1.1, gt[..., None])
    assert a["abs_rel"] == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------- protocols

def test_protocols_documented():
    caps = {"rnw_robotcar": 40.0, "rnw_nuscenes": 60.0, "md4all_robotcar": 50.0,
            "md4all_nuscenes": 80.0, "synthetic": 80.0}
    assert set(PROTOCOLS) == set(caps)
    for name, p in PROTOCOLS.items():
        assert p.name == name and p.max_depth == caps[name]
        assert 0 < p.min_depth < p.max_depth
        assert p.bins[0] == 0 and p.bins[-1] == p.max_depth
        assert p.source and p.description and name in p.header()
    assert PROTOCOLS["rnw_robotcar"].min_depth == 1e-5
    assert PROTOCOLS["rnw_robotcar"].eval_size == (640, 1152)
    assert get_protocol(PROTOCOLS["synthetic"]) is PROTOCOLS["synthetic"]
    with pytest.raises(ConfigError, match="rnw_robotcar"):
        get_protocol("kitti")
    assert default_bins(40) == (0, 10, 20, 40) and default_bins(100) == (0, 10, 20, 40, 80, 100)


def test_cli_constants_match_library():
    assert set(eval_cli._PROTOCOLS) == set(PROTOCOLS)
    assert set(eval_cli._PRESETS) == set(ev.PRESETS)


@pytest.mark.parametrize("config", ["train_synthetic_small.yaml", "train_synthetic_full.yaml"])
def test_training_configs_train_below_the_validation_seeds_and_validate_inside_them(config):
    """A model chosen on ``synthetic-*-val`` must not have trained on those drives, and the
    splits validated during training are the presets' first drives."""
    from pathlib import Path

    import yaml

    data = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / config).read_text())["data"]
    lo = min(ev.SYNTHETIC_DAY_VAL_SEEDS.start, ev.SYNTHETIC_NIGHT_VAL_SEEDS.start)

    def seeds(split):
        return range(data[split]["seeds"]["start"],
                     data[split]["seeds"]["start"] + data[split]["seeds"]["count"])

    for split in ("day_train", "night_train"):
        assert seeds(split).stop <= lo, (config, split)
    for split, preset in (("day_val", "synthetic-day-val"), ("night_val", "synthetic-night-val")):
        domain, preset_seeds = ev.PRESETS[preset]
        assert data[split]["domain"] == domain
        assert seeds(split) == preset_seeds[:len(seeds(split))], (config, split)


def test_validation_presets_are_disjoint_from_the_test_seeds():
    for name in ("synthetic-night-val", "synthetic-day-val"):
        _, seeds = ev.PRESETS[name]
        assert not any(ev.is_test_seed(s) for s in seeds)
        assert seeds.stop <= ev.SYNTHETIC_TRAIN_SEED_LIMIT
    ds = ev.build_preset("synthetic-night-val", n_sequences=3)
    assert ds.domain == "night" and list(ds.seeds) == [9500, 9501, 9502]


def test_test_seeds_reserved():
    assert ev.SYNTHETIC_TEST_SEEDS.start >= ev.SYNTHETIC_TRAIN_SEED_LIMIT
    assert len(ev.SYNTHETIC_TEST_SEEDS) == 100
    assert ev.is_test_seed(10_000) and ev.is_test_seed(10_099)
    assert not ev.is_test_seed(9_999) and not ev.is_test_seed(10_100)


# ----------------------------------------------------------------------------- accumulation

def test_per_image_averaging_not_pixel_pooling():
    acc = MetricAccumulator(1e-3, 80, median_scaling=False)
    gt_a = np.full((2, 2), 10.0)          # 4 pixels, abs_rel 0.5
    gt_b = np.full((10, 10), 10.0)        # 100 pixels, abs_rel 0
    acc.update(gt_a * 1.5, gt_a)
    acc.update(gt_b.copy(), gt_b)
    m = acc.metrics()
    assert m["abs_rel"] == pytest.approx(0.25)          # pooled would be 2/104
    assert m["n_images"] == 2 and m["n_pixels"] == 104
    assert mean_metrics([compute_depth_metrics(gt_a * 1.5, gt_a, median_scaling=False),
                         compute_depth_metrics(gt_b, gt_b, median_scaling=False)]
                        )["abs_rel"] == pytest.approx(0.25)


def test_bins_and_regions_sum_and_use_image_scale():
    rng = np.random.default_rng(7)
    acc = MetricAccumulator(1e-3, 80, median_scaling=True)
    total_pixels = 0
    region_pixels = 0
    for _ in range(4):
        gt = rng.uniform(0.5, 90, (16, 20))
        gt[rng.random(gt.shape) < 0.1] = 0
        pred = gt * rng.lognormal(0, 0.2, gt.shape) * 3.0
        dark = rng.random(gt.shape) < 0.4
        s = acc.update(pred, gt, masks={"dark": dark})
        total_pixels += s["metrics"]["n_valid"]
        assert sum(b["n_valid"] for b in s["bins"].values()) == s["metrics"]["n_valid"]
        scale = s["metrics"]["scale"]
        # a bin's error is the image-scaled prediction restricted to the bin
        in_bin = (gt >= 20) & (gt < 40)
        ref = reference_metrics(pred[in_bin] * scale, gt[in_bin], 1e-3, 80, False)
        assert s["bins"]["20-40 m"]["abs_rel"] == pytest.approx(ref["abs_rel"])
        ref = reference_metrics(pred[dark] * scale, gt[dark], 1e-3, 80, False)
        assert s["regions"]["dark"]["abs_rel"] == pytest.approx(ref["abs_rel"])
        region_pixels += ref["n_valid"]
    per_bin = acc.per_bin()
    assert list(per_bin) == ["0-10 m", "10-20 m", "20-40 m", "40-80 m"]
    assert sum(b["n_pixels"] for b in per_bin.values()) == total_pixels == acc.metrics()["n_pixels"]
    assert acc.per_region()["dark"]["n_pixels"] == region_pixels
    assert acc.per_region()["dark"]["n_images"] == 4
    assert acc.scale_stats()["mean"] == pytest.approx(1 / 3, rel=0.2)


def test_accumulator_bin_only_images_with_pixels_and_empty_images():
    acc = MetricAccumulator(1e-3, 40, median_scaling=False)
    near = np.full((3, 3), 5.0)
    far = np.full((3, 3), 30.0)
    acc.update(near * 2, near, group="night")
    acc.update(far, far, group="day")
    assert acc.update(near, np.zeros((3, 3))) is None
    assert acc.n_empty == 1 and acc.n_images == 2
    pb = acc.per_bin()
    assert pb["0-10 m"]["n_images"] == 1 and pb["0-10 m"]["abs_rel"] == pytest.approx(1.0)
    assert pb["20-40 m"]["abs_rel"] == pytest.approx(0.0)
    assert pb["10-20 m"]["n_images"] == 0 and math.isnan(pb["10-20 m"]["abs_rel"])
    assert acc.per_group()["night"]["abs_rel"] == pytest.approx(1.0)
    # a failing image adds nothing
    bad = near.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError):
        acc.update(bad, near)
    assert acc.n_images == 2
    with pytest.raises(ConfigError, match="bins"):
        MetricAccumulator(1e-3, 40, bins=[0, 20, 10])
    summary = acc.summary()
    json.dumps(summary)  # JSON-ready


# ----------------------------------------------------------------------------- evaluate()

def depth_of(image: np.ndarray) -> np.ndarray:
    """The 'true' depth of a test image: a function of its pixels, 2 … 52 m."""
    return 2.0 + image[..., 0].astype(np.float32) / 255.0 * 50.0


class FakeEstimator:
    """Test double of the DepthEstimator protocol: depth_of(image) × factor (× noise)."""

    backend = "fake"

    def __init__(self, factor=1.0, scale_source="none", noise=0.0, fail_on=None,
                 size=(16, 24)):
        self.info = ModelInfo(input_height=size[0], input_width=size[1],
                              scale_source=scale_source, name="fake")
        self.factor = factor
        self.noise = noise
        self.fail_on = fail_on
        self.rng = np.random.default_rng(1)
        self.calls = []

    def predict(self, image, output_size=None):
        import cv2

        self.calls.append(output_size)
        if self.fail_on is not None and image[0, 0, 1] == self.fail_on:
            raise RuntimeError("inference failed")
        d = depth_of(image) * self.factor
        if self.noise:
            d = d * self.rng.lognormal(0, self.noise, d.shape).astype(np.float32)
        if output_size is not None and tuple(output_size) != d.shape:
            d = cv2.resize(d, (output_size[1], output_size[0]), interpolation=cv2.INTER_NEAREST)
        return d.astype(np.float32)

    def predict_batch(self, images, output_size=None):
        return np.stack([self.predict(i, output_size) for i in images])

    def infer_disparity(self, batch):
        raise NotImplementedError


def make_clip(i: int, h=16, w=24, gt_factor=1.0, domain="night", depth=True, masks=True,
              tag=0) -> Clip:
    rng = np.random.default_rng(100 + i)
    frames = rng.integers(0, 256, (3, h, w, 3), dtype=np.uint8)
    frames[:, :, :, 1] = tag
    gt = depth_of(frames[1]) * gt_factor
    gt[0, :] = 0.0  # "sky"
    m = {"dark": np.arange(h * w).reshape(h, w) % 2 == 0, "lit": np.zeros((h, w), bool)}
    m["lit"][h // 2:] = True
    return Clip(frames=frames, K=np.eye(3), domain=domain, depth=gt if depth else None,
                masks=m if masks else {}, source=f"test:{i}")


class ListDataset:
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        item = self.items[i]
        if isinstance(item, Exception):
            raise item
        return item


def test_evaluate_perfect_and_noisy():
    data = ListDataset([make_clip(i) for i in range(5)])
    res = ev.evaluate(FakeEstimator(), data, "synthetic", progress=False)
    assert res.primary == "median" and set(res.scores) == {"median"}
    assert res.n_images == 5 and res.n_skipped == 0
    assert res.metrics["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert res.metrics["a1"] == 1.0
    assert set(res.per_region) == {"dark", "lit"}
    assert res.scores["median"].per_domain["night"]["n_images"] == 5
    assert len(res.per_image) == 5 and res.per_image[0]["source"] == "test:0"
    assert res.timing["predict_ms_mean"] >= 0
    noisy = ev.evaluate(FakeEstimator(noise=0.2), data, "synthetic", progress=False)
    assert 0.05 < noisy.metrics["abs_rel"] < 0.4
    assert noisy.metrics["a1"] < 1.0


def test_evaluate_metric_model_reports_both_modes():
    data = ListDataset([make_clip(i) for i in range(3)])
    # 1.5x too far (depths <= 52 m, so 1.5x stays below the 80 m cap: no clipping)
    res = ev.evaluate(FakeEstimator(factor=1.5, scale_source="fixed"), data, "synthetic",
                      progress=False)
    assert res.primary == "median" and set(res.scores) == {"median", "metric"}
    assert res.scores["median"].metrics["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert res.scores["metric"].metrics["abs_rel"] == pytest.approx(0.5, rel=1e-5)
    assert res.scores["metric"].metrics["rmse_log"] == pytest.approx(math.log(1.5), rel=1e-5)
    assert res.scores["metric"].scale["mean"] == pytest.approx(1 / 1.5, rel=1e-3)
    only_metric = ev.evaluate(FakeEstimator(factor=2.0, scale_source="fixed"), data,
                              "synthetic", median_scaling=False, progress=False)
    assert set(only_metric.scores) == {"metric"} and only_metric.primary == "metric"


def test_evaluate_skips_and_counts_bad_samples(caplog):
    items = [make_clip(0), OSError("corrupt file"), make_clip(2, depth=False),
             make_clip(3, gt_factor=0.0), make_clip(4, tag=7), make_clip(5)]
    res = ev.evaluate(FakeEstimator(fail_on=7), ListDataset(items), "synthetic", progress=False)
    assert res.n_images == 2
    assert res.n_skipped == 4
    assert res.skip_reasons == {"load error": 1, "no ground truth": 1,
                                "no valid GT in range": 1, "prediction error": 1}
    assert {s["index"] for s in res.skipped} == {1, 2, 3, 4}
    assert "corrupt file" in res.skipped[0]["detail"]
    with pytest.raises(DatasetError, match="no sample"):
        ev.evaluate(FakeEstimator(), ListDataset([OSError("x"), make_clip(1, depth=False)]),
                    "synthetic", progress=False)


def test_evaluate_nan_prediction_is_skipped():
    class NaNEstimator(FakeEstimator):
        def predict(self, image, output_size=None):
            d = super().predict(image, output_size)
            if image[0, 0, 1] == 9:
                d[5, 5] = np.nan
            return d

    res = ev.evaluate(NaNEstimator(), ListDataset([make_clip(0), make_clip(1, tag=9)]),
                      "synthetic", progress=False)
    assert res.n_images == 1 and res.skip_reasons == {"bad prediction": 1}
    with pytest.raises(DatasetError, match="bad prediction"):
        ev.evaluate(NaNEstimator(), ListDataset([make_clip(0, tag=9)]), "synthetic",
                    progress=False)


def test_evaluate_protocol_resize_paths_and_size_warning():
    data = ListDataset([make_clip(i, h=32, w=48) for i in range(2)])
    est = FakeEstimator(size=(16, 24))
    res = ev.evaluate(est, data, "rnw_robotcar", progress=False)
    # RNW: predict at network size, nearest-resize to GT size
    assert est.calls == [(16, 24), (16, 24)]
    assert res.protocol.name == "rnw_robotcar" and res.protocol.max_depth == 40
    assert any("1152" in w for w in res.warnings)
    est2 = FakeEstimator()
    ev.evaluate(est2, data, "synthetic", progress=False)
    assert est2.calls == [(32, 48), (32, 48)]


def test_evaluate_max_images_spread_and_iterable():
    data = ListDataset([make_clip(i) for i in range(10)])
    res = ev.evaluate(FakeEstimator(), data, "synthetic", max_images=3, progress=False)
    assert [p["index"] for p in res.per_image] == [0, 4, 9] or \
        [p["index"] for p in res.per_image] == [0, 5, 9]
    gen = (make_clip(i) for i in range(6))
    res = ev.evaluate(FakeEstimator(), gen, "synthetic", max_images=4, progress=False)
    assert res.n_images == 4
    with pytest.raises(ConfigError):
        ev.evaluate(FakeEstimator(), data, "synthetic", max_images=0, progress=False)
    with pytest.raises(ConfigError, match="out_dir"):
        ev.evaluate(FakeEstimator(), data, "synthetic", save_samples=2, progress=False)


def test_evaluate_saves_sample_strips(tmp_path):
    import cv2

    data = ListDataset([make_clip(i) for i in range(4)])
    ev.evaluate(FakeEstimator(noise=0.1), data, "synthetic", progress=False, save_samples=2,
                out_dir=tmp_path)
    files = sorted((tmp_path / "samples").glob("*.png"))
    assert len(files) == 2
    img = cv2.imread(str(files[0]))
    assert img.shape[0] == 16 and img.shape[1] > 4 * 24


# ----------------------------------------------------------------------------- reports

def _result(label="a", protocol="synthetic", factor=1.0, scale_source="none", noise=0.1):
    data = ListDataset([make_clip(i, domain="day" if i % 2 else "night") for i in range(4)])
    return ev.evaluate(FakeEstimator(factor=factor, scale_source=scale_source, noise=noise),
                       data, protocol, progress=False, label=label)


def test_report_files_and_protocol_named(tmp_path):
    a = _result("dasp", scale_source="fixed", factor=1.5)
    b = _result("rnw", noise=0.3)
    files = write_report([a, b], tmp_path)
    for kind in ("json", "markdown", "distance_plot", "region_plot", "comparison_plot"):
        assert files[kind].is_file() and files[kind].stat().st_size > 0, kind
    md = files["markdown"].read_text(encoding="utf-8")
    assert "Protocol: `synthetic`" in md and "(0.001, 80) m" in md
    assert "AbsRel ↓" in md and "δ<1.25 ↑" in md
    assert "| dasp | median-scaled |" in md and "| dasp | metric (no scaling) |" in md
    assert "| rnw | median-scaled |" in md and "**" in md
    assert "Error by region" in md and "Error by domain" in md and "0-10 m" in md
    loaded = load_result(files["json"])
    assert [r.label for r in loaded] == ["dasp", "rnw"]
    assert loaded[0].metrics["abs_rel"] == pytest.approx(a.metrics["abs_rel"])
    assert loaded[0].protocol == a.protocol
    assert markdown_report(loaded) == markdown_report([a, b])


def test_report_refuses_mixed_protocols(tmp_path):
    a = _result("x", "synthetic")
    b = _result("y", "rnw_nuscenes")
    with pytest.raises(ConfigError, match="never mix"):
        markdown_report([a, b])
    with pytest.raises(ConfigError):
        write_report([a, b], tmp_path)
    assert check_same_protocol([b]) == "rnw_nuscenes"
    # a result written before a protocol's prose changed stays comparable; a changed
    # scoring rule does not
    import dataclasses

    b2 = _result("z", "rnw_nuscenes")
    b2.protocol = dataclasses.replace(b2.protocol, source="older wording", differences="")
    assert check_same_protocol([b, b2]) == "rnw_nuscenes"
    b2.protocol = dataclasses.replace(b2.protocol, median_rule="lower")
    with pytest.raises(ConfigError, match="median rule"):
        check_same_protocol([b, b2])


def test_json_has_no_nan(tmp_path):
    data = ListDataset([make_clip(i) for i in range(2)])
    # depths are 2 … 52 m: the 60-80 m bin stays empty, its metrics are NaN
    r = ev.evaluate(FakeEstimator(), data, "synthetic", progress=False, bins=(0, 10, 60, 80))
    assert math.isnan(r.per_bin["60-80 m"]["abs_rel"])
    path = write_report([r], tmp_path)["json"]
    text = path.read_text()

    def no_constants(name):  # JSON's non-standard NaN / Infinity tokens
        raise AssertionError(f"non-standard JSON constant {name}")

    data = json.loads(text, parse_constant=no_constants)
    assert data["protocol"]["name"] == "synthetic"
    assert data["scores"]["median"]["per_bin"]["60-80 m"]["abs_rel"] is None
    back = load_result(path)[0]
    assert math.isnan(back.per_bin["60-80 m"]["abs_rel"]) and back.n_images == r.n_images


def test_sample_strip(tmp_path):
    import cv2

    clip = make_clip(0)
    gt = clip.depth
    pred = gt * 1.2
    p = save_sample_strip(clip.frames[1], pred, gt, tmp_path / "s.png", 1e-3, 80, scale=1 / 1.2)
    img = cv2.imread(str(p))
    assert img.shape[0] == 16 and img.dtype == np.uint8


# ----------------------------------------------------------------------------- CLI

def _parse(argv):
    import argparse

    p = argparse.ArgumentParser()
    eval_cli.add_arguments(p)
    return p.parse_args(argv)


def test_eval_argv_parses_with_the_eval_parser(tmp_path):
    argv = eval_cli.eval_argv(tmp_path / "m.onnx", "synthetic-night-val", tmp_path / "ev",
                              label="seed 1", sequences=12, samples=3, threads=2,
                              extra=["--max-images", "5"])
    assert argv[0] == "eval"
    a = _parse(argv[1:])
    assert (a.model, a.data, a.out) == (str(tmp_path / "m.onnx"), "synthetic-night-val",
                                        str(tmp_path / "ev"))
    assert (a.label, a.sequences, a.save_samples, a.threads, a.max_images) == (
        "seed 1", 12, 3, 2, 5)
    assert a.backend == "onnxruntime" and a.no_progress
    # unset options stay at the parser's defaults, not at a value the helper invents
    b = _parse(eval_cli.eval_argv("m.pt", "synthetic-day-test", "o")[1:])
    assert (b.label, b.sequences, b.threads, b.save_samples) == (None, None, None, 0)


def test_data_spec_from_yaml(tmp_path):
    one = tmp_path / "one.yaml"
    one.write_text("kind: folder\nkwargs: {root: /data/x}\n")
    assert eval_cli.data_spec_from_yaml(one) == {"kind": "folder", "root": "/data/x"}
    flat = tmp_path / "flat.yaml"
    flat.write_text("kind: robotcar\nroot: /r\nsplit: test\n")
    assert eval_cli.data_spec_from_yaml(flat) == {"kind": "robotcar", "root": "/r",
                                                  "split": "test"}
    many = tmp_path / "many.yaml"
    many.write_text("- {kind: folder, root: a}\n- {kind: folder, kwargs: {root: b}}\n")
    assert eval_cli.data_spec_from_yaml(many) == [{"kind": "folder", "root": "a"},
                                                  {"kind": "folder", "root": "b"}]
    train = tmp_path / "train.yaml"
    train.write_text("data:\n  night_val: {kind: robotcar, kwargs: {root: /r}}\n")
    assert eval_cli.data_spec_from_yaml(train)["kind"] == "robotcar"
    with pytest.raises(ConfigError, match="data.day_val"):
        eval_cli.data_spec_from_yaml(train, "day_val")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError):
        eval_cli.data_spec_from_yaml(bad)
    with pytest.raises(ConfigError, match="synthetic-night-test"):
        eval_cli.build_data(str(tmp_path / "missing.yaml"))


def _install_fakes(monkeypatch, estimator, dataset):
    fac = types.ModuleType("dasp_core.runtime.factory")
    fac.create_estimator = lambda model, **kw: estimator
    reg = types.ModuleType("dasp_core.data.registry")
    reg.build_dataset = lambda spec, key_prefix="": dataset
    monkeypatch.setitem(sys.modules, "dasp_core.runtime.factory", fac)
    monkeypatch.setitem(sys.modules, "dasp_core.data.registry", reg)


def test_cli_run_with_test_doubles(tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "data.yaml"
    cfg.write_text("kind: folder\nkwargs: {root: x}\n")
    _install_fakes(monkeypatch, FakeEstimator(noise=0.1),
                   ListDataset([make_clip(i) for i in range(3)]))
    out = tmp_path / "run1"
    rc = eval_cli.run(_parse(["m.onnx", "--data", str(cfg), "--protocol", "rnw_nuscenes",
                              "--out", str(out), "--no-progress", "--save-samples", "1"]))
    assert rc == 0
    text = capsys.readouterr().out
    assert "Protocol: `rnw_nuscenes`" in text
    assert (out / "eval.json").is_file() and (out / "eval.md").is_file()
    assert len(list((out / "samples").glob("*.png"))) == 1
    # compare with the first run: one table, two rows; JSON keeps only the new run
    out2 = tmp_path / "run2"
    rc = eval_cli.run(_parse(["other.onnx", "--data", str(cfg), "--protocol", "rnw_nuscenes",
                              "--out", str(out2), "--no-progress", "--save-samples", "0",
                              "--compare", str(out / "eval.json")]))
    assert rc == 0
    md = (out2 / "eval.md").read_text()
    assert "| m | median-scaled |" in md and "| other | median-scaled |" in md
    assert isinstance(json.loads((out2 / "eval.json").read_text()), dict)
    # a different protocol is refused before evaluating
    rc = eval_cli.run(_parse(["other.onnx", "--data", str(cfg), "--protocol", "rnw_robotcar",
                              "--out", str(tmp_path / "r3"), "--compare",
                              str(out / "eval.json")]))
    assert rc == 2 and "never mix" in capsys.readouterr().err
    # a YAML data config needs a protocol
    assert eval_cli.run(_parse(["m.onnx", "--data", str(cfg)])) == 2


def test_cli_with_real_registry_folder_dataset(tmp_path, monkeypatch, capsys):
    """`dasp eval` on a YAML data config read by the real data registry (folder reader with
    depth/*.npy ground truth); only the estimator is a test double."""
    import cv2

    pytest.importorskip("dasp_core.data.registry")
    seq = tmp_path / "data" / "seq_a"
    (seq / "depth").mkdir(parents=True)
    (tmp_path / "data" / "calibration.yaml").write_text(
        "image_width: 24\nimage_height: 16\ncamera_matrix:\n  rows: 3\n  cols: 3\n"
        "  data: [20, 0, 12, 0, 20, 8, 0, 0, 1]\n")
    (seq / "domain.txt").write_text("night\n")
    for i in range(5):
        clip = make_clip(i)
        cv2.imwrite(str(seq / f"{i:06d}.png"), clip.frames[1][..., ::-1])
        np.save(seq / "depth" / f"{i:06d}.npy", clip.depth)
    cfg = tmp_path / "data.yaml"
    cfg.write_text(f"kind: folder\nroot: {tmp_path / 'data'}\n")
    fac = types.ModuleType("dasp_core.runtime.factory")
    fac.create_estimator = lambda model, **kw: FakeEstimator()
    monkeypatch.setitem(sys.modules, "dasp_core.runtime.factory", fac)
    out = tmp_path / "out"
    rc = eval_cli.run(_parse(["m.onnx", "--data", str(cfg), "--protocol", "rnw_nuscenes",
                              "--out", str(out), "--no-progress", "--save-samples", "0"]))
    assert rc == 0, capsys.readouterr().err
    res = load_result(out / "eval.json")[0]
    assert res.n_images == 3 and res.n_skipped == 0  # 5 frames → 3 clips (-1, 0, 1)
    assert res.metrics["abs_rel"] == pytest.approx(0.0, abs=1e-6)


def _tiny_checkpoint(tmp_path):
    """An untrained ResNet-18 DepthNet checkpoint with a declared (fixed) scale."""
    pytest.importorskip("torch")
    from dasp_core.checkpoint import save_checkpoint
    from dasp_core.models.depth_net import DepthNet, DepthNetConfig

    return save_checkpoint(tmp_path / "tiny.pt", DepthNet(DepthNetConfig(encoder="resnet18")),
                           ModelInfo(input_height=64, input_width=96, scale_source="fixed",
                                     scale_factor=2.0, name="tiny"))


def test_cli_end_to_end_torch_checkpoint(tmp_path, capsys):
    """Real path: checkpoint → runtime factory (torch backend) → folder data via the registry
    → metrics and report. The network is untrained: only plumbing is checked."""
    import cv2

    factory = pytest.importorskip("dasp_core.runtime.factory")
    ckpt = _tiny_checkpoint(tmp_path)
    seq = tmp_path / "data" / "seq"
    (seq / "depth").mkdir(parents=True)
    (tmp_path / "data" / "calibration.yaml").write_text(
        "image_width: 48\nimage_height: 32\ncamera_matrix:\n  rows: 3\n  cols: 3\n"
        "  data: [40, 0, 24, 0, 40, 16, 0, 0, 1]\n")
    for i in range(4):
        clip = make_clip(i, h=32, w=48)
        cv2.imwrite(str(seq / f"{i:06d}.png"), clip.frames[1][..., ::-1])
        np.save(seq / "depth" / f"{i:06d}.npy", clip.depth)
    cfg = tmp_path / "data.yaml"
    cfg.write_text(f"kind: folder\nroot: {tmp_path / 'data'}\ndomain: night\n")
    out = tmp_path / "out"
    assert factory.create_estimator  # the agreed entry point exists
    rc = eval_cli.run(_parse([str(ckpt), "--data", str(cfg), "--protocol", "rnw_robotcar",
                              "--backend", "torch", "--device", "cpu", "--threads", "2",
                              "--out", str(out), "--no-progress", "--save-samples", "1"]))
    assert rc == 0, capsys.readouterr().err
    res = load_result(out / "eval.json")[0]
    assert res.n_images == 2 and set(res.scores) == {"median", "metric"}
    assert res.model["backend"] == "torch" and res.model["info"]["scale_source"] == "fixed"
    for mode in ("median", "metric"):
        assert all(math.isfinite(res.scores[mode].metrics[k]) for k in METRIC_NAMES)
    assert len(list((out / "samples").glob("*.png"))) == 1
    md = (out / "eval.md").read_text()
    assert "Protocol: `rnw_robotcar`" in md and "640x1152" in md  # size warning stated


def test_synthetic_preset_uses_reserved_seeds():
    pytest.importorskip("dasp_core.data.synthetic")
    ds = ev.build_preset("synthetic-day-test")
    assert all(ev.is_test_seed(s) for s in ds.seeds) and len(ds.seeds) == 100
    assert len(ds) == 100 * ev.SYNTHETIC_TEST_FRAMES  # one target frame per clip
    assert ev.build_preset("synthetic-night-test", n_sequences=2).seeds == [10_000, 10_001]
    with pytest.raises(ConfigError):
        ev.build_preset("synthetic-night-test", n_sequences=0)
    with pytest.raises(ConfigError, match="synthetic-night-test"):
        ev.build_preset("kitti")


def test_cli_synthetic_preset_end_to_end(tmp_path, capsys):
    """`dasp eval model.pt --data synthetic-night-test` with the real renderer, factory and
    torch backend (one test sequence, three images)."""
    pytest.importorskip("dasp_core.data.synthetic")
    pytest.importorskip("dasp_core.runtime.factory")
    ckpt = _tiny_checkpoint(tmp_path)
    out = tmp_path / "out"
    rc = eval_cli.run(_parse([str(ckpt), "--data", "synthetic-night-test", "--sequences", "1",
                              "--max-images", "3", "--backend", "torch", "--device", "cpu",
                              "--threads", "2", "--out", str(out), "--no-progress",
                              "--save-samples", "1", "--label", "tiny-untrained"]))
    assert rc == 0, capsys.readouterr().err
    res = load_result(out / "eval.json")[0]
    assert res.protocol.name == "synthetic" and res.n_images == 3
    assert all("night_seed010000" in p["source"] for p in res.per_image)
    assert {"dark", "lit"} <= set(res.per_region)
    assert set(res.scores["median"].per_domain) == {"night"}
    assert res.dataset.startswith("synthetic-night-test: SyntheticClipDataset")
    assert "| tiny-untrained | median-scaled |" in capsys.readouterr().out


def test_eval_modules_import_no_circle():
    """No module of dasp_core.eval imports one that imports it back, at any depth and
    including imports inside functions (DEVELOPERS.md: remove import circles)."""
    import ast
    from pathlib import Path

    pkg = Path(ev.__file__).parent
    graph = {}
    for f in pkg.glob("*.py"):
        if f.stem == "__init__":
            continue
        deps = set()
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            deps |= {n.split(".")[2] for n in names
                     if n.startswith("dasp_core.eval.") and len(n.split(".")) == 3
                     and (pkg / f"{n.split('.')[2]}.py").exists()}
        graph[f.stem] = deps - {f.stem}

    def reaches(start, goal, seen=()):
        return any(d == goal or (d not in seen and reaches(d, goal, seen + (d,)))
                   for d in graph.get(start, ()))

    circles = sorted(m for m in graph if reaches(m, m))
    assert not circles, f"import circle through {circles}: {graph}"
    assert "evaluate" not in graph["report"] and "report" in graph["evaluate"]


def test_result_of_a_changed_protocol_is_refused(tmp_path):
    r = _result("old", "md4all_robotcar")
    d = r.to_dict()
    d["protocol"]["pred_resize"] = "bilinear"  # what dasp < issue 16 wrote for md4all
    path = tmp_path / "old.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ConfigError, match="evaluate again"):
        load_result(path)


def test_evaluate_scores_depth_full_when_the_reader_kept_it():
    import cv2

    clips = []
    for i in range(2):
        c = make_clip(i)
        c.meta["depth_full"] = cv2.resize(c.depth, (48, 32), interpolation=cv2.INTER_NEAREST)
        clips.append(c)
    est = FakeEstimator()
    res = ev.evaluate(est, ListDataset(clips), "synthetic", progress=False)
    assert est.calls == [(32, 48), (32, 48)]  # predicted at the full GT's size
    assert res.gt_sizes == {"32x48": 2} and res.gt_source == "depth_full"
    assert res.metrics["n_pixels"] == sum(int((c.meta["depth_full"] > 1e-3).sum()) for c in clips)
    # the masks (drawn at clip.depth's size) follow the GT; both regions are scored
    assert res.per_region["dark"]["n_images"] == 2 and res.per_region["lit"]["n_images"] == 2
    assert "32x48 (meta depth_full)" in markdown_report([res])
    # a mask of the wrong size against clip.depth is still a malformed sample
    bad = make_clip(3)
    bad.masks["dark"] = np.zeros((5, 5), bool)
    res = ev.evaluate(FakeEstimator(), ListDataset([make_clip(0), bad]), "synthetic",
                      progress=False)
    assert res.n_skipped == 1 and res.gt_source == "depth"
