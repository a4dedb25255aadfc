"""The networks of one training stage, built from the config, and the day checkpoint's part.

Day stage: DepthNet (+ PoseNet when poses come from images). Night stage adds the
discriminator (SPLB for DASP, a patch discriminator for RNW-style) and the frozen day
teacher whose depth sequences are the discriminator's "real" samples; the night DepthNet
(and PoseNet) may start from the day weights.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Optional

import torch.nn as nn

from dasp_core.checkpoint import read_checkpoint
from dasp_core.errors import ConfigError
from dasp_core.models import DepthNet, DepthNetConfig, Discriminator, PatchDiscriminator, PoseNet
from dasp_core.train.config import TrainingConfig

__all__ = ["StageNetworks", "build_stage_networks", "load_day_checkpoint"]

log = logging.getLogger(__name__)


@dataclass
class StageNetworks:
    """The trainable networks of a stage (the teacher comes from the day checkpoint)."""

    depth: DepthNet
    pose: Optional[PoseNet]  # None with odometry poses or depth supervision
    disc: Optional[nn.Module]  # None without an adversarial branch
    disc_kind: str  # "splb", "patch" or "none"
    teacher: Optional[DepthNet] = None


def build_stage_networks(cfg: TrainingConfig, adversarial: str) -> StageNetworks:
    """Freshly initialised networks for ``cfg`` with adversarial branch ``adversarial``
    (``"dasp"``, ``"rnw"`` or ``"none"``; the day stage always passes ``"none"``)."""
    depth = DepthNet(copy.deepcopy(cfg.model.depth))
    pose = (PoseNet(copy.deepcopy(cfg.model.pose))
            if cfg.pose.source == "posenet" and cfg.train.supervision == "self" else None)
    disc: Optional[nn.Module] = None
    kind = "none"
    if adversarial == "dasp":
        disc, kind = Discriminator(copy.deepcopy(cfg.model.discriminator)), "splb"
    elif adversarial == "rnw":
        pc = cfg.model.patch_discriminator
        disc = PatchDiscriminator(pc.in_channels, pc.base_channels, pc.n_layers, norm=pc.norm,
                                  position_channels=pc.position_channels)
        kind = "patch"
    return StageNetworks(depth=depth, pose=pose, disc=disc, disc_kind=kind)


def _float_state(state: dict) -> dict:
    # day checkpoints may hold fp16 weights (the shipped model does)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_day_checkpoint(path: str, cfg: TrainingConfig, nets: StageNetworks,
                        want_teacher: bool) -> None:
    """Fill ``nets`` from the day checkpoint at ``path``, in place.

    * ``want_teacher``: ``nets.teacher`` becomes a frozen copy of the day DepthNet (eval mode,
      no gradients); its ``loss.disc_scale`` must be one of its output scales.
    * ``train.init_from_day``: the night DepthNet starts from the day weights (encoder,
      scales and decoder channels must match: :class:`ConfigError` otherwise).
    * ``train.init_pose_from_day``: PoseNet starts from the day PoseNet when its config matches
      (a warning, not an error, when it does not).
    """
    ckpt = read_checkpoint(path)
    day_cfg = DepthNetConfig.from_dict(dict(ckpt["depth_config"]))
    day_cfg.pretrained_path = None
    day_state = _float_state(ckpt["depth_state"])
    if want_teacher:
        teacher = DepthNet(day_cfg)
        teacher.load_state_dict(day_state)
        nets.teacher = teacher.eval().requires_grad_(False)
    if cfg.train.init_from_day:
        mine, theirs = nets.depth.cfg.to_dict(), day_cfg.to_dict()
        for k in ("encoder", "scales", "decoder_channels"):
            if mine[k] != theirs[k]:
                raise ConfigError(f"model.depth.{k}", mine[k],
                                  f"{theirs[k]!r} as in the day checkpoint {path} "
                                  f"(train.init_from_day=true copies its weights), or "
                                  f"train.init_from_day=false")
        nets.depth.load_state_dict(day_state)
        log.info("night DepthNet initialised from %s", path)
        for k in ("min_depth", "max_depth"):
            if mine[k] != theirs[k]:
                log.warning("model.depth.%s = %s differs from the day checkpoint's %s: the "
                            "initial disparities map to other depths", k, mine[k], theirs[k])
    if nets.teacher is not None and cfg.loss.disc_scale not in tuple(nets.teacher.cfg.scales):
        raise ConfigError("loss.disc_scale", cfg.loss.disc_scale,
                          f"one of the day teacher's scales {list(nets.teacher.cfg.scales)} "
                          f"({path})")
    if nets.pose is not None and cfg.train.init_pose_from_day and \
            ckpt.get("pose_state") is not None:
        saved = {k: v for k, v in dict(ckpt.get("pose_config") or {}).items()
                 if k != "pretrained_path"}
        mine_pose = {k: v for k, v in nets.pose.cfg.to_dict().items() if k != "pretrained_path"}
        if saved != mine_pose:
            log.warning("the day checkpoint's PoseNet %s differs from model.pose %s; PoseNet "
                        "is not initialised from it", saved, mine_pose)
        else:
            nets.pose.load_state_dict(_float_state(ckpt["pose_state"]))
            log.info("PoseNet initialised from %s", path)
