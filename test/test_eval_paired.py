"""Paired comparison of two evaluations (dasp_core.eval.paired, scripts/compare_evals.py)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from dasp_core.eval import EvalResult, ScoreSet, get_protocol
from dasp_core.eval.paired import paired_difference
from dasp_core.eval.report import write_json
from script_loader import load_script


def _per_image(values, groups=None):
    """``values[i]`` -> a per_image list; ``groups[i]`` names image i's drive."""
    groups = groups or [f"drive{i // 4}" for i in range(len(values))]
    out = []
    for i, (v, g) in enumerate(zip(values, groups)):
        score = {"abs_rel": float(v), "rmse": 10.0 * float(v)}
        out.append({"index": i, "source": f"synthetic:{g}/{i:06d}",
                    "scores": {"median": score, "metric": dict(score)}})
    return out


def write_eval(path: Path, values, label: str = "model") -> None:
    """The eval.json ``dasp eval`` writes for ``values`` (per-image AbsRel, :func:`_per_image`)."""
    result = EvalResult(protocol=get_protocol("synthetic"), label=label, primary="median",
                        scores={"median": ScoreSet(True, {"abs_rel": float(np.mean(values))})},
                        n_images=len(values), per_image=_per_image(values))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(result, path)


def test_identical_evaluations_differ_by_exactly_zero():
    vals = np.random.default_rng(0).uniform(0.1, 0.4, 24)
    d = paired_difference(_per_image(vals), _per_image(vals))
    assert (d.mean, d.low, d.high, d.groups_a_lower) == (0.0, 0.0, 0.0, 0)
    assert (d.n_images, d.n_groups) == (24, 6)


@pytest.mark.parametrize("shift", [-0.03, 0.05])
def test_a_constant_shift_is_found_exactly_with_a_zero_width_interval(shift):
    b = np.random.default_rng(1).uniform(0.1, 0.4, 20)
    d = paired_difference(_per_image(b + shift), _per_image(b), metric="rmse", mode="metric")
    for v in (d.mean, d.low, d.high):
        assert v == pytest.approx(10.0 * shift, abs=1e-9)
    assert d.groups_a_lower == (5 if shift < 0 else 0)


def test_mean_is_the_image_mean_not_the_mean_of_drive_means():
    # drive x: 3 images a-b = +0.3; drive y: 1 image a-b = -0.1 -> image mean 0.2
    groups = ["x", "x", "x", "y"]
    d = paired_difference(_per_image([0.5, 0.5, 0.5, 0.1], groups),
                          _per_image([0.2, 0.2, 0.2, 0.2], groups))
    assert d.mean == pytest.approx(0.2)
    assert d.groups_a_lower == 1 and d.n_groups == 2
    # resamples are xx (+0.3), yy (-0.1) or xy (+0.2): the interval stays inside [-0.1, 0.3]
    assert -0.1 - 1e-12 <= d.low < d.mean < d.high <= 0.3 + 1e-12


def test_interval_is_over_drives_and_order_does_not_matter():
    rng = np.random.default_rng(2)
    drive_effect = np.repeat(rng.normal(0.0, 0.02, 12), 8)   # 12 drives x 8 frames
    b = rng.uniform(0.1, 0.4, 96)
    a = b + drive_effect + rng.normal(0.0, 0.001, 96)
    drives = [f"d{i // 8}" for i in range(96)]
    pa, pb = _per_image(a, drives), _per_image(b, drives)
    d = paired_difference(pa, pb)
    assert d.low < d.mean < d.high
    # image-level noise is tiny; the width comes from the 12 drive effects (sd 0.02):
    # about 2 * 1.96 * 0.02 / sqrt(12) ~ 0.023, far wider than an image bootstrap would say
    assert 0.01 < d.high - d.low < 0.04
    random.Random(3).shuffle(pa)
    assert paired_difference(pa, pb) == d


def test_mismatched_or_incomplete_evaluations_are_refused():
    a = _per_image([0.2] * 8)
    with pytest.raises(ValueError, match="different images: 1 only in a"):
        paired_difference(a, a[:-1])
    broken = json.loads(json.dumps(a))
    del broken[3]["scores"]["median"]["abs_rel"]
    with pytest.raises(ValueError, match="entry 3 has no scores"):
        paired_difference(broken, a)
    with pytest.raises(ValueError, match="level"):
        paired_difference(a, a, level=1.0)


def test_compare_evals_script_prints_the_table(tmp_path, capsys):
    mod = load_script("compare_evals")
    b = np.linspace(0.1, 0.3, 16)
    for name, values in (("a", b - 0.01), ("b", b)):   # the files `dasp eval` writes
        write_eval(tmp_path / f"{name}.json", values, name)
    assert mod.main([str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                     "--metrics", "abs_rel", "--modes", "median", "--n-boot", "200"]) == 0
    out = capsys.readouterr().out
    assert "| abs_rel | median | -0.0100 | [-0.0100, -0.0100] | 4/4 |" in out
