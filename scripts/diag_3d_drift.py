#!/usr/bin/env python3
"""Which way does each loss term move the depth scale *through the network*?

The 3D consistency loss gives a global depth scale exactly zero gradient (its depth-space
gradient ``g_D`` satisfies ``Σ_i D_i ∂L/∂D_i = 0``), yet training with it pushes the depth
farther the more it weighs (docs/training_recipe.md, λ_3d probe). A gradient step does not
move depths along ``g_D``: a step ``-lr·g_θ`` on the weights changes the mean log depth
``μ`` by ``-lr·⟨∇_θ μ, g_θ⟩`` to first order, and ``J Jᵀ`` (the network's kernel) need not
keep a scale-free depth gradient scale-free. Adam rescales each weight's step by
``1/√v``, which changes the answer again.

For training batches of night clips (train mode, as the loss is trained), per loss term ``k``
(weighted as in training):

* ``SGD``: ``-⟨∇_θ μ, ∇_θ L_k⟩`` — change of ``μ`` per unit learning rate of plain SGD;
* ``Adam``: ``-⟨∇_θ μ, ∇_θ L_k / (√v + ε)⟩`` — the same for Adam's preconditioned step,
  ``v`` the mean over the batches of the squared total gradient (Adam's second moment).

Positive: the term pushes the depth farther. ``μ`` is the mean log depth (log metres) of all
frames of the batch at full resolution, the depths the 3D loss sees (the trainer's
``StepResult.scale_probe``, what ``loss.consistency_scale_lock`` holds).

    python scripts/diag_3d_drift.py --checkpoint dasp_core/assets/dasp_demo.pt --batches 8
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dasp_core.train.loader import to_device  # noqa: E402
from dasp_core.train.stages import compute_generator_step  # noqa: E402
from diag_common import diag_arguments, night_trainer  # noqa: E402


def flat_grad(out: torch.Tensor, params: List[torch.Tensor]) -> torch.Tensor:
    """``∇_params out`` as one vector (zeros where ``out`` does not depend on a parameter)."""
    gs = torch.autograd.grad(out, params, retain_graph=True, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for g, p in zip(gs, params)])


def main() -> int:
    args = diag_arguments(__doc__, batches=8).parse_args()
    # the scale lock makes the step report μ; no optimiser runs here
    cfg, trainer = night_trainer(args, ["loss.consistency_scale_lock=true"])
    net = trainer.depth.train()
    params = [q for q in net.parameters() if q.requires_grad]
    rows: Dict[str, Dict[str, List[float]]] = {}
    per_batch: List[Dict[str, torch.Tensor]] = []
    for b in range(args.batches):
        batch = to_device(next(trainer.primary), torch.device("cpu"))
        res = compute_generator_step(trainer.nets, batch, cfg, trainer.layout)
        mu = res.scale_probe  # the trainer's own μ, from the forward pass the terms used
        g_mu = flat_grad(mu, params)
        grads = {k: flat_grad(res.weights[k] * v, params)
                 for k, v in res.terms.items() if res.weights[k] != 0.0}
        per_batch.append({"mu": g_mu, **grads})
        print(f"batch {b}: mu {mu.item():.3f} " + " ".join(
            f"{k} {res.terms[k].item():.4f}" for k in grads), flush=True)
    v = torch.stack([sum(d[k] for k in d if k != "mu") for d in per_batch]).pow(2).mean(0)
    precond = 1.0 / (v.sqrt() + 1e-8)
    for d in per_batch:
        for k, g in d.items():
            if k == "mu":
                continue
            r = rows.setdefault(k, {"sgd": [], "adam": []})
            r["sgd"].append(float(-(d["mu"] * g).sum()))
            r["adam"].append(float(-(d["mu"] * g * precond).sum()))
    print(f"\n{'term':<16} {'SGD dmu/lr (mean ± se)':>28} {'Adam dmu/lr (mean ± se)':>28}")
    for k, r in rows.items():
        cells = []
        for key in ("sgd", "adam"):
            a = np.asarray(r[key])
            cells.append(f"{a.mean():+.3e} ± {a.std(ddof=1) / np.sqrt(len(a)):.1e}")
        print(f"{k:<16} {cells[0]:>28} {cells[1]:>28}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
