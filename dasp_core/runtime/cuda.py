"""The dozen CUDA *runtime* calls the TensorRT backend and the engine builder need, through
ctypes (no torch, no cuda-python; why: :mod:`dasp_core.runtime.tensorrt_backend`).

Its own module so that both ``runtime.tensorrt_backend`` (running engines) and
``export.tensorrt`` (building them) use it without importing each other.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import logging
import os
import sys
import threading
from typing import List, Optional

log = logging.getLogger(__name__)

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


__all__ = ["CudaError", "CudaRuntime", "cuda_device_count"]
