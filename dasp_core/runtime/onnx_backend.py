"""onnxruntime backend: a dasp ONNX graph on the CPU execution provider (or CUDA when present).

The graph's ``metadata_props["dasp_model_info"]`` supplies the :class:`ModelInfo` (depth range,
scale, input size), so the ``.onnx`` file is all a robot needs. Imports numpy, OpenCV and
onnxruntime only — never torch (checked by the tests in a subprocess).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, List, Optional, Tuple

import numpy as np

from dasp_core.errors import ConfigError, ModelFileError, check_range
from dasp_core.runtime.base import (INPUT_NAME, METADATA_KEY, OUTPUT_NAME, ModelInfo,
                                    check_input_size, graph_model_info)
from dasp_core.runtime.preprocess import ImagePipelineMixin

log = logging.getLogger(__name__)

EXPECTED = "an ONNX model written by `dasp export --onnx`"


def available_providers() -> List[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def _providers_for(device: str) -> List[str]:
    have = available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "auto":
        return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in have else []) + [
            "CPUExecutionProvider"]
    if device == "cuda" or device.startswith("cuda:"):
        if "CUDAExecutionProvider" not in have:
            raise ConfigError("device", device, "cpu or auto (this onnxruntime has no CUDA "
                                                "execution provider; install onnxruntime-gpu)")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise ConfigError("device", device, "auto, cpu, cuda, cuda:N")


def _session_info(sess: Any, path: str) -> ModelInfo:
    """ModelInfo from a session's metadata, checked against the graph's I/O."""
    inp = sess.get_inputs()
    return graph_model_info(path, sess.get_modelmeta().custom_metadata_map.get(METADATA_KEY),
                            [i.name for i in inp], [o.name for o in sess.get_outputs()],
                            list(inp[0].shape) if inp else [],
                            bool(inp) and inp[0].type == "tensor(float)",
                            inp[0].type if inp else "nothing", EXPECTED)


def _open_session(path: str, options: Any, providers: List[str]) -> Any:
    import onnxruntime as ort

    if not os.path.isfile(path):
        raise ModelFileError(path, "not found", EXPECTED)
    try:
        return ort.InferenceSession(path, options, providers=providers)
    except Exception as e:  # InvalidProtobuf, Fail, InvalidGraph, NotImplemented, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFileError(path, f"cannot be loaded by onnxruntime {ort.__version__} "
                                   f"({type(e).__name__}: {first})", EXPECTED) from None


def read_onnx_model_info(path: str | os.PathLike, with_precision: bool = False) -> Any:
    """ModelInfo of a dasp ONNX file using onnxruntime only (no ``onnx`` package needed);
    ``(ModelInfo, precision)`` with ``with_precision``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = _open_session(str(path), opts, ["CPUExecutionProvider"])
    info = _session_info(sess, str(path))
    if with_precision:
        return info, sess.get_modelmeta().custom_metadata_map.get("precision", "fp32")
    return info


class OnnxEstimator(ImagePipelineMixin):
    """DepthEstimator on onnxruntime.

    Args:
        model: dasp ``.onnx`` file (ModelInfo in its metadata).
        device: ``auto`` (CUDA execution provider when installed, else CPU), ``cpu``,
            ``cuda``/``cuda:N``.
        threads: intra-op threads (``None``: onnxruntime's default, one per physical core).
            On a robot, pin this to what the node may use so it does not starve other nodes.
        input_size: expected ``(h, w)``; a graph of another size raises :class:`ModelFileError`.
    """

    backend = "onnxruntime"

    def __init__(self, model: str | os.PathLike, device: str = "auto",
                 threads: Optional[int] = None,
                 input_size: Optional[Tuple[int, int]] = None) -> None:
        import onnxruntime as ort

        self.path = str(model)
        if threads is not None:
            check_range("threads", threads, 1, None)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.intra_op_num_threads = int(threads or 0)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        providers = _providers_for(device)
        if device.startswith("cuda:"):
            providers = [("CUDAExecutionProvider", {"device_id": int(device.split(":")[1])}),
                         "CPUExecutionProvider"]
        self._session = _open_session(self.path, opts, providers)
        self.info = _session_info(self._session, self.path)
        check_input_size(self.path, self.info, input_size)
        self.providers = list(self._session.get_providers())
        self.threads = threads
        self.precision = self._session.get_modelmeta().custom_metadata_map.get("precision", "fp32")
        self._lock = threading.Lock()  # run() is thread-safe, but one frame at a time keeps
        # the thread pool from being oversubscribed by two callers
        log.info("onnxruntime %s: %s (%dx%d, %s) on %s, %s threads", ort.__version__,
                 Path(self.path).name, self.info.input_height, self.info.input_width,
                 self.precision, self.providers[0], threads or "default")

    @property
    def runs_on(self) -> str:
        return self.providers[0]

    def infer_disparity(self, batch: np.ndarray) -> np.ndarray:
        """``float32 [B, 3, h, w]`` → ``[B, 1, h, w]`` (static batch-1 graph: frame by frame)."""
        batch = self._check_batch(batch)
        out = np.empty((batch.shape[0], 1) + batch.shape[2:], dtype=np.float32)
        with self._lock:
            for i in range(batch.shape[0]):
                out[i] = self._session.run([OUTPUT_NAME], {INPUT_NAME: batch[i:i + 1]})[0][0]
        return out


__all__ = ["OnnxEstimator", "read_onnx_model_info", "available_providers"]
