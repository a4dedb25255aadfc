"""Building blocks of the DASP discriminator: STLM, ASLM and the SPLB that joins them.

Tensor layout: a *temporal stack* is ``[B, T, C, H, W]`` (batch, time, channels, rows,
columns); per-frame modules take ``[N, C, H, W]`` with ``N = B * T``. Values are unitless
features (the discriminator's input is mean-normalised disparity, see
:mod:`dasp_core.models.discriminator`).

What the paper states ("paper"): each SPLB (spatiotemporal priors learning block) is an STLM
(spatial-based temporal learning module, *orthogonal differencing* along time) plus an ASLM
(axial spatial learning module, *local asymmetric convolutions* + *global axial attention*).
Everything else here — the exact differencing scheme, widths, the attention layout,
normalisation, spectral norm, the plain ablation replacements — is "ours" (the paper's body is
not available); the reasoning is given at each class.

The config checks :func:`check_int` and :func:`check_bool` are shared by the model configs.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from dasp_core.errors import ConfigError

__all__ = [
    "check_int", "check_bool", "act_layer", "maybe_spectral_norm", "position_maps",
    "ChannelLayerNorm",
    "temporal_orthogonal_differences", "STLM", "PlainTemporal", "LocalAsymmetricConv",
    "AxialAttention", "ASLM", "PlainSpatial", "SPLB",
]

LEAK = 0.2  # LeakyReLU slope of PatchGAN/DCGAN discriminators (ours, the usual choice)


# ----------------------------------------------------------------------------- config checks

def check_int(key: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """Return ``value`` if it is an integer (not a bool) in ``[lo, hi]``, else raise ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, value, _int_text(lo, hi))
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(key, value, _int_text(lo, hi))
    return value


def _int_text(lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return f"an integer in [{lo}, {hi}]"
    if lo is not None:
        return f"an integer >= {lo}"
    if hi is not None:
        return f"an integer <= {hi}"
    return "an integer"


def check_bool(key: str, value: Any) -> bool:
    """Return ``value`` if it is a real bool (YAML ``true``/``false``), else raise ConfigError."""
    if not isinstance(value, bool):
        raise ConfigError(key, value, (True, False))
    return value


# ----------------------------------------------------------------------------- small layers

def maybe_spectral_norm(module: nn.Module, enabled: bool) -> nn.Module:
    """Wrap a conv/linear layer in spectral normalisation when ``enabled``.

    Uses ``torch.nn.utils.parametrizations.spectral_norm`` (one power iteration per training
    forward; frozen in eval mode). The parameter becomes ``parametrizations.weight.original``.
    """
    return _spectral_norm(module) if enabled else module


def position_maps(batch: int, height: int, width: int, device: torch.device | None = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalised pixel-coordinate maps ``[B, 2, H, W]``: channel 0 = row / (H - 1), channel 1 =
    column / (W - 1), both in [0, 1] (RNW's ``use_position_map`` layout: height map first).

    They let a convolutional discriminator learn position-dependent priors (the road is at the
    bottom, the sky at the top), which translation-equivariant convolutions cannot.
    """
    ys = torch.linspace(0.0, 1.0, height, device=device, dtype=dtype) if height > 1 else \
        torch.zeros(1, device=device, dtype=dtype)
    xs = torch.linspace(0.0, 1.0, width, device=device, dtype=dtype) if width > 1 else \
        torch.zeros(1, device=device, dtype=dtype)
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=0)
    return grid.unsqueeze(0).expand(batch, 2, height, width)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of ``[N, C, H, W]`` at every pixel (pre-norm of the
    attention and FFN branches). Per-sample statistics (unlike BatchNorm) so real and fake
    batches never share statistics (ours)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = (x - mean).pow(2).mean(dim=1, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


def _conv(cin: int, cout: int, k: int | tuple[int, int], sn: bool, stride: int = 1,
          groups: int = 1) -> nn.Module:
    if isinstance(k, int):
        pad: int | tuple[int, int] = k // 2
    else:
        pad = (k[0] // 2, k[1] // 2)
    return maybe_spectral_norm(nn.Conv2d(cin, cout, k, stride=stride, padding=pad,
                                         groups=groups), sn)


def act_layer() -> nn.Module:
    """LeakyReLU(0.2), the activation of every discriminator layer (ours)."""
    return nn.LeakyReLU(LEAK, inplace=False)


# ----------------------------------------------------------------------------- STLM

def temporal_orthogonal_differences(f: torch.Tensor) -> torch.Tensor:
    """Forward temporal differences and their spatial differences ("orthogonal differencing").

    Args:
        f: ``[B, T, C, H, W]`` per-frame features, ``T >= 2``.
    Returns:
        ``[B, T - 1, 3C, H, W]``: for each ``t`` the concatenation of
        ``D = f[t+1] - f[t]`` (change along time), ``D[y+1] - D[y]`` (its change along H) and
        ``D[x+1] - D[x]`` (its change along W), the last row / column zero-padded.

    The two spatial differences of the temporal difference are discrete mixed derivatives
    ∂²f/∂t∂y and ∂²f/∂t∂x: they are zero where the whole neighbourhood changes alike (a global
    scale drift of the disparity, a uniformly brightening region) and large at the boundaries
    of what moves — exactly where night depth smears moving objects (ours, our reading of the
    paper's "orthogonal differencing": differencing along the axes orthogonal to time).
    A time-constant stack gives exactly zero.
    """
    d = f[:, 1:] - f[:, :-1]
    dh = F.pad(d[..., 1:, :] - d[..., :-1, :], (0, 0, 0, 1))
    dw = F.pad(d[..., :, 1:] - d[..., :, :-1], (0, 1, 0, 0))
    return torch.cat([d, dh, dw], dim=2)


class STLM(nn.Module):
    """Spatial-based temporal learning module (paper: orthogonal differencing along time).

    ``[B, T, C, H, W] → [B, T, C, H, W]`` (residual). Steps (ours):

    1. per-frame features ``f = LReLU(conv3x3(x))``, one conv shared by all frames;
    2. orthogonal differences (:func:`temporal_orthogonal_differences`) of ``f``;
    3. each frame ``t`` receives the forward (``f[t+1] - f[t]``) and backward
       (``f[t] - f[t-1]``) motion features with their spatial differences, zero where the
       neighbour frame does not exist, so the time axis keeps its length and frame ``t`` sees
       motion on both sides (a centred scheme);
    4. a 1x1 conv fuses ``[f, forward motion, backward motion]`` (7C channels) back to C and
       the result is added to the input.

    For a time-constant stack the motion part is exactly zero
    (:meth:`temporal_response`), so the module then acts as a per-frame conv; everything it
    adds beyond that is a function of change over time.
    """

    def __init__(self, channels: int, spectral_norm: bool = True) -> None:
        super().__init__()
        self.channels = channels
        self.frame_conv = _conv(channels, channels, 3, spectral_norm)
        self.fuse = _conv(7 * channels, channels, 1, spectral_norm)
        self.act = act_layer()

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, C, H, W]`` → shared-conv per-frame features of the same shape."""
        B, T = x.shape[:2]
        return self.act(self.frame_conv(x.flatten(0, 1))).unflatten(0, (B, T))

    def temporal_response(self, x: torch.Tensor) -> torch.Tensor:
        """Motion features ``[B, T, 6C, H, W]`` (forward then backward differences, each with
        its H and W differences); exactly zero for a time-constant stack."""
        return self._motion(self.frame_features(x))

    @staticmethod
    def _motion(f: torch.Tensor) -> torch.Tensor:
        od = temporal_orthogonal_differences(f)                 # [B, T-1, 3C, H, W]
        zero = od.new_zeros(od[:, :1].shape)
        forward = torch.cat([od, zero], dim=1)                  # frame t: f[t+1] - f[t]
        backward = torch.cat([zero, od], dim=1)                 # frame t: f[t] - f[t-1]
        return torch.cat([forward, backward], dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[1] < 2:
            raise ValueError(f"STLM expects [B, T>=2, C, H, W], got {tuple(x.shape)}")
        B, T = x.shape[:2]
        f = self.frame_features(x)
        z = torch.cat([f, self._motion(f)], dim=2).flatten(0, 1)
        return x + self.fuse(z).unflatten(0, (B, T))


class PlainTemporal(nn.Module):
    """Ablation stand-in for :class:`STLM` (``use_stlm=False``): a per-frame residual block
    ``x + conv3x3(LReLU(conv3x3(x)))`` with 18C² weights against STLM's 16C², so an ablation
    compares differencing against plain convolution of (slightly more than) equal capacity.
    ``[B, T, C, H, W] → [B, T, C, H, W]``; frames never interact here (ours)."""

    def __init__(self, channels: int, spectral_norm: bool = True) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels, 3, spectral_norm), act_layer(),
                                  _conv(channels, channels, 3, spectral_norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T = x.shape[:2]
        return x + self.body(x.flatten(0, 1)).unflatten(0, (B, T))


# ----------------------------------------------------------------------------- ASLM

class LocalAsymmetricConv(nn.Module):
    """Local asymmetric convolutions (paper: "local asymmetric convolutions").

    Parallel depth-wise ``1 x k`` and ``k x 1`` convolutions for every ``k`` in
    ``kernel_sizes`` (ours: 3, 7, 11 by default), concatenated (``2 * len(k) * C`` channels),
    LeakyReLU, then a 1x1 conv back to C. Thin horizontal and vertical kernels of several
    lengths respond to elongated structure — road edges, kerbs, poles, the horizon — at
    several scales for a small cost (depth-wise: ``2 * sum(k) * C`` weights).
    ``[N, C, H, W] → [N, C, H, W]`` (the branch only; the caller adds the residual).
    """

    def __init__(self, channels: int, kernel_sizes: Sequence[int],
                 spectral_norm: bool = True) -> None:
        super().__init__()
        branches = []
        for k in kernel_sizes:
            branches.append(_conv(channels, channels, (1, k), spectral_norm, groups=channels))
            branches.append(_conv(channels, channels, (k, 1), spectral_norm, groups=channels))
        self.branches = nn.ModuleList(branches)
        self.act = act_layer()
        self.mix = _conv(len(branches) * channels, channels, 1, spectral_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(self.act(torch.cat([b(x) for b in self.branches], dim=1)))


class AxialAttention(nn.Module):
    """Multi-head self-attention along one spatial axis (paper: "global axial attention").

    ``axis="h"``: every column is a sequence of H tokens; ``axis="w"``: every row is a
    sequence of W tokens. Cost O(H·W·(H+W)) for both axes instead of O((H·W)²) for full
    attention, and ``F.scaled_dot_product_attention`` picks a memory-efficient kernel, so the
    first block still fits CPU training at 96x320 (ours). No positional encoding: the
    depth-wise convolutions before it (zero padding marks the borders) and the optional
    position channels supply position (ours).
    ``[N, C, H, W] → [N, C, H, W]`` (the branch only; the caller adds the residual).
    """

    def __init__(self, channels: int, heads: int, axis: str, spectral_norm: bool = True) -> None:
        super().__init__()
        if axis not in ("h", "w"):
            raise ValueError(f"AxialAttention axis must be 'h' or 'w', got {axis!r}")
        if channels % heads:
            raise ValueError(f"AxialAttention: channels {channels} not divisible by heads {heads}")
        self.axis = axis
        self.heads = heads
        self.qkv = _conv(channels, 3 * channels, 1, spectral_norm)
        self.proj = _conv(channels, channels, 1, spectral_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, C, H, W = x.shape
        h, d = self.heads, C // self.heads
        qkv = self.qkv(x).view(N, 3, h, d, H, W)
        if self.axis == "w":   # sequences along W, one per (sample, row)
            seq = qkv.permute(1, 0, 4, 2, 5, 3).reshape(3, N * H, h, W, d)
        else:                  # sequences along H, one per (sample, column)
            seq = qkv.permute(1, 0, 5, 2, 4, 3).reshape(3, N * W, h, H, d)
        out = F.scaled_dot_product_attention(seq[0], seq[1], seq[2])
        if self.axis == "w":
            out = out.view(N, H, h, W, d).permute(0, 2, 4, 1, 3)
        else:
            out = out.view(N, W, h, H, d).permute(0, 2, 4, 3, 1)
        return self.proj(out.reshape(N, C, H, W))


class ASLM(nn.Module):
    """Axial spatial learning module (paper: local asymmetric convs + global axial attention).

    ``[N, C, H, W] → [N, C, H, W]``; four residual steps (ours)::

        x = x + LocalAsymmetricConv(x)           # local, multi-scale, oriented
        x = x + AxialAttention_H(LN(x))          # global context along columns
        x = x + AxialAttention_W(LN(x))          # global context along rows
        x = x + FFN(LN(x))                       # 1x1 C→2C→C, per pixel

    Local first so that attention tokens already carry neighbourhood (and border, hence
    position) information; pre-norm residuals keep the identity path clean, which matters with
    spectral-normalised layers.
    """

    def __init__(self, channels: int, kernel_sizes: Sequence[int], heads: int,
                 spectral_norm: bool = True, ffn_ratio: int = 2) -> None:
        super().__init__()
        self.local = LocalAsymmetricConv(channels, kernel_sizes, spectral_norm)
        self.norm_h = ChannelLayerNorm(channels)
        self.attn_h = AxialAttention(channels, heads, "h", spectral_norm)
        self.norm_w = ChannelLayerNorm(channels)
        self.attn_w = AxialAttention(channels, heads, "w", spectral_norm)
        self.norm_f = ChannelLayerNorm(channels)
        self.ffn = nn.Sequential(_conv(channels, ffn_ratio * channels, 1, spectral_norm),
                                 act_layer(),
                                 _conv(ffn_ratio * channels, channels, 1, spectral_norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.local(x)
        x = x + self.attn_h(self.norm_h(x))
        x = x + self.attn_w(self.norm_w(x))
        return x + self.ffn(self.norm_f(x))


class PlainSpatial(nn.Module):
    """Ablation stand-in for :class:`ASLM` (``use_aslm=False``): ``x + conv3x3(LReLU(conv3x3
    (x)))``, 18C² weights, about what ASLM has (6C² mix + 8C² attention + 4C² FFN + small
    depth-wise kernels), but only local 3x3 context (ours)."""

    def __init__(self, channels: int, spectral_norm: bool = True) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels, 3, spectral_norm), act_layer(),
                                  _conv(channels, channels, 3, spectral_norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


# ----------------------------------------------------------------------------- SPLB

class SPLB(nn.Module):
    """Spatiotemporal priors learning block (paper: STLM + ASLM; the down-sampling is ours).

    ``[B, T, Cin, H, W] → [B, T, Cout, ⌊H/2⌋, ⌊W/2⌋]``:

    1. per-frame 4x4 stride-2 conv ``Cin → Cout`` + LeakyReLU (the PatchGAN down-sampling
       layer; down-sampling first makes STLM and ASLM run at a quarter of the pixels);
    2. :class:`STLM` (or :class:`PlainTemporal` when ``use_stlm`` is False) across time;
    3. :class:`ASLM` (or :class:`PlainSpatial` when ``use_aslm`` is False) per frame.

    The time axis is kept, so every block's STLM differences features at its own scale.
    """

    def __init__(self, in_channels: int, out_channels: int, use_stlm: bool = True,
                 use_aslm: bool = True, kernel_sizes: Sequence[int] = (3, 7, 11),
                 heads: int = 4, spectral_norm: bool = True) -> None:
        super().__init__()
        self.down = maybe_spectral_norm(nn.Conv2d(in_channels, out_channels, 4, stride=2,
                                                  padding=1), spectral_norm)
        self.act = act_layer()
        self.temporal: nn.Module = (STLM(out_channels, spectral_norm) if use_stlm
                                    else PlainTemporal(out_channels, spectral_norm))
        self.spatial: nn.Module = (ASLM(out_channels, kernel_sizes, heads, spectral_norm)
                                   if use_aslm else PlainSpatial(out_channels, spectral_norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T = x.shape[:2]
        y = self.act(self.down(x.flatten(0, 1))).unflatten(0, (B, T))
        y = self.temporal(y)
        return self.spatial(y.flatten(0, 1)).unflatten(0, (B, T))
