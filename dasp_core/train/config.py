"""Training configuration: nested dataclasses ↔ YAML, validated with clear errors.

One YAML file describes one training run (``dasp train CONFIG.yaml``). Its top-level sections
map to the dataclasses below::

    experiment  name, seed, output folder
    data        image size, frame offsets, batch size, workers, day/night train/val datasets
    model       depth (DepthNetConfig), pose (PoseNetConfig), discriminator
                (DiscriminatorConfig: 4 SPLB blocks), patch_discriminator (RNW baseline)
    loss        photometric / smoothness / 3D consistency / adversarial weights and modes
    optim       Adam settings, epochs, learning-rate milestones, discriminator learning rate
    train       stage (day | night), day checkpoint, steps, checkpoint/log intervals, device, AMP
    val         validation interval, depth cap, best-model metric
    pose        camera-motion source of the reprojection loss (PoseNet or odometry)
    scale       weak velocity supervision (metric scale) and median-GT scale reporting

Every key is documented in the dataclass field metadata (``doc``) together with where its
default comes from (``mark``): ``paper`` (DASP states it), ``RNW`` (RNW's public configs, the
protocol DASP inherits), ``monodepth2``, ``md4all`` or ``ours`` (our choice where the paper is
silent). ``dasp train --describe`` prints that reference.

Loading rules (all errors are :class:`~dasp_core.errors.ConfigError` naming the dotted key):

* unknown key → names it and lists the known keys of its section;
* wrong type → names the key and the expected type;
* value outside its choices/range → names the key and what is allowed;
* cross-section rules (e.g. a night stage with an adversarial loss needs a day checkpoint) are
  checked by :meth:`TrainingConfig.validate`.

Command-line overrides use dotted keys, ``loss.lambda_3d=0.05``; the value is parsed as YAML
(``[0, -1, 1]``, ``null``, ``true``) and then validated like a file value.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml

from dasp_core.errors import ConfigError, check_choice, check_range
from dasp_core.train.config_schema import (FIELD_TYPE_HOOKS, apply_overrides, config_to_dict,
                                           doc_attributes, from_mapping, load_config_dict, opt,
                                           parse_overrides)

__all__ = [
    "ExperimentConfig", "DataConfig", "PatchDiscriminatorConfig", "ModelConfig",
    "LossConfig", "OptimConfig", "TrainSection", "ValConfig", "PoseConfig", "ScaleConfig",
    "TrainingConfig",
    "load_config", "load_config_dict", "parse_overrides", "apply_overrides", "config_to_dict",
    "config_from_dict", "save_config", "describe_config", "STAGES", "ADVERSARIAL_MODES",
    "GAN_KINDS",
]

STAGES = ("day", "night")
ADVERSARIAL_MODES = ("dasp", "rnw", "none")
#: ``loss.consistency_normaliser`` values; equal to ``dasp_core.losses.consistency3d.NORMALISERS``
#: (test_train checks), kept here so reading a config does not import torch.
CONSISTENCY_NORMALISERS = ("pixel", "scene", "spread")
#: ``loss.consistency_mask`` values; equal to ``dasp_core.losses.consistency3d.MASKS``
CONSISTENCY_MASKS = ("occlusion", "symmetric")
GAN_KINDS = ("lsgan", "vanilla")
STACK_NORMALIZATION = ("stack", "frame")
MILESTONE_UNITS = ("epoch", "step", "fraction")
AMP_DTYPES = ("float16", "bfloat16")
LR_SCHEDULES = ("step", "cosine")
SUPERVISION_MODES = ("self", "depth")
BEST_METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")


# ============================================================================ sections

@dataclass
class ExperimentConfig:
    """``experiment``: naming, seeding and where outputs go."""

    name: str = opt("dasp", "run name (log lines, TensorBoard, ModelInfo.name)")
    seed: int = opt(0, "seed of python/numpy/torch RNGs and of the data order", lo=0)
    out_dir: str = opt("", "output folder (checkpoints, logs, TensorBoard); empty = "
                           "runs/<name>_<stage>; `dasp train --out` overrides it")


_DATASET_DOC = ("A mapping {kind: synthetic | robotcar | nuscenes | rosbag | folder, <reader "
                "arguments>} (see dasp_core.data.registry) or a list of them (concatenated); "
                "training sets use data.offsets, validation sets default to [0] (target only)")

DATASET_KEYS = ("day_train", "night_train", "day_val", "night_val")


@dataclass
class DataConfig:
    """``data``: what the networks see."""

    height: int = opt(192, "network input height in pixels (multiple of 32); RNW RobotCar 320, "
                           "nuScenes 384", mark="monodepth2", lo=32)
    width: int = opt(640, "network input width in pixels (multiple of 32); RNW RobotCar 576, "
                          "nuScenes 768", mark="monodepth2", lo=32)
    offsets: List[int] = opt(doc="frame offsets of a clip relative to the target (must contain 0); "
                                 "the temporal stack of the discriminator uses them sorted",
                             mark="RNW", factory=lambda: [0, -1, 1])
    batch_size: int = opt(8, "clips per optimisation step per process (RNW: 8 RobotCar, 4 "
                             "nuScenes)", mark="RNW", lo=1)
    val_batch_size: int = opt(4, "clips per validation batch", lo=1)
    num_workers: int = opt(0, "DataLoader worker processes (0 = load in the training process)",
                           lo=0)
    resize_mode: str = opt("center_crop", "how clips reach height x width: center_crop (crop "
                                          "to the aspect ratio, then resize; square pixels) or "
                                          "stretch", choices=("center_crop", "stretch"))
    augment: Optional[Dict[str, Any]] = opt(
        doc="training augmentation (AugmentConfig: flip_prob, jitter_prob, brightness, "
            "contrast, saturation, hue); {} = defaults (flip 0.5, jitter 0.5, 0.2/0.2/0.2/0.1); "
            "null = none. Jitter changes only the network input, never the loss targets",
        mark="monodepth2", factory=dict)
    day_train: Optional[Any] = opt(None, "daytime training clips (stage day; stage night: the "
                                         "teacher's 'real' samples). " + _DATASET_DOC)
    night_train: Optional[Any] = opt(None, "nighttime training clips (stage night). "
                                           + _DATASET_DOC)
    day_val: Optional[Any] = opt(None, "daytime validation clips with depth (stage day; "
                                       "optional). " + _DATASET_DOC)
    night_val: Optional[Any] = opt(None, "nighttime validation clips with depth (stage night; "
                                         "optional). " + _DATASET_DOC)


@dataclass
class PatchDiscriminatorConfig:
    """``model.patch_discriminator``: RNW's PatchGAN baseline on one disparity map."""

    in_channels: int = opt(1, "input channels (1 = disparity)", mark="RNW", lo=1)
    base_channels: int = opt(64, "channels of the first layer", mark="RNW", lo=1)
    n_layers: int = opt(3, "stride-2 layers", mark="RNW", lo=1)
    norm: str = opt("batch", "normalisation layer (pix2pix/RNW: batch)", mark="RNW",
                    choices=("batch", "instance", "spectral", "none"))
    position_channels: bool = opt(True, "append row/column position maps to the input",
                                  mark="RNW")


def _depth_config_factory():
    from dasp_core.models.depth_net import DepthNetConfig
    return DepthNetConfig()


def _pose_config_factory():
    from dasp_core.models import PoseNetConfig
    return PoseNetConfig()


def _disc_config_factory():
    from dasp_core.models import DiscriminatorConfig
    return DiscriminatorConfig()


def _model_field_types() -> Dict[str, type]:
    from dasp_core.models import DiscriminatorConfig, PoseNetConfig
    from dasp_core.models.depth_net import DepthNetConfig
    return {"depth": DepthNetConfig, "pose": PoseNetConfig, "discriminator": DiscriminatorConfig,
            "patch_discriminator": PatchDiscriminatorConfig}


@dataclass
class ModelConfig:
    """``model``: network configurations (see each class for its keys).

    ``discriminator.use_stlm`` / ``discriminator.use_aslm`` are the SPLB ablation switches.
    """

    depth: Any = opt(doc="DepthNetConfig: encoder, scales, depth range (metres)",
                     factory=_depth_config_factory)
    pose: Any = opt(doc="PoseNetConfig: encoder", factory=_pose_config_factory)
    discriminator: Any = opt(doc="DiscriminatorConfig: 4 SPLB blocks (STLM + ASLM); used when "
                                 "loss.adversarial = dasp", mark="paper",
                             factory=_disc_config_factory)
    patch_discriminator: PatchDiscriminatorConfig = opt(
        doc="PatchGAN on one disparity map; used when loss.adversarial = rnw", mark="RNW",
        factory=PatchDiscriminatorConfig)


FIELD_TYPE_HOOKS[ModelConfig] = _model_field_types


@dataclass
class LossConfig:
    """``loss``: terms and weights.

    Generator loss = photometric + smoothness·Σ_s smooth_s/2^s + lambda_3d·3D + lambda_G·GAN
    (+ scale.velocity_weight·velocity). Discriminator loss = lambda_D·GAN_D.
    """

    ssim_alpha: float = opt(0.85, "SSIM weight α in α(1−SSIM)/2 + (1−α)|L1|", mark="RNW",
                            lo=0.0, hi=1.0)
    smoothness: float = opt(1e-3, "edge-aware smoothness weight (divided by 2^scale, on "
                                  "mean-normalised disparity)", mark="RNW", lo=0.0)
    automask: bool = opt(True, "monodepth2 auto-masking of stationary pixels", mark="RNW")
    min_reprojection: bool = opt(True, "per-pixel minimum over sources (False: average)",
                                 mark="RNW")
    out_of_view_mask: bool = opt(False, "exclude pixels that warp outside a source image "
                                        "(monodepth2/RNW do not)", mark="ours")
    use_3d: bool = opt(True, "3D consistency projection loss (stage night)", mark="paper")
    lambda_3d: float = opt(0.05, "weight of the 3D consistency loss (tune on the synthetic "
                                 "benchmark)", mark="ours", lo=0.0)
    consistency_normaliser: str = opt("pixel", "3D loss depth normaliser: pixel (per-pixel "
                                      "z_ab + z_b in the graph, SC-SfMLearner) | scene (same "
                                      "value, gradient only through the pair's mean depth) | "
                                      "spread (same value, gradient only through the pair's "
                                      "geometric-mean depth x log-depth spread: neutral to "
                                      "squashing the range)",
                                      mark="ours", choices=CONSISTENCY_NORMALISERS)
    consistency_source_grad: bool = opt(True, "3D loss gradient reaches the source frames' "
                                        "depths too (False: only the target's; the "
                                        "sources are fixed references)", mark="ours")
    consistency_min_parallax: float = opt(0.0, "3D loss leaves out points that move less "
                                          "than this many pixels between their depth and "
                                          "infinity (sky, far points ahead); 0: none. "
                                          "Not recommended: judged on the predicted depth, "
                                          "a point can leave by being predicted farther",
                                          mark="ours", lo=0.0)
    consistency_mask: str = opt("occlusion", "3D loss mask: occlusion (drop points more than "
                                "20 % behind the other view's surface) | symmetric (also "
                                "more than 20 % in front of it: blurred depth edges and "
                                "moving objects)", mark="ours", choices=CONSISTENCY_MASKS)
    consistency_scale_lock: bool = opt(False, "project the 3D loss's weight gradient so "
                                       "that an Adam step for it leaves the batch's mean log "
                                       "depth unchanged (it pushes the scale farther through "
                                       "the network otherwise; scripts/diag_3d_drift.py); "
                                       "two extra DepthNet backward passes per step",
                                       mark="ours")
    adversarial: str = opt("dasp", "adversarial branch: dasp (temporal stacks + SPLB "
                                   "discriminator) | rnw (one map + PatchGAN) | none",
                           mark="paper", choices=ADVERSARIAL_MODES)
    lambda_G: float = opt(2.5e-4, "generator GAN weight (RNW: 2.5e-4 RobotCar, 4e-4 nuScenes)",
                          mark="RNW", lo=0.0)
    lambda_D: float = opt(2.5e-4, "discriminator loss weight (RNW: same as lambda_G)", mark="RNW",
                          lo=0.0, lo_open=True)
    gan_kind: str = opt("lsgan", "GAN objective", mark="RNW", choices=GAN_KINDS)
    pool_size: int = opt(50, "image pool of past fakes shown to the discriminator (0 = off)",
                         mark="RNW", lo=0)
    stack_normalization: str = opt("stack", "mean-normalise a temporal stack by its overall mean "
                                            "(keeps frame-to-frame changes) or each frame by its "
                                            "own", choices=STACK_NORMALIZATION)
    disc_scale: int = opt(0, "decoder scale fed to the discriminator (0 = full resolution; 1 "
                             "halves H and W, for CPU runs)", choices=(0, 1, 2, 3))


@dataclass
class OptimConfig:
    """``optim``: Adam for depth+pose (generator) and for the discriminator."""

    lr: float = opt(1e-4, "learning rate of depth and pose networks", mark="RNW", lo=0.0,
                    lo_open=True)
    betas: List[float] = opt(doc="Adam betas of depth and pose", mark="RNW",
                             factory=lambda: [0.9, 0.999])
    weight_decay: float = opt(0.0, "Adam weight decay", mark="RNW", lo=0.0)
    disc_lr: float = opt(1e-4, "learning rate of the discriminator", mark="RNW", lo=0.0,
                         lo_open=True)
    disc_betas: List[float] = opt(doc="Adam betas of the discriminator (pix2pix convention)",
                                  factory=lambda: [0.5, 0.999])
    epochs: int = opt(20, "passes over the primary training set (day stage: day_train; night: "
                          "night_train) unless train.max_steps > 0", mark="RNW", lo=1)
    lr_milestones: List[float] = opt(doc="points where every learning rate is multiplied by "
                                         "lr_gamma (unit: milestone_unit)", mark="RNW",
                                     factory=lambda: [15.0])
    milestone_unit: str = opt("epoch", "unit of lr_milestones: epoch | step | fraction (of the "
                                       "total steps; 0.75 = RNW's 15 of 20 epochs)",
                              choices=MILESTONE_UNITS)
    lr_gamma: float = opt(0.5, "learning-rate factor at each milestone", mark="RNW", lo=0.0,
                          hi=1.0, lo_open=True)
    schedule: str = opt("step", "learning-rate shape after warm-up: step (lr_gamma at each "
                                "milestone, RNW) | cosine (to lr·min_lr_ratio at the last step)",
                        choices=LR_SCHEDULES)
    warmup_steps: int = opt(0, "linear learning-rate warm-up from 0 over the first N steps "
                               "(from-scratch training at lr > 1e-4 diverges without it)", lo=0)
    min_lr_ratio: float = opt(0.05, "schedule cosine: final learning rate as a share of lr",
                              lo=0.0, hi=1.0)


@dataclass
class TrainSection:
    """``train``: stage, length, intervals, device."""

    stage: str = opt("day", "day: DepthNet+PoseNet self-supervised on day clips; night: DASP "
                            "adaptation from the day model", mark="paper", choices=STAGES)
    day_checkpoint: Optional[str] = opt(None, "day-stage checkpoint (stage night): teacher and "
                                              "initialisation")
    init_from_day: bool = opt(True, "initialise the night DepthNet from the day checkpoint",
                              mark="paper")
    init_pose_from_day: bool = opt(True, "also initialise PoseNet from the day checkpoint when "
                                         "it stores one", mark="RNW")
    max_steps: int = opt(0, "total optimisation steps; 0 = optim.epochs passes", lo=0)
    checkpoint_interval: int = opt(1000, "write last.pt (and a numbered copy) every N steps",
                                   lo=1)
    keep_checkpoints: int = opt(2, "numbered step checkpoints kept on disk (0 = only last.pt)",
                                lo=0)
    checkpoint_pool: bool = opt(True, "store the discriminator's image pool in checkpoints "
                                      "(bit-exact resume; adds pool_size·T·h·w·4 bytes per "
                                      "process)")
    log_interval: int = opt(50, "log/TensorBoard scalars every N steps", lo=1)
    image_interval: int = opt(500, "TensorBoard depth images every N steps (0 = never)", lo=0)
    tensorboard: bool = opt(True, "write TensorBoard event files to <out>/tb")
    progress: bool = opt(True, "tqdm progress bar")
    device: str = opt("auto", "auto | cpu | cuda | cuda:N (under torchrun: cuda:LOCAL_RANK)")
    threads: int = opt(0, "torch CPU threads (0 = leave torch's default)", lo=0)
    amp: bool = opt(True, "mixed precision on CUDA (ignored on CPU)")
    amp_dtype: str = opt("float16", "autocast dtype on CUDA", choices=AMP_DTYPES)
    grad_clip: float = opt(0.0, "clip gradient norm of each optimiser (0 = off)", lo=0.0)
    deterministic: bool = opt(False, "deterministic CUDA kernels (slower); CPU is deterministic")
    supervision: str = opt("self", "self: the self-supervised (DASP) losses; depth: L1 on log "
                                   "depth against the clips' ground truth — a diagnostic "
                                   "ceiling of what the network can learn, never a DASP model",
                           choices=SUPERVISION_MODES)
    precise_bn_batches: int = opt(32, "before validation and before saving a model, recompute "
                                      "BatchNorm running statistics over N training batches "
                                      "(precise-BN), so the evaluated network is the trained "
                                      "one; 0 = keep the running averages", lo=0)


@dataclass
class ValConfig:
    """``val``: validation on clips with ground-truth depth (data.day_val / data.night_val)."""

    interval: int = opt(0, "validate every N steps (0 = only at the end of training)", lo=0)
    max_batches: int = opt(0, "batches per validation (0 = the whole set)", lo=0)
    min_depth: float = opt(1e-3, "ground truth below this is invalid (metres)", mark="RNW",
                           lo=0.0)
    max_depth: float = opt(40.0, "evaluation cap in metres (RNW: 40 RobotCar, 60 nuScenes)",
                           mark="RNW", lo=0.0, lo_open=True)
    median_scaling: bool = opt(True, "per-image median scaling before the metrics", mark="RNW")
    best_metric: str = opt("abs_rel", "metric that selects best.pt (a1..a3: higher is better)",
                           choices=BEST_METRICS)


@dataclass
class PoseConfig:
    """``pose``: where the reprojection loss gets camera motion (dasp_core.train.poses)."""

    source: str = opt("posenet", "posenet: learned from image pairs (monodepth2, RNW, DASP); "
                                 "odometry: the recording's own camera poses (wheel odometry, "
                                 "VO/INS, ego_pose), metric depth by construction",
                      choices=("posenet", "odometry"))


@dataclass
class ScaleConfig:
    """``scale``: metric scale from weak velocity supervision (md4all / PackNet-SfM)."""

    velocity: bool = opt(False, "metric scale from the clips' speed and dt (see "
                                "velocity_mode); the checkpoint then declares "
                                "scale_source=learned",
                         mark="md4all")
    velocity_mode: str = opt("recover", "how speed makes the model metric: 'recover' trains "
                                        "scale-free and stores scale_factor = median over the "
                                        "last velocity_window steps of Σ speed·dt·|offset| / "
                                        "Σ ‖t_pred‖ (ours); 'loss' adds md4all's velocity loss "
                                        "so the networks themselves learn metres",
                             choices=("recover", "loss"))
    velocity_weight: float = opt(0.05, "weight of the velocity loss (velocity_mode=loss)",
                                 mark="ours", lo=0.0)
    velocity_window: int = opt(200, "steps whose speed/translation ratios form the recovered "
                                    "scale (velocity_mode=recover)", lo=1)
    report_median_scale: bool = opt(True, "after validation, log the median GT/pred scale factor "
                                          "(reporting only, never applied to the model)")


@dataclass
class TrainingConfig:
    """The whole training configuration (one YAML file)."""

    experiment: ExperimentConfig = opt(doc="run name, seed, output folder",
                                       factory=ExperimentConfig)
    data: DataConfig = opt(doc="image size, clips, datasets", factory=DataConfig)
    model: ModelConfig = opt(doc="networks", factory=ModelConfig)
    loss: LossConfig = opt(doc="loss terms", factory=LossConfig)
    optim: OptimConfig = opt(doc="optimisers and schedule", factory=OptimConfig)
    train: TrainSection = opt(doc="stage and loop", factory=TrainSection)
    val: ValConfig = opt(doc="validation", factory=ValConfig)
    pose: PoseConfig = opt(doc="camera-motion source", factory=PoseConfig)
    scale: ScaleConfig = opt(doc="metric scale", factory=ScaleConfig)

    # ------------------------------------------------------------------ cross-section rules
    def validate(self) -> "TrainingConfig":
        """Check rules that span sections; raise :class:`ConfigError` naming the key."""
        d, t, l = self.data, self.train, self.loss
        for key, v in (("data.height", d.height), ("data.width", d.width)):
            if v % 32:
                raise ConfigError(key, v, "a multiple of 32 (the depth network downsamples 32x)")
        if 0 not in d.offsets:
            raise ConfigError("data.offsets", list(d.offsets), "a list of distinct integers "
                                                              "containing 0 (the target)")
        if len(set(d.offsets)) != len(d.offsets) or len(d.offsets) < 2:
            raise ConfigError("data.offsets", list(d.offsets), "at least two distinct integers "
                                                              "including 0")
        for key, betas in (("optim.betas", self.optim.betas),
                           ("optim.disc_betas", self.optim.disc_betas)):
            if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
                raise ConfigError(key, list(betas), "two numbers in [0, 1)")
        for key in DATASET_KEYS:
            _check_dataset_spec(getattr(d, key), f"data.{key}",
                                d.offsets if key.endswith("_train") else None)
        if d.augment is not None:
            from dasp_core.data.augment import AugmentConfig
            AugmentConfig.from_dict(d.augment, "data.augment")
        if t.stage == "day":
            if d.day_train is None:
                raise ConfigError("data.day_train", None, "a dataset (stage day trains on it)")
        else:
            if d.night_train is None:
                raise ConfigError("data.night_train", None, "a dataset (stage night trains on it)")
            if l.adversarial != "none":
                if d.day_train is None:
                    raise ConfigError("data.day_train", None,
                                      f"a dataset: loss.adversarial={l.adversarial!r} needs day "
                                      f"clips as the teacher's real samples (or "
                                      f"loss.adversarial=none)")
                if not t.day_checkpoint:
                    raise ConfigError("train.day_checkpoint", t.day_checkpoint,
                                      f"a day-stage checkpoint: loss.adversarial="
                                      f"{l.adversarial!r} needs the frozen day teacher "
                                      f"(or loss.adversarial=none)")
            if t.init_from_day and not t.day_checkpoint and l.adversarial == "none":
                raise ConfigError("train.day_checkpoint", t.day_checkpoint,
                                  "a day-stage checkpoint, or train.init_from_day=false for a "
                                  "night-only model trained from scratch")
        if l.adversarial == "dasp" and t.stage == "night":
            seq_len = int(getattr(self.model.discriminator, "seq_len", len(d.offsets)))
            if seq_len != len(d.offsets):
                raise ConfigError("model.discriminator.seq_len", seq_len,
                                  f"{len(d.offsets)} (the number of data.offsets)")
        if t.stage == "night" and l.adversarial != "none" and \
                l.disc_scale not in tuple(self.model.depth.scales):
            raise ConfigError("loss.disc_scale", l.disc_scale,
                              f"one of model.depth.scales {list(self.model.depth.scales)}")
        if self.optim.milestone_unit == "fraction":
            for m in self.optim.lr_milestones:
                check_range("optim.lr_milestones", m, 0.0, 1.0)
        else:
            for m in self.optim.lr_milestones:
                check_range("optim.lr_milestones", m, 0.0)
        return self

    # ------------------------------------------------------------------ conveniences
    def to_dict(self) -> Dict[str, Any]:
        return config_to_dict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "TrainingConfig":
        return config_from_dict(data)


def _check_dataset_spec(spec: Any, key: str, offsets: Optional[Sequence[int]]) -> None:
    """A dataset entry: mapping with a known ``kind`` (or a non-empty list of them).

    Training sets must use ``data.offsets`` (the trainer reads frames in that order);
    validation sets only need the target frame (offset 0).
    """
    if spec is None:
        return
    from dasp_core.data.registry import DATASET_KINDS

    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ConfigError(key, spec, "a dataset mapping or a non-empty list of them")
        for i, s in enumerate(spec):
            _check_dataset_spec(s, f"{key}[{i}]", offsets)
        return
    if not isinstance(spec, dict):
        raise ConfigError(key, spec, f"a mapping with kind in {', '.join(DATASET_KINDS)} "
                                     f"(plus the reader's arguments)")
    check_choice(f"{key}.kind", spec.get("kind"), DATASET_KINDS)
    given = spec.get("offsets")
    if given is not None and (not isinstance(given, (list, tuple)) or 0 not in given):
        raise ConfigError(f"{key}.offsets", given, "a list of frame offsets containing 0")
    if offsets is not None and given is not None and [int(o) for o in given] != list(offsets):
        raise ConfigError(f"{key}.offsets", spec["offsets"],
                          f"{list(offsets)} (data.offsets: the trainer reads frames in that "
                          f"order), or leave it out")


def config_from_dict(data: Optional[Dict[str, Any]]) -> TrainingConfig:
    """Plain mapping (e.g. from YAML) → validated :class:`TrainingConfig`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("<config>", type(data).__name__, "a mapping of sections: " +
                          ", ".join(f.name for f in dataclasses.fields(TrainingConfig)))
    cfg = from_mapping(TrainingConfig, data, "")
    return cfg.validate()


# ============================================================================ files

def load_config(path: Optional[str | Path] = None, overrides: Sequence[str] = ()
                ) -> TrainingConfig:
    """YAML file (optional) + ``key=value`` overrides → validated :class:`TrainingConfig`."""
    data = load_config_dict(path) if path is not None else {}
    data = apply_overrides(data, parse_overrides(overrides))
    return config_from_dict(data)


def save_config(cfg: TrainingConfig, path: str | Path) -> Path:
    """Write the resolved configuration as YAML (the run folder keeps what was actually used)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(cfg.to_yaml())
    return p


# ============================================================================ reference

def describe_config(cfg: Optional[TrainingConfig] = None) -> str:
    """Human-readable reference of every key: ``key = default  [mark]  doc``."""
    cfg = cfg or TrainingConfig()
    lines: List[str] = []

    def walk(obj: Any, prefix: str) -> None:
        foreign_docs = doc_attributes(type(obj)) if type(obj).__module__ != __name__ else {}
        for f in dataclasses.fields(obj):
            key = f"{prefix}.{f.name}" if prefix else f.name
            value = getattr(obj, f.name)
            meta = f.metadata or {}
            doc = meta.get("doc") or foreign_docs.get(f.name, "")
            mark = meta.get("mark", "")
            choices = meta.get("choices")
            if dataclasses.is_dataclass(value):
                lines.append(f"{key}:  {doc}")
                walk(value, key)
                continue
            extra = f" (one of: {', '.join(map(str, choices))})" if choices else ""
            shown = yaml.safe_dump(config_to_dict(value), default_flow_style=True).strip()
            shown = shown[:-4] if shown.endswith("\n...") else shown.replace("\n...", "")
            tag = f"[{mark}] " if mark else ""
            lines.append(f"  {key} = {shown}  {tag}{doc}{extra}")

    walk(cfg, "")
    return "\n".join(lines)
