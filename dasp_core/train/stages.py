"""Loss computation of one training step, per stage (day / night). No optimiser logic here.

Stage **day** (monodepth2, as RNW trains its day model; ours for DASP): DepthNet on the target
frame, PoseNet on (target, source) pairs, photometric min-reprojection with auto-masking at
every decoder scale (each scale's disparity upsampled to full resolution before warping) and
edge-aware smoothness ``1e-3 / 2^s`` on mean-normalised disparity.

Stage **night** (paper: DASP): the same self-supervised loss on night clips, plus

* the 3D consistency projection loss (paper) between the target and each source, using the
  student's depth on *both* frames and the predicted pose;
* an adversarial loss (paper: spatiotemporal priors) in one of three modes:

  - ``dasp`` — the SPLB :class:`~dasp_core.models.Discriminator` judges temporal stacks
    ``[B, T, 1, H, W]`` (frames in time order) of mean-normalised disparity; "real" stacks are
    the frozen day teacher's disparities on day clips (teacher run on each frame), "fake"
    stacks the night student's on night clips (unpaired) — ours reading, DASP.md;
  - ``rnw`` — RNW's baseline: a PatchGAN on the single target disparity map;
  - ``none`` — no adversarial branch (night-only self-supervised baseline).

The DepthNet runs once per step on all frames it needs (``[B*T, 3, H, W]`` in one batched
call) — target only when neither the 3D loss nor a temporal stack needs the source frames.

Networks run under the caller's autocast context; every loss is computed in float32.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from dasp_core.errors import DatasetError
from dasp_core.geometry import disp_to_depth, warp_image
from dasp_core.losses import (consistency_3d_loss, discriminator_loss, edge_aware_smoothness,
                              generator_loss, min_reprojection_loss, photometric_error)
from dasp_core.models import mean_normalise_stack
from dasp_core.train.config import TrainingConfig
from dasp_core.train.poses import odometry_poses, posenet_poses
from dasp_core.train.scale import velocity_loss, velocity_ratio

__all__ = ["FrameLayout", "StageNets", "StepResult", "run_depth", "predict_poses",
           "supervised_depth_step",
           "self_supervised_terms", "disparity_stack", "compute_generator_step",
           "compute_discriminator_step", "teacher_real_samples", "NO_AMP"]


def NO_AMP() -> ContextManager:
    """Default network context: plain float32."""
    return contextlib.nullcontext()


# ============================================================================ frame layout

@dataclass(frozen=True)
class FrameLayout:
    """Where the target and sources sit in a clip's frame axis.

    ``offsets`` is the clip's frame order (``data.offsets``, e.g. RNW's ``(0, -1, 1)``).
    """

    offsets: Tuple[int, ...]

    @property
    def target(self) -> int:
        """Index of the target frame (offset 0)."""
        return self.offsets.index(0)

    @property
    def sources(self) -> Tuple[int, ...]:
        """Indices of the source frames, in clip order."""
        return tuple(i for i, o in enumerate(self.offsets) if o != 0)

    @property
    def source_offsets(self) -> Tuple[int, ...]:
        return tuple(self.offsets[i] for i in self.sources)

    @property
    def temporal(self) -> Tuple[int, ...]:
        """Frame indices sorted by time (t-1, t, t+1): the discriminator's stack order."""
        return tuple(sorted(range(len(self.offsets)), key=lambda i: self.offsets[i]))


# ============================================================================ containers

@dataclass
class StageNets:
    """The networks a step uses.

    ``depth``/``pose``/``disc`` may be DDP wrappers (gradients are synchronised through them);
    ``pose`` is None when the camera motion comes from odometry; ``disc_plain`` is the
    unwrapped discriminator, used in the generator step where its parameters are frozen and no gradient sync is wanted; ``teacher`` is the frozen day model.
    """

    depth: nn.Module
    pose: Optional[nn.Module] = None  # None with pose.source = odometry
    disc: Optional[nn.Module] = None
    disc_plain: Optional[nn.Module] = None
    teacher: Optional[nn.Module] = None


@dataclass
class StepResult:
    """What a loss computation produced.

    Attributes:
        terms: unweighted scalar loss terms (``photometric``, ``smoothness``, ``consistency_3d``,
            ``adversarial``, ``velocity``, ``discriminator``).
        weights: weight of each term in ``total``.
        total: ``Σ weights[k] · terms[k]`` (the tensor to back-propagate).
        stats: floats for logging (auto-mask fraction, D scores, supervised sample counts).
        fake: detached discriminator input of the night student (for the D step) or None.
        visuals: detached tensors for TensorBoard (``[B, C, H, W]``).
        scale_probe: with ``loss.consistency_scale_lock``, the batch's mean log depth
            (log metres, all frames, scale 0) in the graph, for
            :func:`dasp_core.train.scale_lock.project_out_scale`; else None.
    """

    terms: Dict[str, torch.Tensor] = field(default_factory=dict)
    weights: Dict[str, float] = field(default_factory=dict)
    total: Optional[torch.Tensor] = None
    stats: Dict[str, float] = field(default_factory=dict)
    fake: Optional[torch.Tensor] = None
    visuals: Dict[str, torch.Tensor] = field(default_factory=dict)
    scale_probe: Optional[torch.Tensor] = None

    def add(self, name: str, value: torch.Tensor, weight: float) -> None:
        self.terms[name] = value
        self.weights[name] = float(weight)

    def finish(self) -> "StepResult":
        parts = [self.weights[k] * v for k, v in self.terms.items() if self.weights[k] != 0.0]
        if not parts:
            first = next(iter(self.terms.values()))
            self.total = first * 0.0
        else:
            self.total = torch.stack([p.reshape(()) for p in parts]).sum()
        return self

    def nonfinite_terms(self) -> List[str]:
        """Names of terms (and ``total``) that are NaN or infinite."""
        bad = [k for k, v in self.terms.items() if not bool(torch.isfinite(v.detach()).all())]
        if self.total is not None and not bool(torch.isfinite(self.total.detach()).all()):
            bad.append("total")
        return bad


# ============================================================================ network passes

def run_depth(depth_net: nn.Module, frames: torch.Tensor,
              amp: Callable[[], ContextManager] = NO_AMP) -> List[torch.Tensor]:
    """DepthNet on every frame of a clip batch in one call.

    Args:
        depth_net: DepthNet (or DDP/teacher wrapper); input ``[N, 3, H, W]`` in [0, 1].
        frames: ``[B, T, 3, H, W]`` (or ``[B, 3, H, W]`` for one frame per clip).
    Returns:
        Sigmoid disparities per decoder scale (ascending scale), float32
        ``[B, T, 1, H/2^s, W/2^s]`` (``[B, 1, h, w]`` for 4-D input).
    """
    if frames.dim() == 4:
        with amp():
            outs = depth_net(frames)
        return [o.float() for o in outs]
    B, T = frames.shape[:2]
    with amp():
        outs = depth_net(frames.flatten(0, 1))
    return [o.float().unflatten(0, (B, T)) for o in outs]


def predict_poses(nets: StageNets, batch: Dict[str, torch.Tensor], cfg: TrainingConfig,
                  layout: FrameLayout, amp: Callable[[], ContextManager] = NO_AMP
                  ) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """Camera motion of every source, from ``pose.source`` (:mod:`dasp_core.train.poses`).

    Args:
        batch: ``frames_aug``/``frames`` ``[B, T, 3, H, W]`` (PoseNet input), ``poses``
            ``[B, T, 4, 4]`` camera→world and ``has_poses`` ``[B]`` (odometry).
    Returns:
        ``(T_s_t, translations)``: per source (clip order), ``[B, 4, 4]`` target→source
        transforms and ``[B, 3]`` translations (metres for odometry, network scale for
        PoseNet), float32.
    """
    if cfg.pose.source == "odometry":
        return odometry_poses(batch["poses"], batch["has_poses"], layout.target, layout.sources)
    frames = batch.get("frames_aug", batch["frames"])
    return posenet_poses(nets.pose, frames, layout.target, layout.sources,
                         layout.source_offsets, amp)


# ============================================================================ self-supervised

def _downsample(img: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    return F.interpolate(img, size=size, mode="area")  # box filter: exact for 2^s factors


def _upsample(disp: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """A decoder scale's disparity ``[B, 1, h, w]`` at full resolution (monodepth2's rule:
    every scale is scored at the input size)."""
    if tuple(disp.shape[-2:]) == tuple(size):
        return disp
    return F.interpolate(disp, size=size, mode="bilinear", align_corners=False)


def self_supervised_terms(disps: Sequence[torch.Tensor], scales: Sequence[int],
                          target: torch.Tensor, sources: Sequence[torch.Tensor],
                          T_s_t: Sequence[torch.Tensor], K: torch.Tensor, cfg: TrainingConfig
                          ) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, float]]:
    """Photometric and smoothness terms averaged over decoder scales (monodepth2 / RNW).

    Args:
        disps: target sigmoid disparities, one ``[B, 1, H/2^s, W/2^s]`` per scale.
        scales: the scale ``s`` of each entry of ``disps``.
        target: ``[B, 3, H, W]`` target image (loss target, not colour-augmented).
        sources: ``[B, 3, H, W]`` source images (clip order, same as ``T_s_t``).
        T_s_t: ``[B, 4, 4]`` target→source transforms.
        K: ``[B, 3, 3]`` pixel intrinsics at H x W.
    Returns:
        ``(photometric, smoothness, stats)``: photometric = mean over scales of the
        (min-)reprojection loss; smoothness = mean over scales of ``smooth_s / 2^s`` (its
        weight ``loss.smoothness`` is applied by the caller); stats has ``automask_frac``.
    """
    lc = cfg.loss
    dc = cfg.model.depth
    H, W = target.shape[-2:]
    photo, smooth = [], []
    stats: Dict[str, float] = {}
    for disp, s in zip(disps, scales):
        disp_full = _upsample(disp, (H, W))
        _, depth = disp_to_depth(disp_full, dc.min_depth, dc.max_depth)
        warped, valid = [], []
        for src, T in zip(sources, T_s_t):
            w, v = warp_image(src, depth, T, K, padding_mode="border")
            warped.append(w)
            valid.append(v)
        if lc.min_reprojection:
            loss, _, mask = min_reprojection_loss(
                target, warped, sources, valid if lc.out_of_view_mask else None,
                automask=lc.automask, alpha=lc.ssim_alpha)
        else:
            loss, mask = _average_reprojection(target, warped, sources,
                                               valid if lc.out_of_view_mask else None,
                                               lc.automask, lc.ssim_alpha)
        photo.append(loss)
        if s == min(scales):
            stats["automask_frac"] = float(mask.float().mean())
        img_s = _downsample(target, tuple(disp.shape[-2:]))
        smooth.append(edge_aware_smoothness(disp, img_s) / (2 ** s))
    return torch.stack(photo).mean(), torch.stack(smooth).mean(), stats


def _average_reprojection(target: torch.Tensor, warped: Sequence[torch.Tensor],
                          sources: Sequence[torch.Tensor],
                          valid: Optional[Sequence[torch.Tensor]], automask: bool, alpha: float
                          ) -> Tuple[torch.Tensor, torch.Tensor]:
    """monodepth2's ``--avg_reprojection``: mean error over sources instead of the minimum.

    Auto-masking then compares the mean warped error with the mean identity error.
    """
    errs = torch.cat([photometric_error(w, target, alpha) for w in warped], dim=1)
    if valid is not None:
        v = torch.cat([x.float() for x in valid], dim=1)
        err = (errs * v).sum(1, keepdim=True) / v.sum(1, keepdim=True).clamp(min=1.0)
        mask = v.sum(1, keepdim=True) > 0
    else:
        err = errs.mean(1, keepdim=True)
        mask = torch.ones_like(err, dtype=torch.bool)
    if automask:
        with torch.no_grad():
            ident = torch.cat([photometric_error(s, target, alpha) for s in sources], 1)
            ident = ident.mean(1, keepdim=True)
            ident = ident + 1e-5 * torch.randn_like(ident)
            mask = mask & (err.detach() < ident)
    w = mask.float()
    return (err * w).sum() / w.sum().clamp(min=1.0), mask


# ============================================================================ adversarial input

def disparity_stack(disp: torch.Tensor, layout: FrameLayout, mode: str,
                    normalization: str) -> torch.Tensor:
    """Discriminator input from per-frame disparities.

    Args:
        disp: ``[B, T, 1, h, w]`` disparities in clip order (``mode="dasp"``), or
            ``[B, 1, h, w]`` target disparities (``mode="rnw"``).
        mode: ``dasp`` (temporal stack, time order t-1, t, t+1) or ``rnw`` (one map).
        normalization: ``stack`` (one mean per stack, ours) or ``frame`` (each frame by its
            own mean, RNW's per-map rule).
    Returns:
        ``[B, T, 1, h, w]`` (dasp) or ``[B, 1, h, w]`` (rnw) mean-normalised disparity.
    """
    if mode == "dasp":
        stack = disp[:, list(layout.temporal)]
        return mean_normalise_stack(stack, per_frame=(normalization == "frame"))
    if disp.dim() == 5:
        disp = disp[:, layout.target]
    return mean_normalise_stack(disp)


def _scale_index(scales: Sequence[int], s: int) -> int:
    return sorted(scales).index(s)


# ============================================================================ generator step

def consistency_3d_per_source(depth_all: torch.Tensor, T_s_t: Sequence[torch.Tensor],
                              K: torch.Tensor, cfg: TrainingConfig, layout: FrameLayout
                              ) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """The 3D consistency loss of the target against each source, in the form ``loss.*``
    configures (unweighted; the night step averages them).

    Args:
        depth_all: ``[B, T, 1, H, W]`` depths (metres) of every frame of the clips.
        T_s_t: per source (clip order), ``[B, 4, 4]`` target→source transforms.
        K: ``[B, 3, 3]`` pixel intrinsics at H x W.
    Returns:
        ``(losses, masks)``: per source, the scalar loss and the ``[B, 1, H, W]`` bool mask
        of its target→source direction.
    """
    lc = cfg.loss
    losses, masks = [], []
    for i, T in zip(layout.sources, T_s_t):
        loss, mask = consistency_3d_loss(
            depth_all[:, layout.target], depth_all[:, i], T, K,
            metric_pose=cfg.pose.source == "odometry", source_grad=lc.consistency_source_grad,
            normaliser=lc.consistency_normaliser, mask_mode=lc.consistency_mask,
            min_parallax=lc.consistency_min_parallax)
        losses.append(loss)
        masks.append(mask)
    return losses, masks


def compute_generator_step(nets: StageNets, batch: Dict[str, torch.Tensor], cfg: TrainingConfig,
                           layout: FrameLayout, amp: Callable[[], ContextManager] = NO_AMP,
                           want_visuals: bool = False) -> StepResult:
    """Loss of the depth + pose networks for one batch (stage from ``cfg.train.stage``).

    Args:
        nets: networks (discriminator frozen by the caller during this step).
        batch: collated clips on the training device: ``frames`` ``[B, T, 3, H, W]`` (loss
            targets), optional ``frames_aug`` (network input, colour-jittered), ``K``
            ``[B, 3, 3]``, ``speed`` ``[B]``, ``dt`` ``[B]``. For the night stage these are
            night clips.
        layout: frame order of the clips.
    Returns:
        :class:`StepResult` with the weighted total; for the night stage with an adversarial
        mode, ``fake`` holds the detached discriminator input for the D step.
    """
    if cfg.train.supervision == "depth":
        return supervised_depth_step(nets, batch, cfg, layout, amp, want_visuals)
    night = cfg.train.stage == "night"
    lc = cfg.loss
    adv = lc.adversarial if night else "none"
    use_3d = night and lc.use_3d
    frames = batch["frames"]
    net_in = batch.get("frames_aug", frames)
    K = batch["K"]
    scales = sorted(cfg.model.depth.scales)
    res = StepResult()

    need_all = adv == "dasp" or use_3d
    if need_all:
        disps_all = run_depth(nets.depth, net_in, amp)        # [B, T, 1, h, w] per scale
        disps_t = [d[:, layout.target] for d in disps_all]
    else:
        disps_all = None
        disps_t = run_depth(nets.depth, net_in[:, layout.target], amp)

    T_s_t, trans = predict_poses(nets, batch, cfg, layout, amp)
    target = frames[:, layout.target]
    sources = [frames[:, i] for i in layout.sources]
    photo, smooth, stats = self_supervised_terms(disps_t, scales, target, sources, T_s_t, K, cfg)
    res.stats.update(stats)
    res.add("photometric", photo, 1.0)
    res.add("smoothness", smooth, lc.smoothness)

    if use_3d:
        dc = cfg.model.depth
        _, depth_all = disp_to_depth(disps_all[0], dc.min_depth, dc.max_depth)
        c3d, _ = consistency_3d_per_source(depth_all, T_s_t, K, cfg, layout)
        res.add("consistency_3d", torch.stack(c3d).mean(), lc.lambda_3d)
        if lc.consistency_scale_lock:
            res.scale_probe = depth_all.clamp(min=dc.min_depth).log().mean()

    if cfg.scale.velocity and cfg.pose.source == "posenet":  # odometry is metric already
        if cfg.scale.velocity_mode == "loss":
            vel, n = velocity_loss(trans, layout.source_offsets, batch["speed"], batch["dt"])
            res.add("velocity", vel, cfg.scale.velocity_weight)
        else:  # recover: measured, never back-propagated (training stays scale-free)
            target_m, predicted, n = velocity_ratio(trans, layout.source_offsets,
                                                    batch["speed"], batch["dt"])
            if n and predicted > 0:
                res.stats["velocity_ratio"] = target_m / predicted
        res.stats["velocity_samples"] = float(n)
        with torch.no_grad():
            res.stats["pose_translation_m"] = float(torch.stack(
                [torch.linalg.vector_norm(t, dim=-1).mean() for t in trans]).mean())

    if adv != "none":
        if nets.disc_plain is None:
            raise RuntimeError(f"loss.adversarial={adv!r} but no discriminator was built")
        k = _scale_index(scales, lc.disc_scale)
        src = disps_all[k] if adv == "dasp" else disps_t[k]
        fake = disparity_stack(src, layout, adv, lc.stack_normalization)
        with amp():
            logits = nets.disc_plain(fake)
        res.add("adversarial", generator_loss(logits.float(), lc.gan_kind), lc.lambda_G)
        res.fake = fake.detach()

    if want_visuals:
        res.visuals["image"] = target.detach()
        res.visuals["disparity"] = disps_t[0].detach()
    return res.finish()


def supervised_depth_step(nets: StageNets, batch: Dict[str, torch.Tensor], cfg: TrainingConfig,
                          layout: FrameLayout, amp: Callable[[], ContextManager] = NO_AMP,
                          want_visuals: bool = False) -> StepResult:
    """``train.supervision: depth`` — a diagnostic ceiling, not DASP (ours).

    The same DepthNet, trained on the clips' ground-truth depth with L1 on log depth at every
    decoder scale (each upsampled to full resolution), where ``0 < gt < model.depth.max_depth``.
    It shows how far self-supervision is from what the network can learn in the same budget.

    Args:
        batch: ``frames``/``frames_aug`` ``[B, T, 3, H, W]``, ``depth`` ``[B, 1, H, W]`` metres
            (0 invalid) of the target, ``has_depth`` ``[B]``.
    """
    if not bool(batch["has_depth"].all()):
        raise DatasetError("train.supervision=depth needs ground-truth depth in every training "
                           "clip; this batch has clips without it")
    dc = cfg.model.depth
    net_in = batch.get("frames_aug", batch["frames"])[:, layout.target]
    gt = batch["depth"]
    H, W = gt.shape[-2:]
    valid = (gt > dc.min_depth) & (gt < dc.max_depth)
    if not bool(valid.any()):
        raise DatasetError("train.supervision=depth: no ground-truth pixel of this batch lies in "
                           f"({dc.min_depth}, {dc.max_depth}) m")
    log_gt = gt.clamp_min(dc.min_depth).log()
    terms = []
    disps = run_depth(nets.depth, net_in, amp)
    for disp in disps:
        _, depth = disp_to_depth(_upsample(disp, (H, W)), dc.min_depth, dc.max_depth)
        terms.append((depth.log() - log_gt).abs()[valid].mean())
    res = StepResult()
    res.add("supervised_log_l1", torch.stack(terms).mean(), 1.0)
    if want_visuals:
        res.visuals["image"] = batch["frames"][:, layout.target].detach()
        res.visuals["disparity"] = disps[0].detach()
    return res.finish()


# ============================================================================ discriminator step

@torch.no_grad()
def teacher_real_samples(teacher: nn.Module, day_batch: Dict[str, torch.Tensor],
                         cfg: TrainingConfig, layout: FrameLayout,
                         amp: Callable[[], ContextManager] = NO_AMP) -> torch.Tensor:
    """"Real" discriminator samples: the frozen day model's disparity on day clips.

    ``dasp``: the teacher runs on each frame of the clip (one batched call) → time-ordered,
    mean-normalised stack ``[B, T, 1, h, w]``; ``rnw``: the target frame only → ``[B, 1, h, w]``.
    """
    lc = cfg.loss
    teacher_cfg = getattr(teacher, "cfg", cfg.model.depth)
    k = _scale_index(teacher_cfg.scales, lc.disc_scale)
    frames = day_batch["frames"]
    if lc.adversarial == "dasp":
        disp = run_depth(teacher, frames, amp)[k]
    else:
        disp = run_depth(teacher, frames[:, layout.target], amp)[k]
    return disparity_stack(disp, layout, lc.adversarial, lc.stack_normalization)


def compute_discriminator_step(disc: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                               cfg: TrainingConfig,
                               amp: Callable[[], ContextManager] = NO_AMP) -> StepResult:
    """Discriminator loss ``lambda_D · GAN_D(D(real), D(fake))`` (fakes from the image pool).

    ``real`` and ``fake`` pass through ``disc`` separately (no shared batch statistics).
    Stats: ``d_real``/``d_fake`` mean logits, and for the vanilla GAN also the mean
    probabilities ``p_real``/``p_fake``.
    """
    with amp():
        real_logits = disc(real)
        fake_logits = disc(fake)
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    res = StepResult()
    res.add("discriminator", discriminator_loss(real_logits, fake_logits, cfg.loss.gan_kind),
            cfg.loss.lambda_D)
    with torch.no_grad():
        res.stats["d_real"] = float(real_logits.mean())
        res.stats["d_fake"] = float(fake_logits.mean())
        if cfg.loss.gan_kind == "vanilla":
            res.stats["p_real"] = float(torch.sigmoid(real_logits).mean())
            res.stats["p_fake"] = float(torch.sigmoid(fake_logits).mean())
    return res.finish()
