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
import glob
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from dasp_core.errors import ModelFileError, check_choice
from dasp_core.runtime.preprocess import ImagePipelineMixin, postprocess, preprocess

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "disparity"

_CUDA_SUCCESS = 0
_CUDA_ERROR_INSUFFICIENT_DRIVER = 35
_CUDA_ERROR_NO_DEVICE = 100
_ATTR_CC_MAJOR = 75  # cudaDevAttrComputeCapabilityMajor
_ATTR_CC_MINOR = 76  # cudaDevAttrComputeCapabilityMinor
_H2D, _D2H = 1, 2    # cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost
_STREAM_NON_BLOCKING = 1
_PROP_BYTES = 16384  # > sizeof(cudaDeviceProp) of every CUDA release; `name` is its 1st field


class CudaError(RuntimeError):
    """A CUDA runtime call failed, or no usable libcudart was found."""


def _cudart_candidates() -> List[str]:
    """Where libcudart may be: $DASP_CUDART, the loader's path, CUDA installs, pip wheels."""
    names: List[str] = []
    if os.environ.get("DASP_CUDART"):
        names.append(os.environ["DASP_CUDART"])
    found = ctypes.util.find_library("cudart")
    if found:
        names.append(found)
    names += ["libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"]
    roots = [os.environ.get("CUDA_HOME", ""), os.environ.get("CUDA_PATH", ""), "/usr/local/cuda"]
    for root in filter(None, roots):
        names += sorted(glob.glob(os.path.join(root, "lib64", "libcudart.so*")), reverse=True)
    for entry in sys.path:  # nvidia-cuda-runtime(-cu12) wheels
        for sub in ("nvidia/cuda_runtime/lib", "nvidia/cu13/lib", "nvidia/cu12/lib"):
            names += sorted(glob.glob(os.path.join(entry, sub, "libcudart.so*")), reverse=True)
    seen, unique = set(), []
    for n in names:
        if n not in seen:
            seen.add(n)
            unique.append(n)
    return unique


class CudaRuntime:
    """The few CUDA runtime API calls the TensorRT backend needs, through ctypes.

    Use :meth:`get` (one shared instance). Every failing call raises :class:`CudaError` with
    CUDA's own error string.
    """

    _instance: Optional["CudaRuntime"] = None
    _failure: Optional[str] = None
    _lock = threading.Lock()

    def __init__(self, lib: ctypes.CDLL, path: str, device_count: int) -> None:
        self._lib = lib
        self.path = path
        self._device_count = device_count
        L = lib
        c_int_p, c_void_p_p = ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_void_p)
        sigs = {
            "cudaSetDevice": [ctypes.c_int],
            "cudaDeviceGetAttribute": [c_int_p, ctypes.c_int, ctypes.c_int],
            "cudaMalloc": [c_void_p_p, ctypes.c_size_t],
            "cudaFree": [ctypes.c_void_p],
            "cudaMallocHost": [c_void_p_p, ctypes.c_size_t],
            "cudaFreeHost": [ctypes.c_void_p],
            "cudaMemcpyAsync": [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                                ctypes.c_void_p],
            "cudaStreamCreateWithFlags": [c_void_p_p, ctypes.c_uint],
            "cudaStreamSynchronize": [ctypes.c_void_p],
            "cudaStreamDestroy": [ctypes.c_void_p],
            "cudaRuntimeGetVersion": [c_int_p],
        }
        for name, args in sigs.items():
            fn = getattr(L, name)
            fn.argtypes, fn.restype = args, ctypes.c_int
        L.cudaGetErrorString.argtypes, L.cudaGetErrorString.restype = [ctypes.c_int], ctypes.c_char_p
        # cudaGetDeviceProperties is a macro for the _v2 symbol from CUDA 12 on
        self._get_props = getattr(L, "cudaGetDeviceProperties_v2", None) or L.cudaGetDeviceProperties
        self._get_props.argtypes, self._get_props.restype = [ctypes.c_void_p, ctypes.c_int], ctypes.c_int

    # ---- construction
    @classmethod
    def load(cls) -> "CudaRuntime":
        """Load the first libcudart that works with the installed driver."""
        problems = []
        for cand in _cudart_candidates():
            try:
                lib = ctypes.CDLL(cand)
                fn = lib.cudaGetDeviceCount
            except (OSError, AttributeError) as e:
                problems.append(f"{cand}: {e}")
                continue
            fn.argtypes, fn.restype = [ctypes.POINTER(ctypes.c_int)], ctypes.c_int
            count = ctypes.c_int(0)
            err = fn(ctypes.byref(count))
            if err == _CUDA_ERROR_INSUFFICIENT_DRIVER:
                problems.append(f"{cand}: newer than the installed NVIDIA driver")
                continue  # e.g. a CUDA 13 wheel on a CUDA 12 driver: try an older runtime
            n = count.value if err == _CUDA_SUCCESS else 0
            if err not in (_CUDA_SUCCESS, _CUDA_ERROR_NO_DEVICE):
                problems.append(f"{cand}: cudaGetDeviceCount error {err}")
            log.debug("CUDA runtime %s: %d device(s) (error %d)", cand, n, err)
            return cls(lib, cand, n)
        raise CudaError("no usable CUDA runtime library (libcudart) found; tried: "
                        + ("; ".join(problems) or "nothing found")
                        + ". Set DASP_CUDART=/path/to/libcudart.so")

    @classmethod
    def get(cls) -> "CudaRuntime":
        """The shared instance; a failed load is remembered (no repeated library probing)."""
        with cls._lock:
            if cls._instance is None:
                if cls._failure is not None:
                    raise CudaError(cls._failure)
                try:
                    cls._instance = cls.load()
                except CudaError as e:
                    cls._failure = str(e)
                    raise
            return cls._instance

    # ---- queries
    def _check(self, err: int, what: str) -> None:
        if err != _CUDA_SUCCESS:
            text = self._lib.cudaGetErrorString(err)
            raise CudaError(f"{what} failed: CUDA error {err} "
                            f"({text.decode() if text else 'unknown'})")

    def device_count(self) -> int:
        return self._device_count

    def runtime_version(self) -> str:
        v = ctypes.c_int(0)
        self._check(self._lib.cudaRuntimeGetVersion(ctypes.byref(v)), "cudaRuntimeGetVersion")
        return f"{v.value // 1000}.{(v.value % 1000) // 10}"

    def set_device(self, device: int) -> None:
        if not 0 <= device < self._device_count:
            raise CudaError(f"CUDA device {device} does not exist "
                            f"({self._device_count} device(s) visible)")
        self._check(self._lib.cudaSetDevice(device), f"cudaSetDevice({device})")

    def device_name(self, device: int = 0) -> str:
        buf = ctypes.create_string_buffer(_PROP_BYTES)
        self._check(self._get_props(buf, device), "cudaGetDeviceProperties")
        return buf.raw[:256].split(b"\0", 1)[0].decode(errors="replace").strip()

    def compute_capability(self, device: int = 0) -> str:
        major, minor = ctypes.c_int(0), ctypes.c_int(0)
        self._check(self._lib.cudaDeviceGetAttribute(ctypes.byref(major), _ATTR_CC_MAJOR, device),
                    "cudaDeviceGetAttribute(major)")
        self._check(self._lib.cudaDeviceGetAttribute(ctypes.byref(minor), _ATTR_CC_MINOR, device),
                    "cudaDeviceGetAttribute(minor)")
        return f"{major.value}.{minor.value}"

    # ---- memory and streams
    def malloc(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        self._check(self._lib.cudaMalloc(ctypes.byref(ptr), nbytes), f"cudaMalloc({nbytes})")
        return int(ptr.value or 0)

    def free(self, ptr: int) -> None:
        if ptr:
            self._check(self._lib.cudaFree(ctypes.c_void_p(ptr)), "cudaFree")

    def malloc_host(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        self._check(self._lib.cudaMallocHost(ctypes.byref(ptr), nbytes), f"cudaMallocHost({nbytes})")
        return int(ptr.value or 0)

    def free_host(self, ptr: int) -> None:
        if ptr:
            self._check(self._lib.cudaFreeHost(ctypes.c_void_p(ptr)), "cudaFreeHost")

    def memcpy_htod_async(self, dst: int, src: int, nbytes: int, stream: int) -> None:
        self._check(self._lib.cudaMemcpyAsync(ctypes.c_void_p(dst), ctypes.c_void_p(src), nbytes,
                                              _H2D, ctypes.c_void_p(stream)), "cudaMemcpyAsync(H2D)")

    def memcpy_dtoh_async(self, dst: int, src: int, nbytes: int, stream: int) -> None:
        self._check(self._lib.cudaMemcpyAsync(ctypes.c_void_p(dst), ctypes.c_void_p(src), nbytes,
                                              _D2H, ctypes.c_void_p(stream)), "cudaMemcpyAsync(D2H)")

    def stream_create(self) -> int:
        s = ctypes.c_void_p()
        self._check(self._lib.cudaStreamCreateWithFlags(ctypes.byref(s), _STREAM_NON_BLOCKING),
                    "cudaStreamCreateWithFlags")
        return int(s.value or 0)

    def stream_synchronize(self, stream: int) -> None:
        self._check(self._lib.cudaStreamSynchronize(ctypes.c_void_p(stream)), "cudaStreamSynchronize")

    def stream_destroy(self, stream: int) -> None:
        if stream:
            self._check(self._lib.cudaStreamDestroy(ctypes.c_void_p(stream)), "cudaStreamDestroy")


def cuda_device_count() -> int:
    """Number of visible CUDA devices without torch; 0 when there is no runtime or driver."""
    try:
        return CudaRuntime.get().device_count()
    except CudaError as e:
        log.debug("CUDA not available: %s", e)
        return 0


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
