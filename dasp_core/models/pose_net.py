"""PoseNet: relative camera motion between two frames (monodepth2 design, ours for DASP).

The DASP paper writes ``T_t→s = Φ_p(I_t, I_s)`` and does not publish its pose network; RNW and
STEPS use monodepth2's separate ResNet-18 pose network, which we follow:

* encoder: a torchvision ResNet taking both frames concatenated along channels (6 channels).
  With local ImageNet weights, the 3-channel ``conv1`` kernel is duplicated and halved
  (``[w, w] / 2``) as monodepth2 does, so an identical pair gives exactly the ImageNet
  network's response to one image; without them ``conv1`` gets independent random kernels for
  the two frames;
* decoder: 1x1 squeeze (C → 256), two 3x3 convs, 1x1 conv to 6 numbers per pixel, spatial mean,
  times ``output_scale`` (0.01, monodepth2) so that a fresh network predicts small motions;
* output: axis-angle ``[B, 3]`` (radians) and translation ``[B, 3]`` (metres, up to the scale
  of the depth network) of **T_s_t** (target camera → source camera), ready for
  :func:`dasp_core.geometry.pose_vec_to_matrix`.

Frame order (ours): the target always comes first, ``PoseNet(img_t, img_s)``, and the network
predicts ``T_s_t`` directly for both the previous and the next source. (Monodepth2 feeds pairs
in temporal order and inverts the pose for the previous frame; callers who want that can use
``pose_vec_to_matrix(*PoseNet(img_prev, img_t), invert=True)`` — the API does not prevent it.)
ImageNet normalisation of each frame happens inside the network.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn as nn
import torchvision

from dasp_core.errors import ConfigError, check_choice, check_range
from dasp_core.models.blocks import check_int
from dasp_core.models.depth_net import ImageNormalize, _load_local_weights

__all__ = ["POSE_ENCODERS", "PoseNetConfig", "PoseEncoder", "PoseDecoder", "PoseNet"]

POSE_ENCODERS = ("resnet18", "resnet34", "resnet50")


@dataclass
class PoseNetConfig:
    """Configuration of :class:`PoseNet` (YAML key ``model.pose``).

    Attributes:
        encoder: one of ``POSE_ENCODERS``.
        pretrained_path: optional local torchvision ImageNet ``state_dict`` of the 3-channel
            architecture (never downloaded); ``conv1`` is expanded to 6 channels after loading.
        decoder_channels: width of the pose decoder (monodepth2: 256).
        output_scale: factor on the raw 6-vector (monodepth2: 0.01).
    """

    encoder: str = "resnet18"
    pretrained_path: Optional[str] = None
    decoder_channels: int = 256
    output_scale: float = 0.01

    def validate(self, prefix: str = "model.pose") -> "PoseNetConfig":
        check_choice(f"{prefix}.encoder", self.encoder, POSE_ENCODERS)
        if self.pretrained_path is not None and not isinstance(self.pretrained_path, str):
            raise ConfigError(f"{prefix}.pretrained_path", self.pretrained_path,
                              "null or a path to a torchvision state_dict (.pth)")
        check_int(f"{prefix}.decoder_channels", self.decoder_channels, 1, 4096)
        if isinstance(self.output_scale, bool) or not isinstance(self.output_scale, (int, float)):
            raise ConfigError(f"{prefix}.output_scale", self.output_scale, "a number in (0, 1]")
        check_range(f"{prefix}.output_scale", self.output_scale, 0.0, 1.0, lo_open=True)
        return self

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any], prefix: str = "model.pose") -> "PoseNetConfig":
        known = set(cls.__dataclass_fields__)
        for k in d:
            if k not in known:
                raise ConfigError(f"{prefix}.{k}", d[k], "known keys: " + ", ".join(sorted(known)))
        return cls(**d).validate(prefix)


class PoseEncoder(nn.Module):
    """ResNet on a frame pair: ``(img_a, img_b)`` each ``[B, 3, H, W]`` in [0, 1] →
    ``[B, C, H/32, W/32]`` features (C = 512 for resnet18/34, 2048 for resnet50)."""

    def __init__(self, name: str, pretrained_path: Optional[str] = None) -> None:
        super().__init__()
        net = getattr(torchvision.models, name)(weights=None)
        _load_local_weights(net, pretrained_path)  # 3-channel ImageNet weights, checked
        conv1 = nn.Conv2d(6, 64, kernel_size=7, stride=2, padding=3, bias=False)
        if pretrained_path:
            w = net.conv1.weight.detach()
            with torch.no_grad():
                # monodepth2: repeat the RGB kernel for both frames and halve it, so the
                # response to a pair of identical images equals the 3-channel network's.
                conv1.weight.copy_(torch.cat([w, w], dim=1) / 2.0)
        else:
            # independent random kernels for the two frames (torchvision's init): duplicating
            # a random kernel would make the network blind to frame order at the start.
            nn.init.kaiming_normal_(conv1.weight, mode="fan_out", nonlinearity="relu")
        self.normalize = ImageNormalize()
        self.features = nn.Sequential(conv1, net.bn1, net.relu, net.maxpool,
                                      net.layer1, net.layer2, net.layer3, net.layer4)
        self.channels = 2048 if name == "resnet50" else 512

    def forward(self, img_a: torch.Tensor, img_b: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.normalize(img_a), self.normalize(img_b)], dim=1)
        return self.features(x)


class PoseDecoder(nn.Module):
    """monodepth2's pose decoder: ``[B, C, h, w]`` → raw 6-vector ``[B, 6]`` (before scaling)."""

    def __init__(self, in_channels: int, channels: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, channels, 1), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(channels, 6, 1))

    @property
    def out_conv(self) -> nn.Conv2d:
        """The last 1x1 conv (6 outputs: axis-angle then translation)."""
        return self.net[-1]

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.net(feats).mean(dim=(2, 3))


class PoseNet(nn.Module):
    """Relative pose of a frame pair.

    ``forward(img_t, img_s)`` with both ``[B, 3, H, W]`` RGB in [0, 1] (same size, H and W at
    least 32; any size, multiples of 32 recommended) returns
    ``(axis_angle [B, 3] radians, translation [B, 3])`` of ``T_s_t``, the transform from the
    target camera to the source camera (paper's ``T_t→s``).
    """

    def __init__(self, cfg: Optional[PoseNetConfig] = None) -> None:
        super().__init__()
        self.cfg = (cfg or PoseNetConfig()).validate()
        self.encoder = PoseEncoder(self.cfg.encoder, self.cfg.pretrained_path)
        self.decoder = PoseDecoder(self.encoder.channels, self.cfg.decoder_channels)

    def forward(self, img_t: torch.Tensor, img_s: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        if img_t.dim() != 4 or img_t.shape[1] != 3 or img_t.shape != img_s.shape:
            raise ValueError(f"PoseNet expects two [B, 3, H, W] images of one shape, got "
                             f"{tuple(img_t.shape)} and {tuple(img_s.shape)}")
        H, W = img_t.shape[-2:]
        if H < 32 or W < 32:
            raise ValueError(f"PoseNet input must be at least 32x32, got {H}x{W}")
        pose = self.decoder(self.encoder(img_t, img_s)) * self.cfg.output_scale
        return pose[:, :3], pose[:, 3:]
