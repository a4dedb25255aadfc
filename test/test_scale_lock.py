"""The 3D loss's scale lock: projection algebra, Adam's metric, and the trainer's use of it."""

from __future__ import annotations

import math

import pytest
import torch

from dasp_core.train.scale_lock import adam_preconditioner, project_out_scale


def _vecs(seed: int, n: int = 3, size: int = 7):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(size, generator=g) for _ in range(n)]


def _dot(a, b, p=None):
    return sum(float((x * (y if w is None else w * y)).sum())
               for x, y, w in zip(a, b, p or [None] * len(a)) if x is not None and y is not None)


@pytest.mark.parametrize("with_precond", [False, True])
def test_projection_leaves_no_step_along_the_scale(with_precond):
    g, s = _vecs(0), _vecs(1)
    p = [x.abs() + 0.1 for x in _vecs(2)] if with_precond else None
    out, push = project_out_scale(g, s, p)
    assert abs(_dot(s, out, p)) < 1e-6 * (1 + abs(_dot(s, g, p)))
    assert push == pytest.approx(-_dot(s, g, p), rel=1e-9)
    assert abs(push) > 0.1  # the input did move the scale: the assertion above can fail
    again, push2 = project_out_scale(out, s, p)    # idempotent
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(again, out))
    assert abs(push2) < 1e-6


def test_projection_keeps_what_does_not_move_the_scale():
    s = _vecs(1)
    g = _vecs(3)
    # remove g's scale part by hand (identity metric): what is left must come back unchanged
    a = _dot(s, g) / _dot(s, s)
    g_orth = [x - a * y for x, y in zip(g, s)]
    out, push = project_out_scale(g_orth, s)
    assert abs(push) < 1e-6
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(out, g_orth))


def test_push_sign_descending_along_the_scale_gradient_is_farther():
    s = _vecs(4)
    # a gradient of -s: a descent step (-lr * grad = +lr * s) raises the mean log depth
    out, push = project_out_scale([-x for x in s], s)
    assert push == pytest.approx(_dot(s, s))
    assert push > 0 and all(float(x.abs().max()) < 1e-6 for x in out)


def test_projection_handles_missing_gradients():
    s = _vecs(5)
    out, push = project_out_scale([None, s[1], s[2]], [s[0], s[1], None])
    assert out[0] is not None and out[2] is s[2]
    assert abs(_dot([out[0], out[1]], [s[0], s[1]])) < 1e-6
    unchanged, zero = project_out_scale(s, [torch.zeros(7)] * 3)   # no scale direction
    assert zero == 0.0 and all(a is b for a, b in zip(unchanged, s))
    with pytest.raises(ValueError, match="one entry per parameter"):
        project_out_scale(s, s[:2])


def test_adam_preconditioner_predicts_adams_step():
    """P from the optimiser's state reproduces the step Adam takes for a gradient it has
    already seen (steady state: m = g, v = g^2 after many identical steps)."""
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    opt = torch.optim.Adam([w], lr=0.01, betas=(0.9, 0.999), eps=1e-8)
    assert adam_preconditioner(opt, [w]) == [None]            # no state yet: identity
    g = torch.tensor([0.5, -0.02, 3.0])
    for _ in range(3):
        w.grad = g.clone()
        opt.step()
    (P,) = adam_preconditioner(opt, [w])
    before = w.detach().clone()
    w.grad = g.clone()
    opt.step()
    # same gradient every step: bias-corrected m and v are exactly g and g^2
    assert torch.allclose(w.detach() - before, -0.01 * g * P, rtol=1e-4, atol=1e-9)


# ------------------------------------------------------------------ the trainer's use of it

def test_trainer_scale_lock_removes_the_3d_push_and_keeps_the_rest(tmp_path):
    from test_train import datasets, night, tiny_cfg
    from dasp_core.checkpoint import save_checkpoint
    from dasp_core.models import DepthNet
    from dasp_core.runtime.base import ModelInfo
    from dasp_core.train.stages import compute_generator_step
    from dasp_core.train.trainer import Trainer

    base = tiny_cfg()
    torch.manual_seed(0)
    day = tmp_path / "day.pt"
    save_checkpoint(day, DepthNet(base.model.depth),
                    ModelInfo(input_height=base.data.height, input_width=base.data.width))
    cfg = night(str(day), "loss.adversarial=none", "loss.use_3d=true",
                "loss.lambda_3d=1.0", "loss.consistency_scale_lock=true")
    tr = Trainer(cfg, tmp_path / "run", datasets=datasets())
    out = tr.train_step()          # Adam has state: its metric is not the identity any more
    assert "stats/scale_push_3d" in out and math.isfinite(out["stats/scale_push_3d"])

    params = [p for p in tr.depth.parameters() if p.requires_grad]
    res = compute_generator_step(tr.nets, next(tr.primary), cfg, tr.layout)
    assert res.scale_probe is not None
    term = res.weights["consistency_3d"] * res.terms["consistency_3d"]
    def grad(y):
        return torch.autograd.grad(y, params, retain_graph=True, allow_unused=True)

    g_rest, g_term, g_mu = grad(res.total - term), grad(term), grad(res.scale_probe)
    P = adam_preconditioner(tr.opt_g, params)
    tr.opt_g.zero_grad(set_to_none=True)
    push = tr._scale_locked_backward(res)
    g_locked = [p.grad for p in params]

    assert push == pytest.approx(-_dot(g_mu, g_term, P), rel=1e-5)
    assert abs(push) > 0, "the 3D term did not move the scale: the test could not fail"
    # the scale moves only as much as the other terms ask; what the 3D term asked is gone
    assert _dot(g_mu, g_locked, P) == pytest.approx(_dot(g_mu, g_rest, P), rel=1e-4, abs=1e-9)
    assert abs(_dot(g_mu, g_locked, P) - _dot(g_mu, g_rest, P)) < 1e-3 * abs(push)
    # and the 3D term's structure is kept: the locked gradient still differs from the rest's
    diff = [a - b for a, b in zip(g_locked, g_rest) if a is not None and b is not None]
    assert sum(float(d.abs().sum()) for d in diff) > 0


def test_scale_lock_off_by_default_and_no_probe():
    from test_train import tiny_cfg

    cfg = tiny_cfg()
    assert cfg.loss.consistency_scale_lock is False
