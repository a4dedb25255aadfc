"""Named night-stage recipes: the ``key=value`` overrides that make each benchmarked variant.

One table for the benchmark (``scripts/benchmark_dasp.py``, which trains every recipe) and
the demo-model build (``scripts/train_demo_model.py``, which trains the one it ships), so the
shipped model is trained with exactly the overrides the benchmark measured.

Each recipe is applied on top of a night-stage config (``train.stage=night`` and a
``train.day_checkpoint``) and of :data:`NIGHT_FINE_TUNING`. What the names mean:

* ``night_selfsup`` — self-supervised only (Monodepth2-style photometric + smoothness);
* ``rnw`` — plus an adversarial prior on single depth maps (RNW-style);
* ``dasp`` — full DASP: SPLB temporal discriminator + 3D consistency loss as first built
  (per-pixel normaliser, gradient into the source frames, occlusion mask);
* ``dasp_spread`` / ``dasp_lock`` — the 3D loss's ``spread`` normaliser (neutral to squashing
  the depth range), and that plus a lock on the depth scale the loss may push;
* ``dasp_ref`` — full DASP with the 3D loss in its repaired form: ``spread`` normaliser, the
  source frames' depths as fixed references, symmetric mask (docs/training_recipe.md, "What
  the 3D loss asks of each pixel"; docs/benchmark_dasp_ref.md). The shipped recipe;
* ``dasp_ref_b13`` — ``dasp_ref`` with source frames at both baselines, ±1 and ±3
  (``data.offsets=[0,-3,-1,1,3]``, the discriminator's sequences five frames long): ±1 for
  the near road, ±3 for the far end's parallax (docs/frame_baseline.md);
* ``ref_no_stlm`` / ``ref_no_aslm`` / ``no_stlm`` / ``no_aslm`` / ``no_3d`` — ablations;
* ``supervised`` — a diagnostic ceiling, never shipped and never called DASP: the same
  network and budget trained on the night clips' ground-truth depth.
"""

from __future__ import annotations

from typing import Dict, List

_DASP = ["loss.adversarial=dasp", "loss.use_3d=true"]
_DASP_SPREAD = _DASP + ["loss.consistency_normaliser=spread"]
# the 3D loss's repaired form: sources' depths as fixed references, symmetric mask
_DASP_REF = _DASP_SPREAD + ["loss.consistency_source_grad=false",
                            "loss.consistency_mask=symmetric"]
# source frames at both baselines; the discriminator sees sequences of the same five frames
_BOTH_BASELINES = ["data.offsets=[0,-3,-1,1,3]", "model.discriminator.seq_len=5"]

#: recipe name -> overrides of the night stage
NIGHT_RECIPES: Dict[str, List[str]] = {
    "night_selfsup": ["loss.adversarial=none", "loss.use_3d=false"],
    "rnw": ["loss.adversarial=rnw", "loss.use_3d=false"],
    "dasp": _DASP,
    "dasp_spread": _DASP_SPREAD,
    "dasp_lock": _DASP_SPREAD + ["loss.consistency_scale_lock=true"],
    "dasp_ref": _DASP_REF,
    "dasp_ref_b13": _DASP_REF + _BOTH_BASELINES,
    # ablations of dasp_ref (its 3D form kept; no_3d is shared: without the loss its form is moot)
    "ref_no_stlm": _DASP_REF + ["model.discriminator.use_stlm=false"],
    "ref_no_aslm": _DASP_REF + ["model.discriminator.use_aslm=false"],
    "no_stlm": _DASP + ["model.discriminator.use_stlm=false"],
    "no_aslm": _DASP + ["model.discriminator.use_aslm=false"],
    "no_3d": ["loss.adversarial=dasp", "loss.use_3d=false"],
    "supervised": ["train.supervision=depth", "loss.adversarial=none", "loss.use_3d=false"],
}

#: recipe name -> how reports name it
RECIPE_LABELS: Dict[str, str] = {
    "night_selfsup": "(b) night-only self-supervised",
    "rnw": "(c) RNW-style single-map adversarial", "dasp": "(d) DASP (full)",
    "dasp_spread": "(d) DASP (full), 3D loss spread form",
    "dasp_lock": "(d) DASP (full), 3D loss spread form + scale lock",
    "dasp_ref": "(d) DASP (full), 3D loss spread form, fixed sources, symmetric mask",
    "dasp_ref_b13": "(d) DASP (full), 3D loss ref form, source frames ±1 and ±3",
    "ref_no_stlm": "(e) DASP (3D ref form) w/o STLM",
    "ref_no_aslm": "(e) DASP (3D ref form) w/o ASLM",
    "no_stlm": "(e) DASP w/o STLM", "no_aslm": "(e) DASP w/o ASLM",
    "no_3d": "(e) DASP w/o 3D loss",
    "supervised": "ceiling: same network supervised with night GT depth (diagnostic)",
}

#: recipes that are DASP (the SPLB discriminator on): what a shipped model may be
DASP_RECIPES = ("dasp", "dasp_spread", "dasp_lock", "dasp_ref", "dasp_ref_b13", "ref_no_stlm",
                "ref_no_aslm", "no_stlm", "no_aslm", "no_3d")

#: the recipe the demo model is trained with (docs/demo_model.md)
SHIPPED_RECIPE = "dasp_ref"

#: fine-tuning from the day model, common to every night recipe of the 96x320 benchmark:
#: a lower learning rate with a short warm-up, and the night input brought to day brightness
#: inside the network (docs/exposure.md)
NIGHT_FINE_TUNING: List[str] = ["optim.lr=0.0002", "optim.warmup_steps=20",
                                "model.depth.exposure=log_mean"]


def night_overrides(recipe: str) -> List[str]:
    """The overrides of ``recipe`` (a copy); a clear error names the known recipes."""
    try:
        return list(NIGHT_RECIPES[recipe])
    except KeyError:
        raise ValueError(f"unknown night recipe {recipe!r}; known: "
                         f"{', '.join(NIGHT_RECIPES)}") from None
