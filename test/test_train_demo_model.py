"""The demo-model build trains and ships exactly a benchmarked recipe."""

from __future__ import annotations

from pathlib import Path

import pytest

from dasp_core.train.config import load_config
from dasp_core.train.recipes import (DASP_RECIPES, NIGHT_FINE_TUNING, NIGHT_RECIPES,
                                     SHIPPED_RECIPE, night_overrides)
from script_loader import load_script

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "config" / "train_synthetic_small.yaml")


@pytest.fixture(scope="module")
def demo():
    return load_script("train_demo_model")


def _run_config(recipe: str) -> dict:
    """The ``train_config`` a night run of ``recipe`` saves in its checkpoint."""
    return load_config(CONFIG, ["train.stage=night", "train.day_checkpoint=/x/day/final.pt"]
                       + night_overrides(recipe) + NIGHT_FINE_TUNING).to_dict()


def test_a_run_of_the_recipe_matches_it(demo):
    wanted = night_overrides(SHIPPED_RECIPE) + NIGHT_FINE_TUNING
    assert demo.recipe_mismatches(_run_config(SHIPPED_RECIPE), CONFIG, wanted) == []


def test_a_run_of_another_recipe_is_named_key_by_key(demo):
    wanted = night_overrides("dasp_ref") + NIGHT_FINE_TUNING
    bad = demo.recipe_mismatches(_run_config("no_3d"), CONFIG, wanted)
    keys = [b.split(":")[0] for b in bad]
    # no_3d differs from dasp_ref in the 3D loss and its form, not in the adversary
    assert keys == ["loss.use_3d", "loss.consistency_normaliser",
                    "loss.consistency_source_grad", "loss.consistency_mask"]
    assert "run has False, recipe sets True" in bad[0]


def test_a_run_without_the_night_fine_tuning_is_refused(demo):
    cfg = _run_config(SHIPPED_RECIPE)
    cfg["model"]["depth"]["exposure"] = "none"
    bad = demo.recipe_mismatches(cfg, CONFIG, night_overrides(SHIPPED_RECIPE) + NIGHT_FINE_TUNING)
    assert bad == ["model.depth.exposure: run has 'none', recipe sets 'log_mean'"]


def test_every_shippable_recipe_is_dasp():
    """Night-only and the supervised ceiling may be benchmarked, never shipped as DASP."""
    assert SHIPPED_RECIPE in DASP_RECIPES
    for recipe in NIGHT_RECIPES:
        cfg = load_config(CONFIG, ["train.stage=night", "train.day_checkpoint=d.pt"]
                          + night_overrides(recipe))
        is_dasp = cfg.loss.adversarial == "dasp" and cfg.train.supervision != "depth"
        assert (recipe in DASP_RECIPES) == is_dasp, recipe


def test_an_unknown_recipe_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown night recipe 'dasp_reff'.*dasp_ref"):
        night_overrides("dasp_reff")


def _eval_json(path: Path, abs_rel: float, metric_abs_rel: float, rmse: float) -> None:
    """An ``eval.json`` as ``dasp eval`` writes it, with these mean scores."""
    from dasp_core.eval import EvalResult, ScoreSet, get_protocol
    from dasp_core.eval.report import write_json

    path.mkdir(parents=True, exist_ok=True)
    write_json(EvalResult(protocol=get_protocol("synthetic"), label="run", primary="median",
                          scores={"median": ScoreSet(True, {"abs_rel": abs_rel, "rmse": rmse + 1}),
                                  "metric": ScoreSet(False, {"abs_rel": metric_abs_rel,
                                                             "rmse": rmse})},
                          n_images=8), path / "eval.json")


def test_validation_scores_read_an_existing_evaluation_without_rerunning_it(demo, tmp_path):
    run_dir = tmp_path / "runs" / "bench" / "seed1" / "dasp_ref"
    _eval_json(tmp_path / "val" / "bench_seed1_dasp_ref",
               0.27, 0.25, 7.6)
    # a run outside the repository is named by its last three path parts
    got = demo.validation_scores(["false"], run_dir, tmp_path / "val", 12)
    assert got == {"abs_rel": 0.27, "metric_abs_rel": 0.25, "metric_rmse": 7.6}


def test_the_selection_table_marks_the_shipped_run_only(demo):
    scores = {"a": {"abs_rel": 0.266, "metric_abs_rel": 0.264, "metric_rmse": 7.52},
              "b": {"abs_rel": 0.266, "metric_abs_rel": 0.249, "metric_rmse": 7.66}}
    chosen = min(scores, key=lambda r: scores[r]["metric_abs_rel"])
    lines = demo.selection_table(scores, chosen, "metric_abs_rel", 12)
    assert "seeds 9500 … 9511" in lines[0]
    rows = [ln for ln in lines if ln.startswith("| `")]
    assert rows == ["| `a` | 0.266 | 0.264 | 7.52 |  |", "| `b` | 0.266 | 0.249 | 7.66 | shipped |"]


def test_the_both_baselines_recipe_differs_from_dasp_ref_only_in_its_frames(demo):
    """A run of ``dasp_ref`` is refused as ``dasp_ref_b13`` by exactly the two keys
    that make the wider baseline; the discriminator's sequence stays as long as the clip."""
    wide = _run_config("dasp_ref_b13")
    assert wide["data"]["offsets"] == [0, -3, -1, 1, 3]
    assert wide["model"]["discriminator"]["seq_len"] == 5
    wanted = night_overrides("dasp_ref_b13") + NIGHT_FINE_TUNING
    assert demo.recipe_mismatches(wide, CONFIG, wanted) == []
    bad = demo.recipe_mismatches(_run_config("dasp_ref"), CONFIG, wanted)
    assert [b.split(":")[0] for b in bad] == ["data.offsets", "model.discriminator.seq_len"]
    assert "run has [0, -1, 1], recipe sets [0, -3, -1, 1, 3]" in bad[0]


def test_the_shipped_weights_were_trained_with_the_shipped_recipe(demo):
    """The asset's saved training config carries every override of SHIPPED_RECIPE and the
    night fine-tuning: docs and code cannot name a recipe the weights were not trained with."""
    from dasp_core.checkpoint import read_checkpoint

    asset = ROOT / "dasp_core" / "assets" / "dasp_demo.pt"
    cfg = read_checkpoint(asset).get("train_config")
    assert cfg, f"{asset} has no train_config"
    assert cfg["train"]["stage"] == "night"
    wanted = night_overrides(SHIPPED_RECIPE) + NIGHT_FINE_TUNING
    assert demo.recipe_mismatches(cfg, CONFIG, wanted) == []
