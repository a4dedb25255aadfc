"""Discriminators of the adversarial branch: DASP's SPLB discriminator and RNW's PatchGAN.

:class:`Discriminator` (paper: four SPLB = STLM + ASLM; details ours, see
:mod:`dasp_core.models.blocks`) judges a *temporal stack* of mean-normalised disparity maps
``[B, T, C, H, W]`` (T = 3 frames t-1, t, t+1 by default): "real" stacks come from the frozen day
model on day clips, "fake" stacks from the night model on night clips (unpaired). It returns
patch logits ``[B, 1, h, w]`` with ``h = ⌊H / 2^num_blocks⌋`` (6 x 20 at 96 x 320), to be used
with a least-squares GAN loss (``dasp_core.losses.adversarial``).

Design decisions (all ours; the paper's body is not available):

* **Where the time axis is folded.** The time axis is kept through all SPLBs (each block
  processes ``B * T`` frames and its STLM differences features across T) and is folded into
  channels (frame-major, ``[B, T * C, h, w]``) only in the PatchGAN head. Folding after the
  first block would leave the STLMs of blocks 2-4 nothing to difference, although the paper
  puts an STLM in every SPLB; keeping T lets motion be seen at every scale — fine blur at
  stride 2, whole moving cars at stride 16. The price is T times the per-frame cost (T = 3 is
  small), measured in ``docs/models.md``.
* **Spectral normalisation on every conv (default on).** The adversarial weight in the night
  loss is small (RNW: 2.5e-4) and the discriminator must not overpower the depth network's
  photometric objective; spectral norm bounds the discriminator's Lipschitz constant and is
  the standard stabiliser for LSGAN/hinge discriminators. It replaces BatchNorm, which with CPU
  batches of 2-8 has noisy statistics and, because real and fake batches pass through D
  separately, would let D tell them apart by batch statistics instead of per-sample structure.
  Per-pixel LayerNorm (per sample) is used only as pre-norm inside the attention/FFN
  branches. ``spectral_norm=False`` is kept for experiments.
* **Position channels** (``position_channels=True``): two maps (row / (H-1), column / (W-1), in
  [0, 1], RNW's layout) are appended to every frame *inside* the network, so callers pass only
  disparities. ``in_channels`` counts the channels the caller passes.
* **Input normalisation** is the caller's job (RNW divides each map by its mean);
  :func:`mean_normalise_stack` does it for a whole stack.

:class:`PatchDiscriminator` is RNW's baseline: pix2pix's 3-layer ``NLayerDiscriminator``
(4x4 convs, BatchNorm, LeakyReLU 0.2) on one map ``[B, C, H, W]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Sequence

import torch
import torch.nn as nn

from dasp_core.errors import ConfigError, check_choice
from dasp_core.models.blocks import (SPLB, act_layer, check_bool, check_int, maybe_spectral_norm,
                                     position_maps)

__all__ = ["DiscriminatorConfig", "Discriminator", "PatchDiscriminator", "mean_normalise_stack"]


def mean_normalise_stack(disp: torch.Tensor, per_frame: bool = False,
                         eps: float = 1e-7) -> torch.Tensor:
    """Divide disparities by their mean so the discriminator sees shape, not scale.

    Args:
        disp: ``[B, T, C, H, W]`` disparity stack (or ``[B, C, H, W]`` single maps, which are
            always normalised per map like RNW).
        per_frame: normalise each frame by its own mean. Default False (ours): one mean per
            stack keeps relative scale changes between frames — a temporal-consistency cue the
            STLM can judge — while removing the scale ambiguity of monocular depth.
        eps: guards against a zero mean.
    Returns:
        Tensor of the same shape, unitless.
    """
    if disp.dim() == 4:
        dims: tuple[int, ...] = (1, 2, 3)
    elif disp.dim() == 5:
        dims = (2, 3, 4) if per_frame else (1, 2, 3, 4)
    else:
        raise ValueError(f"mean_normalise_stack expects [B,T,C,H,W] or [B,C,H,W], "
                         f"got {tuple(disp.shape)}")
    return disp / (disp.mean(dim=dims, keepdim=True) + eps)


@dataclass
class DiscriminatorConfig:
    """Configuration of :class:`Discriminator` (YAML key ``model.discriminator``).

    Attributes:
        in_channels: channels per frame the caller passes (1 = disparity).
        seq_len: frames per stack T (3 = t-1, t, t+1); fixed because the head folds T into
            channels. At least 2 when ``use_stlm``.
        base_channels: width of the first SPLB; block i has ``base * 2^min(i, 3)`` channels.
        num_blocks: number of SPLBs (paper: 4); output stride ``2^num_blocks``.
        use_stlm, use_aslm: ablation switches (False = plain conv of similar capacity).
        kernel_sizes: lengths k of the 1xk / kx1 depth-wise convs in ASLM (odd, >= 3).
        position_channels: append normalised row/column maps to every frame (ours, from RNW).
        attention_head_dim: channels per attention head (ours: 32); a block with C channels
            uses ``max(1, C // attention_head_dim)`` heads (reduced until they divide C). Wide
            heads run much faster on CPU than many 8-channel heads.
        spectral_norm: spectral normalisation on every conv (ours; see module docstring).
    """

    in_channels: int = 1
    seq_len: int = 3
    base_channels: int = 32
    num_blocks: int = 4
    use_stlm: bool = True
    use_aslm: bool = True
    kernel_sizes: Sequence[int] = (3, 7, 11)
    position_channels: bool = False
    attention_head_dim: int = 32
    spectral_norm: bool = True

    def validate(self, prefix: str = "model.discriminator") -> "DiscriminatorConfig":
        check_int(f"{prefix}.in_channels", self.in_channels, 1, 64)
        check_bool(f"{prefix}.use_stlm", self.use_stlm)
        check_bool(f"{prefix}.use_aslm", self.use_aslm)
        check_bool(f"{prefix}.position_channels", self.position_channels)
        check_bool(f"{prefix}.spectral_norm", self.spectral_norm)
        check_int(f"{prefix}.seq_len", self.seq_len, 1, 16)
        if self.use_stlm and self.seq_len < 2:
            raise ConfigError(f"{prefix}.seq_len", self.seq_len,
                              "an integer in [2, 16] when use_stlm is true (STLM differences "
                              "frames); set use_stlm: false for single maps")
        check_int(f"{prefix}.num_blocks", self.num_blocks, 1, 6)
        check_int(f"{prefix}.attention_head_dim", self.attention_head_dim, 1, 1024)
        check_int(f"{prefix}.base_channels", self.base_channels, 1, 1024)
        ks = self.kernel_sizes
        if isinstance(ks, (str, bytes)) or not isinstance(ks, (list, tuple)) or not ks:
            raise ConfigError(f"{prefix}.kernel_sizes", ks,
                              "a non-empty list of odd integers in [3, 31]")
        for k in ks:
            if isinstance(k, bool) or not isinstance(k, int) or k < 3 or k % 2 == 0 or k > 31:
                raise ConfigError(f"{prefix}.kernel_sizes", list(ks),
                                  "a non-empty list of odd integers in [3, 31]")
        return self

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["kernel_sizes"] = list(self.kernel_sizes)
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any],
                  prefix: str = "model.discriminator") -> "DiscriminatorConfig":
        known = set(cls.__dataclass_fields__)
        for k in d:
            if k not in known:
                raise ConfigError(f"{prefix}.{k}", d[k], "known keys: " + ", ".join(sorted(known)))
        d = dict(d)
        if isinstance(d.get("kernel_sizes"), list):
            d["kernel_sizes"] = tuple(d["kernel_sizes"])
        return cls(**d).validate(prefix)

    def block_channels(self) -> list[int]:
        """Output channels of each SPLB."""
        return [self.base_channels * 2 ** min(i, 3) for i in range(self.num_blocks)]

    def block_heads(self) -> list[int]:
        """Attention heads of each SPLB (a divisor of its channels)."""
        heads = []
        for c in self.block_channels():
            h = max(1, c // self.attention_head_dim)
            while c % h:
                h -= 1
            heads.append(h)
        return heads


class Discriminator(nn.Module):
    """DASP discriminator: ``seq [B, T, C, H, W] → logits [B, 1, ⌊H/2^n⌋, ⌊W/2^n⌋]``.

    ``n = cfg.num_blocks`` SPLBs keep the time axis; the head folds T into channels and applies
    ``conv3x3(T*C_last → C_last) → LeakyReLU → conv3x3(C_last → 1)`` (PatchGAN-style
    patch logits, no sigmoid: use LSGAN or a logits-based loss). H and W must be at least
    ``2^n``; any such size works (multiples of ``2^n`` give exact output sizes).
    """

    def __init__(self, cfg: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        self.cfg = (cfg or DiscriminatorConfig()).validate()
        c = self.cfg
        chans = c.block_channels()
        cin = c.in_channels + (2 if c.position_channels else 0)
        blocks = []
        for cout, heads in zip(chans, c.block_heads()):
            blocks.append(SPLB(cin, cout, c.use_stlm, c.use_aslm, c.kernel_sizes, heads,
                               c.spectral_norm))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Sequential(
            maybe_spectral_norm(nn.Conv2d(c.seq_len * chans[-1], chans[-1], 3, padding=1),
                                c.spectral_norm),
            act_layer(),
            maybe_spectral_norm(nn.Conv2d(chans[-1], 1, 3, padding=1), c.spectral_norm))

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        if seq.dim() != 5:
            raise ValueError(f"Discriminator expects [B, T, C, H, W], got {tuple(seq.shape)}")
        B, T, C, H, W = seq.shape
        if T != c.seq_len:
            raise ValueError(f"Discriminator built for seq_len={c.seq_len} frames, got T={T}")
        if C != c.in_channels:
            raise ValueError(f"Discriminator built for in_channels={c.in_channels}, got C={C}")
        side = 2 ** c.num_blocks
        if H < side or W < side:
            raise ValueError(f"Discriminator input {H}x{W} is smaller than 2^num_blocks={side}")
        x = seq
        if c.position_channels:
            pos = position_maps(B, H, W, seq.device, seq.dtype)
            x = torch.cat([x, pos.unsqueeze(1).expand(B, T, 2, H, W)], dim=2)
        for block in self.blocks:
            x = block(x)
        return self.head(x.flatten(1, 2))


class PatchDiscriminator(nn.Module):
    """RNW's baseline discriminator: pix2pix ``NLayerDiscriminator`` on one map.

    ``x [B, C, H, W] → logits [B, 1, h, w]`` with ``h = H / 2^n_layers - 2`` for H a multiple of
    ``2^n_layers`` (e.g. 96x320, n_layers=3 → 10x38). Layers: 4x4 stride-2 conv
    (``C → base``) + LeakyReLU 0.2; ``n_layers - 1`` x [4x4 stride-2 conv, norm, LeakyReLU] with
    width doubling up to ``8 * base``; 4x4 stride-1 conv, norm, LeakyReLU; 4x4 stride-1 conv to 1
    channel. ``norm="batch"`` as in pix2pix/RNW (the baseline), ``"instance"``, ``"spectral"``
    (spectral norm on every conv, no norm layer) or ``"none"``.
    ``position_channels=True`` appends RNW's two position maps inside (``in_channels`` counts
    only what the caller passes).
    """

    NORMS = ("batch", "instance", "spectral", "none")

    def __init__(self, in_channels: int = 1, base_channels: int = 64, n_layers: int = 3,
                 norm: str = "batch", position_channels: bool = False) -> None:
        super().__init__()
        prefix = "model.patch_discriminator"
        check_int(f"{prefix}.in_channels", in_channels, 1, 64)
        check_int(f"{prefix}.base_channels", base_channels, 1, 1024)
        check_int(f"{prefix}.n_layers", n_layers, 1, 6)
        check_choice(f"{prefix}.norm", norm, self.NORMS)
        check_bool(f"{prefix}.position_channels", position_channels)
        self.in_channels = in_channels
        self.n_layers = n_layers
        self.position_channels = position_channels
        sn = norm == "spectral"
        use_bias = norm in ("instance", "spectral", "none")  # pix2pix: no bias before BatchNorm

        def norm_layer(ch: int) -> nn.Module:
            if norm == "batch":
                return nn.BatchNorm2d(ch)
            if norm == "instance":
                return nn.InstanceNorm2d(ch)
            return nn.Identity()

        cin = in_channels + (2 if position_channels else 0)
        layers: list[nn.Module] = [maybe_spectral_norm(nn.Conv2d(cin, base_channels, 4, 2, 1), sn),
                                   nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            layers += [maybe_spectral_norm(nn.Conv2d(base_channels * prev, base_channels * mult,
                                                     4, 2, 1, bias=use_bias), sn),
                       norm_layer(base_channels * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2 ** n_layers, 8)
        layers += [maybe_spectral_norm(nn.Conv2d(base_channels * prev, base_channels * mult,
                                                 4, 1, 1, bias=use_bias), sn),
                   norm_layer(base_channels * mult), nn.LeakyReLU(0.2, True),
                   maybe_spectral_norm(nn.Conv2d(base_channels * mult, 1, 4, 1, 1), sn)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"PatchDiscriminator expects [B, {self.in_channels}, H, W], "
                             f"got {tuple(x.shape)}")
        H, W = x.shape[-2:]
        side = 2 ** (self.n_layers + 2)
        if H < side or W < side:
            raise ValueError(f"PatchDiscriminator input {H}x{W} is smaller than {side}x{side}")
        if self.position_channels:
            x = torch.cat([x, position_maps(x.shape[0], H, W, x.device, x.dtype)], dim=1)
        return self.model(x)
