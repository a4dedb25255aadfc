"""DepthNet: torchvision encoder + monodepth2-style multi-scale sigmoid disparity decoder.

Choices (ours; the DASP paper does not publish its depth network): RNW/STEPS use a
ResNet-50 night depth net and monodepth2's decoder; we follow that design and also offer
ResNet-18/34 and MobileNetV3-Large encoders, the last for the small model the package ships
(≤ 25 MB) and for CPU-only robots.

Input: ``[B, 3, H, W]`` RGB in [0, 1], H and W multiples of 32. ImageNet normalisation happens
inside the network so that exported graphs take plain [0, 1] images.
Output: list of sigmoid disparities, index = scale s, shape ``[B, 1, H / 2^s, W / 2^s]``.
Map to metres with :func:`dasp_core.geometry.disp_to_depth` and the config's depth range.
"""

from __future__ import annotations

import math

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from dasp_core.errors import ConfigError, ModelFileError, check_choice, check_range

ENCODERS = ("resnet18", "resnet34", "resnet50", "mobilenet_v3_large")
DECODER_PADDINGS = ("reflect", "zeros")
DECODER_ACTIVATIONS = ("elu", "relu")
EXPOSURES = ("none", "log_mean")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class DepthNetConfig:
    """Configuration of :class:`DepthNet` (YAML key ``model.depth``).

    Attributes:
        encoder: one of ``ENCODERS``.
        pretrained_path: optional local file with torchvision ImageNet weights for the encoder
            (a ``state_dict``); never downloaded at run time.
        scales: output scales (0 = full resolution), subset of 0..3.
        decoder_channels: decoder widths from fine to coarse (5 values).
        min_depth, max_depth: metres, the range the sigmoid disparity maps to.
        decoder_padding: ``reflect`` (monodepth2, the paper's decoder) or ``zeros``.
        decoder_activation: ``elu`` (monodepth2) or ``relu``.
        init_depth: metres the untrained network predicts everywhere (ours): the bias of each
            sigmoid head starts at the logit of this depth's disparity. A zero bias gives
            sigmoid 0.5, i.e. ~0.2 m on a 0.1-100 m range, which metric (odometry) poses
            cannot warp sensibly; None keeps PyTorch's default initialisation.
        exposure: ``none`` or ``log_mean``: :class:`ExposureNormalize` in the graph, before
            the encoder (ours; RNW enhances night images before its depth network too).
        exposure_target: the geometric-mean intensity in (0, 1) that ``log_mean`` maps every
            image to; 0.4 is the synthetic day drives' (a day-trained network then sees
            night images at day brightness).

    ``zeros`` + ``relu`` is the deployment-oriented decoder: onnxruntime's CPU provider keeps
    every decoder convolution in its blocked (NCHWc) layout with the activation fused into
    the convolution, whereas a reflection ``Pad`` and ELU's element-wise ops run outside that
    layout, with a layout conversion before and after every decoder convolution
    (docs/performance.md has the measured cost). Changing either key changes the model: it
    must be trained with it.
    """

    encoder: str = "resnet18"
    pretrained_path: Optional[str] = None
    scales: Sequence[int] = (0, 1, 2, 3)
    decoder_channels: Sequence[int] = (16, 32, 64, 128, 256)
    min_depth: float = 0.1
    max_depth: float = 100.0
    decoder_padding: str = "reflect"
    decoder_activation: str = "elu"
    init_depth: Optional[float] = 10.0
    exposure: str = "none"
    exposure_target: float = 0.4

    def validate(self, prefix: str = "model.depth") -> "DepthNetConfig":
        check_choice(f"{prefix}.encoder", self.encoder, ENCODERS)
        for s in self.scales:
            check_choice(f"{prefix}.scales", s, (0, 1, 2, 3))
        if 0 not in self.scales:
            raise ConfigError(f"{prefix}.scales", list(self.scales), "a list containing 0")
        if len(self.decoder_channels) != 5 or any(int(c) < 1 for c in self.decoder_channels):
            raise ConfigError(f"{prefix}.decoder_channels", list(self.decoder_channels),
                              "5 positive integers")
        check_choice(f"{prefix}.decoder_padding", self.decoder_padding, DECODER_PADDINGS)
        check_choice(f"{prefix}.decoder_activation", self.decoder_activation,
                     DECODER_ACTIVATIONS)
        check_range(f"{prefix}.min_depth", self.min_depth, 0.0, None, lo_open=True)
        if not self.max_depth > self.min_depth:
            raise ConfigError(f"{prefix}.max_depth", self.max_depth,
                              f"a number greater than min_depth ({self.min_depth})")
        if self.init_depth is not None and not \
                self.min_depth < float(self.init_depth) < self.max_depth:
            raise ConfigError(f"{prefix}.init_depth", self.init_depth,
                              f"null or a depth in ({self.min_depth}, {self.max_depth}) m")
        check_choice(f"{prefix}.exposure", self.exposure, EXPOSURES)
        check_range(f"{prefix}.exposure_target", self.exposure_target, 0.0, 1.0,
                    lo_open=True, hi_open=True)
        return self

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["scales"] = list(self.scales)
        d["decoder_channels"] = list(self.decoder_channels)
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any], prefix: str = "model.depth") -> "DepthNetConfig":
        known = set(cls.__dataclass_fields__)
        for k in d:
            if k not in known:
                raise ConfigError(f"{prefix}.{k}", d[k], "known keys: " + ", ".join(sorted(known)))
        return cls(**d).validate(prefix)


class ImageNormalize(nn.Module):
    """[0, 1] RGB → ImageNet-normalised input (kept in the graph for export)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _load_local_weights(module: nn.Module, path: Optional[str]) -> None:
    if not path:
        return
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelFileError(path, "not found", "a torchvision ImageNet state_dict (.pth)") from None
    except Exception as e:  # corrupt file
        raise ModelFileError(path, f"cannot be read ({e})", "a torchvision state_dict") from None
    if not isinstance(state, dict):
        raise ModelFileError(path, f"holds a {type(state).__name__}, not a state_dict",
                             "a torchvision ImageNet state_dict (.pth)")
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as e:  # same key names, other shapes (e.g. resnet50 weights for resnet18)
        lines = str(e).strip().splitlines()  # line 0 is a header, line 1 the first mismatch
        raise ModelFileError(path, "does not match the encoder: "
                             + (lines[1].strip() if len(lines) > 1 else str(e)),
                             "weights of the same torchvision architecture") from None
    missing = [k for k in missing if not k.startswith(("fc.", "classifier."))]
    if missing:
        raise ModelFileError(path, f"does not match the encoder: missing {missing[:5]}...",
                             "weights of the same torchvision architecture")


class Encoder(nn.Module):
    """Five feature maps at strides 2, 4, 8, 16, 32 from a torchvision backbone."""

    def __init__(self, name: str, pretrained_path: Optional[str] = None) -> None:
        super().__init__()
        self.name = name
        self.normalize = ImageNormalize()
        if name.startswith("resnet"):
            net = getattr(torchvision.models, name)(weights=None)
            _load_local_weights(net, pretrained_path)
            self.stem = nn.Sequential(net.conv1, net.bn1, net.relu)
            self.stages = nn.ModuleList([nn.Sequential(net.maxpool, net.layer1), net.layer2,
                                         net.layer3, net.layer4])
            width = 4 if name == "resnet50" else 1
            self.channels = [64, 64 * width, 128 * width, 256 * width, 512 * width]
        else:
            net = torchvision.models.mobilenet_v3_large(weights=None)
            _load_local_weights(net, pretrained_path)
            feats = net.features
            # tap the last block before each stride change (strides 2,4,8,16,32)
            cuts = [0, 2, 4, 7, 13, 16]  # features[cuts[i]:cuts[i+1]] forms stage i
            self.stem = feats[0:2]
            self.stages = nn.ModuleList([feats[cuts[i]:cuts[i + 1]] for i in range(1, 5)])
            with torch.no_grad():
                chans, x = [], torch.zeros(1, 3, 64, 64)
                x = self.stem(x)
                chans.append(x.shape[1])
                for s in self.stages:
                    x = s(x)
                    chans.append(x.shape[1])
            self.channels = chans

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = self.stem(self.normalize(x))
        feats = [x]
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class ConvBlock(nn.Module):
    """3x3 convolution (``padding``: reflect or zeros) + activation (``elu``, monodepth2's
    decoder layer, or ``relu``); spatial size kept."""

    def __init__(self, cin: int, cout: int, act: bool = True, padding: str = "reflect",
                 activation: str = "elu") -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, padding_mode=padding)
        if not act:
            self.act: nn.Module = nn.Identity()
        else:
            self.act = nn.ELU(inplace=True) if activation == "elu" else nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class DepthDecoder(nn.Module):
    """U-Net decoder with nearest upsampling, skip connections and sigmoid heads per scale."""

    def __init__(self, enc_channels: Sequence[int], dec_channels: Sequence[int],
                 scales: Sequence[int], padding: str = "reflect",
                 activation: str = "elu") -> None:
        super().__init__()
        self.scales = sorted(scales)
        self.up0 = nn.ModuleList()
        self.up1 = nn.ModuleList()
        for i in range(4, -1, -1):
            cin = enc_channels[-1] if i == 4 else dec_channels[i + 1]
            self.up0.append(ConvBlock(cin, dec_channels[i], padding=padding,
                                      activation=activation))
            skip = enc_channels[i - 1] if i > 0 else 0
            self.up1.append(ConvBlock(dec_channels[i] + skip, dec_channels[i], padding=padding,
                                      activation=activation))
        self.heads = nn.ModuleDict({str(s): nn.Conv2d(dec_channels[s], 1, 3, padding=1,
                                                      padding_mode=padding)
                                    for s in self.scales})

    def forward(self, feats: List[torch.Tensor],
                scales: Optional[Sequence[int]] = None) -> List[torch.Tensor]:
        """Disparities at ``scales`` (default: every configured scale, what training needs).

        Deployment asks for ``scales=(0,)``: the coarser heads (reflection pad + conv + sigmoid
        each) are then not computed at all, instead of being computed and thrown away.
        """
        wanted = self.scales if scales is None else sorted(scales)
        for s in wanted:
            if s not in self.scales:
                raise ValueError(f"scale {s} has no head (configured scales: {self.scales})")
        x = feats[-1]
        outs: Dict[int, torch.Tensor] = {}
        for j, i in enumerate(range(4, -1, -1)):
            x = self.up0[j](x)
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            if i > 0:
                x = torch.cat([x, feats[i - 1]], dim=1)
            x = self.up1[j](x)
            if i in wanted:
                outs[i] = torch.sigmoid(self.heads[str(i)](x))
        return [outs[s] for s in wanted]


def initial_disparity_logit(depth: float, min_depth: float, max_depth: float) -> float:
    """Pre-sigmoid value whose disparity maps to ``depth`` metres under
    :func:`dasp_core.geometry.disp_to_depth` (``1/depth = 1/max + (1/min - 1/max)·sigmoid``)."""
    s = (1.0 / depth - 1.0 / max_depth) / (1.0 / min_depth - 1.0 / max_depth)
    return math.log(s / (1.0 - s))


class ExposureNormalize(nn.Module):
    """Per-image gamma that brings the mean log intensity to ``log(target)`` (ours).

    ``y = clamp(x, eps) ** g`` with ``g = log(target) / mean(log clamp(x, eps))`` over all
    pixels and channels, ``g`` clamped to [1/4, 4]. A night frame (geometric mean ~0.05)
    gets ``g`` ~0.3: dark regions are lifted most, lamps stay at 1, order of intensities is
    kept. Measured on the synthetic night test drives (48 frames, 96x320, no training): the
    day model's AbsRel 0.395 on raw night input, 0.278 with this, 0.322 with a plain gain
    (docs/exposure.md). Deterministic and in the graph, so training, ONNX and TensorRT
    see the same input.

    Input and output: ``[B, 3, H, W]`` RGB in [0, 1].
    """

    EPS = 1e-3
    GAMMA_RANGE = (0.25, 4.0)

    def __init__(self, target: float) -> None:
        super().__init__()
        self.log_target = float(math.log(target))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.clamp(min=self.EPS)
        mean_log = torch.log(x).mean(dim=(1, 2, 3), keepdim=True).clamp(max=-self.EPS)
        gamma = (self.log_target / mean_log).clamp(*self.GAMMA_RANGE)
        return torch.pow(x, gamma)


class DepthNet(nn.Module):
    """Monocular depth network: image ``[B, 3, H, W]`` in [0, 1] → list of disparities.

    ``forward(x)[k]`` is the sigmoid disparity at scale ``cfg.scales[k]``; ``[0]`` is full
    resolution. H and W must be multiples of 32, at least 64.
    """

    def __init__(self, cfg: Optional[DepthNetConfig] = None) -> None:
        super().__init__()
        self.cfg = (cfg or DepthNetConfig()).validate()
        self.exposure: nn.Module = (ExposureNormalize(self.cfg.exposure_target)
                                    if self.cfg.exposure == "log_mean" else nn.Identity())
        self.encoder = Encoder(self.cfg.encoder, self.cfg.pretrained_path)
        self.decoder = DepthDecoder(self.encoder.channels, self.cfg.decoder_channels,
                                    self.cfg.scales, padding=self.cfg.decoder_padding,
                                    activation=self.cfg.decoder_activation)
        if self.cfg.init_depth is not None:
            bias = initial_disparity_logit(self.cfg.init_depth, self.cfg.min_depth,
                                           self.cfg.max_depth)
            with torch.no_grad():
                for head in self.decoder.heads.values():
                    head.bias.fill_(bias)

    @staticmethod
    def _check_input(x: torch.Tensor) -> None:
        H, W = x.shape[-2:]
        if H % 32 or W % 32 or H < 64 or W < 64:
            # at 32 px the stride-32 feature map is 1 px, too small for reflection padding
            raise ValueError(f"DepthNet input must be a multiple of 32 and at least 64x64, "
                             f"got {H}x{W}")

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        self._check_input(x)
        return self.decoder(self.encoder(self.exposure(x)))

    def forward_disparity(self, x: torch.Tensor) -> torch.Tensor:
        """Deployment forward: the full-resolution disparity ``[B, 1, H, W]`` only.

        Equal to ``forward(x)[0]`` (same ops on the same path), minus the scale-1..3 heads that
        only training consumes. The exported ONNX graph never contained those heads (dead-code
        elimination), so this is also what makes torch and onnxruntime do the same work.
        """
        self._check_input(x)
        return self.decoder(self.encoder(self.exposure(x)), scales=(0,))[0]


class DisparityHead(nn.Module):
    """Export wrapper: full-resolution disparity only, ``[B, 3, H, W]`` → ``[B, 1, H, W]``."""

    def __init__(self, net: DepthNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_disparity(x)
