"""OpenVINO backend: a dasp ONNX graph (or OpenVINO IR) on an Intel/ARM CPU or an Intel GPU.

Precision is always set explicitly (ours): OpenVINO's CPU plugin picks its own default
inference precision, which is **bf16** on CPUs with AMX or AVX512-BF16, so a session that does
not set ``INFERENCE_PRECISION_HINT`` silently runs bf16 while the caller believes fp32. Here

* ``fp32``: hint ``f32`` — the same numbers as onnxruntime (max rel. diff ~1e-5);
* ``bf16``: hint ``bf16``; refused where the CPU has no native bf16 (emulation is slower than
  f32, never what a user asking for speed wants);
* ``fp16``: hint ``f16`` (Intel GPUs, CPUs with AVX512-FP16/AMX-FP16);
* ``int8``: the explicitly quantised Q/DQ graph written by ``dasp export --onnx --precision
  int8`` (the file itself, or ``<stem>_int8_qdq.onnx`` beside an fp32 file); OpenVINO runs the
  quantised convolutions with int8 VNNI/AMX kernels and the rest (the float output head) in
  f32 (hint ``f32``).

The graph's ``dasp_model_info`` metadata (ONNX ``metadata_props``, which OpenVINO keeps in the
model's ``rt_info["framework"]``) supplies the :class:`ModelInfo`, exactly as for onnxruntime.
Imports numpy, OpenCV and openvino only — never torch.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from dasp_core.errors import ConfigError, ModelFileError, check_choice, check_range
from dasp_core.runtime.base import (INPUT_NAME, METADATA_KEY, OUTPUT_NAME, ModelInfo,
                                    check_input_size, graph_model_info)
from dasp_core.runtime.preprocess import ImagePipelineMixin

log = logging.getLogger(__name__)

EXPECTED = "an ONNX model written by `dasp export --onnx` (or its OpenVINO IR .xml)"
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
#: precision → OpenVINO ``INFERENCE_PRECISION_HINT`` (int8 lives in the Q/DQ graph itself)
HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}
INT8_SUFFIX = "_int8_qdq"
SUFFIXES = (".onnx", ".xml")


def _core() -> Any:
    import openvino as ov

    return ov.Core()


def ov_device(device: str) -> str:
    """dasp device name → OpenVINO device: ``auto``/``cpu`` → ``CPU``, ``gpu`` → ``GPU``,
    ``gpu:N`` → ``GPU.N``. ``auto`` stays on the CPU: an integrated GPU shares the memory bus
    and power budget, so it is chosen explicitly (``device: gpu``), never by surprise."""
    if device in ("auto", "cpu"):
        return "CPU"
    if device == "gpu":
        return "GPU"
    if device.startswith("gpu:") and device[4:].isdigit():
        return f"GPU.{device[4:]}"
    raise ConfigError("device", device, "auto, cpu, gpu or gpu:N for OpenVINO")


def cpu_capabilities(core: Any = None) -> List[str]:
    """The CPU plugin's ``OPTIMIZATION_CAPABILITIES`` (``FP32``, ``BF16``, ``FP16``, ``INT8``...)."""
    core = core or _core()
    try:
        return [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
    except RuntimeError:
        return []


def native_bf16(core: Any = None) -> bool:
    """True when this CPU computes bf16 in hardware (AMX or AVX512-BF16): OpenVINO lists
    ``BF16`` among the CPU's optimisation capabilities only then."""
    return "BF16" in cpu_capabilities(core)


def int8_sibling(path: str | os.PathLike) -> Path:
    """``model.onnx`` → ``model_int8_qdq.onnx`` (what ``dasp export --precision int8`` writes)."""
    p = Path(path)
    return p.with_name(p.stem + INT8_SUFFIX + p.suffix)


def _rt(model: Any, *keys: str) -> Optional[str]:
    for path in (["framework", *keys], list(keys)):
        try:
            if model.has_rt_info(path):
                return model.get_rt_info(path).astype(str)
        except (RuntimeError, TypeError):
            continue
    return None


def model_info_of(model: Any, path: str) -> Tuple[ModelInfo, str]:
    """``(ModelInfo, stored precision)`` of a read OpenVINO model, checked against its I/O."""
    import openvino as ov

    pshape = model.inputs[0].get_partial_shape() if model.inputs else None
    shape = ([] if pshape is None or pshape.is_dynamic else
             [int(d) for d in pshape.to_shape()])
    etype = model.inputs[0].get_element_type() if model.inputs else "nothing"
    # an OpenVINO tensor may carry several names: the graph's input is the one named `image`
    names = [INPUT_NAME if INPUT_NAME in i.get_names() else min(i.get_names(), default="")
             for i in model.inputs]
    info = graph_model_info(path, _rt(model, METADATA_KEY), names,
                            [n for o in model.outputs for n in o.get_names()], shape,
                            etype == ov.Type.f32, str(etype), EXPECTED)
    stored = _rt(model, "precision") or "fp32"
    if stored == "fp32" and any(op.get_type_name() == "FakeQuantize" for op in model.get_ops()):
        stored = "int8"
    return info, stored


def _read(core: Any, path: str) -> Any:
    if not os.path.isfile(path):
        raise ModelFileError(path, "not found", EXPECTED)
    if Path(path).suffix.lower() not in SUFFIXES:
        raise ModelFileError(path, f"has suffix {Path(path).suffix!r}", f"one of {SUFFIXES}")
    try:
        return core.read_model(path)
    except Exception as e:  # parse errors of the ONNX/IR frontends
        import openvino as ov

        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFileError(path, f"cannot be read by OpenVINO {ov.__version__} "
                                   f"({type(e).__name__}: {first[:300]})", EXPECTED) from None


def resolve_model_file(path: str | os.PathLike, precision: str) -> Path:
    """The file that runs ``precision``: for int8, the Q/DQ file itself or its sibling
    ``<stem>_int8_qdq.onnx``; otherwise ``path``."""
    p = Path(path)
    if precision != "int8" or p.stem.endswith(INT8_SUFFIX):
        return p
    sib = int8_sibling(p)
    return sib if sib.is_file() else p


class OpenVinoEstimator(ImagePipelineMixin):
    """DepthEstimator on OpenVINO.

    Args:
        model: dasp ``.onnx`` (or OpenVINO IR ``.xml``) file; ModelInfo in its metadata.
        device: ``auto``/``cpu`` (CPU plugin), ``gpu`` or ``gpu:N`` (Intel GPU plugin).
        threads: CPU inference threads (``INFERENCE_NUM_THREADS``; ``None``: OpenVINO's
            default, one per physical core). One stream, latency hint: one frame at a time as
            fast as possible, which is what a camera node needs.
        precision: ``fp32`` | ``bf16`` | ``fp16`` | ``int8`` (module docstring); honoured
            exactly or refused with :class:`ConfigError` / :class:`ModelFileError`.
        input_size: expected ``(h, w)``; a graph of another size raises :class:`ModelFileError`.
    """

    backend = "openvino"

    def __init__(self, model: str | os.PathLike, device: str = "auto",
                 threads: Optional[int] = None, precision: str = "fp32",
                 input_size: Optional[Tuple[int, int]] = None) -> None:
        import openvino as ov

        check_choice("precision", precision, PRECISIONS)
        if threads is not None:
            check_range("threads", threads, 1, None)
        core = _core()
        self.device = ov_device(device)
        if self.device not in core.available_devices and not (
                self.device == "GPU" and any(d.startswith("GPU") for d in core.available_devices)):
            raise ConfigError("device", device, f"a device OpenVINO sees here: "
                                                f"{', '.join(core.available_devices) or 'none'}")
        if self.device == "CPU" and precision in ("bf16", "fp16"):
            caps = cpu_capabilities(core)
            if precision.upper() not in caps:
                raise ConfigError("precision", precision,
                                  f"fp32 or int8 on this CPU (OpenVINO capabilities: "
                                  f"{', '.join(caps)}; {precision} needs native hardware support)")
        source = resolve_model_file(model, precision)
        self.path = str(source)
        net = _read(core, self.path)
        self.info, stored = model_info_of(net, self.path)
        if precision == "int8" and stored != "int8":
            raise ModelFileError(self.path, "is an fp32 graph and no Q/DQ int8 graph "
                                            f"{int8_sibling(model).name} is beside it",
                                 f"the int8 graph: `dasp export {Path(model).name} --onnx "
                                 f"--precision int8 --calib-dir FRAMES` (or --calib-bag BAG)")
        if stored == "int8" and precision != "int8":
            raise ConfigError("precision", precision, f"int8 for the Q/DQ int8 graph {self.path} "
                                                      "(or give the fp32 model)")
        check_input_size(self.path, self.info, input_size)
        config: Dict[str, Any] = {"INFERENCE_PRECISION_HINT": HINTS[precision],
                                  "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
        if threads is not None and self.device == "CPU":
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self._compiled = core.compile_model(net, self.device, config)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelFileError(self.path, f"cannot be compiled by OpenVINO {ov.__version__} "
                                            f"for {self.device} ({first[:300]})", EXPECTED) from None
        got = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        got = got.get_type_name() if hasattr(got, "get_type_name") else str(got)
        if self.device == "CPU" and got != HINTS[precision]:
            raise RuntimeError(f"OpenVINO compiled {self.path} with inference precision {got}, "
                               f"not {HINTS[precision]} as asked")
        self.precision = precision
        self.threads = threads
        self.inference_precision = got
        self._request = self._compiled.create_infer_request()
        self._output = self._compiled.output(OUTPUT_NAME)
        self._lock = threading.Lock()
        log.info("openvino %s: %s (%dx%d, %s, inference precision %s) on %s, %s threads",
                 ov.__version__, Path(self.path).name, self.info.input_height,
                 self.info.input_width, precision, got, self.device, threads or "default")

    @property
    def runs_on(self) -> str:
        return f"openvino {self.device}"

    def infer_disparity(self, batch: np.ndarray) -> np.ndarray:
        """``float32 [B, 3, h, w]`` → ``[B, 1, h, w]`` (static batch-1 graph: frame by frame)."""
        batch = self._check_batch(batch)
        out = np.empty((batch.shape[0], 1) + batch.shape[2:], dtype=np.float32)
        with self._lock:
            for i in range(batch.shape[0]):
                # share_inputs: no copy of the frame into OpenVINO's tensor
                res = self._request.infer({INPUT_NAME: batch[i:i + 1]}, share_inputs=True)
                out[i] = res[self._output][0]
        return out

    def close(self) -> None:
        """Drop the compiled model (frees its memory now rather than at garbage collection)."""
        self._request = None
        self._compiled = None


__all__ = ["OpenVinoEstimator", "native_bf16", "cpu_capabilities", "int8_sibling",
           "resolve_model_file", "ov_device", "PRECISIONS"]
