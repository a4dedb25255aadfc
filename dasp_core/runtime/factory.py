"""``create_estimator``: one call from a model file to a ready :class:`DepthEstimator`.

``backend="auto"`` tries, in order (ours):

1. **tensorrt** — for ``.engine`` files, and when ``tensorrt`` is importable and a CUDA device
   is visible (and ``device`` is not ``cpu``); ``.onnx`` models are built into the engine cache
   once, ``.pt`` checkpoints are first exported to ONNX (needs torch).
2. **openvino** and **onnxruntime** — for ``.onnx`` models, or ``.pt`` checkpoints exported to
   ONNX into ``~/.cache/dasp/onnx`` when torch is present. When both can run the model on the
   CPU, both are loaded and timed on the model's input size, interleaved (:func:`race`), and
   the faster one is kept: which is faster depends on the CPU (OpenVINO's bf16 kernels on AMX
   run the shipped network 3-5x faster than onnxruntime's fp32; on CPUs without bf16 the two
   are close and either may win).
3. **torch** — ``.pt`` checkpoints, when torch is installed.

``precision="auto"`` (:func:`resolve_precision`) is bf16 on OpenVINO on a CPU with native bf16
(AMX / AVX512-BF16; accuracy cost measured in docs/performance.md), fp16 on an OpenVINO GPU,
and the graph as stored everywhere else. Every other precision is honoured exactly or refused
with :class:`ConfigError`; int8 runs the Q/DQ graph of ``dasp export --precision int8`` (the
model file itself, or ``<stem>_int8_qdq.onnx`` beside it).

Every decision is logged with its reason and kept on the estimator (``selection``, shown in
the node's diagnostics); if a chosen backend fails to start (e.g. a TensorRT build error), the
next candidate is tried and the failure is logged. Model files are checked before anything is
chosen: a missing or unknown file raises :class:`ModelFileError`.

Nothing here imports torch unless the torch backend or a checkpoint export is used.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from dasp_core import __version__
from dasp_core.errors import ConfigError, ModelFileError, check_choice, check_range
from dasp_core.runtime.base import DepthEstimator

log = logging.getLogger(__name__)

BACKENDS = ("auto", "tensorrt", "openvino", "onnxruntime", "torch")
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
RACE_CALLS = 5  # timed calls per backend in the auto race (after one untimed call each)
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


@dataclass(frozen=True)
class Availability:
    """What this process could run (probed without importing torch or tensorrt)."""

    tensorrt: bool
    cuda_devices: int
    onnxruntime: bool
    torch: bool
    openvino: bool = False


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def probe_availability() -> Availability:
    """Importability of tensorrt/openvino/onnxruntime/torch and the CUDA device count (via
    libcudart, not torch)."""
    trt = _importable("tensorrt")
    cuda = 0
    if trt:  # counting devices loads libcudart: only worth it when TensorRT could use them
        from dasp_core.runtime.cuda import cuda_device_count

        cuda = cuda_device_count()
    return Availability(tensorrt=trt, cuda_devices=cuda, onnxruntime=_importable("onnxruntime"),
                        torch=_importable("torch"), openvino=_importable("openvino"))


def model_kind(path: str | os.PathLike) -> str:
    """``checkpoint`` | ``onnx`` | ``engine`` from the file suffix; ModelFileError otherwise
    (and when the file does not exist)."""
    p = Path(path)
    suffix = p.suffix.lower()
    allowed = ", ".join(CHECKPOINT_SUFFIXES + ONNX_SUFFIXES + ENGINE_SUFFIXES)
    if not p.is_file():
        raise ModelFileError(str(p), "not found", f"a model file ({allowed})")
    if suffix in CHECKPOINT_SUFFIXES:
        return "checkpoint"
    if suffix in ONNX_SUFFIXES:
        return "onnx"
    if suffix in ENGINE_SUFFIXES:
        return "engine"
    raise ModelFileError(str(p), f"has an unknown suffix {suffix!r}", f"one of {allowed}")


def choose_backends(kind: str, backend: str, device: str, avail: Availability,
                    precision: str = "auto") -> Tuple[List[Tuple[str, str]], List[str]]:
    """Ordered backend candidates for a model (``precision``: what each must honour).

    Returns:
        ``([(backend, why chosen), ...], [why another backend was ruled out, ...])``.
        Raises :class:`ConfigError` when nothing can run the model.
    """
    check_choice("backend", backend, BACKENDS)
    check_choice("model kind", kind, ("checkpoint", "onnx", "engine"))
    wanted = BACKENDS[1:] if backend == "auto" else (backend,)
    chosen: List[Tuple[str, str]] = []
    ruled_out: List[str] = []
    gpu = device == "gpu" or device.startswith("gpu:")
    cuda = device == "cuda" or device.startswith("cuda:")
    for b in wanted:
        why_not = None
        if b == "tensorrt":
            if device == "cpu" or gpu:
                why_not = f"tensorrt: device={device}"
            elif precision == "bf16":
                why_not = "tensorrt: bf16 is not one of its precisions here (fp32, fp16, int8)"
            elif not avail.tensorrt:
                why_not = "tensorrt: the tensorrt package is not installed"
            elif avail.cuda_devices < 1:
                why_not = "tensorrt: no CUDA device visible"
            elif kind == "checkpoint" and not avail.torch:
                why_not = "tensorrt: a .pt checkpoint needs torch to export ONNX first"
            else:
                why = f"tensorrt importable and {avail.cuda_devices} CUDA device(s)"
        elif b == "openvino":
            if kind == "engine":
                why_not = "openvino: cannot run a TensorRT engine"
            elif cuda:
                why_not = f"openvino: runs on CPUs and Intel GPUs, not device={device}"
            elif not avail.openvino:
                why_not = "openvino: the openvino package is not installed"
            elif kind == "checkpoint" and not avail.torch:
                why_not = "openvino: a .pt checkpoint needs torch to export ONNX first"
            else:
                why = "openvino runs the ONNX model"
        elif b == "onnxruntime":
            if kind == "engine":
                why_not = "onnxruntime: cannot run a TensorRT engine"
            elif gpu:
                why_not = f"onnxruntime: device={device} is an OpenVINO (Intel GPU) device"
            elif precision == "bf16":
                why_not = "onnxruntime: no bf16 execution of an fp32 graph"
            elif not avail.onnxruntime:
                why_not = "onnxruntime: the onnxruntime package is not installed"
            elif kind == "checkpoint" and not avail.torch:
                why_not = "onnxruntime: a .pt checkpoint needs torch to export ONNX first"
            else:
                why = ("onnxruntime runs the .onnx model" if kind == "onnx" else
                       "onnxruntime on the checkpoint exported to ONNX (cached), faster than "
                       "eager torch on CPU")
        else:  # torch
            if precision in ("bf16", "int8"):
                why_not = f"torch: precision {precision} is not supported by the torch backend"
            elif gpu:
                why_not = f"torch: device={device} is an OpenVINO (Intel GPU) device"
            elif kind != "checkpoint":
                why_not = f"torch: runs .pt checkpoints only, not a {kind} file"
            elif not avail.torch:
                why_not = "torch: not installed"
            else:
                why = "torch eager on the checkpoint"
        if why_not:
            ruled_out.append(why_not)
        else:
            chosen.append((b, why))
    if not chosen:
        raise ConfigError("backend", backend, f"a backend that can run a {kind} model here; "
                          + "; ".join(ruled_out))
    return chosen, ruled_out


def _cuda_index(device: str) -> int:
    if device in ("auto", "cuda"):
        return 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return int(device[5:])
    raise ConfigError("device", device, "auto, cuda or cuda:N for TensorRT")


def onnx_for_checkpoint(checkpoint: str | os.PathLike,
                        input_size: Optional[Tuple[int, int]] = None,
                        cache_root: Optional[str | os.PathLike] = None) -> Path:
    """The ONNX export of a checkpoint in ``<cache>/onnx``, exported on first use (torch).

    Keyed by the checkpoint's sha256, the input size, the dasp version and the exporter's
    graph revision, so a retrained checkpoint or a new dasp exports again.
    """
    from dasp_core.export import cache_dir
    from dasp_core.export.onnx import GRAPH_REVISION, export_depth_net, file_sha256
    from dasp_core.checkpoint import load_depth_model

    sha = file_sha256(checkpoint)
    net, info, _ = load_depth_model(checkpoint, "cpu")
    h, w = input_size or (int(info.input_height), int(info.input_width))
    # GRAPH_REVISION: a cache written before the runtime rewrites is not reused
    path = cache_dir("onnx", cache_root) / (f"{sha[:24]}_{h}x{w}_dasp{__version__}"
                                            f"_g{GRAPH_REVISION}.onnx")
    if path.is_file():
        log.info("ONNX cache hit for %s: %s", checkpoint, path)
        return path
    log.info("exporting %s to ONNX (%dx%d) into the cache %s", checkpoint, h, w, path.parent)
    return export_depth_net(net, info, path, (h, w), source_sha256=sha)


def _validate(device: str, threads: Optional[int], precision: str,
              input_size: Optional[Tuple[int, int]]) -> None:
    if not (device in ("auto", "cpu", "cuda", "gpu")
            or (device.startswith("cuda:") and device[5:].isdigit())
            or (device.startswith("gpu:") and device[4:].isdigit())):
        raise ConfigError("device", device, "auto, cpu, cuda, cuda:N, gpu, gpu:N (gpu: Intel "
                                            "GPU through OpenVINO)")
    check_choice("precision", precision, PRECISIONS)
    if threads is not None:
        check_range("threads", threads, 1, None)
    if input_size is not None:
        if len(input_size) != 2 or any(int(v) < 32 or int(v) % 32 for v in input_size):
            raise ConfigError("input_size", input_size, "(height, width), multiples of 32")


def create_estimator(model: str | os.PathLike, backend: str = "auto", device: str = "auto",
                     threads: Optional[int] = None, precision: str = "auto",
                     input_size: Optional[Tuple[int, int]] = None, *,
                     cache_dir: Optional[str | os.PathLike] = None,
                     calib_dir: Optional[str | os.PathLike] = None,
                     availability: Optional[Availability] = None) -> DepthEstimator:
    """Load ``model`` (``.pt`` checkpoint | ``.onnx`` | ``.engine``) on the best backend.

    Args:
        model: path of the model file.
        backend: ``auto`` | ``tensorrt`` | ``openvino`` | ``onnxruntime`` | ``torch``.
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` | ``gpu`` | ``gpu:N`` (``gpu``: an
            Intel GPU through OpenVINO).
        threads: CPU threads (onnxruntime intra-op / OpenVINO inference threads / torch);
            None = library default.
        precision: ``auto`` | ``fp32`` | ``fp16`` | ``bf16`` | ``int8`` (module docstring).
            TensorRT: fp32/fp16/int8 (int8 needs ``calib_dir``); OpenVINO: all four; onnxruntime:
            the graph as stored, or the ``_int8_qdq`` / ``_fp16`` graph beside it; torch: fp32,
            fp16 on CUDA.
        input_size: expected network input ``(h, w)``; a model of another size fails with
            :class:`ModelFileError` (checkpoints are re-exported / run at that size).
        cache_dir: cache root (default ``$DASP_CACHE_DIR`` or ``~/.cache/dasp``); engines go
            to ``<root>/engines``, exported ONNX to ``<root>/onnx``.
        calib_dir: calibration images for an int8 TensorRT build.
        availability: override the probe (tests).

    Returns:
        the estimator, with ``selection`` (why this backend and precision run, in words).
    """
    _validate(device, threads, precision, input_size)
    kind = model_kind(model)
    avail = availability or probe_availability()
    candidates, ruled_out = choose_backends(kind, backend, device, avail, precision)
    if backend == "auto":
        log.info("backend auto for %s: candidates %s%s", Path(model).name,
                 ", ".join(f"{b} ({why})" for b, why in candidates),
                 ("; ruled out: " + "; ".join(ruled_out)) if ruled_out else "")
    failures: List[Tuple[str, Exception]] = []
    names = [b for b, _ in candidates]
    racing = backend == "auto" and names[:2] == ["openvino", "onnxruntime"] and \
        device in ("auto", "cpu")
    started: List[Tuple[str, str, Any]] = []
    for name, why in candidates:
        try:
            est = _create(name, Path(model), kind, device, threads, precision, input_size,
                          cache_dir, calib_dir)
        except Exception as e:
            if backend != "auto":
                raise
            failures.append((name, e))
            if (name, why) != candidates[-1]:
                log.warning("backend %s could not start (%s: %s); trying the next one",
                            name, type(e).__name__, e)
            continue
        started.append((name, why, est))
        if not (racing and name == "openvino"):
            break  # the first that starts runs, except that openvino races onnxruntime
    if started:
        if len(started) == 2:
            times = race([e for _, _, e in started])
            k = int(np.argmin(times))
            loser = started[1 - k][2]
            if hasattr(loser, "close"):
                loser.close()
            name, _, est = started[k]
            why = (f"{_label(est)} ran {times[k]:.1f} ms per frame vs {times[1 - k]:.1f} ms for "
                   f"{_label(started[1 - k][2])} on this machine (auto: the faster one)")
        else:
            name, why, est = started[0]
            why = f"{_label(est)}: {why}"
        est.selection = why
        log.info("using backend %s for %s: %s", name, Path(model).name, why)
        return est
    # a broken model file or a setting no backend can honour is the user's to fix: surface it
    # as such (the last backend's words)
    user_errors = [e for _, e in failures if isinstance(e, (ModelFileError, ConfigError))]
    if user_errors:
        raise user_errors[-1]
    raise RuntimeError(f"no backend could run {model}: " + " | ".join(
        f"{n}: {type(e).__name__}: {e}" for n, e in failures))


def _label(est: Any) -> str:
    return f"{est.backend} {getattr(est, 'precision', 'fp32')}"


def race(estimators: Sequence[Any], calls: int = RACE_CALLS) -> List[float]:
    """Median milliseconds per frame of each estimator's network on its input size, timed
    interleaved (one call each in turn, after one untimed call each), so a burst of other work
    on the machine lands on all of them alike."""
    inputs = [np.zeros((1, 3) + tuple(e.input_size), np.float32) for e in estimators]
    for e, x in zip(estimators, inputs):
        e.infer_disparity(x)
    times: List[List[float]] = [[] for _ in estimators]
    for _ in range(calls):
        for k, (e, x) in enumerate(zip(estimators, inputs)):
            t0 = time.perf_counter()
            e.infer_disparity(x)
            times[k].append((time.perf_counter() - t0) * 1e3)
    return [float(np.median(t)) for t in times]


def resolve_precision(backend: str, precision: str, device: str) -> str:
    """What ``precision="auto"`` means on ``backend`` here (module docstring); any other
    precision is returned as it is."""
    if precision != "auto":
        return precision
    if backend == "openvino":
        if device == "gpu" or device.startswith("gpu:"):
            return "fp16"
        from dasp_core.runtime.openvino_backend import native_bf16

        return "bf16" if native_bf16() else "fp32"
    return "fp32"


def _onnx_variant(source: Path, precision: str) -> Path:
    """onnxruntime: the graph file that computes in ``precision`` (the file itself when it is
    that precision, else its ``_int8_qdq`` / ``_fp16`` sibling); ConfigError if there is none."""
    from dasp_core.runtime.onnx_backend import read_onnx_model_info

    _, stored = read_onnx_model_info(source, with_precision=True)
    if stored == precision:
        return source
    suffix = {"int8": "_int8_qdq", "fp16": "_fp16"}.get(precision)
    sibling = source.with_name(source.stem + suffix + source.suffix) if suffix else None
    if sibling is not None and sibling.is_file():
        return sibling
    raise ConfigError("precision", precision,
                      f"{stored} for {source.name} on onnxruntime (it runs the graph as stored; "
                      f"write a {precision} graph with `dasp export --onnx --precision "
                      f"{precision}`)" if suffix else
                      f"{stored} for {source.name} on onnxruntime (no {precision} execution; "
                      "backend openvino runs bf16)")


def _create(name: str, path: Path, kind: str, device: str, threads: Optional[int],
            precision: str, input_size: Optional[Tuple[int, int]],
            cache_root: Optional[str | os.PathLike],
            calib_dir: Optional[str | os.PathLike]) -> Any:
    precision = resolve_precision(name, precision, device) if name != "onnxruntime" else precision
    if name == "tensorrt":
        from dasp_core.export import cache_dir
        from dasp_core.runtime.tensorrt_backend import TensorRTEstimator

        source = onnx_for_checkpoint(path, input_size, cache_root) if kind == "checkpoint" else path
        engines = cache_dir("engines", cache_root) if cache_root else None
        return TensorRTEstimator(source, _cuda_index(device), precision, input_size, engines,
                                 calib_dir)
    if name == "openvino":
        from dasp_core.runtime.openvino_backend import OpenVinoEstimator

        source = onnx_for_checkpoint(path, input_size, cache_root) if kind == "checkpoint" else path
        return OpenVinoEstimator(source, device, threads, precision, input_size)
    if name == "onnxruntime":
        from dasp_core.runtime.onnx_backend import OnnxEstimator

        source = onnx_for_checkpoint(path, input_size, cache_root) if kind == "checkpoint" else path
        if precision != "auto":
            source = _onnx_variant(Path(source), precision)
        return OnnxEstimator(source, device, threads, input_size)
    from dasp_core.runtime.torch_backend import TorchEstimator

    torch_precision = precision
    if precision == "fp16" and device == "cpu":
        log.warning("torch: fp16 needs CUDA; running fp32 on CPU")
        torch_precision = "fp32"
    if precision == "fp16" and device == "auto":
        import torch

        if not torch.cuda.is_available():
            log.warning("torch: no CUDA device, fp16 needs CUDA; running fp32 on CPU")
            torch_precision = "fp32"
    return TorchEstimator(path, device, torch_precision, threads, input_size)


__all__ = ["create_estimator", "choose_backends", "probe_availability", "Availability",
           "model_kind", "onnx_for_checkpoint", "race", "resolve_precision", "BACKENDS",
           "PRECISIONS"]
