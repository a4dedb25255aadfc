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
