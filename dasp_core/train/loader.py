"""Training data plumbing: readers → torch datasets → endless, resumable epoch loaders.

Pulled out of the trainer so each piece has one job: :class:`EpochLoader` (deterministic,
sharded, resumable order), :func:`wrap_reader` / :func:`build_dataset` (a reader from the data
registry at the network size, with augmentation for training), :func:`target_index` and
:func:`to_device`.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Dict, Iterator, Optional, Sequence

import numpy as np
import torch

from dasp_core.errors import ConfigError, DatasetError
from dasp_core.train import distributed as ddp
from dasp_core.train.config import TrainingConfig

__all__ = ["EpochLoader", "wrap_reader", "build_dataset", "target_index", "to_device"]


class EpochLoader:
    """An endless iterator over a dataset in deterministic epochs, resumable mid-epoch.

    Args:
        dataset: map-style dataset yielding :class:`~dasp_core.data.sample.Clip` or tensor dicts.
        batch_size: per-process batch size (training batches are full: drop_last).
        seed: data-order seed of this loader.
        dist: process placement (shards the data).
        num_workers: DataLoader workers.
        collate: batch collation (default :func:`dasp_core.data.sample.collate_clips`).
        name: for messages.
    """

    def __init__(self, dataset: Any, batch_size: int, seed: int, dist: ddp.DistInfo,
                 num_workers: int = 0, collate: Optional[Callable] = None,
                 pin_memory: bool = False, name: str = "data") -> None:
        from dasp_core.data.sample import collate_clips

        self.name = name
        self.seed = seed
        n = len(dataset)
        # per-item draw seeds where the dataset takes them: augmentation then follows the
        # data order, not a worker's random stream, and --resume repeats it exactly
        self.sampler = ddp.ShardedEpochSampler(
            n, batch_size, seed, dist.rank, dist.world_size, shuffle=True, drop_last=True,
            draw_seeds=bool(getattr(dataset, "accepts_draw_seed", False)))
        if self.sampler.batches_per_epoch() < 1:
            raise DatasetError(f"{name}: {n} clips are fewer than one batch of {batch_size} per "
                               f"process x {dist.world_size} processes; lower data.batch_size "
                               f"or add data")
        self._gen = torch.Generator()
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, sampler=self.sampler, num_workers=num_workers,
            collate_fn=collate or collate_clips, pin_memory=pin_memory, drop_last=True,
            generator=self._gen, worker_init_fn=_seed_worker,
            persistent_workers=num_workers > 0)
        self.epoch = 0
        self.batch = 0
        self._it: Optional[Iterator] = None

    def batches_per_epoch(self) -> int:
        return self.sampler.batches_per_epoch()

    def _start(self) -> None:
        self.sampler.set_epoch(self.epoch, self.batch)
        # a dedicated generator keeps DataLoader's worker base seed off the global RNG, so
        # creating an iterator (at start or on resume) does not shift the training RNG stream
        self._gen.manual_seed(self.seed * 100003 + self.epoch)
        self._it = iter(self.loader)

    def __next__(self) -> Dict[str, Any]:
        if self._it is None:
            self._start()
        try:
            out = next(self._it)
        except StopIteration:
            self.epoch += 1
            self.batch = 0
            self._start()
            out = next(self._it)
        self.batch += 1
        return out

    def __iter__(self) -> "EpochLoader":
        return self

    def state_dict(self) -> Dict[str, int]:
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        self.epoch = int(state.get("epoch", 0))
        self.batch = int(state.get("batch", 0))
        self._it = None


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % (2 ** 32)
    np.random.seed(seed)
    random.seed(seed)


def _with_offsets(spec: Any, offsets: Sequence[int]) -> Any:
    """Give every reader entry a frame order (training: ``data.offsets``; validation: [0])."""
    if isinstance(spec, (list, tuple)):
        return [_with_offsets(s, offsets) for s in spec]
    spec = dict(spec)
    spec.setdefault("offsets", list(offsets))
    if spec["offsets"] is None:
        spec["offsets"] = list(offsets)
    return spec


def wrap_reader(reader: Any, cfg: TrainingConfig, train: bool) -> Any:
    """A clip reader (``ds[i] -> Clip``) → torch dataset at the training size (+ augmentation)."""
    from dasp_core.data.augment import AugmentConfig
    from dasp_core.data.torch_dataset import ClipTorchDataset

    d = cfg.data
    augment = None
    if train:
        augment = (AugmentConfig.from_dict(d.augment, "data.augment") if d.augment is not None
                   else AugmentConfig(flip_prob=0.0, jitter_prob=0.0))
    return ClipTorchDataset(reader, size_hw=(d.height, d.width), resize_mode=d.resize_mode,
                            train=train, augment=augment, seed=cfg.experiment.seed)


def build_dataset(spec: Any, key: str, cfg: TrainingConfig, train: bool) -> Any:
    """``data.<key>`` → torch dataset: reader from the data registry, wrapped by
    :func:`wrap_reader` (network size, augmentation for training, bad-sample skipping)."""
    from dasp_core.data.registry import build_dataset as build_reader

    spec = _with_offsets(spec, cfg.data.offsets if train else [0])
    if train and cfg.pose.source == "odometry":
        spec = _require_poses(spec)
    return wrap_reader(build_reader(spec, key), cfg, train)


def _require_poses(spec: Any) -> Any:
    """rosbag2 entries keep only clips with camera poses when training uses odometry (a clip
    outside the odometry's time range would otherwise stop training); an explicit
    ``require_poses`` in the config wins."""
    if isinstance(spec, (list, tuple)):
        return [_require_poses(s) for s in spec]
    if spec.get("kind") == "rosbag":
        spec = dict(spec)
        spec.setdefault("require_poses", True)
    return spec


def target_index(spec: Any, default: Sequence[int]) -> int:
    """Index of the target frame in clips of a dataset entry (all list entries must agree)."""
    specs = spec if isinstance(spec, (list, tuple)) else [spec]
    found = {tuple(s.get("offsets") or default).index(0) for s in specs}
    if len(found) != 1:
        raise ConfigError("offsets", [s.get("offsets") for s in specs],
                          "the same target position (offset 0) in every concatenated entry")
    return found.pop()


def to_device(batch: Dict[str, Any], device: torch.device) -> Dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v)
            for k, v in batch.items()}
