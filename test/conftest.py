"""Shared test set-up: deterministic, small, CPU-only."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

try:  # torch is optional for the deployment-only tests
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
except ImportError:  # pragma: no cover
    pass
