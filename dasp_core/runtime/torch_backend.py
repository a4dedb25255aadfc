"""torch backend: the DepthNet of a dasp ``.pt`` checkpoint, eager, on CPU or CUDA.

The reference the other backends are tested against, and the fallback when neither
onnxruntime nor TensorRT can run a model. On CUDA, ``precision="fp16"`` runs under
``torch.autocast(float16)`` (weights stay fp32; convolutions run in fp16).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Optional, Tuple

import numpy as np
import torch

from dasp_core.errors import ConfigError, check_choice, check_range
from dasp_core.runtime.base import ModelInfo
from dasp_core.runtime.preprocess import ImagePipelineMixin

log = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    """``auto`` → ``cuda`` when available else ``cpu``; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError("device", device, "cpu or auto (torch sees no CUDA device)")
        return torch.device(device)
    raise ConfigError("device", device, "auto, cpu, cuda, cuda:N")


class TorchEstimator(ImagePipelineMixin):
    """DepthEstimator on a dasp checkpoint with torch.

    Args:
        model: dasp ``.pt`` checkpoint (:func:`dasp_core.checkpoint.save_checkpoint`).
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``.
        precision: ``fp32``, or ``fp16`` (CUDA only: autocast).
        threads: CPU threads for torch (process-wide ``torch.set_num_threads``); None keeps
            torch's setting.
        input_size: run the (fully convolutional) network at this ``(h, w)`` instead of the
            checkpoint's; multiples of 32.
    """

    backend = "torch"

    def __init__(self, model: str | os.PathLike, device: str = "auto", precision: str = "fp32",
                 threads: Optional[int] = None,
                 input_size: Optional[Tuple[int, int]] = None) -> None:
        from dasp_core.checkpoint import load_depth_model

        check_choice("precision", precision, ("fp32", "fp16"))
        self.device = resolve_device(device)
        if precision == "fp16" and self.device.type != "cuda":
            raise ConfigError("precision", precision, "fp32 on CPU (fp16 autocast needs CUDA)")
        if threads is not None:
            check_range("threads", threads, 1, None)
            torch.set_num_threads(int(threads))
        self.path = str(model)
        self.net, info, _ = load_depth_model(model, self.device)
        if input_size is not None:
            h, w = int(input_size[0]), int(input_size[1])
            if h < 32 or w < 32 or h % 32 or w % 32:
                raise ConfigError("input_size", f"{h}x{w}", "positive multiples of 32")
            info = ModelInfo.from_dict({**info.__dict__, "input_height": h, "input_width": w})
        self.info = info
        self.precision = precision
        self.threads = threads
        self._lock = threading.Lock()
        log.info("torch %s: %s (%dx%d) on %s, %s", torch.__version__, os.path.basename(self.path),
                 info.input_height, info.input_width, self.device, precision)

    @torch.inference_mode()
    def infer_disparity(self, batch: np.ndarray) -> np.ndarray:
        """``float32 [B, 3, h, w]`` → ``[B, 1, h, w]`` sigmoid disparity (float32)."""
        batch = self._check_batch(batch)
        x = torch.from_numpy(batch).to(self.device, non_blocking=True)
        with self._lock:
            # forward_disparity: scale 0 only, like the exported graph (the coarser heads are
            # training outputs; computing them here would be wasted work)
            if self.precision == "fp16":
                with torch.autocast(device_type="cuda", dtype=torch.float16):
                    disp = self.net.forward_disparity(x)
            else:
                disp = self.net.forward_disparity(x)
        return disp.float().cpu().numpy()


__all__ = ["TorchEstimator", "resolve_device"]
