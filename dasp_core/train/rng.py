"""Random-number state of a training process: seeding, and the snapshot a checkpoint keeps.

A resumed run restores python's, numpy's and torch's generators (CUDA's too when present),
so it draws the same automask noise and image-pool choices it would have drawn without the
interruption. Augmentation in DataLoader workers cannot use these (a worker's stream restarts
with the worker): its draws follow the data order instead
(:class:`~dasp_core.train.distributed.ShardedEpochSampler` ``draw_seeds``).
"""

from __future__ import annotations

import logging
import random
from typing import Any, Dict

import numpy as np
import torch

__all__ = ["seed_everything", "rng_state", "set_rng_state"]

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def rng_state() -> Dict[str, Any]:
    """This process's generator states (picklable; what ``train_state["rng"]`` holds)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (CUDA states only where the GPUs match)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"])
        except (RuntimeError, IndexError):
            log.warning("could not restore CUDA RNG states (different GPU count); continuing")
