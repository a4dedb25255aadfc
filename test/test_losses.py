"""Tests of dasp_core.losses on known values and an analytic ray-cast scene."""

import math

import pytest
import torch
import torch.nn.functional as F

from dasp_core import geometry as g
from dasp_core.errors import ConfigError
from dasp_core.losses import (ImagePool, consistency_3d_error, consistency_3d_loss,
                              discriminator_loss, edge_aware_smoothness, generator_loss,
                              min_reprojection_loss, photometric_error, ssim)
from dasp_core.losses.consistency3d import MASKS, NORMALISERS
from dasp_core.losses.photometric import SSIM_C1

D = torch.float64
H, W = 48, 64
K = torch.tensor([[[40.0, 0.0, 31.5], [0.0, 40.0, 23.5], [0.0, 0.0, 1.0]]], dtype=D)


# ----------------------------------------------------------------------------- analytic scene

ROOM_LO = torch.tensor([-4.0, -2.5, -2.0], dtype=D)   # x right, y down, z forward (metres)
ROOM_HI = torch.tensor([4.0, 1.5, 8.0], dtype=D)
PLATE_Z, PLATE_HALF = 3.0, 0.6                          # square plate facing the camera


def texture(X):
    """Smooth RGB texture as a function of world position X [3, N] (periods >= ~1.2 m)."""
    x, y, z = X
    r = 0.5 + 0.2 * torch.sin(2 * math.pi * x / 1.3 + 0.4) + 0.15 * torch.sin(2 * math.pi * y / 1.7)
    gch = 0.5 + 0.2 * torch.sin(2 * math.pi * (x + y) / 1.9) + 0.1 * torch.cos(2 * math.pi * z / 4.0)
    b = 0.5 + 0.2 * torch.cos(2 * math.pi * y / 1.2 + 1.0) + 0.15 * torch.sin(2 * math.pi * z / 3.1)
    return torch.stack([r, gch, b], 0)


def render(T_w_c, plate=False):
    """Ray-cast the inside of a box room (and optionally a plate) seen by camera T_w_c.

    Returns image [1, 3, H, W] and exact z-depth [1, 1, H, W] in metres.
    """
    rays = g.backproject(torch.ones(1, 1, H, W, dtype=D), K).reshape(3, -1)  # z = 1
    R, o = T_w_c[:3, :3], T_w_c[:3, 3]
    d = R @ rays
    bound = torch.where(d > 0, ROOM_HI[:, None], ROOM_LO[:, None])
    lam = ((bound - o[:, None]) / d).amin(0)  # exit distance of the convex room
    if plate:
        lp = (PLATE_Z - o[2]) / d[2]
        hit = o[:, None] + lp * d
        on = (lp > 0) & (hit[0].abs() <= PLATE_HALF) & (hit[1].abs() <= PLATE_HALF)
        lam = torch.where(on & (lp < lam), lp, lam)
    X = o[:, None] + lam * d
    img = texture(X).reshape(1, 3, H, W)
    return img, lam.reshape(1, 1, H, W)  # camera z of a ray with z-component 1 is lam


def pose(rx=0.0, ry=0.0, rz=0.0, tx=0.0, ty=0.0, tz=0.0):
    return g.pose_vec_to_matrix(torch.tensor([[rx, ry, rz]], dtype=D),
                                torch.tensor([[tx, ty, tz]], dtype=D))[0]


T_W_T = pose()                                              # target camera at the origin
T_W_S = pose(ry=0.04, rx=-0.01, tx=0.15, ty=0.02, tz=0.5)   # source: forward, right, yaw
T_S_T = (g.invert_pose(T_W_S) @ T_W_T).unsqueeze(0)


@pytest.fixture(scope="module")
def room():
    img_t, depth_t = render(T_W_T)
    img_s, depth_s = render(T_W_S)
    return img_t, depth_t, img_s, depth_s


def smooth_noise(seed, shape=(1, 3, 32, 40), sigma=3.0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(*shape, generator=gen, dtype=D)
    k = torch.arange(-7, 8, dtype=D)
    k = torch.exp(-k ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    C = shape[1]
    x = F.conv2d(F.pad(x, (7, 7, 0, 0), mode="circular"), k.view(1, 1, 1, -1).repeat(C, 1, 1, 1),
                 groups=C)
    x = F.conv2d(F.pad(x, (0, 0, 7, 7), mode="circular"), k.view(1, 1, -1, 1).repeat(C, 1, 1, 1),
                 groups=C)
    return (x - x.mean()) / x.std() * 0.15 + 0.5


# ----------------------------------------------------------------------------- SSIM / photometric

def test_ssim_identical_is_one_and_bounded():
    x = torch.rand(2, 3, 10, 12)
    torch.testing.assert_close(ssim(x, x), torch.ones_like(x))
    y = torch.rand(2, 3, 10, 12)
    s = ssim(x, y)
    assert s.shape == x.shape and s.min() >= -1 and s.max() <= 1 and s.mean() < 0.5
    torch.testing.assert_close(ssim(y, x), s)


def test_photometric_error_known_value_for_constant_images():
    a, b = 0.3, 0.5
    x, y = torch.full((1, 3, 5, 6), a, dtype=D), torch.full((1, 3, 5, 6), b, dtype=D)
    s = (2 * a * b + SSIM_C1) / (a * a + b * b + SSIM_C1)  # variance terms cancel
    expected = 0.85 * (1 - s) / 2 + 0.15 * abs(a - b)
    err = photometric_error(x, y)
    assert err.shape == (1, 1, 5, 6)
    torch.testing.assert_close(err, torch.full_like(err, expected))
    torch.testing.assert_close(photometric_error(x, y, alpha=0.0), torch.full_like(err, 0.2))


def test_photometric_error_zero_for_self_and_monotone_in_shift():
    img = smooth_noise(0)
    assert photometric_error(img, img).abs().max() == 0
    crop = img[..., 4:-4]
    errs = [photometric_error(img[..., 4 - s:img.shape[-1] - 4 - s], crop).mean().item()
            for s in (1, 2, 4)]
    assert 0 < errs[0] < errs[1] < errs[2]


def test_photometric_error_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same shape"):
        photometric_error(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 5))
    with pytest.raises(ConfigError, match="alpha"):
        photometric_error(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4), alpha=1.5)


# ----------------------------------------------------------------------------- warping the scene

def test_warp_with_exact_depth_and_pose_reproduces_target(room):
    img_t, depth_t, img_s, _ = room
    warped, valid = g.warp_image(img_s, depth_t, T_S_T, K)
    assert valid.float().mean() > 0.6
    err = photometric_error(warped, img_t)[valid].mean()
    assert err < 0.01, err
    for wrong in (pose(tx=0.1) @ T_S_T[0], pose(ry=0.02) @ T_S_T[0]):
        w2, v2 = g.warp_image(img_s, depth_t, wrong.unsqueeze(0), K)
        err2 = photometric_error(w2, img_t)[v2].mean()
        assert err2 > 4 * err, (err, err2)
    # a wrong depth scale: error grows with the scale error
    errs = []
    for scale in (1.0, 1.1, 1.3, 1.5):
        w3, v3 = g.warp_image(img_s, depth_t * scale, T_S_T, K)
        errs.append(photometric_error(w3, img_t)[v3].mean().item())
    assert all(a < b for a, b in zip(errs, errs[1:])) and errs[-1] > 4 * err, errs


# ----------------------------------------------------------------------------- min reprojection

def test_min_reprojection_picks_smaller_source():
    gen = torch.Generator().manual_seed(1)
    target = torch.rand(2, 3, 16, 20, generator=gen)
    left = torch.zeros(1, 1, 16, 20)
    left[..., :10] = 1.0
    noise = 0.3 * torch.rand(2, 3, 16, 20, generator=gen)
    w1 = (target + noise * (1 - left)).clamp(0, 1)   # good on the left half
    w2 = (target + noise * left).clamp(0, 1)         # good on the right half
    e1, e2 = photometric_error(w1, target), photometric_error(w2, target)
    loss, min_err, mask = min_reprojection_loss(target, [w1, w2], [], automask=False)
    torch.testing.assert_close(min_err, torch.minimum(e1, e2))
    assert mask.all() and mask.dtype == torch.bool and mask.shape == (2, 1, 16, 20)
    torch.testing.assert_close(loss, min_err.mean())
    assert (min_err < e1).any() and (min_err < e2).any()


def test_min_reprojection_respects_valid_masks():
    gen = torch.Generator().manual_seed(2)
    target = torch.rand(1, 3, 12, 14, generator=gen)
    w1 = target.clone()                                   # perfect but partly invalid
    w2 = (target + 0.2 * torch.rand(1, 3, 12, 14, generator=gen)).clamp(0, 1)
    v1 = torch.ones(1, 1, 12, 14, dtype=torch.bool)
    v1[..., :, :5] = False
    v2 = torch.ones_like(v1)
    v2[..., :3, :] = False
    e2 = photometric_error(w2, target)
    loss, min_err, mask = min_reprojection_loss(target, [w1, w2], [], valid=[v1, v2],
                                                automask=False)
    none_valid = ~v1 & ~v2
    only2 = ~v1 & v2
    torch.testing.assert_close(min_err[only2], e2[only2])      # invalid source never chosen
    assert torch.all(min_err[v1] == 0)
    assert torch.equal(mask, ~none_valid)                       # invalid-everywhere excluded
    assert torch.all(min_err[none_valid] == 0)
    torch.testing.assert_close(loss, min_err[mask].mean())
    assert torch.isfinite(loss)


def test_automask_masks_static_pair_and_keeps_moving_pair():
    img = smooth_noise(3)
    shifted = torch.roll(img, 2, dims=-1)
    # static camera: the unwarped sources equal the target, any warp is no better
    loss, _, mask = min_reprojection_loss(img, [shifted, shifted], [img.clone(), img.clone()])
    assert not mask.any() and loss == 0
    # moving camera, perfect warp: every pixel is kept
    loss, _, mask = min_reprojection_loss(img, [img.clone()], [shifted])
    assert mask.all() and loss == 0
    # exact ties without tie-breaking noise are masked out (deterministic rule)
    _, _, mask = min_reprojection_loss(img, [img.clone()], [img.clone()], identity_noise=0.0)
    assert not mask.any()


def test_automask_noise_is_reproducible_with_generator():
    img = smooth_noise(4)
    kw = dict(identity_noise=1e-5)
    m1 = min_reprojection_loss(img, [img.clone()], [img.clone()],
                               generator=torch.Generator().manual_seed(7), **kw)[2]
    m2 = min_reprojection_loss(img, [img.clone()], [img.clone()],
                               generator=torch.Generator().manual_seed(7), **kw)[2]
    assert torch.equal(m1, m2) and 0.2 < m1.float().mean() < 0.8  # ties broken at random


def test_min_reprojection_gradient_and_errors(room):
    img_t, depth_t, img_s, _ = room
    depth = (depth_t * 1.1).requires_grad_(True)
    warped, valid = g.warp_image(img_s, depth, T_S_T, K)
    loss, _, mask = min_reprojection_loss(img_t, [warped], [img_s], valid=[valid])
    loss.backward()
    assert torch.isfinite(depth.grad).all() and depth.grad[mask].abs().sum() > 0
    with pytest.raises(ValueError, match="at least one"):
        min_reprojection_loss(img_t, [], [])
    with pytest.raises(ValueError, match="unwarped source"):
        min_reprojection_loss(img_t, [img_s], [])


# ----------------------------------------------------------------------------- smoothness

def test_smoothness_constant_scale_noise_and_edges():
    gen = torch.Generator().manual_seed(5)
    img = torch.rand(2, 3, 16, 20, generator=gen)
    const = torch.full((2, 1, 16, 20), 0.3)
    assert edge_aware_smoothness(const, img) == 0
    ramp = torch.linspace(0.1, 0.5, 20).expand(2, 1, 16, 20).contiguous()
    noisy = ramp + 0.1 * torch.rand(2, 1, 16, 20, generator=gen)
    base = edge_aware_smoothness(noisy, img)
    torch.testing.assert_close(edge_aware_smoothness(noisy * 7.0, img), base)
    assert edge_aware_smoothness(noisy, img) > 2 * edge_aware_smoothness(ramp, img)
    # a disparity step is cheaper where the image has an edge at the same place
    step = torch.full((1, 1, 16, 20), 0.2)
    step[..., 10:] = 0.6
    flat = torch.full((1, 3, 16, 20), 0.5)
    edge = flat.clone()
    edge[..., 10:] = 1.0
    assert edge_aware_smoothness(step, edge) < 0.7 * edge_aware_smoothness(step, flat)
    with pytest.raises(ValueError, match="disp"):
        edge_aware_smoothness(torch.rand(1, 2, 4, 4), torch.rand(1, 3, 4, 4))
    with pytest.raises(ValueError, match="image"):
        edge_aware_smoothness(torch.rand(1, 1, 4, 4), torch.rand(1, 3, 4, 5))


# ----------------------------------------------------------------------------- 3D consistency

def test_consistency_zero_for_exact_scene(room):
    _, depth_t, _, depth_s = room
    loss, mask = consistency_3d_loss(depth_t, depth_s, T_S_T, K)
    assert mask.shape == (1, 1, H, W) and mask.dtype == torch.bool
    assert mask.float().mean() > 0.6
    assert loss < 2e-3, loss


def test_consistency_grows_with_depth_scale_error(room):
    _, depth_t, _, depth_s = room
    losses = [consistency_3d_loss(depth_t, depth_s * s, T_S_T, K)[0].item()
              for s in (1.0, 1.05, 1.1, 1.2, 1.4)]
    assert all(a < b for a, b in zip(losses, losses[1:])), losses
    losses = [consistency_3d_loss(depth_t * s, depth_s, T_S_T, K)[0].item()
              for s in (1.0, 0.95, 0.9, 0.8, 0.6)]
    assert all(a < b for a, b in zip(losses, losses[1:])), losses


def test_consistency_is_invariant_to_one_global_scale(room):
    """Scaling both depths and the translation by s changes neither the loss nor, to first
    order, anything at all: the gradient along s is zero. (A detached depth normaliser broke
    this and pulled the night models to the minimum depth.)"""
    _, depth_t, _, depth_s = room
    # imperfect depths, so the loss is not trivially zero
    noisy_s = depth_s * (1.0 + 0.05 * torch.sin(torch.arange(W, dtype=D) / 3.0))
    log_s = torch.zeros((), dtype=D, requires_grad=True)
    s = log_s.exp()
    T = T_S_T.clone()
    T_scaled = torch.cat([torch.cat([T[:, :3, :3], T[:, :3, 3:] * s], dim=2), T[:, 3:]], dim=1)
    loss, _ = consistency_3d_loss(depth_t * s, noisy_s * s, T_scaled, K)
    (grad,) = torch.autograd.grad(loss, log_s)
    assert loss.item() > 1e-3
    assert abs(grad.item()) < 1e-9 * max(1.0, loss.item()), grad
    for factor in (0.1, 3.0, 40.0):
        T_f = T.clone()
        T_f[:, :3, 3] *= factor
        scaled, _ = consistency_3d_loss(depth_t * factor, noisy_s * factor, T_f, K)
        torch.testing.assert_close(scaled, loss.detach(), rtol=1e-9, atol=1e-12)


def _scale_gradient(depth_t, depth_s, **kw):
    """d loss / d log s with both depths times s and the (metric) poses fixed."""
    log_s = torch.zeros((), dtype=D, requires_grad=True)
    loss, _ = consistency_3d_loss(depth_t * log_s.exp(), depth_s * log_s.exp(), T_S_T, K, **kw)
    (grad,) = torch.autograd.grad(loss, log_s)
    return loss, grad


def test_consistency_with_fixed_metric_poses_pulls_depth_farther(room):
    """The defect metric_pose removes: with odometry's fixed translation, a model that
    does not see the motion between frames (same depth map for both, as an untrained or
    night-blind network predicts) lowers the loss by pushing its depths farther."""
    _, depth_t, _, _ = room
    loss, grad = _scale_gradient(depth_t, depth_t.clone())
    assert loss.item() > 1e-3 and grad.item() < -0.1 * loss.item(), (loss, grad)


@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0])
def test_consistency_metric_pose_is_scale_neutral_with_the_same_value(room, scale):
    """metric_pose=True: same value as the plain loss; zero gradient along a global depth
    scale at any scale, so the scale stays the photometric loss's (metric poses) to set;
    structure errors still get their gradient."""
    _, depth_t, _, depth_s = room
    noisy_s = depth_s * (1.0 + 0.05 * torch.sin(torch.arange(W, dtype=D) / 3.0))
    plain = consistency_3d_loss(depth_t * scale, noisy_s * scale, T_S_T, K)[0]
    loss, grad = _scale_gradient(depth_t * scale, noisy_s * scale, metric_pose=True)
    torch.testing.assert_close(loss.detach(), plain, rtol=1e-12, atol=0)
    assert loss.item() > 1e-3
    assert abs(grad.item()) < 1e-9, grad
    bumpy = noisy_s.clone().requires_grad_(True)
    out, _ = consistency_3d_loss(depth_t, bumpy, T_S_T, K, metric_pose=True)
    (g,) = torch.autograd.grad(out, bumpy)
    assert g.abs().sum() > 0
    # exact depths stay a minimum: the loss is still ~0 there
    exact, _ = consistency_3d_loss(depth_t, depth_s, T_S_T, K, metric_pose=True)
    assert exact < 2e-3


@pytest.mark.parametrize("normaliser", ["scene", "spread"])
@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
def test_consistency_scene_normaliser_same_value_and_scale_neutral(room, scale, normaliser):
    """normaliser='scene' / 'spread': the pixel form's value; with metric poses still zero
    gradient along a global depth scale; structure errors keep their gradient."""
    _, depth_t, _, depth_s = room
    noisy_s = depth_s * (1.0 + 0.05 * torch.sin(torch.arange(W, dtype=D) / 3.0))
    plain = consistency_3d_loss(depth_t * scale, noisy_s * scale, T_S_T, K)[0]
    loss, grad = _scale_gradient(depth_t * scale, noisy_s * scale, metric_pose=True,
                                 normaliser=normaliser)
    torch.testing.assert_close(loss.detach(), plain, rtol=1e-12, atol=0)
    assert abs(grad.item()) < 1e-9, grad
    bumpy = noisy_s.clone().requires_grad_(True)
    out, _ = consistency_3d_loss(depth_t, bumpy, T_S_T, K, metric_pose=True,
                                 normaliser=normaliser)
    (g_,) = torch.autograd.grad(out, bumpy)
    assert g_.abs().sum() > 0


def _remap_loss(depth_t, depth_s, T, a, normaliser):
    """The loss with both depths remapped to ``M (D / M)^a`` (``M``: the pair's geometric
    mean depth), so ``a < 1`` squashes the depth range about M and ``a > 1`` stretches it."""
    M = torch.cat([depth_t.flatten(), depth_s.flatten()]).log().mean().exp()
    return consistency_3d_loss(M * (depth_t / M) ** a, M * (depth_s / M) ** a, T, K,
                               metric_pose=True, normaliser=normaliser)[0]


def test_consistency_spread_normaliser_does_not_reward_squashing_noise(room):
    """Two frames that disagree by relative noise, no motion: every consistency error of
    that kind shrinks when the depth range is squashed, and the pixel and scene forms pull
    the range narrower for it (what compressed full DASP's night depth). The spread form
    keeps the value and removes the pull: its gradient along the remap exponent ``a`` is
    < 10 % of the scene form's (measured 4 %: what is left is the per-pixel normaliser's
    share, detached as in ``scene``, weighted by where the errors lie in depth)."""
    _, depth_t, _, _ = room
    gen = torch.Generator().manual_seed(3)
    noisy = depth_t * torch.exp(0.05 * torch.randn(depth_t.shape, generator=gen, dtype=D))
    still = torch.eye(4, dtype=D).unsqueeze(0)
    grads = {}
    for norm in ("pixel", "scene", "spread"):
        a = torch.ones((), dtype=D, requires_grad=True)
        loss = _remap_loss(depth_t, noisy, still, a, norm)
        (grads[norm],) = torch.autograd.grad(loss, a)
        assert loss.item() > 1e-3
    assert grads["pixel"] > 0 and grads["scene"] > 0, grads
    assert abs(grads["spread"]) < 0.1 * grads["scene"], grads


def test_consistency_spread_normaliser_keeps_the_true_range_a_minimum(room):
    """With the real motion between the frames, the geometry still fixes the range: exact
    depths score ~0, and squashing or stretching them costs, in every form."""
    _, depth_t, _, depth_s = room
    for norm in ("pixel", "scene", "spread"):
        losses = [_remap_loss(depth_t, depth_s, T_S_T, torch.tensor(a, dtype=D), norm).item()
                  for a in (0.7, 0.85, 1.0, 1.2, 1.4)]
        assert losses[2] < 2e-3, (norm, losses)
        assert losses[0] > losses[1] > losses[2] < losses[3] < losses[4], (norm, losses)


def test_consistency_scene_normaliser_pulls_a_blind_region_out_less(room):
    """A network blind to the motion predicts the same map for both frames; under forward
    motion the pixel normaliser lowers the error of a region by moving it farther. The scene
    normaliser removes the normaliser's share of that pull (measured: ~22 %); what is left
    comes from the numerator (lateral disagreement shrinks as depth grows)."""
    _, depth_t, _, _ = room
    forward = g.invert_pose(pose(tz=0.5)).unsqueeze(0)          # source 0.5 m ahead
    region = torch.zeros(1, 1, H, W, dtype=D)
    region[..., H // 2 - 8:H // 2 + 8, W // 2 - 8:W // 2 + 8] = 1.0
    pulls = {}
    for norm in ("pixel", "scene"):
        log_r = torch.zeros((), dtype=D, requires_grad=True)
        d = depth_t * (log_r * region).exp()
        loss, _ = consistency_3d_loss(d, d.clone(), forward, K, metric_pose=True,
                                      normaliser=norm)
        (pulls[norm],) = torch.autograd.grad(loss, log_r)
    assert pulls["pixel"] < 0 and pulls["scene"] < 0, pulls
    assert abs(pulls["scene"]) < 0.85 * abs(pulls["pixel"]), pulls


def test_consistency_symmetric_mask_drops_points_in_front_only(room):
    """A patch of the source pushed 1.5x farther: the target's points there lie in front of
    the source's surface. The occlusion test keeps them (with the largest errors); the
    symmetric mask drops them and nothing else of the exact scene, and leaves a patch pulled
    nearer (points behind: occluded) masked as before."""
    _, depth_t, _, depth_s = room
    exact_occ = consistency_3d_loss(depth_t, depth_s, T_S_T, K)
    exact_sym = consistency_3d_loss(depth_t, depth_s, T_S_T, K, mask_mode="symmetric")
    assert (exact_sym[1] <= exact_occ[1]).all()
    assert exact_sym[1].float().mean() > 0.97 * exact_occ[1].float().mean()
    assert exact_sym[0] < 2e-3
    patch = torch.ones_like(depth_s)
    patch[..., 8:24, 12:28] = 1.5
    far_s = depth_s * patch
    occ_loss, occ_mask = consistency_3d_loss(depth_t, far_s, T_S_T, K)
    sym_loss, sym_mask = consistency_3d_loss(depth_t, far_s, T_S_T, K, mask_mode="symmetric")
    dropped = occ_mask & ~sym_mask
    assert dropped.sum() > 100, "the patch put no point in front: the test could not fail"
    assert (sym_mask <= occ_mask).all()
    # what was dropped is the patch seen from the target, and its error was the large one
    err, _ = consistency_3d_error(depth_t, far_s, T_S_T, K)
    assert err[dropped].mean() > 0.15 > err[sym_mask].mean()
    assert sym_loss < 0.5 * occ_loss
    # a patch pulled nearer: the target's points are behind it, masked in both modes alike
    near_s = depth_s / patch
    m_occ = consistency_3d_loss(depth_t, near_s, T_S_T, K)[1]
    m_sym = consistency_3d_loss(depth_t, near_s, T_S_T, K, mask_mode="symmetric")[1]
    assert (m_occ & ~m_sym).sum() < 0.02 * m_occ.sum()


def test_consistency_min_parallax_leaves_out_points_the_motion_does_not_show():
    """Sideways motion t: a point at depth z moves f t / z pixels relative to where it would
    land at infinity (known value). With min_parallax 1 px, a wall at the depth where that
    is 2 px stays in the loss, one where it is 0.5 px leaves it, and rotation alone (no
    parallax anywhere) leaves nothing."""
    fx = float(K[0, 0, 0])
    t = 0.2
    side = pose(tx=t).unsqueeze(0)
    for px, kept in ((2.0, True), (0.5, False)):
        wall = torch.full((1, 1, H, W), fx * t / px, dtype=D)
        err, mask = consistency_3d_error(wall, wall * 1.05, side, K, min_parallax=1.0)
        _, base = consistency_3d_error(wall, wall * 1.05, side, K)
        assert base.float().mean() > 0.5
        assert bool((mask == base).all()) if kept else not mask.any(), px
    turn = pose(ry=0.02).unsqueeze(0)
    wall = torch.full((1, 1, H, W), 3.0, dtype=D)
    assert not consistency_3d_error(wall, wall, turn, K, min_parallax=0.5)[1].any()
    assert consistency_3d_error(wall, wall, turn, K)[1].any()


def test_consistency_mask_mode_is_checked(room):
    _, depth_t, _, depth_s = room
    with pytest.raises(ValueError, match="mask_mode must be one of"):
        consistency_3d_loss(depth_t, depth_s, T_S_T, K, mask_mode="both")
    with pytest.raises(ValueError, match="needs an occlusion_tolerance"):
        consistency_3d_loss(depth_t, depth_s, T_S_T, K, mask_mode="symmetric",
                            occlusion_tolerance=None)
    with pytest.raises(ValueError, match="min_parallax"):
        consistency_3d_loss(depth_t, depth_s, T_S_T, K, min_parallax=-1.0)


@pytest.mark.parametrize("normaliser", ["pixel", "spread"])
def test_consistency_source_grad_off_leaves_the_target_gradient(room, normaliser):
    """source_grad=False: same value, no gradient reaches the source depth, and the target's
    (and the pose's) gradient is exactly what it was."""
    _, depth_t, _, depth_s = room
    noisy_s = depth_s * (1.0 + 0.05 * torch.sin(torch.arange(W, dtype=D) / 3.0))
    out = {}
    for flag in (True, False):
        dt = depth_t.clone().requires_grad_(True)
        ds = noisy_s.clone().requires_grad_(True)
        T = T_S_T.clone().requires_grad_(True)
        loss, _ = consistency_3d_loss(dt, ds, T, K, metric_pose=True, normaliser=normaliser,
                                      source_grad=flag)
        out[flag] = (loss.detach(),) + torch.autograd.grad(loss, (dt, ds, T),
                                                           allow_unused=True)
    on, off = out[True], out[False]
    torch.testing.assert_close(off[0], on[0], rtol=0, atol=0)
    assert on[2].abs().sum() > 0 and off[2] is None
    assert on[1].abs().sum() > 0
    torch.testing.assert_close(off[1], on[1], rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(off[3], on[3], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("normaliser", NORMALISERS)
@pytest.mark.parametrize("mask_mode", MASKS)
def test_consistency_loss_pools_the_two_public_directions(room, normaliser, mask_mode):
    """The loss is the pooled mean of consistency_3d_error target->source and source->target
    (the loss shares one normaliser carrier between them): same value, same gradients."""
    _, depth_t, _, depth_s = room
    noisy_s = depth_s * (1.0 + 0.05 * torch.sin(torch.arange(W, dtype=D) / 3.0))
    grads = []
    for pooled_by_hand in (False, True):
        dt = depth_t.clone().requires_grad_(True)
        ds = noisy_s.clone().requires_grad_(True)
        T = T_S_T.clone().requires_grad_(True)
        opts = dict(normaliser=normaliser, mask_mode=mask_mode, min_parallax=0.5)
        if pooled_by_hand:
            e1, m1 = consistency_3d_error(dt, ds, T, K, **opts)
            e2, m2 = consistency_3d_error(ds, dt, g.invert_pose(T), K, **opts)
            loss = (e1.sum() + e2.sum()) / (m1.sum() + m2.sum())
        else:
            loss, m1 = consistency_3d_loss(dt, ds, T, K, **opts)
        assert 0.3 < m1.float().mean() < 1.0
        grads.append((loss.detach(),) + torch.autograd.grad(loss, (dt, ds, T)))
    for a, b in zip(*grads):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)


def test_consistency_rejects_unknown_normaliser(room):
    _, depth_t, _, depth_s = room
    with pytest.raises(ValueError, match="normaliser must be one of"):
        consistency_3d_loss(depth_t, depth_s, T_S_T, K, normaliser="median")


@pytest.mark.parametrize("axis", ["tx", "tz", "ry"])
def test_consistency_grows_with_pose_error(room, axis):
    _, depth_t, _, depth_s = room
    sizes = (0.0, 0.02, 0.05, 0.1, 0.2) if axis != "ry" else (0.0, 0.005, 0.01, 0.02, 0.04)
    losses = [consistency_3d_loss(depth_t, depth_s, (pose(**{axis: e}) @ T_S_T[0])[None],
                                  K)[0].item() for e in sizes]
    assert all(a < b for a, b in zip(losses, losses[1:])), losses


def test_consistency_masks_occluded_pixels():
    """A plate in front of the far wall hides, in the source view, wall points the target sees."""
    T_w_s = pose(tx=0.8)
    T_s_t = (g.invert_pose(T_w_s) @ T_W_T)[None]
    _, depth_t = render(T_W_T, plate=True)
    _, depth_s = render(T_w_s, plate=True)
    loss, mask = consistency_3d_loss(depth_t, depth_s, T_s_t, K)
    loss_no_occ, mask_no_occ = consistency_3d_loss(depth_t, depth_s, T_s_t, K,
                                                   occlusion_tolerance=None)

    # analytic occlusion: the segment from the source centre to the target's 3D point
    # crosses the plate
    X = g.backproject(depth_t, K).reshape(3, -1)             # target frame = world
    o = T_w_s[:3, 3:4]
    s = (PLATE_Z - o[2]) / (X[2] - o[2])
    P = o + s * (X - o)
    occluded = ((s > 0) & (s < 0.999) & (P[0].abs() <= PLATE_HALF) & (P[1].abs() <= PLATE_HALF))
    occluded = occluded.reshape(1, 1, H, W)
    in_view = mask_no_occ
    assert (occluded & in_view).sum() > 30
    # allow a one-pixel band at the plate's silhouette, where bilinear sampling mixes depths
    band = F.max_pool2d(occluded.double(), 3, 1, 1).bool() & ~(-F.max_pool2d(
        -occluded.double(), 3, 1, 1)).bool()
    core_occ = occluded & in_view & ~band
    core_vis = ~occluded & in_view & ~band
    assert not mask[core_occ].any()
    assert mask[core_vis].float().mean() > 0.95
    assert loss < 0.25 * loss_no_occ, (loss, loss_no_occ)


def test_consistency_gradients_reach_depths_and_pose(room):
    _, depth_t, _, depth_s = room
    dt = (depth_t * 1.05).float().requires_grad_(True)
    ds = depth_s.float().requires_grad_(True)
    aa0, t0 = g.matrix_to_pose_vec(T_S_T)
    aa = (aa0 + 0.01).float().requires_grad_(True)
    t = (t0 + 0.03).float().requires_grad_(True)
    loss, mask = consistency_3d_loss(dt, ds, g.pose_vec_to_matrix(aa, t), K.float())
    loss.backward()
    for name, p in (("depth_t", dt), ("depth_s", ds), ("axis_angle", aa), ("translation", t)):
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert loss.dtype == torch.float32


def test_consistency_valid_masks_and_shape_errors(room):
    _, depth_t, _, depth_s = room
    valid_t = torch.ones(1, 1, H, W, dtype=torch.bool)
    valid_t[..., :, : W // 2] = False
    _, mask = consistency_3d_loss(depth_t, depth_s, T_S_T, K, valid_t)
    assert not mask[..., : W // 2].any() and mask[..., W // 2:].any()
    none = torch.zeros_like(valid_t)
    loss, mask = consistency_3d_loss(depth_t, depth_s * 2, T_S_T, K, none, valid_s=none)
    assert loss == 0 and not mask.any()
    with pytest.raises(ValueError, match="depth_s"):
        consistency_3d_loss(depth_t, depth_s[..., :-1], T_S_T, K)
    with pytest.raises(ValueError, match="T_s_t"):
        consistency_3d_loss(depth_t, depth_s, T_S_T[:, :3], K)


# ----------------------------------------------------------------------------- adversarial

def test_lsgan_known_values():
    ones, zeros = torch.ones(2, 1, 3, 4), torch.zeros(2, 1, 3, 4)
    assert generator_loss(ones) == 0
    assert generator_loss(zeros) == 1
    assert discriminator_loss(ones, zeros) == 0
    assert discriminator_loss(zeros, ones) == 1
    torch.testing.assert_close(discriminator_loss(ones * 0.5, zeros + 0.5), torch.tensor(0.25))


def test_vanilla_known_values():
    zeros = torch.zeros(2, 1, 3, 4)
    log2 = torch.tensor(math.log(2.0))
    torch.testing.assert_close(generator_loss(zeros, "vanilla"), log2)
    torch.testing.assert_close(discriminator_loss(zeros, zeros, "vanilla"), log2)
    big = torch.full((2, 1, 3, 4), 30.0)
    assert generator_loss(big, "vanilla") < 1e-10
    assert discriminator_loss(big, -big, "vanilla") < 1e-10
    assert generator_loss(-big, "vanilla") > 29.0  # non-saturating: strong gradient signal
    with pytest.raises(ConfigError, match="adversarial.kind"):
        generator_loss(zeros, "wgan")


def test_image_pool_shapes_capacity_and_mixing():
    pool = ImagePool(size=5, seed=0)
    first = torch.randn(3, 3, 1, 8, 8, requires_grad=True)
    out = pool.query(first)
    assert out.shape == first.shape and not out.requires_grad and len(pool) == 3
    torch.testing.assert_close(out, first.detach())      # filling: new samples returned
    n_old = 0
    for i in range(40):
        batch = torch.full((4, 3, 1, 8, 8), float(i + 10))
        out = pool.query(batch)
        assert out.shape == batch.shape and len(pool) <= 5
        n_old += int((out[:, 0, 0, 0, 0] != i + 10).sum())
    assert len(pool) == 5
    assert 0.3 < n_old / (40 * 4 - 2) < 0.7               # about half come from the pool
    with pytest.raises(ValueError, match="differs"):
        pool.query(torch.zeros(2, 3, 1, 4, 4))


def test_image_pool_state_dict_round_trip_restores_items_and_rng():
    def batches(seed, n=6):
        gen = torch.Generator().manual_seed(seed)
        return [torch.randn(3, 2, 1, 4, 4, generator=gen) for _ in range(n)]

    pool = ImagePool(size=4, seed=7)
    for b in batches(0):  # full, and the mixing has drawn from the RNG
        pool.query(b)
    state = pool.state_dict()
    kept = [t.clone() for t in state["items"]]
    assert state["size"] == 4 and len(state["items"]) == 4
    assert all(t.device.type == "cpu" for t in state["items"])

    restored = ImagePool(size=4, seed=123)  # another seed: the RNG must come from the state
    restored.load_state_dict(state)
    no_rng = ImagePool(size=4, seed=123)
    no_rng.load_state_dict({"items": state["items"], "rng": None})
    no_items = ImagePool(size=4, seed=123)
    no_items.load_state_dict({"items": [], "rng": state["rng"]})
    differs_rng = differs_items = False
    for b in batches(1):
        want = pool.query(b)
        assert torch.equal(restored.query(b), want)  # the next queries are identical
        differs_rng |= not torch.equal(no_rng.query(b), want)
        differs_items |= not torch.equal(no_items.query(b), want)
    assert differs_rng and differs_items  # both halves of the state matter
    assert torch.equal(torch.stack(restored._items), torch.stack(pool._items))
    assert all(torch.equal(a, b) for a, b in zip(state["items"], kept))  # a snapshot, not a view

    # older checkpoints stored only items and rng; a smaller pool keeps what it can return
    small = ImagePool(size=2)
    small.load_state_dict({"items": kept, "rng": state["rng"]})
    assert len(small) == 2
    with pytest.raises(ValueError, match="one shape"):
        small.load_state_dict({"items": [torch.zeros(2), torch.zeros(3)], "rng": None})


def test_image_pool_seeded_and_disabled():
    def run(seed):
        pool = ImagePool(size=4, seed=seed)
        return torch.cat([pool.query(torch.full((3, 2), float(i))) for i in range(10)])
    assert torch.equal(run(1), run(1))
    x = torch.randn(2, 3)
    assert torch.equal(ImagePool(size=0).query(x), x)
    with pytest.raises(ConfigError):
        ImagePool(size=-1)
