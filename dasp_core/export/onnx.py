"""Checkpoint → ONNX, and the ONNX graph transforms TensorRT needs (FP16 graph, Q/DQ INT8).

The exported graph (every precision):

* input ``image``: ``float32 [1, 3, H, W]``, RGB, values in [0, 1], NCHW; ImageNet mean/std
  normalisation is inside the graph. H, W are static (multiples of 32); export one file per
  input size (``dasp export --size``).
* output ``disparity``: ``float32 [1, 1, H, W]``, the network's sigmoid disparity in [0, 1];
  metres = ``1 / (1/max_depth + (1/min_depth - 1/max_depth) * disparity) * scale_factor``
  (:func:`dasp_core.runtime.preprocess.postprocess`).
* ``metadata_props``: ``dasp_model_info`` (:class:`ModelInfo` JSON, input size = the graph's),
  plus flat keys for other tools (input size, normalisation, depth range, scale, version,
  precision, exporter, torch version, source checkpoint sha256).

Exporter (ours, for torch 2.4 – 2.14): the TorchScript exporter (``dynamo=False``) is tried
first. It exists with the same arguments in every torch of that range, writes exactly the
requested opset (17) and IR version 8, which older TensorRT parsers (Jetson JetPack 6,
TensorRT 10.3) read. Its graphs carry the reflection-padding arithmetic as ~100 small
constant ops; :func:`fold_constants` evaluates them with onnx's reference evaluator, leaving
``Pad(mode=reflect)`` with constant pads, which TensorRT imports natively. The dynamo exporter
(default from torch 2.9, absent before 2.5, opset ≥ 18, IR 10) is the fallback when the
TorchScript exporter is missing (it is deprecated upstream) or fails; ``exporter="dynamo"``
forces it. Every export is verified: ``onnx.checker`` (full check) and onnxruntime vs torch
on a random input (max |Δ disparity| ≤ 1e-4).

TensorRT 11 removed the FP16/INT8 builder flags (strongly typed networks only; see
``export.tensorrt``), so precision must be in the graph: :func:`convert_to_fp16` (FP16
weights and activations, float32 I/O through Cast nodes) and :func:`quantize_int8_qdq`
(explicit Q/DQ quantisation with onnxruntime's static quantiser, symmetric INT8 as TensorRT
requires). Both run on CPU in onnxruntime, which is how they are tested here.

torch is imported only inside the functions that export from a checkpoint.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from dasp_core import __version__
from dasp_core.errors import ConfigError, DatasetError, ModelFileError, check_choice
from dasp_core.runtime.base import ModelInfo

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "disparity"
METADATA_KEY = "dasp_model_info"
DEFAULT_OPSET = 17
MIN_OPSET = 17
EXPORTERS = ("auto", "torchscript", "dynamo")
PRECISIONS = ("fp32", "fp16", "int8")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
NORMALIZATION = "imagenet mean=(0.485, 0.456, 0.406) std=(0.229, 0.224, 0.225), inside the graph"
PARITY_TOL = 1e-4
FP16_MAX = 65504.0

# Ops whose outputs are not a function of their inputs: never folded.
_NONDETERMINISTIC = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
                     "Multinomial", "Bernoulli", "Dropout"}
# (op, input index) that the ONNX spec keeps float32 whatever the data type (Resize roi/scales).
_FP32_INPUTS = {("Resize", 1), ("Resize", 2), ("Upsample", 1)}
_FOLD_MAX_BYTES = 64 << 20


# --------------------------------------------------------------------------- small helpers

def parse_size(text: str, key: str = "--size") -> Tuple[int, int]:
    """``"192x640"`` → ``(192, 640)``; both multiples of 32, else :class:`ConfigError`."""
    try:
        h_text, w_text = str(text).lower().split("x")
        h, w = int(h_text), int(w_text)
    except ValueError:
        raise ConfigError(key, text, "HEIGHTxWIDTH, e.g. 192x640") from None
    if h < 32 or w < 32 or h % 32 or w % 32:
        raise ConfigError(key, text, "positive multiples of 32, e.g. 192x640")
    return h, w


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _save_atomic(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    onnx.save(model, str(tmp))
    os.replace(tmp, path)
    return path


def load_onnx(path: str | os.PathLike) -> onnx.ModelProto:
    """Load an ONNX file; :class:`ModelFileError` (naming the file) if missing or unreadable."""
    p = str(path)
    if not os.path.isfile(p):
        raise ModelFileError(p, "not found", "an ONNX model (.onnx) written by `dasp export --onnx`")
    try:
        return onnx.load(p)
    except Exception as e:  # DecodeError, truncated file, ...
        raise ModelFileError(p, f"cannot be parsed as ONNX ({type(e).__name__}: {e})",
                             "an ONNX model (.onnx) written by `dasp export --onnx`") from None


def graph_input_size(model: onnx.ModelProto) -> Tuple[int, int]:
    """Static ``(H, W)`` of the ``image`` input; ValueError when absent or not static."""
    for inp in model.graph.input:
        if inp.name == INPUT_NAME:
            dims = [d.dim_value if d.HasField("dim_value") else None
                    for d in inp.type.tensor_type.shape.dim]
            if len(dims) != 4 or any(d is None for d in dims) or dims[:2] != [1, 3]:
                raise ValueError(f"input {INPUT_NAME!r} has shape {dims}, expected static "
                                 "[1, 3, H, W]")
            return int(dims[2]), int(dims[3])
    raise ValueError(f"no input named {INPUT_NAME!r}; inputs: "
                     + ", ".join(i.name for i in model.graph.input))


def model_metadata(model: onnx.ModelProto) -> Dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def read_model_info(model: onnx.ModelProto | str | os.PathLike) -> ModelInfo:
    """ModelInfo stored in an ONNX file's ``metadata_props``; :class:`ModelFileError` if absent,
    unreadable or inconsistent with the graph's input size."""
    path = "<in-memory model>"
    if not isinstance(model, onnx.ModelProto):
        path = str(model)
        model = load_onnx(model)
    meta = model_metadata(model)
    if METADATA_KEY not in meta:
        raise ModelFileError(path, f"has no {METADATA_KEY!r} metadata",
                             "an ONNX model written by `dasp export --onnx`")
    try:
        info = ModelInfo.from_json(meta[METADATA_KEY])
    except (ValueError, TypeError) as e:
        raise ModelFileError(path, f"{METADATA_KEY!r} metadata is not valid ModelInfo JSON ({e})",
                             "ModelInfo.to_json()") from None
    try:
        hw = graph_input_size(model)
    except ValueError as e:
        raise ModelFileError(path, str(e), "an `image` input float32 [1, 3, H, W]") from None
    if hw != (info.input_height, info.input_width):
        raise ModelFileError(path, f"graph input is {hw[0]}x{hw[1]} but its metadata says "
                                   f"{info.input_height}x{info.input_width}",
                             "consistent metadata (re-export the model)")
    return info


def set_metadata(model: onnx.ModelProto, info: ModelInfo, **extra: Any) -> onnx.ModelProto:
    """Write ModelInfo (+ flat convenience keys and ``extra``) into ``metadata_props``."""
    props = {p.key: p.value for p in model.metadata_props}
    props.update({
        METADATA_KEY: info.to_json(),
        "input_name": INPUT_NAME,
        "input_format": "float32 [1, 3, H, W] RGB in [0, 1], NCHW",
        "input_height": str(info.input_height),
        "input_width": str(info.input_width),
        "normalization": NORMALIZATION,
        "output_name": OUTPUT_NAME,
        "output_format": ("float32 [1, 1, H, W] sigmoid disparity in [0, 1]; metres = "
                          "scale_factor / (1/max_depth + (1/min_depth - 1/max_depth) * disparity)"),
        "min_depth": repr(float(info.min_depth)),
        "max_depth": repr(float(info.max_depth)),
        "scale_factor": repr(float(info.scale_factor)),
        "scale_source": info.scale_source,
        "dasp_version": info.version or __version__,
    })
    props.update({k: str(v) for k, v in extra.items()})
    helper.set_model_props(model, props)
    return model


# --------------------------------------------------------------------------- graph passes

def _node_has_subgraph(node: onnx.NodeProto) -> bool:
    return any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
               for a in node.attribute)


def _static_shapes(model: onnx.ModelProto) -> Dict[str, List[int]]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference is an optimisation here, never a requirement
        return {}
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if vi.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = [int(d.dim_value) for d in dims]
    return shapes


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Evaluate every node whose inputs are all constant; return the simplified copy.

    ``Constant`` nodes become initializers, ``Identity`` on constants becomes an alias,
    ``Shape`` of statically shaped tensors becomes a constant, and dead nodes and unused
    initializers are removed. Values are computed with ``onnx.reference`` at the model's opset,
    so the result is exactly what the original graph computes.
    """
    from onnx.reference import ReferenceEvaluator

    model = copy.deepcopy(model)
    g = model.graph
    opsets = {o.domain or "": o.version for o in model.opset_import}
    consts: Dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    graph_inputs = {i.name for i in g.input}
    shapes = _static_shapes(model)
    alias: Dict[str, str] = {}

    def resolve(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    kept: List[onnx.NodeProto] = []
    for node in g.node:
        for k, name in enumerate(node.input):
            node.input[k] = resolve(name) if name else name
        foldable = (node.domain in ("", "ai.onnx") and node.op_type not in _NONDETERMINISTIC
                    and not _node_has_subgraph(node))
        if foldable and node.op_type == "Identity" and node.input[0] in consts:
            alias[node.output[0]] = node.input[0]
            continue
        if foldable and node.op_type == "Shape" and node.input[0] in shapes:
            shape = np.array(shapes[node.input[0]], dtype=np.int64)
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            consts[node.output[0]] = shape[attrs.get("start", 0):attrs.get("end", len(shape))]
            continue
        if foldable and all((not i) or i in consts for i in node.input):
            feeds = {i: consts[i] for i in node.input if i}
            try:
                outs = ReferenceEvaluator(node, opsets={"": opsets.get("", DEFAULT_OPSET)}).run(
                    None, feeds)
            except Exception as e:  # an op the reference evaluator lacks: keep it
                log.debug("not folding %s (%s): %s", node.name, node.op_type, e)
                kept.append(node)
                continue
            if sum(np.asarray(o).nbytes for o in outs) <= _FOLD_MAX_BYTES:
                for name, value in zip(node.output, outs):
                    consts[name] = np.asarray(value)
                continue
        kept.append(node)

    # graph outputs that became constants or aliases keep a node producing them
    tail: List[onnx.NodeProto] = []
    for out in g.output:
        src = resolve(out.name)
        if src != out.name:
            tail.append(helper.make_node("Identity", [src], [out.name]))
        elif out.name in consts and out.name not in graph_inputs:
            tail.append(helper.make_node("Constant", [], [out.name],
                                         value=numpy_helper.from_array(consts.pop(out.name),
                                                                       out.name)))
    kept.extend(tail)

    # dead-code elimination, back to front
    needed = {o.name for o in g.output}
    live: List[onnx.NodeProto] = []
    for node in reversed(kept):
        if any(o in needed for o in node.output):
            live.append(node)
            needed.update(i for i in node.input if i)
    live.reverse()

    del g.node[:]
    g.node.extend(live)
    original = {i.name: i for i in g.initializer}
    del g.initializer[:]
    for name in sorted(needed):
        if name in consts and name not in graph_inputs:
            if name in original:
                g.initializer.append(original[name])
            else:
                g.initializer.append(numpy_helper.from_array(consts[name], name))
    g.ClearField("value_info")
    return model


# Names of the rewrites below, in the order export applies them; stored in the metadata key
# ``graph_rewrites`` so a file says which were applied.
RUNTIME_REWRITES = ("elu_as_exp_max", "single_channel_conv_as_depthwise")
# Bumped whenever export writes a different graph for the same checkpoint (ONNX cache key).
GRAPH_REVISION = 2
HEAD_DEPTHWISE_SUFFIX = "/depthwise"
HEAD_POINTWISE_SUFFIX = "/channel_sum"


def _attrs(node: onnx.NodeProto) -> Dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def decompose_elu(model: onnx.ModelProto) -> Tuple[onnx.ModelProto, int]:
    """``Elu(x)`` (alpha 1) → ``Max(x, Exp(Min(x, 0)) - 1)``; returns (copy, nodes rewritten).

    The same function, not an approximation: for x > 0, ``exp(min(x, 0)) - 1 = 0 < x``; for
    x ≤ 0, ``exp(x) - 1 ≥ x`` (e^x ≥ 1 + x), so the max picks exactly ELU's branch. Why: in
    onnxruntime 1.23 the CPU ``Elu`` kernel is a scalar Eigen loop (3.9 ms for the
    16x192x640 decoder tensor, one thread) while ``Exp`` (MLAS), ``Min``, ``Max`` and ``Sub``
    are vectorised (together ~2.2 ms); the decoder's ten ELUs were 11 % of the graph's time.
    Results differ from ``Elu`` by float rounding of exp only (~1e-7). Every op is one
    TensorRT imports natively (ElementWise MIN/MAX/SUB, Unary EXP) and fuses into one
    pointwise kernel.
    """
    model = copy.deepcopy(model)
    g = model.graph
    zero, one = "dasp_elu_zero", "dasp_elu_one"
    nodes: List[onnx.NodeProto] = []
    count = 0
    for node in g.node:
        alpha = float(_attrs(node).get("alpha", 1.0))
        if node.op_type != "Elu" or node.domain not in ("", "ai.onnx") or alpha != 1.0:
            nodes.append(node)  # alpha != 1: max(x, alpha*(e^x - 1)) is not ELU for alpha > 1
            continue
        x, y = node.input[0], node.output[0]
        base = node.name or f"Elu_{y}"
        nodes += [helper.make_node("Min", [x, zero], [f"{base}/neg"], name=f"{base}/min"),
                  helper.make_node("Exp", [f"{base}/neg"], [f"{base}/exp"], name=f"{base}/exp"),
                  helper.make_node("Sub", [f"{base}/exp", one], [f"{base}/expm1"],
                                   name=f"{base}/sub"),
                  helper.make_node("Max", [x, f"{base}/expm1"], [y], name=f"{base}/max")]
        count += 1
    if count:
        g.initializer.extend([numpy_helper.from_array(np.array(0.0, np.float32), zero),
                              numpy_helper.from_array(np.array(1.0, np.float32), one)])
        del g.node[:]
        g.node.extend(nodes)
    return model, count


def split_single_channel_conv(model: onnx.ModelProto) -> Tuple[onnx.ModelProto, int]:
    """``Conv(C → 1, k×k)`` → depthwise ``Conv(C → C, k×k, group=C)`` + ``Conv(C → 1, 1×1)``
    with all-ones weights (the channel sum) and the original bias; returns (copy, count).

    The same sum, only in another order: ``Σ_c Σ_ij w[c,i,j]·x[c,..]`` per channel first,
    then over channels. Why: onnxruntime's NCHWc convolution computes output channels in
    blocks of 8 (AVX2) or 16 (AVX-512) and pads a 1-channel output to a whole block, so the
    disparity head (16 → 1 at full resolution) cost as much as a 16 → 16 conv (5.8 ms of a
    ~90 ms graph, one thread); depthwise + 1x1 runs in ~2.6 ms. Only convs with a constant
    weight, group 1, at least 8 input channels and one output channel are changed (in a
    DepthNet, the disparity heads).
    """
    model = copy.deepcopy(model)
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    nodes: List[onnx.NodeProto] = []
    count = 0
    for node in g.node:
        w = numpy_helper.to_array(inits[node.input[1]]) if (
            node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in inits) else None
        attrs = _attrs(node) if w is not None else {}
        if (w is None or w.ndim != 4 or w.shape[0] != 1 or w.shape[1] < 8 or w.dtype != np.float32
                or attrs.get("group", 1) != 1 or attrs.get("auto_pad", b"NOTSET") not in
                (b"NOTSET", "NOTSET")):
            nodes.append(node)
            continue
        c = int(w.shape[1])
        base = node.name or f"Conv_{node.output[0]}"
        dw_w, sum_w = f"{base}/depthwise_weight", f"{base}/channel_sum_weight"
        g.initializer.extend([
            numpy_helper.from_array(np.ascontiguousarray(w[0][:, None]), dw_w),  # [C, 1, k, k]
            numpy_helper.from_array(np.ones((1, c, 1, 1), np.float32), sum_w)])
        dw_attrs = {k: v for k, v in attrs.items() if k != "group"}
        nodes += [helper.make_node("Conv", [node.input[0], dw_w], [f"{base}/depthwise_out"],
                                   name=base + HEAD_DEPTHWISE_SUFFIX, group=c, **dw_attrs),
                  helper.make_node("Conv", [f"{base}/depthwise_out", sum_w] + list(node.input[2:3]),
                                   list(node.output), name=base + HEAD_POINTWISE_SUFFIX,
                                   kernel_shape=[1, 1])]
        count += 1
    if count:
        del g.node[:]
        g.node.extend(nodes)
        # the original k×k weights are no longer used by anything
        used = {i for n in g.node for i in n.input}
        keep = [i for i in g.initializer if i.name in used]
        del g.initializer[:]
        g.initializer.extend(keep)
    return model, count


def rewrite_for_runtimes(model: onnx.ModelProto) -> Tuple[onnx.ModelProto, List[str]]:
    """Apply :data:`RUNTIME_REWRITES` (each the same function, see their docstrings); returns
    the rewritten copy and the names of the rewrites that changed something."""
    applied: List[str] = []
    model, n = decompose_elu(model)
    if n:
        applied.append(RUNTIME_REWRITES[0])
    model, n = split_single_channel_conv(model)
    if n:
        applied.append(RUNTIME_REWRITES[1])
    return model, applied


def _set_static_output(model: onnx.ModelProto, shape: Sequence[int]) -> None:
    out = next(o for o in model.graph.output if o.name == OUTPUT_NAME)
    dims = out.type.tensor_type.shape
    dims.ClearField("dim")
    for d in shape:
        dims.dim.add().dim_value = int(d)


def _finalise(model: onnx.ModelProto) -> onnx.ModelProto:
    """Shape inference (strict) + full checker; raises on an invalid graph."""
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def _ort_run(model: onnx.ModelProto, x: np.ndarray, threads: int = 1) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0]


# --------------------------------------------------------------------------- torch → ONNX

def _torch_export(module: Any, dummy: Any, path: Path, opset: int, exporter: str) -> str:
    """Run torch.onnx.export with the chosen exporter; returns the exporter used."""
    import torch

    params = inspect.signature(torch.onnx.export).parameters
    has_dynamo = "dynamo" in params  # torch >= 2.5
    order = ["torchscript", "dynamo"] if exporter == "auto" else [exporter]
    errors = []
    for name in order:
        kw: Dict[str, Any] = {"input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME]}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer/constant-folding chatter; we verify below
                if name == "torchscript":
                    kw.update(opset_version=opset, do_constant_folding=True, export_params=True)
                    if has_dynamo:
                        kw["dynamo"] = False
                else:
                    if not has_dynamo:
                        raise RuntimeError(f"torch {torch.__version__} has no dynamo ONNX exporter "
                                           "(needs torch >= 2.5)")
                    kw.update(opset_version=max(opset, 18), dynamo=True)
                    if "external_data" in params:
                        kw["external_data"] = False
                torch.onnx.export(module, (dummy,), str(path), **kw)
            return name
        except Exception as e:
            errors.append(f"{name}: {type(e).__name__}: {e}")
            log.warning("ONNX export with the %s exporter failed: %s", name, e)
    raise RuntimeError("ONNX export failed: " + " | ".join(errors))


def export_depth_net(net: Any, info: ModelInfo, out_path: str | os.PathLike,
                     size: Optional[Tuple[int, int]] = None, opset: int = DEFAULT_OPSET,
                     exporter: str = "auto", source_sha256: str = "",
                     rewrite: bool = True) -> Path:
    """Export a :class:`~dasp_core.models.depth_net.DepthNet` to a verified ONNX file.

    Args:
        net: the depth network (any device; exported from a CPU fp32 copy).
        info: its ModelInfo; the written copy gets ``input_height/width = size``.
        out_path: destination ``.onnx`` (written atomically).
        size: ``(H, W)`` input size, multiples of 32; default ``info``'s.
        opset: ONNX opset, ≥ 17 (the dynamo exporter writes ≥ 18).
        exporter: ``auto`` (TorchScript, then dynamo), ``torchscript`` or ``dynamo``.
        source_sha256: sha256 of the checkpoint, stored in the metadata.
        rewrite: apply :func:`rewrite_for_runtimes` (same function, faster onnxruntime CPU
            kernels); ``False`` keeps the exporter's ops (for comparisons).

    Returns:
        the written path. Raises RuntimeError when the graph disagrees with torch.
    """
    import torch

    from dasp_core.models.depth_net import DisparityHead

    check_choice("exporter", exporter, EXPORTERS)
    if opset < MIN_OPSET:
        raise ConfigError("opset", opset, f"an ONNX opset >= {MIN_OPSET}")
    h, w = size or (int(info.input_height), int(info.input_width))
    if h % 32 or w % 32 or h < 32 or w < 32:
        raise ConfigError("size", f"{h}x{w}", "positive multiples of 32")
    out_path = Path(out_path)
    module = DisparityHead(copy.deepcopy(net).float().cpu()).eval()
    gen = torch.Generator().manual_seed(0)
    dummy = torch.rand(1, 3, h, w, generator=gen)
    t0 = time.perf_counter()
    tmp_dir = out_path.parent
    tmp_dir.mkdir(parents=True, exist_ok=True)
    raw = tmp_dir / f".{out_path.stem}.raw{os.getpid()}.onnx"
    try:
        used = _torch_export(module, dummy, raw, opset, exporter)
        model = onnx.load(str(raw))
    finally:
        for leftover in (raw, raw.with_name(raw.name + ".data")):
            if leftover.exists():
                leftover.unlink()
    model = fold_constants(model)
    applied: List[str] = []
    if rewrite:
        model, applied = rewrite_for_runtimes(model)
    _set_static_output(model, (1, 1, h, w))
    info_out = ModelInfo.from_dict({**info.__dict__, "input_height": h, "input_width": w,
                                    "version": info.version or __version__})
    set_metadata(model, info_out, precision="fp32", exporter=used, opset=_opset(model),
                 torch_version=torch.__version__, source_sha256=source_sha256,
                 graph_rewrites=",".join(applied) or "none")
    model.producer_name, model.producer_version = "dasp", __version__
    model.graph.doc_string = ("DASP depth network: image float32 [1,3,H,W] RGB [0,1] -> "
                              "sigmoid disparity float32 [1,1,H,W]")
    model = _finalise(model)
    with torch.inference_mode():
        ref = module(dummy).numpy()
    got = _ort_run(model, dummy.numpy())
    err = float(np.abs(got - ref).max())
    if not np.isfinite(err) or err > PARITY_TOL:
        raise RuntimeError(f"exported ONNX ({used} exporter) disagrees with torch: max |Δ disparity|"
                           f" = {err:.3g} > {PARITY_TOL}")
    _save_atomic(model, out_path)
    log.info("exported %s (%dx%d, opset %d, %s exporter, %d nodes, max |Δ| vs torch %.1e) in %.1f s",
             out_path, h, w, _opset(model), used, len(model.graph.node), err,
             time.perf_counter() - t0)
    return out_path


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def default_onnx_path(checkpoint: str | os.PathLike, size: Tuple[int, int], multi: bool,
                      out: Optional[str | os.PathLike] = None, suffix: str = "") -> Path:
    """Output name: ``--out`` as given for one size, else ``<stem>[_HxW][suffix].onnx``."""
    h, w = size
    tag = f"_{h}x{w}" if multi else ""
    if out is None:
        ckpt = Path(checkpoint)
        return ckpt.with_name(f"{ckpt.stem}{tag}{suffix}.onnx")
    out = Path(out)
    if out.is_dir() or str(out).endswith(os.sep):
        return out / f"{Path(checkpoint).stem}{tag}{suffix}.onnx"
    stem = out.name[:-5] if out.name.endswith(".onnx") else out.name
    return out.with_name(f"{stem}{tag}{suffix}.onnx")


def export_checkpoint(checkpoint: str | os.PathLike, out: Optional[str | os.PathLike] = None,
                      sizes: Optional[Sequence[Tuple[int, int]]] = None,
                      opset: int = DEFAULT_OPSET, exporter: str = "auto") -> List[Path]:
    """``dasp export --onnx``: one verified ONNX file per input size.

    Args:
        checkpoint: dasp ``.pt`` checkpoint.
        out: output file (one size) or base name / directory (several sizes get ``_HxW``);
            default next to the checkpoint.
        sizes: input sizes ``(H, W)``; default the checkpoint's ``ModelInfo`` size.
    """
    from dasp_core.checkpoint import load_depth_model

    net, info, _ = load_depth_model(checkpoint, "cpu")
    sizes = list(sizes or [(int(info.input_height), int(info.input_width))])
    sha = file_sha256(checkpoint)
    paths = []
    for size in sizes:
        path = default_onnx_path(checkpoint, size, len(sizes) > 1, out)
        paths.append(export_depth_net(net, info, path, size, opset, exporter, sha))
    return paths


# --------------------------------------------------------------------------- FP16 graph

def is_fp16_graph(model: onnx.ModelProto) -> bool:
    """True when the graph computes in FP16 (as written by :func:`convert_to_fp16`)."""
    return any(i.data_type == TensorProto.FLOAT16 for i in model.graph.initializer)


def convert_to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """FP32 graph → FP16 graph with float32 I/O (what a TensorRT 11 strongly typed build of
    "fp16" needs; the weak-typing ``BuilderFlag.FP16`` is gone there).

    All float32 initializers and Cast-to-float nodes become float16, except the inputs the
    ONNX spec pins to float32 (Resize ``roi``/``scales``). ``image`` is cast to float16 right
    after the input and ``disparity`` back to float32 before the output, so callers and
    engines keep float32 buffers. Raises ValueError when a weight does not fit in float16.
    """
    model = fold_constants(model)  # Constant nodes → initializers, nothing left to patch inside
    g = model.graph
    pinned = {node.input[i] for node in g.node for (op, i) in _FP32_INPUTS
              if node.op_type == op and len(node.input) > i and node.input[i]}
    # an initializer used both at a pinned slot and as data gets a separate fp16 copy
    renamed: Dict[str, str] = {}
    for node in g.node:
        for k, name in enumerate(node.input):
            if name in pinned and (node.op_type, k) not in _FP32_INPUTS:
                renamed.setdefault(name, name + "_fp16")
                node.input[k] = renamed[name]
    new_inits = []
    for init in g.initializer:
        arrays = [(init.name, numpy_helper.to_array(init))]
        if init.name in renamed:
            arrays.append((renamed[init.name], arrays[0][1]))
        for name, arr in arrays:
            if arr.dtype == np.float32 and name not in pinned:
                big = float(np.abs(arr).max()) if arr.size else 0.0
                if big > FP16_MAX:
                    raise ValueError(f"initializer {name!r} has |value| {big:.3g} > {FP16_MAX} "
                                     "(float16 range); keep this model in fp32")
                arr = arr.astype(np.float16)
            new_inits.append(numpy_helper.from_array(arr, name))
    del g.initializer[:]
    g.initializer.extend(new_inits)
    for node in g.node:
        if node.op_type == "Cast":
            for a in node.attribute:
                if a.name == "to" and a.i == TensorProto.FLOAT:
                    a.i = TensorProto.FLOAT16
    # float32 I/O through Cast nodes
    head, tail = [], []
    for inp in g.input:
        if inp.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        inner = inp.name + "_fp16"
        for node in g.node:
            for k, name in enumerate(node.input):
                if name == inp.name:
                    node.input[k] = inner
        head.append(helper.make_node("Cast", [inp.name], [inner], to=TensorProto.FLOAT16,
                                     name=f"cast_{inp.name}_to_fp16"))
    for out in g.output:
        if out.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        inner = out.name + "_fp16"
        for node in g.node:
            for k, name in enumerate(node.output):
                if name == out.name:
                    node.output[k] = inner
            for k, name in enumerate(node.input):
                if name == out.name:
                    node.input[k] = inner
        tail.append(helper.make_node("Cast", [inner], [out.name], to=TensorProto.FLOAT,
                                     name=f"cast_{out.name}_to_fp32"))
    nodes = head + list(g.node) + tail
    del g.node[:]
    g.node.extend(nodes)
    g.ClearField("value_info")
    props = model_metadata(model)
    if METADATA_KEY in props:
        props["precision"] = "fp16"
        helper.set_model_props(model, props)
    return _finalise(model)


# --------------------------------------------------------------------------- INT8 Q/DQ

def load_calibration_images(directory: str | os.PathLike, size: Tuple[int, int],
                            max_images: int = 256) -> np.ndarray:
    """Images of a folder → preprocessed calibration batch ``float32 [N, 3, h, w]``.

    Files are taken in name order, evenly strided down to ``max_images`` so a long recording
    is sampled across its whole length; unreadable files are logged and skipped.
    """
    import cv2

    from dasp_core.runtime.preprocess import preprocess

    root = Path(directory)
    if not root.is_dir():
        raise DatasetError(f"calibration directory {str(root)!r} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"calibration directory {str(root)!r} has no images "
                           f"({', '.join(IMAGE_SUFFIXES)})")
    if len(files) > max_images:
        idx = np.linspace(0, len(files) - 1, max_images).round().astype(int)
        files = [files[i] for i in idx]
    batch, skipped = [], 0
    for f in files:
        bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if bgr is None:
            skipped += 1
            log.warning("calibration: cannot read %s, skipped", f)
            continue
        batch.append(preprocess(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size)[0])
    return _calibration_batch(batch, f"calibration directory {str(root)!r}",
                              f"{len(files)} images", skipped)


def _calibration_batch(batch: List[np.ndarray], source: str, tried: str, skipped: int
                       ) -> np.ndarray:
    """Stack preprocessed calibration frames; DatasetError when none could be read, a warning
    when too few to give good INT8 ranges."""
    if not batch:
        raise DatasetError(f"{source}: none of {tried} could be read")
    if len(batch) < 32:
        log.warning("calibration uses only %d frames; 100-500 frames covering the deployment "
                    "conditions (night, lamps, headlights) give better INT8 ranges", len(batch))
    log.info("calibration: %d frames from %s (%d skipped)", len(batch), source, skipped)
    return np.stack(batch)


IMAGE_MSGTYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


def load_calibration_bag(bag: str | os.PathLike, size: Tuple[int, int], max_images: int = 256,
                         topic: Optional[str] = None) -> np.ndarray:
    """Frames of a recording → preprocessed calibration batch ``float32 [N, 3, h, w]``.

    Args:
        bag: rosbag2 directory / ``.mcap`` / ``.db3`` or ROS 1 ``.bag`` (read with rosbags).
        size: network input ``(h, w)``.
        max_images: frames kept, evenly strided over the whole recording (a drive's start
            and end both count).
        topic: the ``sensor_msgs/Image`` or ``CompressedImage`` topic; ``None`` takes the only
            image topic of the bag (DatasetError naming the candidates when there are several).
    """
    from dasp_core import bagio
    from dasp_core.runtime.preprocess import preprocess

    topics = bagio.bag_topics(bag)
    images = {t: v for t, v in topics.items() if v[0] in IMAGE_MSGTYPES}
    if topic is None:
        if len(images) != 1:
            raise DatasetError(f"bag {str(bag)!r} has {len(images)} image topics "
                               f"({', '.join(sorted(images)) or 'none'}): pick one with "
                               "--calib-topic")
        topic = next(iter(images))
    if topic not in images:
        raise DatasetError(f"bag {str(bag)!r} has no image topic {topic!r}; image topics: "
                           f"{', '.join(sorted(images)) or 'none'}")
    msgtype, count = images[topic]
    keep = set(np.linspace(0, max(count - 1, 0), min(max_images, count)).round().astype(int)
               .tolist())
    batch, skipped = [], 0
    for i, (_, _, _, msg) in enumerate(bagio.read_messages(bag, [topic])):
        if i not in keep:
            continue
        try:
            rgb = (bagio.compressed_to_rgb(msg, topic, i) if msgtype.endswith("CompressedImage")
                   else bagio.image_to_rgb(msg, topic, i))
        except DatasetError as e:
            skipped += 1
            log.warning("calibration: %s, skipped", e)
            continue
        batch.append(preprocess(rgb, size)[0])
    return _calibration_batch(batch, f"bag {str(bag)!r} topic {topic}",
                              f"{len(keep)} frames", skipped)


def calibration_digest(batch: np.ndarray) -> str:
    """Short hash of a calibration batch (part of the engine cache key for INT8)."""
    return hashlib.sha256(np.ascontiguousarray(batch).tobytes()).hexdigest()[:16]


def _head_nodes(model: onnx.ModelProto) -> List[str]:
    """Names of the output Sigmoid and the Conv feeding it (kept in float: ours — an 8-bit
    disparity would quantise depth into 255 steps)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    names: List[str] = []
    node = producers.get(OUTPUT_NAME)
    while node is not None and len(names) < 4:
        if not node.name:
            node.name = f"{node.op_type}_{node.output[0]}"
        names.append(node.name)
        # a head split by split_single_channel_conv is two convs: keep both in float
        if node.op_type == "Conv" and not node.name.endswith(HEAD_POINTWISE_SUFFIX):
            break
        node = producers.get(node.input[0]) if node.input else None
    return names


def quantize_int8_qdq(model: onnx.ModelProto, calibration: np.ndarray,
                      method: str = "minmax") -> onnx.ModelProto:
    """FP32 graph → explicitly quantised INT8 graph (QuantizeLinear/DequantizeLinear pairs).

    onnxruntime's ``quantize_static`` in QDQ format with what TensorRT's explicit
    quantisation accepts: symmetric int8 activations and weights (zero point 0), per-channel
    weight scales, biases left in float. Conv/Add/Concat/MaxPool are quantised; the output head
    (last Conv and Sigmoid) stays float. ``method``: ``minmax`` (what NVIDIA recommends for TensorRT
    deployment), ``entropy`` or ``percentile``.

    Args:
        model: FP32 graph from :func:`export_depth_net`.
        calibration: ``float32 [N, 3, H, W]`` preprocessed frames (:func:`load_calibration_images`).
    """
    import tempfile

    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)

    check_choice("calibration method", method, CALIBRATION_METHODS)
    h, w = graph_input_size(model)
    if calibration.ndim != 4 or calibration.shape[1:] != (3, h, w) or len(calibration) == 0:
        raise ValueError(f"calibration must be float32 [N, 3, {h}, {w}] with N >= 1, "
                         f"got {list(calibration.shape)}")
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(range(len(calibration)))

        def get_next(self) -> Optional[Dict[str, np.ndarray]]:
            i = next(self._it, None)
            return None if i is None else {INPUT_NAME: calibration[i:i + 1].astype(np.float32)}

    model = copy.deepcopy(model)
    exclude = _head_nodes(model)
    with tempfile.TemporaryDirectory(prefix="dasp_qdq_") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(src))
        # the quantiser logs advice and per-tensor notes on the root logger; mute them
        qlog = logging.getLogger()
        level = qlog.level
        qlog.setLevel(logging.ERROR)
        try:
            quantize_static(str(src), str(dst), _Reader(), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=["Conv", "Add", "Concat", "MaxPool"],
                            per_channel=True, activation_type=QuantType.QInt8,
                            weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
                            calibrate_method=methods[method],
                            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                           # TensorRT fuses a float bias into the int8 conv;
                                           # an int32-quantised bias (DQ) is not its pattern
                                           "QuantizeBias": False})
        finally:
            qlog.setLevel(level)
        qmodel = onnx.load(str(dst))
    props = model_metadata(model)
    props.update(precision="int8", quantization=(f"QDQ int8 symmetric, per-channel weights, "
                                                 f"{method} calibration on {len(calibration)} "
                                                 f"frames ({calibration_digest(calibration)})"))
    helper.set_model_props(qmodel, props)
    n_q = sum(n.op_type == "QuantizeLinear" for n in qmodel.graph.node)
    if n_q == 0:
        raise RuntimeError("quantize_static inserted no QuantizeLinear nodes")
    return _finalise(qmodel)


def precision_variant(src: str | os.PathLike, precision: str,
                      out: Optional[str | os.PathLike] = None,
                      calibration: Optional[np.ndarray] = None,
                      calib_method: str = "minmax") -> Path:
    """Write the ``fp16`` (:func:`convert_to_fp16`) or ``int8`` (:func:`quantize_int8_qdq`)
    variant of an FP32 dasp ONNX file; default name ``<stem>_fp16.onnx`` / ``<stem>_int8_qdq.onnx``.
    """
    check_choice("precision", precision, ("fp16", "int8"))
    model = load_onnx(src)
    read_model_info(model)  # it must be a dasp graph
    if is_fp16_graph(model) or any(n.op_type == "QuantizeLinear" for n in model.graph.node):
        raise ModelFileError(str(src), "is already a reduced-precision graph",
                             "the fp32 ONNX written by `dasp export --onnx`")
    if precision == "fp16":
        result = convert_to_fp16(model)
        suffix = "_fp16"
    else:
        if calibration is None:
            raise ConfigError("--calib-dir", None, "a folder of calibration images for int8")
        result = quantize_int8_qdq(model, calibration, calib_method)
        suffix = "_int8_qdq"
    src = Path(src)
    dst = Path(out) if out else src.with_name(src.stem + suffix + ".onnx")
    _save_atomic(result, dst)
    log.info("wrote %s graph %s", precision, dst)
    return dst


def describe(model: onnx.ModelProto) -> Dict[str, Any]:
    """Summary for logs/reports: opset, IR version, node counts by op, precision, size."""
    ops: Dict[str, int] = {}
    for n in model.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    meta = model_metadata(model)
    return {"opset": _opset(model), "ir_version": model.ir_version, "nodes": len(model.graph.node),
            "ops": dict(sorted(ops.items())), "precision": meta.get("precision", "fp32"),
            "input_size": list(graph_input_size(model))}


__all__ = ["INPUT_NAME", "OUTPUT_NAME", "METADATA_KEY", "DEFAULT_OPSET", "EXPORTERS", "PRECISIONS",
           "parse_size", "file_sha256", "load_onnx", "graph_input_size", "read_model_info",
           "set_metadata", "fold_constants", "decompose_elu", "split_single_channel_conv",
           "rewrite_for_runtimes", "RUNTIME_REWRITES", "GRAPH_REVISION", "export_depth_net",
           "export_checkpoint",
           "default_onnx_path", "is_fp16_graph", "convert_to_fp16", "load_calibration_images",
           "load_calibration_bag", "calibration_digest", "quantize_int8_qdq", "precision_variant", "describe"]
