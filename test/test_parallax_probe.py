"""scripts/parallax_probe.py: does the photometric loss prefer the true depth, per distance
and frame baseline (the diagnostic behind ``data.offsets``)."""

from __future__ import annotations

import argparse

import pytest
from script_loader import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("parallax_probe")


def test_every_baseline_scores_the_same_targets(script):
    # 12 frames, baselines up to 3: targets 3..8, every 2nd from the first
    kept = [t for t in range(12) if script._shared_target(t, 3, 12, 2)]
    assert kept == [3, 5, 7]


@pytest.fixture(scope="module")
def day_probe(script):
    return script.probe("day", [3], [1, 3, (1, 3)], frames_per_sequence=30, stride=6, height=48,
                        width=160, near=0.65, far=1.5, cache_dir=None)


def test_probe_scores_the_same_pixels_for_each_baseline(day_probe):
    n = {b: [r["n"] for r in rows] for b, rows in day_probe.items()}
    assert sum(n[1]) > 1000
    # the same targets; a pixel counts when some source sees it under all three depths, and
    # the earlier source sees nearly all of them for either baseline
    for a, b in zip(n[1], n[3]):
        assert abs(a - b) <= 0.02 * max(a, 1)


def test_a_mixed_baseline_is_both_source_pairs_at_once(day_probe):
    rows = {b: {r["bin"]: r for r in rs} for b, rs in day_probe.items()}
    for name, mix in rows[(1, 3)].items():
        # some source of four sees every pixel some source of either pair sees
        assert mix["n"] >= max(rows[1][name]["n"], rows[3][name]["n"])
        # the same targets; its image motion is to the widest source, -3
        assert mix["parallax"] == pytest.approx(rows[3][name]["parallax"])
        assert 0.0 <= mix["tells"] <= 1.0


@pytest.mark.parametrize("text, value", [("3", 3), ("1+3", (1, 3)), ("3+1+3", (1, 3)),
                                         ("2+2", 2)])
def test_baseline_specs(script, text, value):
    assert script.parse_baseline(text) == value


@pytest.mark.parametrize("text", ["0", "-1", "1+", "a", ""])
def test_a_bad_baseline_spec_says_what_is_allowed(script, text):
    with pytest.raises(argparse.ArgumentTypeError, match="frame distance >= 1"):
        script.parse_baseline(text)


def test_by_day_the_loss_prefers_the_truth_and_more_so_with_a_wider_baseline(day_probe):
    rows = {b: {r["bin"]: r for r in rs} for b, rs in day_probe.items()}
    for b in (1, 3):
        for r in rows[b].values():
            assert 0.0 <= r["tells"] <= 1.0 and r["tells"] + r["near_wins"] <= 1.0 + 1e-9
    mid = "10-20 m"
    assert rows[1][mid]["tells"] > 0.45   # a depth-blind loss would give ~1/3
    assert rows[3][mid]["tells"] > rows[1][mid]["tells"]
    assert rows[3][mid]["parallax"] > 1.5 * rows[1][mid]["parallax"]


def test_report_has_a_table_per_domain(script, day_probe):
    args = argparse.Namespace(
        frames=30, stride=6, height=48, width=160, near=0.65, far=1.5, night_seeds=[1000],
        day_seeds=[3])
    text = script.report({"day": day_probe}, args, 1.0)
    assert "## day, seeds [3]" in text
    assert text.count("| ±1 |") == 4 and text.count("| ±3 |") == 4
    assert text.count("| ±1 ±3 |") == 4
