"""The training loop: data, optimisers, AMP, DDP, logging, validation, checkpoints, resume.

One :class:`Trainer` runs one stage (``train.stage``: day or night) of one configuration.
Losses live in :mod:`dasp_core.train.stages`, the networks and the day checkpoint's part in
:mod:`~dasp_core.train.networks`, validation metrics in :mod:`~dasp_core.train.validation`,
what a resumed checkpoint must match in :mod:`~dasp_core.train.resume` and generator states in
:mod:`~dasp_core.train.rng`; this module runs the loop around them.

Guarantees:

* **Resumable.** Every ``train.checkpoint_interval`` steps the main process writes
  ``step_XXXXXXXX.pt`` and points ``last.pt`` at it, atomically (temp file + rename). A
  checkpoint holds the networks, optimisers, AMP scaler, step, data position (epoch and batch
  of every loader), every rank's RNG states and the image pool, so ``--resume`` continues
  exactly where the checkpoint was taken: a kill loses at most one interval.
* **No NaN checkpoints.** A non-finite loss term or gradient stops the run with
  :class:`TrainingDivergedError` naming the step and the term, before any optimiser step
  applies it; checkpoints are only written from finite weights, so ``last.pt`` stays the last
  good state.
* **Deterministic data order** given ``experiment.seed`` (see
  :class:`~dasp_core.train.distributed.ShardedEpochSampler`).
* **Only rank 0 writes** (checkpoints, ``train.log``, TensorBoard, progress bar).

Outputs in the run folder: ``config.yaml`` (resolved), ``train.log`` (plain text),
``tb/`` (TensorBoard), ``last.pt``, ``step_*.pt``, ``best.pt`` (best validation, when a
validation set is configured) and ``final.pt`` (deployable: ModelInfo with input size, depth
range and scale source).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from dasp_core.checkpoint import read_checkpoint, save_checkpoint
from dasp_core.errors import ConfigError, DaspError
from dasp_core.losses import ImagePool
from dasp_core.models import DepthNet, DepthNetConfig
from dasp_core.runtime.base import ModelInfo
from dasp_core.train import distributed as ddp
from dasp_core.train.config import TrainingConfig, save_config
from dasp_core.train.loader import (EpochLoader, build_dataset, target_index, to_device,
                                    wrap_reader)
from dasp_core.train.networks import build_stage_networks, load_day_checkpoint
from dasp_core.train.precise_bn import recompute_bn_stats
from dasp_core.train.resume import RESUME_MUST_MATCH, check_resumable
from dasp_core.train.rng import rng_state, seed_everything, set_rng_state
from dasp_core.train.run_log import RunLog, tqdm_logging
from dasp_core.train.scale import recovered_scale
from dasp_core.train.scale_lock import adam_preconditioner, project_out_scale
from dasp_core.train.schedule import lr_factor
from dasp_core.train.stages import (FrameLayout, StageNets, StepResult, compute_discriminator_step,
                                    compute_generator_step, teacher_real_samples)
from dasp_core.train.validation import validate_depth

__all__ = ["Trainer", "TrainingDivergedError", "TrainSummary", "seed_everything", "lr_factor",
           "RESUME_MUST_MATCH"]

log = logging.getLogger(__name__)


class TrainingDivergedError(DaspError, RuntimeError):
    """A loss term or gradient became NaN/inf; the run stopped without saving that state."""

    def __init__(self, step: int, terms: Sequence[str], values: Dict[str, float],
                 last_checkpoint: Optional[str], last_step: Optional[int]):
        self.step = step
        self.terms = list(terms)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        where = (f"the last good checkpoint is {last_checkpoint} (step {last_step})"
                 if last_checkpoint else "no checkpoint had been written yet")
        super().__init__(
            f"training diverged at step {step}: non-finite {', '.join(self.terms)}"
            f"{' (' + shown + ')' if shown else ''}; the weights of this step were not saved; "
            f"{where}. Lower optim.lr, set train.grad_clip, or check the data of this step.")


@dataclass
class TrainSummary:
    """What :meth:`Trainer.fit` returns."""

    out_dir: Path
    steps: int
    final_checkpoint: Optional[Path]
    best_checkpoint: Optional[Path]
    last_checkpoint: Optional[Path]
    val_metrics: Dict[str, float] = field(default_factory=dict)
    scale_source: str = "none"


# ============================================================================ helpers

def _params_finite(module: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


# ============================================================================ trainer

class Trainer:
    """Runs one training stage.

    Args:
        cfg: validated configuration.
        out_dir: run folder (created; rank 0 writes into it).
        resume: continue from ``out_dir/last.pt`` when it exists (a fresh start otherwise).
        datasets: optional clip readers (``len``, ``[i] -> Clip``) by config key
            (``day_train``, ``night_train``, ``day_val``, ``night_val``) used instead of building
            them from ``cfg.data`` (tests, callers with their own readers); they are wrapped
            like registry datasets (size, augmentation, bad-sample skipping).
        callbacks: called with the completed step number after every step (after any
            checkpoint of that step was written).
    """

    def __init__(self, cfg: TrainingConfig, out_dir: str | os.PathLike, resume: bool = False,
                 datasets: Optional[Dict[str, Any]] = None,
                 callbacks: Sequence[Callable[[int], None]] = ()) -> None:
        self.cfg = cfg.validate()
        self.out_dir = Path(out_dir)
        self.callbacks = list(callbacks)
        self._datasets = dict(datasets or {})
        self.dist = ddp.init_distributed(cfg.train.device)
        self.device = ddp.resolve_device(cfg.train.device, self.dist.local_rank)
        if cfg.train.threads > 0:
            torch.set_num_threads(cfg.train.threads)
        if cfg.train.deterministic and self.device.type == "cuda":
            torch.backends.cudnn.benchmark = False
            torch.use_deterministic_algorithms(True, warn_only=True)
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.layout = FrameLayout(tuple(cfg.data.offsets))
        self.night = cfg.train.stage == "night"
        self.adv = cfg.loss.adversarial if self.night else "none"
        self.step = 0
        self.best: Dict[str, Any] = {"value": None, "step": None}
        self.velocity_samples = 0
        # per-step speed/translation ratios behind the recovered metric scale
        self.velocity_ratios: Deque[float] = deque(maxlen=cfg.scale.velocity_window)
        self.bad_samples = 0
        self.last_val: Dict[str, float] = {}
        self.last_checkpoint: Optional[Path] = None
        self.last_checkpoint_step: Optional[int] = None
        self.logs = RunLog(self.out_dir, enabled=self.dist.is_main,
                           tensorboard=cfg.train.tensorboard)

        # Identical initialisation on every rank (DDP also broadcasts rank 0's weights).
        seed_everything(cfg.experiment.seed)
        resuming = resume and (self.out_dir / "last.pt").is_file()
        if resume and not resuming:
            log.info("--resume: %s has no last.pt; starting a fresh run", self.out_dir)
        # when resuming, weights (teacher included) come from last.pt, not the day checkpoint
        self._build_networks(load_day=not resuming)
        self._resume_state: Optional[Dict[str, Any]] = None
        if resuming:
            self._resume_state = self._load_resume(self.out_dir / "last.pt")
        self._place_networks()
        self._build_optimizers()
        self._build_amp()
        # Per-rank streams from here on (automask noise, pool, augmentation differ per rank).
        seed_everything(cfg.experiment.seed + 1000003 * self.dist.rank + 1)
        self.pool = (ImagePool(cfg.loss.pool_size, seed=cfg.experiment.seed + self.dist.rank)
                     if self.adv != "none" else None)
        self._build_data()
        if self._resume_state is not None:
            self._apply_resume(self._resume_state)
            self._resume_state = None

    # ------------------------------------------------------------------ networks
    def _build_networks(self, load_day: bool = True) -> None:
        nets = build_stage_networks(self.cfg, self.adv)
        if self.night and self.cfg.train.day_checkpoint and load_day:
            load_day_checkpoint(self.cfg.train.day_checkpoint, self.cfg, nets,
                                want_teacher=self.adv != "none")
        self.depth, self.pose, self.disc = nets.depth, nets.pose, nets.disc
        self.disc_kind, self.teacher = nets.disc_kind, nets.teacher

    def _place_networks(self) -> None:
        dev = self.device
        self.depth.to(dev)
        if self.pose is not None:
            self.pose.to(dev)
        if self.teacher is not None:
            self.teacher.to(dev)
        if self.disc is not None:
            self.disc.to(dev)
        self.depth_ddp: nn.Module = self.depth
        self.pose_ddp: Optional[nn.Module] = self.pose
        self.disc_ddp: Optional[nn.Module] = self.disc
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            # 1x1-conv weight grads may come with strides that differ from the bucket view only
            # along size-1 dimensions: same memory layout, a false alarm printed every step
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view")

            ids = [dev.index] if dev.type == "cuda" else None
            self.depth_ddp = DDP(self.depth, device_ids=ids)
            if self.pose is not None:
                self.pose_ddp = DDP(self.pose, device_ids=ids)
            if self.disc is not None:
                self.disc_ddp = DDP(self.disc, device_ids=ids)
        self.nets = StageNets(depth=self.depth_ddp, pose=self.pose_ddp, disc=self.disc_ddp,
                              disc_plain=self.disc, teacher=self.teacher)

    def _build_optimizers(self) -> None:
        o = self.cfg.optim
        params = list(self.depth.parameters())
        if self.pose is not None:
            params += list(self.pose.parameters())
        self.opt_g = torch.optim.Adam(params, lr=o.lr, betas=tuple(o.betas),
                                      weight_decay=o.weight_decay)
        self.opt_d = (torch.optim.Adam(self.disc.parameters(), lr=o.disc_lr,
                                       betas=tuple(o.disc_betas))
                      if self.disc is not None else None)

    def _build_amp(self) -> None:
        t = self.cfg.train
        self.amp_enabled = bool(t.amp and self.device.type == "cuda")
        dtype = torch.float16 if t.amp_dtype == "float16" else torch.bfloat16
        if self.amp_enabled:
            self.amp_ctx: Callable = lambda: torch.autocast("cuda", dtype=dtype)
        else:
            self.amp_ctx = contextlib.nullcontext
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_enabled
                                           and dtype == torch.float16)

    # ------------------------------------------------------------------ data
    def _dataset(self, key: str, train: bool) -> Any:
        if key in self._datasets:
            return wrap_reader(self._datasets[key], self.cfg, train)
        spec = getattr(self.cfg.data, key)
        if spec is None:
            return None
        return build_dataset(spec, f"data.{key}", self.cfg, train)

    def _build_data(self) -> None:
        cfg = self.cfg
        d = cfg.data
        pin = self.device.type == "cuda"
        primary_key = "night_train" if self.night else "day_train"
        self.primary = EpochLoader(self._dataset(primary_key, True), d.batch_size,
                                   cfg.experiment.seed, self.dist, d.num_workers,
                                   pin_memory=pin, name=f"data.{primary_key}")
        self.aux: Optional[EpochLoader] = None
        if self.adv != "none":
            self.aux = EpochLoader(self._dataset("day_train", True), d.batch_size,
                                   cfg.experiment.seed + 7919, self.dist, d.num_workers,
                                   pin_memory=pin, name="data.day_train")
        self.val_key = "night_val" if self.night else "day_val"
        self.val_set = self._dataset(self.val_key, False) if self.dist.is_main else None
        spec = getattr(d, self.val_key)
        if self.val_key in self._datasets:
            offs = getattr(self._datasets[self.val_key], "offsets", None)
            self.val_target = tuple(offs).index(0) if offs is not None else self.layout.target
        else:
            self.val_target = target_index(spec, [0]) if spec is not None else 0
        bpe = self.primary.batches_per_epoch()
        self.total_steps = cfg.train.max_steps or cfg.optim.epochs * bpe
        o = cfg.optim
        if o.milestone_unit == "epoch":
            self.milestones = [int(round(m * bpe)) for m in o.lr_milestones]
        elif o.milestone_unit == "step":
            self.milestones = [int(m) for m in o.lr_milestones]
        else:
            self.milestones = [int(round(m * self.total_steps)) for m in o.lr_milestones]

    # ------------------------------------------------------------------ resume
    def _load_resume(self, path: Path) -> Dict[str, Any]:
        ckpt = read_checkpoint(path)
        check_resumable(ckpt, self.cfg.to_dict(), path)
        self.depth.load_state_dict(ckpt["depth_state"])
        if self.pose is not None:
            self.pose.load_state_dict(ckpt["pose_state"])
        if self.disc is not None:
            self.disc.load_state_dict(ckpt["disc_state"])
        if self.teacher is None and self.adv != "none" and ckpt.get("teacher_state"):
            tcfg = DepthNetConfig.from_dict(dict(ckpt["teacher_config"]))
            self.teacher = DepthNet(tcfg).eval().requires_grad_(False)
        if self.teacher is not None and ckpt.get("teacher_state"):
            self.teacher.load_state_dict(ckpt["teacher_state"])
        if self.adv != "none" and self.teacher is None:
            raise ConfigError("--resume", str(path), "a night checkpoint holding the frozen day "
                                                     "teacher (teacher_state)")
        return ckpt

    def _apply_resume(self, ckpt: Dict[str, Any]) -> None:
        st = ckpt["train_state"]
        self.opt_g.load_state_dict(st["opt_g"])
        if self.opt_d is not None and st.get("opt_d") is not None:
            self.opt_d.load_state_dict(st["opt_d"])
        if st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])
        self.step = int(st["step"])
        self.best = dict(st.get("best") or self.best)
        self.velocity_samples = int(st.get("velocity_samples", 0))
        self.velocity_ratios.clear()
        self.velocity_ratios.extend(float(r) for r in st.get("velocity_ratios", []))
        self.primary.load_state_dict(st["loaders"]["primary"])
        if self.aux is not None and "aux" in st["loaders"]:
            self.aux.load_state_dict(st["loaders"]["aux"])
        rngs = st.get("rng") or []
        if len(rngs) == self.dist.world_size:
            set_rng_state(rngs[self.dist.rank])
        else:
            log.warning("checkpoint was written by %d processes, now %d: RNG streams restart "
                        "(training continues, not bit-identical)", len(rngs),
                        self.dist.world_size)
        pools = st.get("pool") or []
        if self.pool is not None and len(pools) == self.dist.world_size and pools[self.dist.rank]:
            self.pool.load_state_dict(pools[self.dist.rank], device=self.device)
        self.last_checkpoint = self.out_dir / "last.pt"
        self.last_checkpoint_step = self.step
        log.info("resumed from %s at step %d (epoch %d)", self.last_checkpoint, self.step,
                 self.primary.epoch)

    # ------------------------------------------------------------------ checkpoints
    def model_info(self) -> ModelInfo:
        """Deployment description of the current model."""
        cfg = self.cfg
        source, factor = self._scale_source()
        extra: Dict[str, Any] = {"stage": cfg.train.stage, "adversarial": self.adv,
                                 "use_3d": bool(self.night and cfg.loss.use_3d),
                                 "step": self.step}
        if self.last_val:
            extra["val"] = dict(self.last_val)
        if "median_scale" in self.last_val:
            extra["val_median_gt_scale"] = self.last_val["median_scale"]
        return ModelInfo(input_height=cfg.data.height, input_width=cfg.data.width,
                         min_depth=float(cfg.model.depth.min_depth),
                         max_depth=float(cfg.model.depth.max_depth), scale_factor=float(factor),
                         scale_source=source,
                         name=cfg.experiment.name, extra=extra)

    def _scale_source(self) -> "tuple[str, float]":
        """``(ModelInfo.scale_source, scale_factor)`` of the current model."""
        cfg = self.cfg
        if cfg.train.supervision == "depth":
            return "ground_truth", 1.0
        if cfg.pose.source == "odometry":  # metric translations make metric depth
            return "odometry", 1.0
        if not (cfg.scale.velocity and self.velocity_samples > 0):
            return "none", 1.0
        if cfg.scale.velocity_mode == "recover":
            recovered = recovered_scale(self.velocity_ratios)
            return ("learned", recovered) if recovered is not None else ("none", 1.0)
        return "learned", 1.0

    def _check_weights(self) -> None:
        for name, net in (("depth", self.depth), ("pose", self.pose), ("discriminator", self.disc)):
            if net is not None and not _params_finite(net):
                raise TrainingDivergedError(self.step, [f"{name} weights"], {},
                                            str(self.last_checkpoint) if self.last_checkpoint
                                            else None, self.last_checkpoint_step)

    def _extra(self, full: bool) -> Dict[str, Any]:
        extra: Dict[str, Any] = {"train_config": self.cfg.to_dict(), "disc_kind": self.disc_kind}
        if self.pose is not None:
            extra["pose_config"] = self.pose.cfg.to_dict()
            extra["pose_state"] = {k: v.detach().cpu() for k, v in self.pose.state_dict().items()}
        if self.disc is not None:
            extra["disc_config"] = (self.cfg.model.discriminator.to_dict()
                                    if self.disc_kind == "splb" else
                                    dict(vars(self.cfg.model.patch_discriminator)))
            extra["disc_state"] = {k: v.detach().cpu() for k, v in self.disc.state_dict().items()}
        summary = {"step": self.step, "epoch": self.primary.epoch, "val": dict(self.last_val),
                   "best": dict(self.best), "velocity_samples": self.velocity_samples,
                   "velocity_ratios": list(self.velocity_ratios)}
        if not full:
            extra["train_state"] = summary
            return extra
        if self.teacher is not None:
            extra["teacher_config"] = self.teacher.cfg.to_dict()
            extra["teacher_state"] = {k: v.detach().cpu()
                                      for k, v in self.teacher.state_dict().items()}
        extra["train_state"] = dict(
            summary,
            opt_g=self.opt_g.state_dict(),
            opt_d=self.opt_d.state_dict() if self.opt_d is not None else None,
            scaler=self.scaler.state_dict(),
            loaders={"primary": self.primary.state_dict(),
                     **({"aux": self.aux.state_dict()} if self.aux is not None else {})},
            world_size=self.dist.world_size, total_steps=self.total_steps)
        return extra

    def save_training_checkpoint(self) -> Optional[Path]:
        """Write ``step_*.pt`` + ``last.pt`` (collective: every rank must call it)."""
        self._check_weights()
        rngs = ddp.all_gather_objects(rng_state())
        pools = ddp.all_gather_objects(
            self.pool.state_dict() if self.pool is not None and self.cfg.train.checkpoint_pool
            else None)
        if not self.dist.is_main:
            ddp.barrier()
            return None
        extra = self._extra(full=True)
        extra["train_state"]["rng"] = rngs
        extra["train_state"]["pool"] = pools
        last = self.out_dir / "last.pt"
        keep = self.cfg.train.keep_checkpoints
        if keep > 0:
            numbered = self.out_dir / f"step_{self.step:08d}.pt"
            save_checkpoint(numbered, self.depth, self.model_info(), extra)
            _atomic_link(numbered, last)
            olds = sorted(self.out_dir.glob("step_*.pt"))
            for p in olds[:-keep]:
                p.unlink(missing_ok=True)
        else:
            save_checkpoint(last, self.depth, self.model_info(), extra)
        self.last_checkpoint = last
        self.last_checkpoint_step = self.step
        log.info("step %d: checkpoint %s", self.step, last)
        ddp.barrier()
        return last

    def _save_model(self, name: str) -> Path:
        self._check_weights()
        return save_checkpoint(self.out_dir / name, self.depth, self.model_info(),
                               self._extra(full=False))

    # ------------------------------------------------------------------ step
    def _diverged(self, names: List[str], values: Dict[str, float]) -> TrainingDivergedError:
        return TrainingDivergedError(self.step + 1, names, values,
                                     str(self.last_checkpoint) if self.last_checkpoint else None,
                                     self.last_checkpoint_step)

    def _check_finite(self, res: StepResult) -> None:
        bad = res.nonfinite_terms()
        flag = torch.tensor([1.0 if bad else 0.0], device=self.device)
        if self.dist.enabled:
            torch.distributed.all_reduce(flag)
        if bad or float(flag) > 0:
            values = {k: float(v.detach()) for k, v in res.terms.items()}
            raise self._diverged(bad or ["loss on another rank"], values)

    def _scale_locked_backward(self, res: StepResult) -> float:
        """Back-propagate ``res.total`` with the 3D loss's share of the DepthNet gradient
        projected so that Adam's step for it keeps the mean log depth ``res.scale_probe``
        (:mod:`dasp_core.train.scale_lock`). Returns the push the projection removed (change
        of the mean log depth per unit step size; positive: farther)."""
        term = res.weights["consistency_3d"] * res.terms["consistency_3d"]
        params = [p for p in self.depth.parameters() if p.requires_grad]
        scaled = self.scaler.scale
        g_term = torch.autograd.grad(scaled(term), params, retain_graph=True, allow_unused=True)
        g_mu = torch.autograd.grad(scaled(res.scale_probe), params, retain_graph=True,
                                   allow_unused=True)
        if self.dist.enabled:  # autograd.grad bypasses DDP's gradient averaging
            g_term = [ddp.all_reduce_mean(g) if g is not None else None for g in g_term]
            g_mu = [ddp.all_reduce_mean(g) if g is not None else None for g in g_mu]
        g_proj, push = project_out_scale(g_term, g_mu, adam_preconditioner(self.opt_g, params))
        scaled(res.total - term).backward()
        for p, g in zip(params, g_proj):
            if g is not None:
                p.grad = g.clone() if p.grad is None else p.grad + g
        return push / float(scaled(torch.ones(()))) ** 2  # both gradients carry the AMP scale

    def _optimizer_step(self, loss: torch.Tensor, opt: torch.optim.Optimizer,
                        params: List[torch.Tensor], what: str,
                        res: Optional[StepResult] = None) -> float:
        if res is not None and res.scale_probe is not None and res.weights.get(
                "consistency_3d", 0.0) != 0.0:
            res.stats["scale_push_3d"] = self._scale_locked_backward(res)
        else:
            self.scaler.scale(loss).backward()
        if self.scaler.is_enabled():
            self.scaler.unscale_(opt)
        clip = self.cfg.train.grad_clip
        norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
        if not self.scaler.is_enabled() and not bool(torch.isfinite(norm)):
            # AMP's scaler skips such steps by design; in fp32 they are divergence
            raise self._diverged([f"gradient of {what}"], {"grad_norm": float(norm)})
        self.scaler.step(opt)
        return float(norm)

    def train_step(self) -> Dict[str, float]:
        """One generator (+ discriminator) update; returns the logged scalars."""
        cfg = self.cfg
        o = cfg.optim
        factor = lr_factor(self.step, self.milestones, o.lr_gamma, total_steps=self.total_steps,
                           warmup_steps=o.warmup_steps, schedule=o.schedule,
                           min_ratio=o.min_lr_ratio)
        for g in self.opt_g.param_groups:
            g["lr"] = cfg.optim.lr * factor
        if self.opt_d is not None:
            for g in self.opt_d.param_groups:
                g["lr"] = cfg.optim.disc_lr * factor
        batch = to_device(next(self.primary), self.device)
        day = to_device(next(self.aux), self.device) if self.aux is not None else None
        want_images = (self.dist.is_main and cfg.train.image_interval > 0 and
                       (self.step + 1) % cfg.train.image_interval == 0)

        self.depth_ddp.train()
        if self.pose_ddp is not None:
            self.pose_ddp.train()
        if self.disc is not None:
            self.disc.requires_grad_(False)  # G step: gradients reach D's input, not D
        self.opt_g.zero_grad(set_to_none=True)
        res = compute_generator_step(self.nets, batch, cfg, self.layout, self.amp_ctx,
                                     want_visuals=want_images)
        self._check_finite(res)
        g_params = [p for grp in self.opt_g.param_groups for p in grp["params"]]
        out = {f"loss/{k}": float(v.detach()) for k, v in res.terms.items()}
        out["loss/total"] = float(res.total.detach())
        out["grad_norm/generator"] = self._optimizer_step(res.total, self.opt_g, g_params,
                                                          "depth/pose networks", res)
        out.update({f"stats/{k}": v for k, v in res.stats.items()})
        if "n_skipped" in batch:
            self.bad_samples += int(batch["n_skipped"].sum())
            out["data/bad_samples_total"] = float(self.bad_samples)
        if cfg.scale.velocity:
            self.velocity_samples += int(res.stats.get("velocity_samples", 0))
            if "velocity_ratio" in res.stats:
                self.velocity_ratios.append(res.stats["velocity_ratio"])
                out["stats/recovered_scale"] = float(recovered_scale(self.velocity_ratios))

        teacher_vis = None
        if self.disc is not None:
            self.disc.requires_grad_(True)
            self.disc_ddp.train()
            real = teacher_real_samples(self.teacher, day, cfg, self.layout, self.amp_ctx)
            fake = self.pool.query(res.fake)
            self.opt_d.zero_grad(set_to_none=True)
            dres = compute_discriminator_step(self.disc_ddp, real, fake, cfg, self.amp_ctx)
            self._check_finite(dres)
            out["loss/discriminator"] = float(dres.terms["discriminator"].detach())
            out["grad_norm/discriminator"] = self._optimizer_step(
                dres.total, self.opt_d, list(self.disc.parameters()), "discriminator")
            out.update({f"D/{k}": v for k, v in dres.stats.items()})
            if want_images:
                r = real[0]
                teacher_vis = (r[list(self.layout.temporal).index(self.layout.target), 0]
                               if r.dim() == 4 else r[0]).detach()
        self.scaler.update()
        self.step += 1
        out["lr/generator"] = self.opt_g.param_groups[0]["lr"]
        if self.opt_d is not None:
            out["lr/discriminator"] = self.opt_d.param_groups[0]["lr"]
        if want_images:
            self.logs.images(res.visuals, teacher_vis, self.step)
        return out

    # ------------------------------------------------------------------ validation
    def precise_bn(self) -> int:
        """Recompute DepthNet's BatchNorm statistics on ``train.precise_bn_batches`` training
        batches (fixed order, independent of the training stream); returns batches used."""
        from dasp_core.data.sample import collate_clips

        n = self.cfg.train.precise_bn_batches
        if n == 0 or not self.dist.is_main:
            return 0
        loader = torch.utils.data.DataLoader(
            self.primary.loader.dataset, batch_size=self.cfg.data.batch_size, shuffle=True,
            num_workers=0, collate_fn=collate_clips, drop_last=True,
            generator=torch.Generator().manual_seed(self.cfg.experiment.seed + 4099))

        def batches() -> Iterator[torch.Tensor]:
            for i, b in enumerate(loader):
                if i >= n:
                    return
                yield b.get("frames_aug", b["frames"]).flatten(0, 1).to(self.device)

        # augmentation draws from torch's global RNG: fork it so validation leaves the
        # training stream exactly as it was (runs with and without validation stay comparable)
        with torch.random.fork_rng(devices=[]), self.amp_ctx():
            used = recompute_bn_stats(self.depth, batches())
        log.info("step %d: BatchNorm statistics recomputed over %d training batches "
                 "(precise-BN)", self.step, used)
        return used

    def validate(self) -> Dict[str, float]:
        """Metrics of the current model on the validation clips (main process only), after
        precise-BN (:func:`~dasp_core.train.validation.validate_depth` has the keys)."""
        if self.val_set is None or not self.dist.is_main:
            return {}
        self.precise_bn()
        source, factor = self._scale_source()  # factor 1 unless recovered from speed
        return validate_depth(self.depth, self.val_set, self.cfg.val, target=self.val_target,
                              batch_size=self.cfg.data.val_batch_size, device=self.device,
                              amp_ctx=self.amp_ctx,
                              metric_factor=factor if source != "none" else None,
                              report_median_scale=self.cfg.scale.report_median_scale,
                              name=f"data.{self.val_key}")

    def _after_validation(self, metrics: Dict[str, float]) -> None:
        if not metrics:
            return
        self.last_val = metrics
        shown = ", ".join(f"{k} {metrics[k]:.4f}" for k in
                          ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3",
                           "metric_abs_rel", "bn_gap_log_depth", "spread_rel", "log_corr")
                          if k in metrics)
        log.info("step %d validation (data.%s, cap %g m): %s", self.step, self.val_key,
                 self.cfg.val.max_depth, shown)
        for k, val in metrics.items():
            self.logs.scalar(f"val/{k}", val, self.step)
        key = self.cfg.val.best_metric
        if key not in metrics or not math.isfinite(metrics[key]):
            return
        higher = key in ("a1", "a2", "a3")
        best = self.best.get("value")
        if best is None or (metrics[key] > best if higher else metrics[key] < best):
            self.best = {"value": metrics[key], "step": self.step, "metric": key}
            path = self._save_model("best.pt")
            log.info("step %d: new best %s %.4f → %s", self.step, key, metrics[key], path)

    # ------------------------------------------------------------------ loop
    def fit(self) -> TrainSummary:
        """Train until ``total_steps``; returns where the checkpoints are."""
        from tqdm import tqdm

        cfg = self.cfg
        self.logs.open()
        try:
            if self.dist.is_main:
                save_config(cfg, self.out_dir / "config.yaml")
                log.info("training stage %s (adversarial %s, 3D loss %s, velocity %s) for %d "
                         "steps (%d batches/epoch, batch %d x %d processes) on %s; output %s",
                         cfg.train.stage, self.adv, self.night and cfg.loss.use_3d,
                         cfg.scale.velocity, self.total_steps, self.primary.batches_per_epoch(),
                         cfg.data.batch_size, self.dist.world_size, self.device, self.out_dir)
            if self.step >= self.total_steps:
                log.info("nothing to do: step %d >= %d total steps", self.step, self.total_steps)
            bar = tqdm(total=self.total_steps, initial=self.step, unit="step", dynamic_ncols=True,
                       disable=not (self.dist.is_main and cfg.train.progress),
                       desc=f"{cfg.experiment.name}:{cfg.train.stage}")
            acc: Dict[str, List[float]] = {}
            t0 = time.perf_counter()
            steps_since = 0
            with tqdm_logging(bar):
                while self.step < self.total_steps:
                    scalars = self.train_step()
                    steps_since += 1
                    for k, val in scalars.items():
                        acc.setdefault(k, []).append(val)
                    bar.update(1)
                    if "loss/total" in scalars:
                        bar.set_postfix(loss=f"{scalars['loss/total']:.4f}", refresh=False)
                    if self.step % cfg.train.log_interval == 0 or self.step == self.total_steps:
                        self._log_scalars(acc, steps_since / max(1e-9, time.perf_counter() - t0))
                        acc, steps_since, t0 = {}, 0, time.perf_counter()
                    if cfg.val.interval and self.step % cfg.val.interval == 0 and \
                            self.step < self.total_steps:
                        self._after_validation(self.validate())
                        ddp.barrier()
                    if self.step % cfg.train.checkpoint_interval == 0 or \
                            self.step == self.total_steps:
                        self.save_training_checkpoint()
                    for cb in self.callbacks:
                        cb(self.step)
            bar.close()
            metrics = self.validate() if self.dist.is_main else {}
            self._after_validation(metrics)
            final = best = None
            if self.dist.is_main:
                if self.val_set is None:
                    self.precise_bn()
                final = self._save_model("final.pt")
                best = self.out_dir / "best.pt" if (self.out_dir / "best.pt").is_file() else None
                info = self.model_info()
                if cfg.scale.velocity and info.scale_source == "none":
                    log.warning("scale.velocity is on but no training clip carried speed and dt: "
                                "the model is NOT metric (scale_source=none)")
                log.info("done: %d steps; final model %s (scale_source=%s)", self.step, final,
                         info.scale_source)
            ddp.barrier()
            return TrainSummary(self.out_dir, self.step, final, best, self.last_checkpoint,
                                dict(self.last_val), self.model_info().scale_source)
        finally:
            self.logs.close()

    def _log_scalars(self, acc: Dict[str, List[float]], steps_per_s: float) -> None:
        means = {k: float(np.mean(v)) for k, v in acc.items() if v}
        if self.dist.enabled:
            keys = list(means)  # same insertion order on every rank (same code path)
            t = ddp.all_reduce_mean(torch.tensor([means[k] for k in keys], dtype=torch.float64,
                                                 device=self.device))
            means = dict(zip(keys, t.tolist()))
        self.logs.step_summary(means, self.step, self.total_steps, self.primary.epoch,
                               steps_per_s)


def _atomic_link(src: Path, dst: Path) -> None:
    """Make ``dst`` a copy of ``src`` atomically (hard link when possible, else copy)."""
    tmp = dst.with_suffix(dst.suffix + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)
