"""TensorRT backend: a serialized engine run with ``execute_async_v3`` on its own CUDA stream.

Device memory without torch (ours): a ctypes binding of the dozen CUDA *runtime* calls we need
(:class:`CudaRuntime`) instead of cuda-python/pycuda/polygraphy. Reasons: ``libcudart`` is on
every machine that can run TensorRT (JetPack's ``/usr/local/cuda``, or the ``nvidia-cuda-runtime``
wheel the ``tensorrt`` wheels pull in), its C ABI for these calls has not changed from CUDA 11
to 13, and it adds no dependency; cuda-python renamed its modules between 12.x
(``cuda.cudart``) and 12.6+/13 (``cuda.bindings.runtime``) and is not installed on JetPack.
Pointers from the runtime API live in the device's primary context, which TensorRT uses too.

Per estimator, once: a device buffer per I/O tensor bound by name (``set_tensor_address``), a
pinned host buffer per tensor (async copies), one non-blocking stream, one execution context.
Per frame: preprocess into the pinned input, H2D copy, ``execute_async_v3``, D2H copy, sync.

This module never imports torch (checked by the tests in a subprocess).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from dasp_core.errors import ModelFileError, check_choice
from dasp_core.runtime.cuda import CudaError, CudaRuntime, cuda_device_count  # noqa: F401
from dasp_core.runtime.preprocess import ImagePipelineMixin, postprocess, preprocess

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "disparity"

_H2D, _D2H = 1, 2    # cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost


def tensorrt_importable() -> bool:
    """True when ``import tensorrt`` would succeed (checked without importing it)."""
    import importlib.util

    return importlib.util.find_spec("tensorrt") is not None


def _nptype(trt: Any, dtype: Any) -> np.dtype:
    """numpy dtype of a ``trt.DataType`` (``trt.nptype`` where the bindings have it)."""
    try:
        return np.dtype(trt.nptype(dtype))
    except (AttributeError, KeyError, TypeError):
        table = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32,
                 "INT64": np.int64, "BOOL": np.bool_, "UINT8": np.uint8}
        for name, np_type in table.items():
            if dtype == getattr(trt.DataType, name, object()):
                return np.dtype(np_type)
        raise TypeError(f"unsupported TensorRT data type {dtype}") from None


class _HostDeviceBuffer:
    """One I/O tensor: pinned host array + device allocation of the same size."""

    def __init__(self, cuda: CudaRuntime, name: str, shape: Tuple[int, ...], dtype: np.dtype) -> None:
        self.name, self.shape, self.dtype = name, shape, np.dtype(dtype)
        self.nbytes = int(np.prod(shape)) * self.dtype.itemsize
        self._cuda = cuda
        self.host_ptr = cuda.malloc_host(self.nbytes)
        self.device_ptr = cuda.malloc(self.nbytes)
        raw = (ctypes.c_byte * self.nbytes).from_address(self.host_ptr)
        self.host = np.frombuffer(raw, dtype=self.dtype).reshape(shape)

    def release(self) -> None:
        self.host = None  # type: ignore[assignment]
        self._cuda.free(self.device_ptr)
        self._cuda.free_host(self.host_ptr)
        self.device_ptr = self.host_ptr = 0


class TensorRTEstimator(ImagePipelineMixin):
    """DepthEstimator on a TensorRT engine.

    Args:
        model: ``.engine``/``.plan`` (with its ``.json`` sidecar, as written by
            ``dasp export --tensorrt``) or an FP32 ``.onnx`` (built into the engine cache on the
            first run, minutes; then loaded in seconds).
        device: CUDA device index.
        precision: for ``.onnx`` models: ``fp32`` | ``fp16`` | ``int8`` (int8 needs
            ``calib_dir``). Ignored for ``.engine`` files (their precision is fixed).
        input_size: expected ``(h, w)``; a model of another size raises :class:`ModelFileError`.
        cache_dir: engine cache directory (default ``~/.cache/dasp/engines``).
    """

    backend = "tensorrt"

    def __init__(self, model: str | os.PathLike, device: int = 0, precision: str = "fp32",
                 input_size: Optional[Tuple[int, int]] = None,
                 cache_dir: Optional[str | os.PathLike] = None,
                 calib_dir: Optional[str | os.PathLike] = None,
                 workspace_mib: int = 1024) -> None:
        from dasp_core.export.tensorrt import (ENGINE_SUFFIXES, build_engine, import_tensorrt,
                                               make_logger, read_sidecar)

        check_choice("precision", precision, ("fp32", "fp16", "int8"))
        path = Path(model)
        if not path.is_file():
            raise ModelFileError(str(path), "not found", "a TensorRT engine or an ONNX model")
        if path.suffix.lower() == ".onnx":
            path, self.info = build_engine(path, precision, cache_dir, device, calib_dir,
                                           workspace_mib=workspace_mib)
            meta = read_sidecar(path)[1]
        elif path.suffix.lower() in ENGINE_SUFFIXES:
            self.info, meta = read_sidecar(path)
        else:
            raise ModelFileError(str(path), f"has suffix {path.suffix!r}",
                                 "one of .onnx, " + ", ".join(ENGINE_SUFFIXES))
        self.path = path
        self.precision = str(meta.get("key", {}).get("precision", precision))
        self.device = device
        trt = import_tensorrt()
        self._cuda = CudaRuntime.get()
        self._cuda.set_device(device)
        self._check_built_here(trt, meta)
        self._logger = make_logger(trt)
        self._runtime = trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise ModelFileError(str(path), f"TensorRT {trt.__version__} cannot deserialize it",
                                 "an engine built by this TensorRT version on this GPU "
                                 "(rebuild with `dasp export --tensorrt`)")
        self._engine = engine
        self._context = engine.create_execution_context()
        self._buffers: Dict[str, _HostDeviceBuffer] = {}
        self._stream = 0
        self._lock = threading.Lock()
        try:
            self._bind(trt, input_size)
            self._stream = self._cuda.stream_create()
        except Exception:
            self.close()
            raise
        log.info("TensorRT %s engine %s on %s: %dx%d %s", trt.__version__, path.name,
                 self._cuda.device_name(device), self.info.input_height, self.info.input_width,
                 self.precision)

    @property
    def runs_on(self) -> str:
        return f"{self._cuda.device_name(self.device)} (TensorRT)"

    def _check_built_here(self, trt: Any, meta: Dict[str, Any]) -> None:
        key = meta.get("key", {})
        here = {"trt_version": str(trt.__version__),
                "compute_capability": self._cuda.compute_capability(self.device)}
        for k, v in here.items():
            if key.get(k) and key[k] != v:
                raise ModelFileError(str(self.path), f"was built for {k} {key[k]}, this machine "
                                                     f"has {v}",
                                     "an engine built on this machine (engines are not portable; "
                                     "rebuild with `dasp export --tensorrt`)")

    def _bind(self, trt: Any, input_size: Optional[Tuple[int, int]]) -> None:
        engine = self._engine
        h, w = int(self.info.input_height), int(self.info.input_width)
        expect = {INPUT_NAME: (trt.TensorIOMode.INPUT, (1, 3, h, w)),
                  OUTPUT_NAME: (trt.TensorIOMode.OUTPUT, (1, 1, h, w))}
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        if sorted(names) != sorted(expect):
            raise ModelFileError(str(self.path), f"has I/O tensors {names}",
                                 f"exactly {INPUT_NAME!r} and {OUTPUT_NAME!r}")
        if input_size is not None and tuple(input_size) != (h, w):
            raise ModelFileError(str(self.path), f"has input size {h}x{w}",
                                 f"{input_size[0]}x{input_size[1]} as requested")
        for name in names:
            mode, shape = expect[name]
            got_shape = tuple(int(d) for d in engine.get_tensor_shape(name))
            dtype = _nptype(trt, engine.get_tensor_dtype(name))
            if engine.get_tensor_mode(name) != mode or got_shape != shape or dtype != np.float32:
                raise ModelFileError(str(self.path), f"tensor {name!r} is {got_shape} {dtype}",
                                     f"{shape} float32 ({mode})")
            buf = _HostDeviceBuffer(self._cuda, name, shape, dtype)
            self._buffers[name] = buf
            if not self._context.set_tensor_address(name, buf.device_ptr):
                raise RuntimeError(f"TensorRT refused the address of tensor {name!r}")

    def _run_pinned(self) -> None:
        """Input already in the pinned buffer → output in the pinned buffer."""
        inp, out = self._buffers[INPUT_NAME], self._buffers[OUTPUT_NAME]
        self._cuda.memcpy_htod_async(inp.device_ptr, inp.host_ptr, inp.nbytes, self._stream)
        if not self._context.execute_async_v3(self._stream):
            raise RuntimeError("TensorRT execute_async_v3 failed; see the TensorRT log")
        self._cuda.memcpy_dtoh_async(out.host_ptr, out.device_ptr, out.nbytes, self._stream)
        self._cuda.stream_synchronize(self._stream)

    def infer_disparity(self, batch: np.ndarray) -> np.ndarray:
        """``float32 [B, 3, h, w]`` → ``[B, 1, h, w]`` (the engine is batch 1: frame by frame)."""
        batch = self._check_batch(batch)
        result = np.empty((batch.shape[0], 1) + batch.shape[2:], dtype=np.float32)
        with self._lock:
            for i in range(batch.shape[0]):
                self._buffers[INPUT_NAME].host[0] = batch[i]
                self._run_pinned()
                result[i] = self._buffers[OUTPUT_NAME].host[0]
        return result

    def predict(self, image: np.ndarray, output_size: Optional[Tuple[int, int]] = None
                ) -> np.ndarray:
        """Like the shared ``predict`` but preprocesses straight into the pinned buffer."""
        with self._lock:
            preprocess(image, self.input_size, out=self._buffers[INPUT_NAME].host)
            self._run_pinned()
            disp = self._buffers[OUTPUT_NAME].host[0, 0].copy()
        size = output_size if output_size is not None else image.shape[:2]
        return postprocess(disp, self.info, size, self.interpolation)

    def close(self) -> None:
        """Free device/pinned memory and the stream (also done at garbage collection)."""
        for buf in getattr(self, "_buffers", {}).values():
            try:
                buf.release()
            except CudaError as e:  # during interpreter shutdown the driver may be gone
                log.debug("freeing %s: %s", buf.name, e)
        if getattr(self, "_buffers", None):
            self._buffers = {}
        if getattr(self, "_stream", 0):
            try:
                self._cuda.stream_destroy(self._stream)
            except CudaError as e:
                log.debug("destroying stream: %s", e)
            self._stream = 0
        self._context = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


__all__ = ["CudaRuntime", "CudaError", "cuda_device_count", "tensorrt_importable",
           "TensorRTEstimator"]
