"""Keep a loss term from moving the depth scale through the network (ours).

The 3D consistency loss gives a global depth scale exactly zero gradient in depth space, yet
training with it drifts the depth farther the more it weighs (docs/training_recipe.md). The
optimiser does not move depths along their gradient: a weight step ``Δθ`` changes the batch's
mean log depth ``μ`` by ``⟨∇_θ μ, Δθ⟩``, and through the network (and Adam's per-weight
rescaling) a scale-free depth gradient becomes a steady push on ``μ``
(``scripts/diag_3d_drift.py``). With odometry poses the photometric loss owns the scale;
at night it holds it weakly, so that push wins.

:func:`project_out_scale` removes the push: it takes the term's weight gradient ``g`` and
returns ``g − α ∇_θ μ`` with ``α`` chosen so that Adam's step for it, ``P g`` with
``P = 1/(√v̂ + ε)``, is orthogonal to ``∇_θ μ``: to first order the term then changes
structure, not scale.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch

__all__ = ["adam_preconditioner", "project_out_scale"]


def adam_preconditioner(opt: torch.optim.Optimizer, params: Sequence[torch.Tensor]
                        ) -> List[Optional[torch.Tensor]]:
    """Per-parameter ``1 / (√v̂ + ε)`` of an Adam optimiser (``v̂``: bias-corrected second
    moment), ``None`` for a parameter without state yet (its first step: plain gradient
    metric). Shapes as ``params``."""
    group_of = {id(q): g for g in opt.param_groups for q in g["params"]}
    out: List[Optional[torch.Tensor]] = []
    for p in params:
        st = opt.state.get(p, {})
        if "exp_avg_sq" not in st:
            out.append(None)
            continue
        group = group_of[id(p)]
        beta2, eps = group["betas"][1], group["eps"]
        step = float(st["step"])
        v_hat = st["exp_avg_sq"] / max(1.0 - beta2 ** step, 1e-12)
        out.append(1.0 / (v_hat.sqrt() + eps))
    return out


def project_out_scale(grads: Sequence[Optional[torch.Tensor]],
                      scale_grads: Sequence[Optional[torch.Tensor]],
                      precond: Optional[Sequence[Optional[torch.Tensor]]] = None
                      ) -> Tuple[List[Optional[torch.Tensor]], float]:
    """Remove from ``grads`` the part whose preconditioned step moves the scale.

    Args:
        grads: a term's gradient per parameter (``None``: no gradient).
        scale_grads: ``∇_θ μ`` per parameter (``μ``: mean log depth, log metres).
        precond: per-parameter elementwise preconditioner ``P`` (Adam: ``1/(√v̂+ε)``;
            ``None`` or a ``None`` entry: identity).
    Returns:
        ``(projected, push)``: ``g − α ∇_θ μ`` with ``⟨∇_θ μ, P (g − α ∇_θ μ)⟩ = 0``, and
        ``push = −⟨∇_θ μ, P g⟩``, the change of ``μ`` per unit step size the term asked for
        (positive: farther). Unchanged (and push 0) when ``∇_θ μ`` is zero.
    """
    if precond is None:
        precond = [None] * len(grads)
    if not (len(grads) == len(scale_grads) == len(precond)):
        raise ValueError("grads, scale_grads and precond must have one entry per parameter")
    num = torch.zeros((), dtype=torch.float64)
    den = torch.zeros((), dtype=torch.float64)
    for g, s, pc in zip(grads, scale_grads, precond):
        if s is None:
            continue
        ps = s if pc is None else pc * s
        den += (s * ps).sum().double()
        if g is not None:
            num += (g * ps).sum().double()
    if float(den) <= 0.0:
        return list(grads), 0.0
    alpha = num / den
    out: List[Optional[torch.Tensor]] = []
    for g, s in zip(grads, scale_grads):
        if s is None:
            out.append(g)
        elif g is None:
            out.append((-alpha * s).to(s.dtype))
        else:
            out.append(g - alpha.to(g.dtype) * s)
    return out, float(-num)
