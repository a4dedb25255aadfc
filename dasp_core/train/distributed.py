"""Multi-GPU / multi-node training through ``torchrun`` (DistributedDataParallel).

``torchrun --nproc_per_node=N [--nnodes=M ...] -m dasp_core.cli train CONFIG.yaml`` sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads them and joins the process group (NCCL on GPUs, gloo on CPU).
Without those variables everything here degrades to a single process.

Data order (ours): :class:`ShardedEpochSampler` draws one permutation per epoch from
``(seed, epoch)`` and gives rank ``r`` every ``world``-th index, like
``torch.utils.data.DistributedSampler``; it can also start in the middle of an epoch, so a
resumed run sees exactly the batches the killed run had not seen yet, without loading and
discarding the ones it had.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any, Iterator, List, Optional

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["DistInfo", "init_distributed", "cleanup_distributed", "resolve_device",
           "ShardedEpochSampler", "barrier", "all_gather_objects", "broadcast_object",
           "all_reduce_mean"]

log = logging.getLogger(__name__)


@dataclass
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size`` (``local_rank`` on its node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None

    @property
    def is_main(self) -> bool:
        """Only the main process writes checkpoints, logs and TensorBoard files."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise RuntimeError(f"environment variable {name}={value!r} is not an integer "
                           f"(set by torchrun)") from None


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto | cpu | cuda | cuda:N`` → a device (under torchrun ``cuda`` is ``cuda:LOCAL_RANK``).

    Raises:
        RuntimeError: CUDA requested but not available.
    """
    name = (name or "auto").strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"train.device={name!r} but CUDA is not available "
                               f"(use train.device=cpu or auto)")
        if name == "cuda":
            return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        return torch.device(name)
    if name != "cpu":
        raise RuntimeError(f"train.device={name!r} is not allowed; allowed: auto, cpu, cuda, "
                           f"cuda:N")
    return torch.device("cpu")


def init_distributed(device_name: str = "auto", timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group when launched by torchrun (``WORLD_SIZE > 1``).

    Backend: NCCL when the training device is CUDA, gloo otherwise. Returns a single-process
    :class:`DistInfo` when not launched distributed. Idempotent.
    """
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", 0)
    if world <= 1:
        return DistInfo(0, 1, 0, None)
    device = resolve_device(device_name, local)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        for var in ("MASTER_ADDR", "MASTER_PORT"):
            if var not in os.environ:
                raise RuntimeError(f"WORLD_SIZE={world} but {var} is not set; launch with "
                                   f"torchrun (it sets RANK, WORLD_SIZE, MASTER_ADDR, ...)")
        dist.init_process_group(backend=backend, rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=timeout_s))
        log.info("joined process group: rank %d/%d (local %d), backend %s", rank, world, local,
                 backend)
    return DistInfo(rank, world, local, backend)


def cleanup_distributed() -> None:
    """Leave the process group (safe to call when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_gather_objects(obj: Any) -> List[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` when not distributed."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of a tensor over ranks (for logging; a copy, the input is unchanged)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


class ShardedEpochSampler(torch.utils.data.Sampler):
    """Deterministic per-epoch shuffling, sharded over ranks, resumable mid-epoch.

    Epoch ``e`` uses the permutation of ``torch.Generator().manual_seed(seed + e)`` (or
    ``0..n-1`` without shuffling), truncated to a multiple of ``world_size * batch_size`` so
    every rank gets the same number of full batches (``drop_last``). Rank ``r`` takes
    positions ``r, r + world, r + 2·world, ...``.

    Args:
        n: dataset length.
        batch_size: per-rank batch size (for the truncation).
        seed: base seed.
        rank, world_size: shard.
        shuffle: permute (training) or keep order (validation).
        drop_last: truncate to whole batches (training).
        draw_seeds: yield ``(index, draw_seed)`` instead of ``index``: ``draw_seed`` is a
            function of (seed, epoch, rank, position in the epoch) only, for a dataset's
            random augmentation. A DataLoader worker's own random stream restarts when a
            resumed run starts new workers, so draws taken from it would not repeat.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1, shuffle: bool = True, drop_last: bool = True,
                 draw_seeds: bool = False) -> None:
        self.n = int(n)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.draw_seeds = draw_seeds
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch and skip its first ``start_batch`` batches (resume)."""
        self.epoch = int(epoch)
        self.start_batch = int(start_batch)

    def batches_per_epoch(self) -> int:
        per_rank = self.n // self.world_size if self.drop_last else -(-self.n // self.world_size)
        if self.drop_last:
            return per_rank // self.batch_size
        return -(-per_rank // self.batch_size)

    def _indices(self) -> List[int]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.drop_last:
            usable = self.batches_per_epoch() * self.batch_size * self.world_size
            order = order[:usable]
        mine = order[self.rank::self.world_size]
        return mine[self.start_batch * self.batch_size:]

    def __iter__(self) -> Iterator[Any]:
        indices = self._indices()
        if not self.draw_seeds:
            return iter(indices)
        first = self.start_batch * self.batch_size
        seeds = [int(np.random.SeedSequence([self.seed, self.epoch, self.rank, first + k])
                     .generate_state(1)[0]) for k in range(len(indices))]
        return iter(zip(indices, seeds))

    def __len__(self) -> int:
        return len(self._indices())
