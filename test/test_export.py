"""dasp export: ONNX graph contract, metadata, parity, FP16/Q-DQ graphs, TensorRT plan/cache.

Small and CPU-only: a seeded random-weight ResNet-18 DepthNet at 64x192. Its disparity head
is scaled up so the sigmoid output spans most of [0, 1] (random init otherwise sits at 0.5,
which would make every parity check trivially tight).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import List

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from dasp_core.checkpoint import save_checkpoint
from dasp_core.errors import ConfigError, DatasetError, ModelFileError
from dasp_core.export import onnx as eo
from dasp_core.export.tensorrt import (BuildPlan, EngineCache, EngineKey, precision_plan,
                                       read_sidecar, sidecar_path)
from dasp_core.models.depth_net import DepthNet, DepthNetConfig, DisparityHead
from dasp_core.runtime.base import ModelInfo

H, W = 64, 192
# ops a TensorRT 10/11 ONNX parser imports natively; anything else in our graph is a regression
TRT_FRIENDLY = {"Conv", "Relu", "Elu", "MaxPool", "Add", "Sub", "Div", "Mul", "Concat", "Pad",
                "Resize", "Sigmoid", "Cast", "QuantizeLinear", "DequantizeLinear",
                "HardSwish", "HardSigmoid", "GlobalAveragePool", "ReduceMean",
                "Min", "Max", "Exp"}  # the last three: ELU as written by eo.decompose_elu
FP16_TOL = 2e-3   # max |Δ disparity|, fp16 graph vs fp32 graph, onnxruntime CPU
INT8_TOL = 0.05   # max |Δ disparity|, Q/DQ int8 graph vs fp32 graph, onnxruntime CPU


def make_net(seed: int = 0) -> DepthNet:
    torch.manual_seed(seed)
    net = DepthNet(DepthNetConfig(encoder="resnet18")).eval()
    with torch.no_grad():
        net.decoder.heads["0"].weight.mul_(30.0)
    return net


def textured_frames(n: int, h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    """Deterministic RGB uint8 frames with gradients, stripes and blocks (not pure noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = []
    for i in range(n):
        f = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / (3 + i) + yy / 7)], -1)
        for _ in range(4):
            y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
            f[y0:y0 + h // 4, x0:x0 + w // 5] = rng.random(3)
        frames.append((np.clip(f + 0.05 * rng.standard_normal(f.shape), 0, 1) * 255).astype(np.uint8))
    return np.stack(frames)


def to_batch(frames: np.ndarray) -> np.ndarray:
    return (frames.astype(np.float32) / 255.0).transpose(0, 3, 1, 2).copy()


def ort_disp(model, x: np.ndarray) -> np.ndarray:
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(["disparity"], {"image": x[i:i + 1]})[0]
                           for i in range(len(x))])


@pytest.fixture(scope="module")
def info() -> ModelInfo:
    return ModelInfo(input_height=H, input_width=W, min_depth=0.5, max_depth=80.0,
                     scale_factor=2.5, scale_source="fixed", name="test")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, info) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "night.pt", make_net(), info)


@pytest.fixture(scope="module")
def onnx_path(ckpt) -> Path:
    (path,) = eo.export_checkpoint(ckpt)
    return path


@pytest.fixture(scope="module")
def fp32_model(onnx_path) -> onnx.ModelProto:
    return onnx.load(str(onnx_path))


# --------------------------------------------------------------------------- graph contract

def test_graph_contract(onnx_path, fp32_model):
    assert onnx_path.name == "night.onnx"
    onnx.checker.check_model(fp32_model, full_check=True)
    assert eo._opset(fp32_model) >= 17
    (inp,) = fp32_model.graph.input
    assert inp.name == "image" and inp.type.tensor_type.elem_type == TensorProto.FLOAT
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [1, 3, H, W]
    (out,) = fp32_model.graph.output
    assert out.name == "disparity" and out.type.tensor_type.elem_type == TensorProto.FLOAT
    assert [d.dim_value for d in out.type.tensor_type.shape.dim] == [1, 1, H, W]
    ops = {n.op_type for n in fp32_model.graph.node}
    assert ops <= TRT_FRIENDLY, f"ops TensorRT may not like: {ops - TRT_FRIENDLY}"
    # reflection pads must be constants after folding (TensorRT wants static pads)
    inits = {i.name for i in fp32_model.graph.initializer}
    for n in fp32_model.graph.node:
        if n.op_type == "Pad":
            assert n.input[1] in inits


def test_metadata_round_trip(fp32_model, info):
    got = eo.read_model_info(fp32_model)
    expected = dataclasses.replace(info, version=got.version)
    assert got == expected and got.version
    meta = eo.model_metadata(fp32_model)
    assert meta["input_height"] == str(H) and meta["input_width"] == str(W)
    assert float(meta["min_depth"]) == info.min_depth and float(meta["max_depth"]) == info.max_depth
    assert float(meta["scale_factor"]) == info.scale_factor
    assert meta["precision"] == "fp32" and meta["exporter"] in ("torchscript", "dynamo")
    assert "imagenet" in meta["normalization"] and len(meta["source_sha256"]) == 64


def test_onnxruntime_matches_torch(onnx_path):
    frames = to_batch(textured_frames(3))
    with torch.inference_mode():
        ref = DisparityHead(make_net()).eval()(torch.from_numpy(frames)).numpy()
    got = ort_disp(onnx_path, frames)
    assert ref.max() - ref.min() > 0.2  # the check below is not trivially satisfied
    assert np.abs(got - ref).max() <= 1e-4


def test_graph_has_one_output_and_no_unused_heads(fp32_model):
    """Deployment consumes the full-resolution disparity only: the scale-1..3 heads of the
    training network (pad + conv + sigmoid each) must not be in the graph, and no node may
    compute something nobody reads."""
    g = fp32_model.graph
    assert [o.name for o in g.output] == ["disparity"]
    assert sum(n.op_type == "Sigmoid" for n in g.node) == 1
    assert not [n.name for n in g.node if any(f"heads.{s}" in n.name for s in (1, 2, 3))]
    consumed = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    dead = [n.name or n.op_type for n in g.node if not any(o in consumed for o in n.output)]
    assert dead == []
    used = {i for n in g.node for i in n.input}
    assert [i.name for i in g.initializer if i.name not in used] == []
    # only scale 0's 1-channel head exists: its depthwise conv sees 16 full-resolution channels
    inits = {i.name: i for i in g.initializer}
    heads = [n for n in g.node if n.op_type == "Conv"
             and list(inits[n.input[1]].dims)[:2] == [1, 16]]
    assert len(heads) == 1 and heads[0].name.endswith(eo.HEAD_POINTWISE_SUFFIX)


def test_runtime_rewrites_applied_and_exact(ckpt, info, tmp_path, fp32_model):
    meta = eo.model_metadata(fp32_model)
    assert meta["graph_rewrites"] == ",".join(eo.RUNTIME_REWRITES)
    ops = [n.op_type for n in fp32_model.graph.node]
    assert "Elu" not in ops and ops.count("Exp") == 10  # the decoder's ten ConvBlocks
    plain = eo.export_depth_net(make_net(), info, tmp_path / "plain.onnx", rewrite=False)
    plain_model = onnx.load(str(plain))
    assert eo.model_metadata(plain_model)["graph_rewrites"] == "none"
    assert [n.op_type for n in plain_model.graph.node].count("Elu") == 10
    x = to_batch(textured_frames(3, seed=5))
    a, b = ort_disp(fp32_model, x), ort_disp(plain_model, x)
    assert a.max() - a.min() > 0.2
    assert np.abs(a - b).max() <= 1e-5


def _ort_optimized_ops(model_path: Path, out: Path) -> List[str]:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(out)
    ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(str(out)).graph.node]


def test_zero_pad_relu_decoder_exports_exactly_and_stays_in_nchwc(info, tmp_path):
    """The deployment decoder (zeros + relu): no Pad, no ELU ops, parity with torch; and the
    reason it exists: onnxruntime keeps its decoder in the blocked layout (far fewer
    layout conversions than the monodepth2 decoder, whose reflection Pad and ELU ops force
    a ReorderInput/ReorderOutput pair around every decoder conv)."""
    torch.manual_seed(1)
    # init_depth=None: PyTorch's zero-centred head bias, so that the scaled head spreads the
    # disparity over the sigmoid's range and the parity check below covers all of it
    net = DepthNet(DepthNetConfig(encoder="resnet18", decoder_padding="zeros",
                                  decoder_activation="relu", init_depth=None)).eval()
    with torch.no_grad():
        net.decoder.heads["0"].weight.mul_(30.0)
    path = eo.export_depth_net(net, info, tmp_path / "zr.onnx")
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "Pad" not in ops and "Elu" not in ops and "Exp" not in ops
    assert set(ops) <= TRT_FRIENDLY
    x = to_batch(textured_frames(3, seed=2))
    with torch.inference_mode():
        ref = DisparityHead(net)(torch.from_numpy(x)).numpy()
    got = ort_disp(path, x)
    assert ref.max() - ref.min() > 0.2
    assert np.abs(got - ref).max() <= 1e-4
    base = eo.export_depth_net(make_net(), info, tmp_path / "base.onnx")
    base_ops = _ort_optimized_ops(base, tmp_path / "base_opt.onnx")
    if "ReorderInput" not in base_ops:
        pytest.skip("onnxruntime's NCHWc layout is not used on this CPU")
    zr_ops = _ort_optimized_ops(path, tmp_path / "zr_opt.onnx")
    reorders = lambda o: o.count("ReorderInput") + o.count("ReorderOutput")  # noqa: E731
    assert reorders(base_ops) >= 20          # a pair per decoder conv (11 of them)
    assert reorders(zr_ops) <= 4             # input, output, the odd skip connection


def test_exposure_normalised_net_exports_exactly(info, tmp_path):
    """model.depth.exposure=log_mean: the gamma is in the exported graph (TensorRT-friendly
    ops) and onnxruntime matches torch on dark and bright frames."""
    torch.manual_seed(3)
    net = DepthNet(DepthNetConfig(encoder="resnet18", exposure="log_mean",
                                  init_depth=None)).eval()
    with torch.no_grad():
        net.decoder.heads["0"].weight.mul_(30.0)
    path = eo.export_depth_net(net, info, tmp_path / "exp.onnx")
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Log", "Pow"} <= ops
    assert ops <= TRT_FRIENDLY | {"Log", "Pow", "Clip", "Reciprocal"}, ops - TRT_FRIENDLY
    frames = textured_frames(2, seed=4)
    x = np.concatenate([to_batch(frames) * 0.08, to_batch(frames)])   # night-dark and as is
    with torch.inference_mode():
        ref = DisparityHead(net)(torch.from_numpy(x)).numpy()
    got = ort_disp(path, x)
    assert ref.max() - ref.min() > 0.1
    assert np.abs(got - ref).max() <= 1e-4


def _one_op_model(node: onnx.NodeProto, x_shape, y_shape, inits=()) -> onnx.ModelProto:
    g = helper.make_graph([node], "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                      x_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
                          list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_decompose_elu_is_elu():
    x = np.concatenate([np.linspace(-30, 30, 4001, dtype=np.float32),
                        np.array([0.0, -0.0, 1e-30, -1e-30, 88.0, -88.0, 1e4, -1e4],
                                 np.float32)]).reshape(1, 1, 1, -1)
    elu = _one_op_model(helper.make_node("Elu", ["x"], ["y"], alpha=1.0), x.shape, x.shape)
    rewritten, n = eo.decompose_elu(elu)
    assert n == 1 and [n.op_type for n in rewritten.graph.node] == ["Min", "Exp", "Sub", "Max"]
    onnx.checker.check_model(rewritten, full_check=True)
    sess = ort.InferenceSession(rewritten.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x})[0]
    ref = np.where(x > 0, x, np.expm1(np.minimum(x, 0).astype(np.float64))).astype(np.float32)
    assert np.abs(got - ref).max() <= 2e-7 and np.isfinite(got).all()
    # alpha != 1 is not ELU as max(x, alpha * (e^x - 1)): left alone
    other = _one_op_model(helper.make_node("Elu", ["x"], ["y"], alpha=2.0), x.shape, x.shape)
    assert eo.decompose_elu(other)[1] == 0


def test_split_single_channel_conv_is_the_same_conv():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((1, 16, 3, 3)).astype(np.float32)
    b = np.array([0.3], np.float32)
    conv = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3],
                            pads=[1, 1, 1, 1], name="head")
    model = _one_op_model(conv, [1, 16, 20, 24], [1, 1, 20, 24],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    rewritten, n = eo.split_single_channel_conv(model)
    assert n == 1
    onnx.checker.check_model(rewritten, full_check=True)
    dw, pw = rewritten.graph.node
    assert dw.name == "head" + eo.HEAD_DEPTHWISE_SUFFIX
    assert pw.name == "head" + eo.HEAD_POINTWISE_SUFFIX
    assert {a.name: helper.get_attribute_value(a) for a in dw.attribute}["group"] == 16
    assert "w" not in {i.name for i in rewritten.graph.initializer}  # replaced, not kept
    x = rng.standard_normal((1, 16, 20, 24)).astype(np.float32)
    run = lambda m: ort.InferenceSession(m.SerializeToString(),  # noqa: E731
                                         providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    # the same sum in another order: float rounding only (values here are ~20)
    np.testing.assert_allclose(run(rewritten), run(model), rtol=1e-5, atol=2e-5)
    # a conv with several output channels, or too few inputs to be padded, is not touched
    for shape in [(2, 16, 3, 3), (1, 4, 3, 3)]:
        w2 = rng.standard_normal(shape).astype(np.float32)
        m2 = _one_op_model(helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3]),
                           [1, shape[1], 8, 8], [1, shape[0], 6, 6],
                           [numpy_helper.from_array(w2, "w")])
        assert eo.split_single_channel_conv(m2)[1] == 0


def test_several_sizes_one_file_each(ckpt, tmp_path):
    paths = eo.export_checkpoint(ckpt, tmp_path / "m.onnx", sizes=[(64, 192), (96, 320)])
    assert [p.name for p in paths] == ["m_64x192.onnx", "m_96x320.onnx"]
    for p, (h, w) in zip(paths, [(64, 192), (96, 320)]):
        info = eo.read_model_info(p)
        assert (info.input_height, info.input_width) == (h, w)
        x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
        assert ort_disp(p, x).shape == (1, 1, h, w)


def test_dynamo_exporter_gives_the_same_graph(tmp_path, info, onnx_path):
    if "dynamo" not in __import__("inspect").signature(torch.onnx.export).parameters:
        pytest.skip("this torch has no dynamo exporter (torch < 2.5)")
    pytest.importorskip("onnxscript")
    assert eo.model_metadata(onnx.load(str(onnx_path)))["exporter"] == "torchscript"
    dy = eo.export_depth_net(make_net(), info, tmp_path / "dy.onnx", exporter="dynamo")
    m = onnx.load(str(dy))
    assert eo._opset(m) >= 18 and eo.model_metadata(m)["exporter"] == "dynamo"
    assert {n.op_type for n in m.graph.node} <= TRT_FRIENDLY
    x = to_batch(textured_frames(1))
    assert np.abs(ort_disp(onnx_path, x) - ort_disp(dy, x)).max() <= 1e-5


def test_export_rejects_bad_arguments(info, tmp_path):
    with pytest.raises(ConfigError, match="exporter"):
        eo.export_depth_net(make_net(), info, tmp_path / "x.onnx", exporter="jit")
    with pytest.raises(ConfigError, match="opset"):
        eo.export_depth_net(make_net(), info, tmp_path / "x.onnx", opset=13)
    with pytest.raises(ConfigError, match="size"):
        eo.export_depth_net(make_net(), info, tmp_path / "x.onnx", size=(60, 192))


@pytest.mark.parametrize("text,ok", [("192x640", (192, 640)), ("64X192", (64, 192)),
                                     ("190x640", None), ("192", None), ("axb", None),
                                     ("0x64", None)])
def test_parse_size(text, ok):
    if ok:
        assert eo.parse_size(text) == ok
    else:
        with pytest.raises(ConfigError, match="--size"):
            eo.parse_size(text)


# --------------------------------------------------------------------------- constant folding

def _toy_model() -> onnx.ModelProto:
    """y = (x + (c1 * 2)) reshaped by Shape/Concat arithmetic, with Identity aliases."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    c1 = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "c1")
    nodes = [
        helper.make_node("Constant", [], ["two"], value=numpy_helper.from_array(
            np.array(2.0, np.float32))),
        helper.make_node("Mul", ["c1", "two"], ["c2"]),
        helper.make_node("Identity", ["c2"], ["c3"]),
        helper.make_node("Add", ["x", "c3"], ["s"]),
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Constant", [], ["neg"], value=numpy_helper.from_array(
            np.array([-1], np.int64))),
        helper.make_node("Slice", ["shape", "neg", "neg"], ["empty"]),  # dead branch
        helper.make_node("Reshape", ["s", "shape"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "toy", [x], [y], [c1])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_fold_constants_keeps_values_and_removes_constant_work():
    model = _toy_model()
    folded = eo.fold_constants(model)
    onnx.checker.check_model(folded, full_check=True)
    assert [n.op_type for n in folded.graph.node] == ["Add", "Reshape"]
    x = np.random.default_rng(0).random((2, 3), dtype=np.float32)
    run = lambda m: ort.InferenceSession(m.SerializeToString(),  # noqa: E731
                                         providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(run(folded), run(model))
    np.testing.assert_allclose(run(folded), x + 2 * np.arange(6).reshape(2, 3))


# --------------------------------------------------------------------------- FP16 graph

def test_fp16_graph_for_tensorrt11(fp32_model):
    m16 = eo.convert_to_fp16(fp32_model)
    onnx.checker.check_model(m16, full_check=True)
    assert eo.is_fp16_graph(m16) and not eo.is_fp16_graph(fp32_model)
    # float32 I/O, fp16 inside through exactly two Cast nodes
    assert m16.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert m16.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert m16.graph.node[0].op_type == "Cast" and m16.graph.node[-1].op_type == "Cast"
    resize_scales = {n.input[2] for n in m16.graph.node if n.op_type == "Resize" and len(n.input) > 2}
    for init in m16.graph.initializer:
        if init.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16):
            want = TensorProto.FLOAT if init.name in resize_scales else TensorProto.FLOAT16
            assert init.data_type == want, init.name
    assert eo.model_metadata(m16)["precision"] == "fp16"
    assert eo.read_model_info(m16) == eo.read_model_info(fp32_model)
    x = to_batch(textured_frames(2, seed=3))
    err = np.abs(ort_disp(m16, x) - ort_disp(fp32_model, x)).max()
    assert 0 < err <= FP16_TOL  # > 0: the weights really are float16


def test_fp16_rejects_weights_out_of_range():
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1])
    y = helper.make_tensor_value_info("disparity", TensorProto.FLOAT, [1, 1])
    big = numpy_helper.from_array(np.array([[1e6]], np.float32), "big")
    model = helper.make_model(helper.make_graph([helper.make_node("Mul", ["image", "big"],
                                                                  ["disparity"])], "g", [x], [y],
                                                [big]),
                              opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ValueError, match="float16"):
        eo.convert_to_fp16(model)


# --------------------------------------------------------------------------- INT8 Q/DQ graph

@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("calib")
    for i, f in enumerate(textured_frames(12, 2 * H, 2 * W, seed=7)):
        cv2.imwrite(str(d / f"frame_{i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    (d / "notes.txt").write_text("not an image")
    (d / "broken.png").write_bytes(b"not a png")
    return d


def test_load_calibration_images(calib_dir):
    # 13 candidates in name order, strided to 8; the first is broken.png (unreadable, skipped)
    batch = eo.load_calibration_images(calib_dir, (H, W), max_images=8)
    assert batch.shape == (7, 3, H, W) and batch.dtype == np.float32
    assert 0.0 <= batch.min() and batch.max() <= 1.0
    assert len(eo.load_calibration_images(calib_dir, (H, W))) == 12  # broken.png skipped


def test_load_calibration_bag(tmp_path):
    from dasp_core import bagio

    bag = tmp_path / "drive"
    frames = textured_frames(10, 2 * H, 2 * W, seed=3)
    with bagio.BagWriter(bag) as w:
        for i, f in enumerate(frames):
            t = (i + 1) * 100_000_000
            w.write("/cam/image_raw", bagio.numpy_to_image(f, "rgb8", t, "cam"), t)
            w.write("/cam/compressed", bagio.rgb_to_compressed(f, "png", stamp_ns=t), t)
            w.write("/cam/depth", bagio.numpy_to_image(np.ones(f.shape[:2], np.float32),
                                                       "32FC1", t, "cam"), t)
    with pytest.raises(DatasetError, match="3 image topics.*--calib-topic"):
        eo.load_calibration_bag(bag, (H, W))
    with pytest.raises(DatasetError, match="no image topic '/nope'"):
        eo.load_calibration_bag(bag, (H, W), topic="/nope")
    raw = eo.load_calibration_bag(bag, (H, W), max_images=4, topic="/cam/image_raw")
    assert raw.shape == (4, 3, H, W) and raw.dtype == np.float32
    # evenly strided over the recording: first and last frame included
    from dasp_core.runtime.preprocess import preprocess

    np.testing.assert_array_equal(raw[0], preprocess(frames[0], (H, W))[0])
    np.testing.assert_array_equal(raw[-1], preprocess(frames[-1], (H, W))[0])
    png = eo.load_calibration_bag(bag, (H, W), max_images=4, topic="/cam/compressed")
    np.testing.assert_array_equal(png, raw)  # lossless png: the same frames


def test_calibration_dir_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        eo.load_calibration_images(tmp_path / "nope", (H, W))
    with pytest.raises(DatasetError, match="no images"):
        eo.load_calibration_images(tmp_path, (H, W))


def test_int8_qdq_graph_for_tensorrt(fp32_model, calib_dir):
    calib = eo.load_calibration_images(calib_dir, (H, W))
    q = eo.quantize_int8_qdq(fp32_model, calib)
    onnx.checker.check_model(q, full_check=True)
    nodes = list(q.graph.node)
    assert sum(n.op_type == "QuantizeLinear" for n in nodes) > 10
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    for n in nodes:  # TensorRT explicit quantisation: symmetric int8, zero point 0
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2:
            zp = inits[n.input[2]]
            assert zp.dtype == np.int8 and not zp.any(), n.name
    # the output head stays float: the Sigmoid's Conv takes float weights, not a DQ output
    producers = {o: n for n in nodes for o in n.output}
    sig = producers["disparity"]
    assert sig.op_type == "Sigmoid"
    head = producers[sig.input[0]]
    assert head.op_type == "Conv" and head.input[1] in inits
    assert inits[head.input[1]].dtype == np.float32
    # the head was split into depthwise + channel sum (split_single_channel_conv): both float
    depthwise = producers[head.input[0]]
    assert depthwise.op_type == "Conv" and depthwise.input[1] in inits
    assert inits[depthwise.input[1]].dtype == np.float32
    meta = eo.model_metadata(q)
    assert meta["precision"] == "int8" and "minmax" in meta["quantization"]
    assert eo.read_model_info(q) == eo.read_model_info(fp32_model)
    x = to_batch(textured_frames(2, seed=11))
    err = np.abs(ort_disp(q, x) - ort_disp(fp32_model, x)).max()
    assert 0 < err <= INT8_TOL


def test_precision_variant_files(onnx_path, calib_dir, tmp_path):
    p16 = eo.precision_variant(onnx_path, "fp16", tmp_path / "a_fp16.onnx")
    assert eo.is_fp16_graph(onnx.load(str(p16)))
    with pytest.raises(ConfigError, match="calib"):
        eo.precision_variant(onnx_path, "int8", tmp_path / "a_int8.onnx")
    with pytest.raises(ModelFileError, match="already a reduced-precision"):
        eo.precision_variant(p16, "fp16", tmp_path / "b.onnx")


# --------------------------------------------------------------------------- CLI

def test_cli_export_onnx(ckpt, tmp_path, capsys):
    from dasp_core.cli import main

    out = tmp_path / "cli.onnx"
    assert main(["export", str(ckpt), "--onnx", "--out", str(out)]) == 0
    assert eo.read_model_info(out).input_width == W
    assert "cli.onnx" in capsys.readouterr().out
    assert main(["export", str(ckpt)]) == 2                       # no target
    assert main(["export", str(ckpt), "--onnx", "--size", "65x64"]) == 2
    assert main(["export", str(ckpt), "--onnx", "--precision", "int8"]) == 2  # no --calib-dir
    assert main(["export", str(tmp_path / "missing.pt"), "--onnx"]) == 2


def test_cli_tensorrt_without_tensorrt_fails_fast(ckpt, tmp_path, monkeypatch):
    import sys

    from dasp_core.cli import main

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt → ImportError
    assert main(["export", str(ckpt), "--tensorrt", "--out", str(tmp_path / "x.engine")]) == 2
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- TensorRT plan/cache

TRT10_FLAGS = ("FP16", "INT8", "TF32", "FP8", "BF16", "REFIT", "STRICT_TYPES")
TRT11_FLAGS = ("TF32", "REFIT", "DEBUG")  # precision flags removed in 11.x


@pytest.mark.parametrize("precision,flags,graph,set_flags,strong", [
    ("fp32", TRT10_FLAGS, "fp32", (), False),
    ("fp16", TRT10_FLAGS, "fp32", ("FP16",), False),
    ("int8", TRT10_FLAGS, "qdq", ("INT8", "FP16"), False),
    ("fp32", TRT11_FLAGS, "fp32", (), True),
    ("fp16", TRT11_FLAGS, "fp16", (), True),
    ("int8", TRT11_FLAGS, "qdq", (), True),
])
def test_precision_plan(precision, flags, graph, set_flags, strong):
    plan = precision_plan(precision, flags)
    assert isinstance(plan, BuildPlan)
    assert (plan.graph, plan.flags, plan.strongly_typed) == (graph, set_flags, strong)
    assert plan.reason


def test_precision_plan_rejects_unknown():
    with pytest.raises(ConfigError, match="precision"):
        precision_plan("int4", TRT10_FLAGS)


def _key(**kw) -> EngineKey:
    base = dict(onnx_sha256="a" * 64, trt_version="10.3.0", gpu_name="Orin",
                compute_capability="8.7", input_shape=(1, 3, 192, 640), precision="fp16",
                calibration="")
    base.update(kw)
    return EngineKey(**base)


@pytest.mark.parametrize("field,value", [("onnx_sha256", "b" * 64), ("trt_version", "11.4.0"),
                                         ("gpu_name", "NVIDIA H100"), ("compute_capability", "9.0"),
                                         ("input_shape", (1, 3, 320, 1024)), ("precision", "int8"),
                                         ("calibration", "minmax:0123")])
def test_engine_key_changes_with_every_component(field, value):
    assert _key().digest() == _key().digest()
    assert _key(**{field: value}).digest() != _key().digest()


def test_engine_cache_store_lookup_and_sidecar(tmp_path, info):
    cache = EngineCache(tmp_path / "engines")
    key = _key()
    assert cache.lookup(key) is None
    with cache.lock(key):
        path = cache.store(key, b"\x00engine-bytes", info, precision_plan("fp16", TRT10_FLAGS), 3.0)
    assert cache.lookup(key) == path and path.read_bytes() == b"\x00engine-bytes"
    got, meta = read_sidecar(path)
    assert got == info and meta["key"] == json.loads(json.dumps(key.to_dict()))
    assert meta["plan"]["flags"] == ["FP16"]
    assert cache.lookup(_key(precision="fp32")) is None
    sidecar_path(path).unlink()            # an entry without sidecar is incomplete
    assert cache.lookup(key) is None
    with pytest.raises(ModelFileError, match="sidecar"):
        read_sidecar(path)
    sidecar_path(path).write_text("{not json")
    with pytest.raises(ModelFileError, match="not a valid engine sidecar"):
        read_sidecar(path)
