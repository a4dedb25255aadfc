"""3D consistency projection loss.

Paper: target and source frames are projected into one shared 3D space and their 3D
discrepancy is penalised. The paper's equations are not available to us; this module is our
reading (ours, see ``/work/shared/DASP.md``):

* lift the target pixels with ``D_t``, move them into the source camera with ``T_s_t``
  (the paper's T_t→s) and project them;
* sample the source's own 3D points (``D_s`` back-projected) at those pixels and compare the
  two point sets in source-camera space;
* do the same from source to target with ``T_t_s = T_s_t^-1`` and average both directions.

Units: depths in metres, ``K`` in pixels, poses as ``[B, 4, 4]`` rigid transforms.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from dasp_core.errors import check_range
from dasp_core.geometry import (backproject, invert_pose, pixels_to_grid, project,
                                transform_points)

__all__ = ["DEFAULT_OCCLUSION_TOLERANCE", "MASKS", "NORMALISERS", "consistency_3d_error",
           "consistency_3d_loss"]

#: Forms of the error's depth normaliser ``z_ab + z_b``: ``pixel`` keeps it in the graph per
#: pixel (SC-SfMLearner); ``scene`` keeps its value but lets the gradient through only the
#: pair's mean depth; ``spread`` lets it through the pair's geometric mean depth times its
#: spread of log depth (ours, both; see :func:`consistency_3d_error`).
NORMALISERS = ("pixel", "scene", "spread")

#: Which disagreeing points the error leaves out: ``occlusion`` drops a projected point that lies
#: more than the tolerance *behind* the surface the other camera sees there (it is hidden:
#: a static scene with exact depths allows that and nothing else); ``symmetric`` also drops
#: points more than the tolerance *in front of* it (ours, see :func:`consistency_3d_error`).
MASKS = ("occlusion", "symmetric")

#: Relative depth margin of the occlusion test (ours). A projected point counts as occluded
#: when it lies more than 20 % behind the surface the other camera sees at that pixel. 20 % is
#: above the frame-to-frame disagreement of a depth network in training (a few to ~15 %
#: AbsRel between neighbouring frames) and the error of bilinearly sampling slanted surfaces
#: (a grazing road changes depth by several % per pixel far away), so genuine surfaces are not
#: thrown away; it is below the relative depth jump at typical occlusion boundaries in driving
#: scenes (a car or pole in front of buildings or sky: 50 % to several times), so occluded
#: points are not compared with their occluder.
DEFAULT_OCCLUSION_TOLERANCE = 0.2


def _check_inputs(depth_t: torch.Tensor, depth_s: torch.Tensor, T_s_t: torch.Tensor,
                  K: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    if depth_t.dim() != 4 or depth_t.shape[1] != 1:
        raise ValueError(f"depth_t must be [B, 1, H, W] metres, got {tuple(depth_t.shape)}")
    if depth_s.shape != depth_t.shape:
        raise ValueError(f"depth_s {tuple(depth_s.shape)} must match depth_t "
                         f"{tuple(depth_t.shape)}")
    B = depth_t.shape[0]
    if K.shape == (3, 3):
        K = K.expand(B, 3, 3)
    if K.shape != (B, 3, 3):
        raise ValueError(f"K must be [B, 3, 3] (or [3, 3]) pixel intrinsics, got {tuple(K.shape)}")
    if T_s_t.shape == (4, 4):
        T_s_t = T_s_t.expand(B, 4, 4)
    if T_s_t.shape != (B, 4, 4):
        raise ValueError(f"T_s_t must be [B, 4, 4], got {tuple(T_s_t.shape)}")
    return K.to(depth_t.dtype), T_s_t.to(depth_t.dtype)


def _check_mask(name: str, mask: Optional[torch.Tensor], like: torch.Tensor
                ) -> Optional[torch.Tensor]:
    if mask is None:
        return None
    if mask.shape != like.shape:
        raise ValueError(f"{name} must be [B, 1, H, W] = {tuple(like.shape)}, "
                         f"got {tuple(mask.shape)}")
    return mask.to(torch.bool)


def consistency_3d_error(depth_a: torch.Tensor, depth_b: torch.Tensor, T_b_a: torch.Tensor,
                         K: torch.Tensor, valid_a: Optional[torch.Tensor] = None,
                         valid_b: Optional[torch.Tensor] = None,
                         occlusion_tolerance: Optional[float] = DEFAULT_OCCLUSION_TOLERANCE,
                         min_depth: float = 1e-3, normaliser: str = "pixel",
                         mask_mode: str = "occlusion", min_parallax: float = 0.0
                         ) -> Tuple[torch.Tensor, torch.Tensor]:
    """One direction of the 3D consistency error: frame a's points against frame b's.

    Every pixel of a is lifted with ``depth_a``, moved into camera b (``X_b = T_b_a X_a``)
    and projected; b's own back-projected points are sampled there (bilinear,
    ``align_corners=False``) and compared in b's camera frame with a depth-normalised L1
    ``|P_ab − P_b|_1 / (z_ab + z_b)`` (ours) so near and far points weigh alike.

    The normaliser stays in the graph (as in SC-SfMLearner's geometry consistency loss
    ``|D_ab - D_b| / (D_ab + D_b)``), which makes the error exactly invariant to one global
    scale of depths and translation: ``error(s*D_a, s*D_b, s*t) = error(D_a, D_b, t)``, with
    zero gradient along ``s``. Monocular self-supervision fixes depth only up to that scale,
    so a scale-dependent term ends up choosing it: an earlier version detached the
    normaliser, which turned the numerator's linear dependence on the scale into a steady
    pull towards ever smaller depths and collapsed night models to the minimum depth
    (docs/benchmark_rnw_lambda.md, "What changed").

    Per pixel, though, a normaliser in the graph rewards growing depth wherever the two
    frames disagree: the error at a pixel falls as ``1/(z_ab + z_b)`` when both points move
    out along their rays, and near pixels, whose disagreement under forward motion is the
    largest, are pushed out the most, which compresses the depth range
    (``scripts/diag_3d_scale.py``, spread table). ``normaliser="scene"`` keeps the value
    but multiplies a detached per-pixel normaliser by ``m / stopgrad(m)`` (``m``: the
    pair's mean depth, per sample), so the global-scale invariance above still holds while a
    single pixel can lower its error only by bringing the two points together (ours). It
    halves the measured pull towards a narrower range but does not remove it: points that
    agree are easier to get with compressed depths (docs/training_recipe.md).

    ``normaliser="spread"`` removes that second pull (ours). Remapping both depth maps to
    ``G (D / G)^a`` (``G``: their geometric mean depth) multiplies every log-depth deviation
    by ``a``, so the part of the error that comes from the two frames disagreeing by a
    relative amount (noise in log depth, the bulk of it in training) grows like ``a``:
    squashing the range shrinks any frame-to-frame error. ``spread`` uses the detached
    per-pixel normaliser times ``g / stopgrad(g)`` with ``g = G σ`` (``σ``: standard
    deviation of log depth over both maps, per sample): the value is the same; a global
    scale moves ``g`` like ``scene``'s mean depth (scale-neutral with ``metric_pose``), and
    the remap moves it like ``a``, so for that part of the error the gradient along ``a``
    is zero. What is left pulls the range only where the motion between the frames asks
    for it (tests: ``test_consistency_spread_normaliser_*``).

    ``mask_mode="symmetric"`` (ours) also leaves out points more than ``occlusion_tolerance``
    *in front of* the surface the other camera sees at their pixel (``z_ab (1 + tol) < z_b``).
    With exact depths of a static scene that cannot happen; in training it happens where a
    network's depth edge is blurred or misplaced (a foreground point lands on background) and
    on moving objects. The one-sided occlusion test keeps exactly those pairs, with the
    largest errors, and their gradient pulls the background forward and pushes the foreground
    back — towards depth maps without edges. Symmetric leaves the loss to refine surfaces the
    two frames already roughly agree on (with fixed sources it helped at night:
    docs/training_recipe.md).

    ``min_parallax`` (pixels, ours) leaves out points whose depth the motion does not show:
    the distance between where a point projects in b at its depth and where it would project
    at infinite depth (same rotation, no translation) is below it. Such points (sky, far
    points near the direction of travel) land within a pixel of the same place whatever
    their depth, so their 3D error only compares two networks' guesses. The test uses the
    predicted ``depth_a``, so a point can leave the loss by being predicted farther, and at a
    high weight a model did (docs/training_recipe.md): not recommended for training.

    Args:
        depth_a, depth_b: ``[B, 1, H, W]`` z-depths in metres of views a and b.
        T_b_a: ``[B, 4, 4]`` a-camera → b-camera transform (metres).
        K: ``[B, 3, 3]`` pixel intrinsics of both views at H x W.
        valid_a, valid_b: optional ``[B, 1, H, W]`` bool masks of usable pixels (e.g. not
            sky, not a moving object) in a and b; b's is sampled at the projected pixels.
        occlusion_tolerance: relative margin of the occlusion test (``None`` disables it).
        min_depth: metres; points closer than this (or behind) a camera are dropped.
        normaliser: ``pixel``, ``scene`` or ``spread`` (:data:`NORMALISERS`).
        mask_mode: ``occlusion`` or ``symmetric`` (:data:`MASKS`); needs a tolerance.
        min_parallax: pixels at H x W; 0 keeps every point.
    Returns:
        ``(error [B, 1, H, W] unitless, mask [B, 1, H, W] bool)`` — mask marks pixels of a
        that land inside image b, in front of camera b, are not occluded in b (for
        ``symmetric``: nor far in front of b's surface), move at least ``min_parallax`` and
        are valid.
    """
    K, T_b_a = _check_inputs(depth_a, depth_b, T_b_a, K)
    _check_options(normaliser, mask_mode, occlusion_tolerance, min_parallax)
    return _one_way_error(depth_a, depth_b, T_b_a, K, _check_mask("valid_a", valid_a, depth_a),
                          _check_mask("valid_b", valid_b, depth_b), occlusion_tolerance,
                          min_depth, _normaliser_scale(depth_a, depth_b, normaliser, min_depth),
                          mask_mode, min_parallax)


def _check_options(normaliser: str, mask_mode: str, occlusion_tolerance: Optional[float],
                   min_parallax: float) -> None:
    if normaliser not in NORMALISERS:
        raise ValueError(f"normaliser must be one of {NORMALISERS}, got {normaliser!r}")
    if mask_mode not in MASKS:
        raise ValueError(f"mask_mode must be one of {MASKS}, got {mask_mode!r}")
    if mask_mode == "symmetric" and occlusion_tolerance is None:
        raise ValueError("mask_mode='symmetric' needs an occlusion_tolerance")
    if occlusion_tolerance is not None:
        check_range("occlusion_tolerance", occlusion_tolerance, 0.0, None)
    check_range("min_parallax", min_parallax, 0.0, None)


def _normaliser_scale(depth_a: torch.Tensor, depth_b: torch.Tensor, normaliser: str,
                      min_depth: float) -> Optional[torch.Tensor]:
    """``[B]`` the per-sample quantity (metres) through which the ``scene`` / ``spread``
    normaliser passes its gradient, or ``None`` for ``pixel``. Symmetric in a and b, so the
    two directions of :func:`consistency_3d_loss` share one."""
    if normaliser == "scene":
        return _pair_mean_depth(depth_a, depth_b)
    if normaliser == "spread":
        mu, sd = _pair_log_depth_stats(depth_a, depth_b, min_depth)
        return mu.exp() * sd
    return None


def _one_way_error(depth_a: torch.Tensor, depth_b: torch.Tensor, T_b_a: torch.Tensor,
                   K: torch.Tensor, valid_a: Optional[torch.Tensor],
                   valid_b: Optional[torch.Tensor], occlusion_tolerance: Optional[float],
                   min_depth: float, g: Optional[torch.Tensor], mask_mode: str,
                   min_parallax: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`consistency_3d_error` on checked inputs, with the normaliser's ``[B]`` gradient
    carrier ``g`` from :func:`_normaliser_scale` (``None``: per-pixel normaliser)."""
    H, W = depth_a.shape[-2:]

    pts_a = backproject(depth_a, K)
    pts_ab = transform_points(T_b_a, pts_a)
    pix, z_ab = project(pts_ab, K)
    grid = pixels_to_grid(pix, H, W)
    pts_b = F.grid_sample(backproject(depth_b, K), grid, mode="bilinear",
                          padding_mode="border", align_corners=False)
    z_b = pts_b[:, 2:3]

    with torch.no_grad():
        inside = ((pix[:, 0] >= -0.5) & (pix[:, 0] <= W - 0.5) &
                  (pix[:, 1] >= -0.5) & (pix[:, 1] <= H - 0.5)).unsqueeze(1)
        mask = inside & (z_ab > min_depth) & (z_b > min_depth) & (depth_a > min_depth)
        if occlusion_tolerance is not None:
            mask &= z_ab <= z_b * (1.0 + occlusion_tolerance)
            if mask_mode == "symmetric":
                mask &= z_ab * (1.0 + occlusion_tolerance) >= z_b
        if min_parallax > 0:
            rotation_only = T_b_a.clone()
            rotation_only[:, :3, 3] = 0
            pix_inf, _ = project(transform_points(rotation_only, pts_a), K)
            mask &= (pix - pix_inf).norm(dim=1, keepdim=True) >= min_parallax
        if valid_a is not None:
            mask &= valid_a
        if valid_b is not None:
            # nearest sampling: a pixel next to an invalid region is not half-valid
            sampled = F.grid_sample(valid_b.to(depth_b.dtype), grid, mode="nearest",
                                    padding_mode="zeros", align_corners=False)
            mask &= sampled > 0.5

    norm = (z_ab + z_b).clamp(min=2.0 * min_depth)
    if g is not None:  # same value; the gradient goes through one per-sample g
        g = g[:, None, None, None]
        norm = norm.detach() * (g / g.detach())
    error = (pts_ab - pts_b).abs().sum(dim=1, keepdim=True) / norm
    error = torch.where(mask, error, torch.zeros_like(error))
    return error, mask


def _pair_mean_depth(depth_a: torch.Tensor, depth_b: torch.Tensor) -> torch.Tensor:
    """``[B]`` mean depth (metres) of the two ``[B, 1, H, W]`` depth maps of each sample."""
    return 0.5 * (depth_a.flatten(1).mean(1) + depth_b.flatten(1).mean(1))


def _pair_log_depth_stats(depth_a: torch.Tensor, depth_b: torch.Tensor, min_depth: float
                          ) -> Tuple[torch.Tensor, torch.Tensor]:
    """``([B], [B])`` mean and standard deviation of log depth (log metres) over both
    ``[B, 1, H, W]`` maps of each sample; the deviation floored at 1e-6 so a constant map
    does not divide by zero."""
    logd = torch.cat([depth_a.flatten(1), depth_b.flatten(1)], 1).clamp(min=min_depth).log()
    return logd.mean(dim=1), logd.std(dim=1).clamp(min=1e-6)


def _translation_follows_depth(T: torch.Tensor, depth_a: torch.Tensor, depth_b: torch.Tensor
                               ) -> torch.Tensor:
    """``T`` with its translation times ``m / stopgrad(m)``, ``m`` = per-sample mean depth of
    the pair: equal values, gradient as if the translation scaled with the depths."""
    m = _pair_mean_depth(depth_a, depth_b)                                     # [B]
    ratio = (m / m.detach()).to(T.dtype)
    top = torch.cat([T[:, :3, :3], T[:, :3, 3:] * ratio[:, None, None]], dim=2)
    return torch.cat([top, T[:, 3:]], dim=1)


def consistency_3d_loss(depth_t: torch.Tensor, depth_s: torch.Tensor, T_s_t: torch.Tensor,
                        K: torch.Tensor, valid_t: Optional[torch.Tensor] = None, *,
                        valid_s: Optional[torch.Tensor] = None,
                        occlusion_tolerance: Optional[float] = DEFAULT_OCCLUSION_TOLERANCE,
                        min_depth: float = 1e-3, metric_pose: bool = False,
                        normaliser: str = "pixel", mask_mode: str = "occlusion",
                        min_parallax: float = 0.0, source_grad: bool = True
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Bidirectional 3D consistency projection loss (paper: the loss; ours: its form).

    Target→source (with ``T_s_t``) and source→target (with ``T_t_s = T_s_t^-1``) errors of
    :func:`consistency_3d_error`, averaged over the valid pixels of both directions together
    (ours: pooling keeps the loss monotone when one direction loses its pixels to the
    occlusion test). Gradients reach both depths and the pose.

    Args:
        depth_t: ``[B, 1, H, W]`` target depth D_t in metres.
        depth_s: ``[B, 1, H, W]`` source depth D_s in metres.
        T_s_t: ``[B, 4, 4]`` target-camera → source-camera transform (paper: T_t→s).
        K: ``[B, 3, 3]`` pixel intrinsics at H x W (shared by both frames).
        valid_t, valid_s: optional ``[B, 1, H, W]`` bool masks of usable pixels.
        occlusion_tolerance: see :data:`DEFAULT_OCCLUSION_TOLERANCE`; ``None`` disables.
        min_depth: metres, points nearer than this to a camera are dropped.
        metric_pose: ``T_s_t`` is fixed metric ego-motion (odometry), not a network's
            output. The error is scale-invariant only when the translation scales with the
            depths; with a fixed translation its share of the error, ~``|t| / (z_ab + z_b)``,
            falls as the depths grow, and a model whose frames disagree (any model in
            training) is pulled farther (``scripts/diag_3d_scale.py``: everywhere in
            s = 0.67-1.49 on a trained night model; detaching the normaliser instead pulls
            nearer, four times as hard). So the translation is multiplied by
            ``m / stopgrad(m)`` (``m``: the pair's mean depth, per sample): same value, but
            in the gradient it scales with the depths, and a global depth scale gets exactly
            zero gradient. The loss then shapes structure only and the photometric loss,
            whose metric poses fix the scale, owns the scale (ours). Zero gradient in
            depth space is not zero drift in training: through the network and Adam the
            loss still pushes the depth farther (``scripts/diag_3d_drift.py``);
            ``loss.consistency_scale_lock`` removes that push
            (:mod:`dasp_core.train.scale_lock`).
        normaliser: ``pixel``, ``scene`` or ``spread``, see :func:`consistency_3d_error`.
        mask_mode: ``occlusion`` or ``symmetric``, see :func:`consistency_3d_error`.
        min_parallax: pixels, see :func:`consistency_3d_error`.
        source_grad: ``False`` detaches ``depth_s``: the source's depth is a fixed reference
            and only ``D_t`` (and the pose) learn from the loss (ours). A frame then learns
            from the loss only as a target, from the sum of the pulls of its previous and
            next frame, which are opposite (on a night model, near range: −0.16 and +0.11;
            ``scripts/diag_3d_regions.py``); as a source it would get one of them alone.
    Returns:
        ``(loss, mask)``: scalar mean depth-normalised L1 (0 if no pixel is valid) and the
        ``[B, 1, H, W]`` bool mask of the target→source direction.
    """
    K, T_s_t = _check_inputs(depth_t, depth_s, T_s_t, K)
    _check_options(normaliser, mask_mode, occlusion_tolerance, min_parallax)
    valid_t = _check_mask("valid_t", valid_t, depth_t)
    valid_s = _check_mask("valid_s", valid_s, depth_s)
    if not source_grad:
        depth_s = depth_s.detach()
    if metric_pose:
        T_s_t = _translation_follows_depth(T_s_t, depth_t, depth_s)
    g = _normaliser_scale(depth_t, depth_s, normaliser, min_depth)
    err_ts, mask_ts = _one_way_error(depth_t, depth_s, T_s_t, K, valid_t, valid_s,
                                     occlusion_tolerance, min_depth, g, mask_mode, min_parallax)
    err_st, mask_st = _one_way_error(depth_s, depth_t, invert_pose(T_s_t), K, valid_s, valid_t,
                                     occlusion_tolerance, min_depth, g, mask_mode, min_parallax)
    count = (mask_ts.sum() + mask_st.sum()).clamp(min=1).to(err_ts.dtype)
    loss = (err_ts.sum() + err_st.sum()) / count
    return loss, mask_ts
