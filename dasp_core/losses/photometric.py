"""Photometric reconstruction losses: SSIM, SSIM+L1 error, per-pixel minimum reprojection.

The DASP paper states that its photometric loss mixes SSIM and L1 (paper); the weights, the
3x3 SSIM window and the minimum-reprojection / auto-masking scheme follow monodepth2
(Godard et al., ICCV 2019) as used by RNW, the protocol DASP inherits (ours, paper silent).

Images are ``[B, C, H, W]`` float tensors, normally RGB in [0, 1]; errors are unitless.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from dasp_core.errors import check_range

__all__ = ["SSIM_C1", "SSIM_C2", "DEFAULT_ALPHA", "ssim", "photometric_error",
           "min_reprojection_loss"]

#: SSIM stabilising constants for a dynamic range of 1 (monodepth2: (0.01 L)^2, (0.03 L)^2).
SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2
#: Weight of the SSIM term against L1 (monodepth2 / RNW: 0.85).
DEFAULT_ALPHA = 0.85
#: Standard deviation of the tie-breaking noise added to identity errors (monodepth2: 1e-5).
DEFAULT_IDENTITY_NOISE = 1e-5


def _check_image_pair(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.dim() != 4:
        raise ValueError(f"{name_a} must be [B, C, H, W], got shape {tuple(a.shape)}")
    if a.shape != b.shape:
        raise ValueError(f"{name_a} {tuple(a.shape)} and {name_b} {tuple(b.shape)} "
                         "must have the same shape")
    if a.shape[-1] < 2 or a.shape[-2] < 2:
        raise ValueError(f"{name_a} must be at least 2x2 pixels for the 3x3 SSIM window, "
                         f"got {tuple(a.shape[-2:])}")


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Structural similarity map on 3x3 windows (monodepth2 style; ours, paper silent).

    Local means and (co)variances use a 3x3 box filter on reflection-padded images, so the
    map keeps the input size and borders are not darkened by zero padding.

    Args:
        x, y: ``[B, C, H, W]`` images with dynamic range 1 (the constants assume [0, 1]).
    Returns:
        ``[B, C, H, W]`` SSIM per pixel and channel, clamped to [-1, 1]; 1 where equal.
    """
    _check_image_pair("x", x, "y", y)
    x = F.pad(x, (1, 1, 1, 1), mode="reflect")
    y = F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x = F.avg_pool2d(x, 3, 1)
    mu_y = F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x * mu_x
    sigma_y = F.avg_pool2d(y * y, 3, 1) - mu_y * mu_y
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    num = (2 * mu_x * mu_y + SSIM_C1) * (2 * sigma_xy + SSIM_C2)
    den = (mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (sigma_x + sigma_y + SSIM_C2)
    return (num / den).clamp(-1.0, 1.0)


def photometric_error(pred: torch.Tensor, target: torch.Tensor,
                      alpha: float = DEFAULT_ALPHA) -> torch.Tensor:
    """Per-pixel photometric error ``α (1 − SSIM)/2 + (1 − α) |pred − target|``.

    Paper: "SSIM and L1"; α = 0.85 and the channel mean follow monodepth2/RNW (ours).

    Args:
        pred: ``[B, C, H, W]`` reconstructed (warped) image.
        target: ``[B, C, H, W]`` target image.
        alpha: SSIM weight in [0, 1].
    Returns:
        ``[B, 1, H, W]`` error, mean over channels; 0 where the images agree.
    """
    check_range("alpha", alpha, 0.0, 1.0)
    _check_image_pair("pred", pred, "target", target)
    l1 = (pred - target).abs().mean(1, keepdim=True)
    if alpha == 0.0:
        return l1
    ssim_err = ((1.0 - ssim(pred, target)) * 0.5).mean(1, keepdim=True)
    return alpha * ssim_err + (1.0 - alpha) * l1


def min_reprojection_loss(target: torch.Tensor, warped: Sequence[torch.Tensor],
                          sources: Sequence[torch.Tensor],
                          valid: Optional[Sequence[torch.Tensor]] = None,
                          automask: bool = True, alpha: float = DEFAULT_ALPHA, *,
                          identity_noise: float = DEFAULT_IDENTITY_NOISE,
                          generator: Optional[torch.Generator] = None
                          ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pixel minimum reprojection loss with auto-masking (monodepth2; ours, paper silent).

    For every pixel the loss takes the smallest photometric error over the warped sources, so
    a pixel occluded or out of view in one source is explained by another. Auto-masking
    drops pixels where some *unwarped* source already matches the target at least as well as
    the best warp (static camera, objects moving with the camera, textureless regions): the
    mask is ``min_warped_error < min_identity_error``. A tiny Gaussian noise (std
    ``identity_noise``, monodepth2 uses 1e-5) is added to the identity errors to break exact
    ties; pass a seeded ``generator`` for reproducible masks, or ``identity_noise=0`` for a
    deterministic rule in which exact ties are masked out.

    Args:
        target: ``[B, 3, H, W]`` target image I_t.
        warped: list of N ``[B, 3, H, W]`` source images warped into the target view.
        sources: list of N ``[B, 3, H, W]`` unwarped source images (same order as ``warped``).
            Only used for auto-masking; may be empty when ``automask=False``.
        valid: optional list of N ``[B, 1, H, W]`` bool masks (from
            :func:`dasp_core.geometry.warp_image`): an invalid pixel of a source is never its
            minimum, and pixels invalid in every source are excluded from the loss.
        automask: apply auto-masking.
        alpha: SSIM weight of :func:`photometric_error`.
        identity_noise: std of the tie-breaking noise on identity errors (>= 0).
        generator: optional ``torch.Generator`` for that noise (on the images' device).
    Returns:
        ``(loss, min_error, mask)``: ``loss`` is the scalar mean of ``min_error`` over the
        pixels in ``mask`` (0 if there are none; ours: mean over used pixels);
        ``min_error`` ``[B, 1, H, W]`` is the per-pixel minimum reprojection error (0 where
        no source is valid); ``mask`` ``[B, 1, H, W]`` bool marks the pixels used in the loss
        (auto-mask and at least one valid source).
    """
    if len(warped) == 0:
        raise ValueError("min_reprojection_loss: 'warped' must contain at least one image")
    if automask and len(sources) != len(warped):
        raise ValueError(f"min_reprojection_loss: automask needs one unwarped source per "
                         f"warped image, got {len(sources)} sources for {len(warped)} warped")
    if valid is not None and len(valid) != len(warped):
        raise ValueError(f"min_reprojection_loss: got {len(valid)} valid masks for "
                         f"{len(warped)} warped images")
    check_range("identity_noise", identity_noise, 0.0, None)
    B, _, H, W = target.shape

    errors = torch.cat([photometric_error(w, target, alpha) for w in warped], dim=1)
    if valid is not None:
        for i, v in enumerate(valid):
            if v.shape != (B, 1, H, W):
                raise ValueError(f"valid[{i}] must be [B, 1, H, W] = {(B, 1, H, W)}, "
                                 f"got {tuple(v.shape)}")
        valid_all = torch.cat([v.to(torch.bool) for v in valid], dim=1)
        # +inf is never the minimum while any source is valid; torch.where keeps the
        # gradients of the selected entries finite.
        errors = torch.where(valid_all, errors, torch.full_like(errors, float("inf")))
        any_valid = valid_all.any(dim=1, keepdim=True)
    else:
        any_valid = torch.ones((B, 1, H, W), dtype=torch.bool, device=target.device)

    min_error, _ = errors.min(dim=1, keepdim=True)
    min_error = torch.where(any_valid, min_error, torch.zeros_like(min_error))
    mask = any_valid

    if automask:
        with torch.no_grad():
            identity = torch.cat([photometric_error(s, target, alpha) for s in sources], dim=1)
            if identity_noise > 0:
                noise = torch.randn(identity.shape, generator=generator,
                                    device=identity.device, dtype=identity.dtype)
                identity = identity + identity_noise * noise
            min_identity, _ = identity.min(dim=1, keepdim=True)
            mask = mask & (min_error.detach() < min_identity)

    weight = mask.to(min_error.dtype)
    loss = (min_error * weight).sum() / weight.sum().clamp(min=1.0)
    return loss, min_error, mask
