"""Edge-aware disparity smoothness (monodepth2 / RNW; ours, the DASP paper is silent)."""

from __future__ import annotations

import torch

__all__ = ["edge_aware_smoothness"]


def edge_aware_smoothness(disp: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """First-order smoothness of mean-normalised disparity, relaxed at image edges.

    ``L = mean(|∂x d*| exp(−|∂x I|)) + mean(|∂y d*| exp(−|∂y I|))`` with
    ``d* = d / mean(d)`` per image (so the loss cannot shrink by shrinking the disparity
    scale, as in monodepth2) and ``|∂I|`` the channel mean of the absolute image gradient.
    Callers weight it per scale (RNW: 1e-3 / 2^scale).

    Args:
        disp: ``[B, 1, H, W]`` disparity (any positive scale, e.g. the sigmoid output).
        image: ``[B, C, H, W]`` image at the same resolution, values in [0, 1].
    Returns:
        Scalar loss (unitless), 0 for a constant disparity.
    """
    if disp.dim() != 4 or disp.shape[1] != 1:
        raise ValueError(f"disp must be [B, 1, H, W], got shape {tuple(disp.shape)}")
    if image.dim() != 4 or image.shape[0] != disp.shape[0] or image.shape[-2:] != disp.shape[-2:]:
        raise ValueError(f"image must be [B, C, H, W] matching disp {tuple(disp.shape)} in "
                         f"batch and size, got shape {tuple(image.shape)}")
    if disp.shape[-1] < 2 or disp.shape[-2] < 2:
        raise ValueError(f"disp must be at least 2x2 pixels, got {tuple(disp.shape[-2:])}")
    mean = disp.mean(dim=(2, 3), keepdim=True)
    norm = disp / (mean + 1e-7)

    grad_d_x = (norm[:, :, :, :-1] - norm[:, :, :, 1:]).abs()
    grad_d_y = (norm[:, :, :-1, :] - norm[:, :, 1:, :]).abs()
    grad_i_x = (image[:, :, :, :-1] - image[:, :, :, 1:]).abs().mean(1, keepdim=True)
    grad_i_y = (image[:, :, :-1, :] - image[:, :, 1:, :]).abs().mean(1, keepdim=True)
    return ((grad_d_x * torch.exp(-grad_i_x)).mean()
            + (grad_d_y * torch.exp(-grad_i_y)).mean())
