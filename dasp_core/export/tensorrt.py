"""ONNX → TensorRT engine with the official TensorRT Python API (10.x and 11.x), and the
engine cache.

Precision (the one place where TensorRT 10 and 11 differ for us):

* TensorRT 10.x (Jetson JetPack 6 ships 10.3) builds "weakly typed" networks: an FP32 ONNX
  graph plus ``BuilderFlag.FP16`` lets the builder pick FP16 kernels; INT8 uses an explicitly
  quantised (Q/DQ) graph plus ``BuilderFlag.INT8`` (and FP16 for the unquantised layers).
  Implicit INT8 calibrators (``IInt8EntropyCalibrator2``, ...) are deprecated since 10.1
  ("Superseded by explicit quantization"), so they are not used at all.
* TensorRT 11.x removed ``BuilderFlag.FP16``/``INT8``/``BF16``/``FP8``, ``int8_calibrator``
  and the quantisation flags; every network is strongly typed (``STRONGLY_TYPED`` is
  deprecated and ignored), i.e. tensor types come from the graph: FP16 needs an FP16 ONNX graph
  (``export.onnx.convert_to_fp16``; NVIDIA's migration guide uses ModelOpt AutoCast for this,
  which is not a dependency here) and INT8 needs Q/DQ nodes (``export.onnx.quantize_int8_qdq``).
  References: TensorRT "Migrating from TensorRT 10.x to 11.x" (Strongly Typed Networks Are Now
  Required), "Removed Python APIs and Replacements" (BuilderFlag.FP16 → strong typing with
  ModelOpt AutoCast; BuilderFlag.INT8 → explicit quantization with Q/DQ nodes), TensorRT
  11.0.0 release notes (strongly typed networks are the default), TensorRT 10.x C++ API
  (IInt8EntropyCalibrator2: deprecated in TensorRT 10.1).

:func:`precision_plan` decides by the presence of the builder flags, not by version numbers,
so a 10.x build that already lacks a flag, or an 11.x that re-adds one, still does the right
thing.

Engines are tied to the TensorRT version, the GPU and the shape, so they are built on the
robot and cached under ``~/.cache/dasp/engines`` (``$DASP_CACHE_DIR/engines``; the
``cache_dir`` argument) by :class:`EngineKey`: sha256 of the FP32 ONNX bytes, TensorRT version,
GPU name, compute capability, input shape, precision and, for INT8, the calibration digest.
A robot builds once; a second process waiting on the build (file lock) reuses the result.

No torch import; ``tensorrt`` is imported only when an engine is built.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

from dasp_core import __version__
from dasp_core.errors import ConfigError, ModelFileError, check_choice, check_range
from dasp_core.export import cache_dir as _cache_dir
from dasp_core.runtime.base import ModelInfo

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
SIDECAR_SUFFIX = ".json"
ENGINE_FORMAT = "dasp-tensorrt-engine"


# --------------------------------------------------------------------------- precision plan

@dataclass(frozen=True)
class BuildPlan:
    """How to build a precision on the installed TensorRT.

    Attributes:
        graph: which ONNX graph to parse: ``"fp32"`` (the file as it is), ``"fp16"``
            (:func:`~dasp_core.export.onnx.convert_to_fp16`) or ``"qdq"``
            (:func:`~dasp_core.export.onnx.quantize_int8_qdq`).
        flags: ``trt.BuilderFlag`` member names to set.
        strongly_typed: build a strongly typed network (always so on TensorRT 11).
        reason: one line for the log.
    """

    graph: str
    flags: Tuple[str, ...]
    strongly_typed: bool
    reason: str


def precision_plan(precision: str, builder_flags: Sequence[str]) -> BuildPlan:
    """Decide graph variant and builder flags for ``precision`` given the names available in
    ``trt.BuilderFlag`` (``dir(trt.BuilderFlag)``)."""
    check_choice("precision", precision, PRECISIONS)
    flags = set(builder_flags)
    if precision == "fp32":
        return BuildPlan("fp32", (), "FP16" not in flags, "fp32 graph, no precision flags")
    if precision == "fp16":
        if "FP16" in flags:
            return BuildPlan("fp32", ("FP16",), False,
                             "TensorRT with BuilderFlag.FP16 (10.x): fp32 graph + FP16 flag")
        return BuildPlan("fp16", (), True,
                         "no BuilderFlag.FP16 (TensorRT 11+): fp16 ONNX graph, strongly typed")
    if "INT8" in flags:
        extra = ("FP16",) if "FP16" in flags else ()
        return BuildPlan("qdq", ("INT8",) + extra, False,
                         "TensorRT with BuilderFlag.INT8 (10.x): Q/DQ graph + INT8/FP16 flags")
    return BuildPlan("qdq", (), True,
                     "no BuilderFlag.INT8 (TensorRT 11+): Q/DQ graph, strongly typed")


# --------------------------------------------------------------------------- cache

@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; :meth:`digest` names the cache entry.

    Attributes:
        onnx_sha256: sha256 of the FP32 ONNX file the engine comes from.
        trt_version: ``tensorrt.__version__``.
        gpu_name: CUDA device name, e.g. ``"Orin"``, ``"NVIDIA H100 80GB HBM3"``.
        compute_capability: ``"major.minor"``, e.g. ``"8.7"``.
        input_shape: ``(1, 3, H, W)``.
        precision: ``fp32`` | ``fp16`` | ``int8``.
        calibration: digest of the INT8 calibration frames and method (``""`` otherwise).
    """

    onnx_sha256: str
    trt_version: str
    gpu_name: str
    compute_capability: str
    input_shape: Tuple[int, ...]
    precision: str
    calibration: str = ""

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    def digest(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def default_engine_cache_dir() -> Path:
    """``$DASP_CACHE_DIR/engines`` or ``~/.cache/dasp/engines``."""
    return _cache_dir("engines")


def sidecar_path(engine_path: str | os.PathLike) -> Path:
    """``model.engine`` → ``model.engine.json`` (ModelInfo + build description)."""
    p = Path(engine_path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def write_sidecar(engine_path: str | os.PathLike, info: ModelInfo, key: EngineKey,
                  plan: Optional[BuildPlan] = None, build_seconds: float = 0.0) -> Path:
    meta = {"format": ENGINE_FORMAT, "model_info": info.__dict__, "key": key.to_dict(),
            "plan": asdict(plan) if plan else None, "build_seconds": round(build_seconds, 2),
            "dasp_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    path = sidecar_path(engine_path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path


def read_sidecar(engine_path: str | os.PathLike) -> Tuple[ModelInfo, Dict[str, Any]]:
    """ModelInfo and raw metadata of an engine; :class:`ModelFileError` when missing/broken."""
    path = sidecar_path(engine_path)
    expected = "the .engine.json written next to it by `dasp export --tensorrt`"
    if not path.is_file():
        raise ModelFileError(str(engine_path), f"has no sidecar {str(path)!r}", expected)
    try:
        meta = json.loads(path.read_text())
        if meta.get("format") != ENGINE_FORMAT:
            raise ValueError(f"format is {meta.get('format')!r}, not {ENGINE_FORMAT!r}")
        return ModelInfo.from_dict(meta["model_info"]), meta
    except (ValueError, KeyError, TypeError) as e:
        raise ModelFileError(str(path), f"is not a valid engine sidecar ({e})", expected) from None


class EngineCache:
    """Directory of engines named by :meth:`EngineKey.digest`, each with its sidecar."""

    def __init__(self, directory: Optional[str | os.PathLike] = None) -> None:
        self.directory = Path(directory) if directory else default_engine_cache_dir()
        self.directory.mkdir(parents=True, exist_ok=True)

    def engine_path(self, key: EngineKey) -> Path:
        return self.directory / f"{key.digest()}.engine"

    def lookup(self, key: EngineKey) -> Optional[Path]:
        """The cached engine for ``key`` or None (an entry without sidecar is ignored)."""
        path = self.engine_path(key)
        if path.is_file() and sidecar_path(path).is_file() and path.stat().st_size > 0:
            return path
        return None

    def store(self, key: EngineKey, engine: bytes, info: ModelInfo,
              plan: Optional[BuildPlan] = None, build_seconds: float = 0.0) -> Path:
        """Write engine then sidecar, each atomically (the sidecar marks a complete entry)."""
        path = self.engine_path(key)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            f.write(engine)
        os.replace(tmp, path)
        write_sidecar(path, info, key, plan, build_seconds)
        return path

    @contextlib.contextmanager
    def lock(self, key: EngineKey) -> Iterator[None]:
        """Exclusive per-key file lock, so two nodes starting together build once."""
        lock_path = self.directory / f"{key.digest()}.lock"
        with open(lock_path, "a+") as f:
            try:
                import fcntl
            except ImportError:  # pragma: no cover - non-POSIX: no locking, builds may repeat
                yield
                return
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------- builder

def import_tensorrt() -> Any:
    """``import tensorrt`` with an actionable error."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise ImportError("the TensorRT backend needs the `tensorrt` Python package (JetPack "
                          "ships it; on x86 `pip install tensorrt`)") from e
    return trt


def make_logger(trt: Any) -> Any:
    """A ``trt.ILogger`` that forwards to Python logging (warnings and errors only, INFO at
    debug level); falls back to ``trt.Logger(WARNING)``."""
    sev = trt.ILogger.Severity
    levels = {sev.INTERNAL_ERROR: logging.CRITICAL, sev.ERROR: logging.ERROR,
              sev.WARNING: logging.WARNING, sev.INFO: logging.DEBUG}

    class _Logger(trt.ILogger):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            level = levels.get(severity)
            if level is not None:
                log.log(level, "TensorRT: %s", msg)

    try:
        return _Logger()
    except Exception:  # pragma: no cover - bindings without ILogger subclassing
        return trt.Logger(trt.Logger.WARNING)


def trt_major(trt: Any) -> int:
    try:
        return int(str(trt.__version__).split(".")[0])
    except ValueError:
        return 0


def builder_flag_names(trt: Any) -> Tuple[str, ...]:
    return tuple(n for n in dir(trt.BuilderFlag) if n.isupper())


def build_serialized(trt: Any, onnx_bytes: bytes, plan: BuildPlan, workspace_mib: int,
                     source: str) -> bytes:
    """Parse ONNX bytes and build a serialized engine following ``plan``."""
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    # TensorRT 10 needs the flag for an FP16/Q-DQ graph to keep its types; 11 ignores it
    # (deprecated) and is always strongly typed.
    if plan.strongly_typed and trt_major(trt) < 11 and hasattr(trt.NetworkDefinitionCreationFlag,
                                                                 "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelFileError(source, f"TensorRT {trt.__version__} cannot parse it: {errors}",
                             "an ONNX graph of supported ops (dasp export --onnx)")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    for name in plan.flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT {trt.__version__} failed to build an engine from {source} "
                           f"({plan.reason}); see the TensorRT log above")
    return bytes(serialized)


def _onnx_info(path: Path) -> Tuple[ModelInfo, Tuple[int, int], str]:
    """ModelInfo, input size and stored precision of a dasp ONNX file, via the onnx package or,
    without it (robots), onnxruntime's metadata reader."""
    try:
        from dasp_core.export.onnx import (graph_input_size, load_onnx, model_metadata,
                                           read_model_info)
    except ImportError:
        from dasp_core.runtime.onnx_backend import read_onnx_model_info

        info, precision = read_onnx_model_info(path, with_precision=True)
        return info, (int(info.input_height), int(info.input_width)), precision
    model = load_onnx(path)
    info = read_model_info(model)
    return info, graph_input_size(model), model_metadata(model).get("precision", "fp32")


def _graph_bytes(path: Path, plan: BuildPlan, calibration: Any, calib_method: str) -> bytes:
    if plan.graph == "fp32":
        return path.read_bytes()
    try:
        from dasp_core.export.onnx import convert_to_fp16, load_onnx, quantize_int8_qdq
    except ImportError as e:
        raise ImportError(f"building a {plan.graph} engine needs the `onnx` package to rewrite "
                          "the graph (pip install onnx), or pass an ONNX already converted with "
                          "`dasp export --onnx --precision ...`") from e
    model = load_onnx(path)
    if plan.graph == "fp16":
        return convert_to_fp16(model).SerializeToString()
    return quantize_int8_qdq(model, calibration, calib_method).SerializeToString()


def build_engine(onnx_path: str | os.PathLike, precision: str = "fp32",
                 cache_dir: Optional[str | os.PathLike] = None, device: int = 0,
                 calib_dir: Optional[str | os.PathLike] = None, calib_method: str = "minmax",
                 calib_max_images: int = 256, workspace_mib: int = 1024,
                 force: bool = False) -> Tuple[Path, ModelInfo]:
    """Engine for an FP32 dasp ONNX file, from the cache or freshly built and cached.

    Args:
        onnx_path: FP32 ONNX from ``dasp export --onnx`` (its sha256 keys the cache).
        precision: ``fp32`` | ``fp16`` | ``int8`` (int8 needs ``calib_dir``). An ONNX that is
            already an fp16 or Q/DQ graph (``dasp export --onnx --precision``) is built as it
            is, strongly typed, and its own precision wins.
        cache_dir: engine cache directory (default ``~/.cache/dasp/engines``).
        device: CUDA device index.
        calib_dir: folder of calibration images (INT8), sampled down to ``calib_max_images``.
        workspace_mib: builder workspace limit (lower it on small Jetsons).
        force: rebuild even when cached.

    Returns:
        (engine path in the cache, ModelInfo). The sidecar ``<engine>.json`` holds both.
    """
    from dasp_core.export.onnx import file_sha256
    from dasp_core.runtime.cuda import CudaRuntime

    check_choice("precision", precision, PRECISIONS)
    check_range("workspace_mib", workspace_mib, 16, None)
    path = Path(onnx_path)
    if not path.is_file():
        raise ModelFileError(str(path), "not found", "an ONNX model from `dasp export --onnx`")
    info, (h, w), stored = _onnx_info(path)
    if stored != "fp32":  # an fp16 / Q-DQ graph already: build it as typed, whatever was asked
        if stored != precision:
            log.warning("%s is a %s graph; building a %s engine (not %s)", path, stored, stored,
                        precision)
        precision = stored
    calibration, calib_tag = None, ""
    if precision == "int8" and stored == "fp32":
        if calib_dir is None:
            raise ConfigError("calib_dir", None, "a folder of calibration images (needed for int8)")
        from dasp_core.export.onnx import calibration_digest, load_calibration_images

        calibration = load_calibration_images(calib_dir, (h, w), calib_max_images)
        calib_tag = f"{calib_method}:{calibration_digest(calibration)}"
    trt = import_tensorrt()
    cuda = CudaRuntime.get()
    cuda.set_device(device)
    key = EngineKey(onnx_sha256=file_sha256(path), trt_version=str(trt.__version__),
                    gpu_name=cuda.device_name(device),
                    compute_capability=cuda.compute_capability(device),
                    input_shape=(1, 3, h, w), precision=precision, calibration=calib_tag)
    cache = EngineCache(cache_dir)
    with cache.lock(key):
        hit = None if force else cache.lookup(key)
        if hit is not None:
            log.info("TensorRT engine cache hit: %s (%s, %s %s, %dx%d %s)", hit, key.trt_version,
                     key.gpu_name, key.compute_capability, h, w, precision)
            return hit, info
        if stored == "fp32":
            plan = precision_plan(precision, builder_flag_names(trt))
        else:
            plan = BuildPlan("fp32", (), True, f"{stored} graph as stored, strongly typed")
        log.info("building TensorRT %s engine for %s at %dx%d on %s (sm %s): %s — this takes "
                 "minutes once, then it is cached in %s", precision, path.name, h, w, key.gpu_name,
                 key.compute_capability, plan.reason, cache.directory)
        t0 = time.perf_counter()
        graph = _graph_bytes(path, plan, calibration, calib_method)
        engine = build_serialized(trt, graph, plan, workspace_mib, str(path))
        seconds = time.perf_counter() - t0
        out = cache.store(key, engine, info, plan, seconds)
    log.info("built %s (%.1f MB) in %.0f s", out, len(engine) / 1e6, seconds)
    return out, info


def copy_engine(engine: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy a cached engine and its sidecar to ``dst`` (``dst.json`` beside it)."""
    import shutil

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(engine, dst)
    shutil.copyfile(sidecar_path(engine), sidecar_path(dst))
    return dst


__all__ = ["PRECISIONS", "ENGINE_SUFFIXES", "BuildPlan", "precision_plan", "EngineKey",
           "EngineCache", "default_engine_cache_dir", "sidecar_path", "write_sidecar",
           "read_sidecar", "import_tensorrt", "make_logger", "build_serialized", "build_engine",
           "copy_engine", "builder_flag_names", "trt_major"]
