"""Inference runtime: pre/post-processing, backend parity, bad model files, backend choice,
the torch-free deployment path, and the TensorRT backend (real when available; otherwise its
build logic and data path against a fake ``tensorrt`` module and a host-memory CUDA stand-in).
"""

from __future__ import annotations

import ctypes
import json
import logging
import subprocess
import sys
import types
from pathlib import Path
from typing import Dict

import cv2
import numpy as np
import onnx
import pytest
import torch

from dasp_core.checkpoint import save_checkpoint
from dasp_core.errors import ConfigError, ModelFileError
from dasp_core.export import onnx as eo
from dasp_core.geometry import disp_to_depth
from dasp_core.models.depth_net import DepthNet, DepthNetConfig
from dasp_core.runtime.base import DepthEstimator, ModelInfo
from dasp_core.runtime.factory import Availability, choose_backends, create_estimator
from dasp_core.runtime.onnx_backend import OnnxEstimator
from dasp_core.runtime.preprocess import (disparity_to_depth, postprocess, preprocess,
                                          preprocess_batch, resize_interpolation)
from dasp_core.runtime.tensorrt_backend import CudaRuntime, TensorRTEstimator
from dasp_core.runtime.torch_backend import TorchEstimator

H, W = 64, 192
CAM = (120, 400)  # camera frame size used for predict()
ROOT = Path(__file__).resolve().parents[1]


def make_net(seed: int = 0) -> DepthNet:
    torch.manual_seed(seed)
    net = DepthNet(DepthNetConfig(encoder="resnet18")).eval()
    with torch.no_grad():  # spread the sigmoid over [0, 1] so parity checks bite
        net.decoder.heads["0"].weight.mul_(30.0)
    return net


def frames(n: int, h: int = CAM[0], w: int = CAM[1], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = []
    for i in range(n):
        f = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / (4 + i) + yy / 9)], -1)
        for _ in range(5):
            y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
            f[y0:y0 + h // 4, x0:x0 + w // 6] = rng.random(3)
        out.append((np.clip(f, 0, 1) * 255).astype(np.uint8))
    return np.stack(out)


@pytest.fixture(scope="module")
def info() -> ModelInfo:
    return ModelInfo(input_height=H, input_width=W, min_depth=0.5, max_depth=80.0,
                     scale_factor=2.5, scale_source="fixed")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, info) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("rt") / "model.pt", make_net(), info)


@pytest.fixture(scope="module")
def onnx_path(ckpt) -> Path:
    (path,) = eo.export_checkpoint(ckpt)
    return path


@pytest.fixture(scope="module")
def torch_est(ckpt) -> TorchEstimator:
    return TorchEstimator(ckpt, device="cpu", threads=2)


@pytest.fixture(scope="module")
def ort_est(onnx_path) -> OnnxEstimator:
    return OnnxEstimator(onnx_path, device="cpu", threads=2)


# --------------------------------------------------------------------------- preprocess

def test_preprocess_layout_range_and_channel_order():
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 0] = 255          # pure red
    img[:, : W // 2, 2] = 51   # blue on the left half
    x = preprocess(img, (H, W))
    assert x.shape == (1, 3, H, W) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0], 1.0)
    np.testing.assert_allclose(x[0, 1], 0.0)
    np.testing.assert_allclose(x[0, 2, :, : W // 2], 0.2, atol=1e-7)
    np.testing.assert_allclose(x[0, 2, :, W // 2:], 0.0)


def test_preprocess_resize_choice_and_out_buffer():
    assert resize_interpolation((720, 1280), (192, 640)) == cv2.INTER_AREA
    assert resize_interpolation((100, 300), (192, 640)) == cv2.INTER_LINEAR
    img = frames(1)[0]
    expected = cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    buf = np.full((1, 3, H, W), -1.0, np.float32)
    out = preprocess(img, (H, W), out=buf)
    assert out is buf
    np.testing.assert_allclose(buf[0].transpose(1, 2, 0), expected, atol=1e-7)
    batch = preprocess_batch([img, img[::2, ::2].copy()], (H, W))
    assert batch.shape == (2, 3, H, W)
    np.testing.assert_array_equal(batch[0], buf[0])


@pytest.mark.parametrize("bad,err", [(np.zeros((10, 10, 3), np.float32), "uint8"),
                                     (np.zeros((10, 10), np.uint8), r"\[H, W, 3\]"),
                                     (np.zeros((10, 10, 4), np.uint8), r"\[H, W, 3\]"),
                                     (np.zeros((0, 10, 3), np.uint8), "empty")])
def test_preprocess_rejects_bad_images(bad, err):
    with pytest.raises(ValueError, match=err):
        preprocess(bad, (H, W))


# --------------------------------------------------------------------------- postprocess

def test_postprocess_known_values(info):
    disp = np.array([[0.0, 1.0], [0.5, 0.25]], np.float32)
    depth = postprocess(disp, info)
    assert depth.dtype == np.float32 and depth.shape == (2, 2)
    assert depth[0, 0] == pytest.approx(info.max_depth * info.scale_factor, rel=1e-6)
    assert depth[0, 1] == pytest.approx(info.min_depth * info.scale_factor, rel=1e-6)
    d = np.random.default_rng(0).random((8, 9)).astype(np.float32)
    _, ref = disp_to_depth(torch.from_numpy(d), info.min_depth, info.max_depth)
    np.testing.assert_allclose(disparity_to_depth(d, info.min_depth, info.max_depth), ref.numpy(),
                               rtol=1e-6)


def test_postprocess_resize_keeps_planes_planar(info):
    """Bilinear interpolation of an affine disparity field (a plane) stays affine."""
    yy, xx = np.mgrid[0:16, 0:48].astype(np.float32)
    disp = 0.1 + 0.01 * xx + 0.02 * yy
    depth = postprocess(disp, info, (64, 192))
    inv = 1.0 / (depth / info.scale_factor)  # back to inverse depth (affine in disp)
    interior = inv[8:-8, 8:-8]
    # second differences of an affine field vanish
    assert np.abs(np.diff(interior, 2, axis=1)).max() < 1e-4
    assert np.abs(np.diff(interior, 2, axis=0)).max() < 1e-4
    nearest = postprocess(disp, info, (64, 192), interpolation="nearest")
    assert set(np.unique(nearest)) <= set(np.unique(postprocess(disp, info)))
    with pytest.raises(ValueError, match="interpolation"):
        postprocess(disp, info, (64, 192), interpolation="cubic")


# --------------------------------------------------------------------------- backends

def test_estimators_satisfy_protocol(torch_est, ort_est):
    assert isinstance(torch_est, DepthEstimator) and isinstance(ort_est, DepthEstimator)
    assert (torch_est.backend, ort_est.backend) == ("torch", "onnxruntime")


def test_parity_onnxruntime_vs_torch(torch_est, ort_est, info):
    imgs = frames(3)
    batch = preprocess_batch(imgs, (H, W))
    d_torch, d_ort = torch_est.infer_disparity(batch), ort_est.infer_disparity(batch)
    assert d_torch.shape == d_ort.shape == (3, 1, H, W)
    assert d_torch.max() - d_torch.min() > 0.2
    assert np.abs(d_torch - d_ort).max() <= 1e-4
    depth_t, depth_o = torch_est.predict(imgs[0]), ort_est.predict(imgs[0])
    np.testing.assert_allclose(depth_o, depth_t, rtol=2e-3)


def _head_calls(net: DepthNet) -> Dict[str, int]:
    calls = {k: 0 for k in net.decoder.heads}
    for k, head in net.decoder.heads.items():
        head.register_forward_hook(lambda *_, k=k: calls.__setitem__(k, calls[k] + 1))
    return calls


def test_deploy_forward_is_scale0_without_the_coarse_heads():
    net = make_net()
    calls = _head_calls(net)
    x = torch.from_numpy(preprocess_batch(frames(2), (H, W)))
    with torch.inference_mode():
        full = net(x)  # training forward: unchanged, every scale
        assert calls == {"0": 1, "1": 1, "2": 1, "3": 1} and len(full) == 4
        deploy = net.forward_disparity(x)
    assert calls == {"0": 2, "1": 1, "2": 1, "3": 1}  # coarse heads not run again
    assert deploy.shape == (2, 1, H, W) and torch.equal(deploy, full[0])
    with pytest.raises(ValueError, match="scale 5"):
        net.decoder(net.encoder(x), scales=(5,))
    with pytest.raises(ValueError, match="multiple of 32"):
        net.forward_disparity(x[..., :60])


def test_torch_backend_runs_the_deploy_forward(torch_est):
    calls = _head_calls(torch_est.net)
    torch_est.infer_disparity(preprocess_batch(frames(1), (H, W)))
    assert calls == {"0": 1, "1": 0, "2": 0, "3": 0}


def test_shipped_model_onnx_matches_its_checkpoint():
    """The shipped ONNX is the shipped checkpoint: one output, the runtime rewrites, and
    onnxruntime agrees with torch's deploy forward to 1e-4 on textured frames."""
    from dasp_core.assets import default_model_path
    from dasp_core.checkpoint import load_depth_model

    try:
        onnx_file, pt_file = default_model_path("onnx"), default_model_path("checkpoint")
    except FileNotFoundError as e:
        pytest.skip(str(e))
    model = onnx.load(onnx_file)
    meta = eo.model_metadata(model)
    assert [o.name for o in model.graph.output] == ["disparity"]
    assert meta["source_sha256"] == eo.file_sha256(pt_file)
    assert meta["graph_rewrites"] == ",".join(eo.RUNTIME_REWRITES)
    net, info, _ = load_depth_model(pt_file)
    h, w = int(meta["input_height"]), int(meta["input_width"])
    batch = preprocess_batch(frames(3, seed=4), (h, w))
    with torch.inference_mode():
        ref = net.forward_disparity(torch.from_numpy(batch)).numpy()
    est = OnnxEstimator(onnx_file, device="cpu", threads=1)
    assert est.info == eo.read_model_info(model)
    got = est.infer_disparity(batch)
    # the shipped fp16 weights, run in fp32 by both: the exported graph is the checkpoint's
    # network (the random-weight parity tests above cover the graph rewrites in general)
    assert np.abs(got - ref).max() <= 1e-4


def test_metadata_read_back_by_onnxruntime(ort_est, info):
    got = ort_est.info
    assert (got.input_height, got.input_width) == (H, W)
    assert (got.min_depth, got.max_depth, got.scale_factor, got.scale_source) == (
        info.min_depth, info.max_depth, info.scale_factor, info.scale_source)
    assert ort_est.precision == "fp32"


@pytest.mark.parametrize("which", ["torch", "onnxruntime"])
def test_predict_shape_dtype_range(which, torch_est, ort_est, info):
    est = torch_est if which == "torch" else ort_est
    img = frames(1)[0]
    depth = est.predict(img)
    assert depth.shape == CAM and depth.dtype == np.float32 and np.isfinite(depth).all()
    lo, hi = info.min_depth * info.scale_factor, info.max_depth * info.scale_factor
    assert lo * (1 - 1e-5) <= depth.min() and depth.max() <= hi * (1 + 1e-5)
    assert est.predict(img, output_size=(30, 50)).shape == (30, 50)


@pytest.mark.parametrize("which", ["torch", "onnxruntime"])
def test_batch_predict_matches_single(which, torch_est, ort_est):
    est = torch_est if which == "torch" else ort_est
    imgs = frames(3, seed=5)
    batch = est.predict_batch(imgs)
    assert batch.shape == (3,) + CAM and batch.dtype == np.float32
    for i in range(3):
        np.testing.assert_allclose(batch[i], est.predict(imgs[i]), rtol=1e-5, atol=1e-5)
    assert est.predict_batch(list(imgs), output_size=(20, 40)).shape == (3, 20, 40)
    with pytest.raises(ValueError, match="output_size"):
        est.predict_batch([imgs[0], imgs[1][:50]])


def test_infer_disparity_rejects_wrong_shape(ort_est):
    with pytest.raises(ValueError, match=r"\[B, 3, 64, 192\]"):
        ort_est.infer_disparity(np.zeros((1, 3, 32, 32), np.float32))


# --------------------------------------------------------------------------- bad model files

def test_missing_files_name_the_path(tmp_path):
    for name in ("nope.onnx", "nope.pt", "nope.engine"):
        with pytest.raises(ModelFileError, match="nope") as e:
            create_estimator(tmp_path / name)
        assert str(tmp_path / name) in str(e.value) and "not found" in str(e.value)
    with pytest.raises(ModelFileError, match="not found"):
        OnnxEstimator(tmp_path / "nope.onnx")


def test_text_file_renamed_onnx(tmp_path):
    bad = tmp_path / "notes.onnx"
    bad.write_text("this is not a model\n")
    with pytest.raises(ModelFileError, match="cannot be loaded by onnxruntime") as e:
        create_estimator(bad, backend="onnxruntime")
    assert str(bad) in str(e.value)
    with pytest.raises(ModelFileError, match=str(bad)):
        create_estimator(bad)  # auto: same clear error, not a fallback crash


def test_checkpoint_with_wrong_format(tmp_path):
    bad = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, bad)
    with pytest.raises(ModelFileError, match="not a dasp checkpoint") as e:
        create_estimator(bad, backend="torch")
    assert str(bad) in str(e.value)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(ModelFileError, match="cannot be read"):
        TorchEstimator(junk, device="cpu")


def test_onnx_with_other_input_size_than_requested(onnx_path):
    with pytest.raises(ModelFileError, match="has input size 64x192") as e:
        create_estimator(onnx_path, backend="onnxruntime", input_size=(96, 320))
    assert str(onnx_path) in str(e.value) and "96x320" in str(e.value)


def test_onnx_without_dasp_metadata(tmp_path, onnx_path):
    model = onnx.load(str(onnx_path))
    del model.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(model, str(plain))
    with pytest.raises(ModelFileError, match="dasp_model_info"):
        OnnxEstimator(plain)


def test_unknown_suffix_and_bad_arguments(tmp_path, onnx_path):
    other = tmp_path / "model.tflite"
    other.write_bytes(b"x")
    with pytest.raises(ModelFileError, match="unknown suffix"):
        create_estimator(other)
    with pytest.raises(ConfigError, match="backend"):
        create_estimator(onnx_path, backend="tensorflow")
    with pytest.raises(ConfigError, match="device"):
        create_estimator(onnx_path, device="tpu")
    with pytest.raises(ConfigError, match="threads"):
        create_estimator(onnx_path, threads=0)
    with pytest.raises(ConfigError, match="input_size"):
        create_estimator(onnx_path, input_size=(60, 100))
    with pytest.raises(ConfigError, match="backend"):
        create_estimator(onnx_path, backend="torch")  # torch cannot run an .onnx


# --------------------------------------------------------------------------- backend choice

ALL = Availability(tensorrt=True, cuda_devices=1, onnxruntime=True, torch=True)


@pytest.mark.parametrize("kind,avail,device,first,ruled", [
    ("onnx", ALL, "auto", "tensorrt", []),
    ("onnx", ALL, "cpu", "onnxruntime", ["device=cpu"]),
    ("onnx", Availability(True, 0, True, True), "auto", "onnxruntime", ["no CUDA device"]),
    ("onnx", Availability(False, 1, True, False), "auto", "onnxruntime", ["not installed"]),
    ("checkpoint", Availability(False, 0, True, True), "auto", "onnxruntime", ["tensorrt"]),
    ("checkpoint", Availability(False, 0, False, True), "auto", "torch", ["onnxruntime"]),
    ("checkpoint", Availability(True, 1, True, False), "auto", None, ["needs torch"]),
    ("engine", ALL, "auto", "tensorrt", ["cannot run a TensorRT engine"]),
])
def test_auto_backend_choice(kind, avail, device, first, ruled):
    if first is None:
        with pytest.raises(ConfigError, match="needs torch"):
            choose_backends(kind, "auto", device, avail)
        return
    chosen, ruled_out = choose_backends(kind, "auto", device, avail)
    assert chosen[0][0] == first and all(why for _, why in chosen)
    for text in ruled:
        assert any(text in r for r in ruled_out), (text, ruled_out)


def test_engine_needs_tensorrt_and_gpu():
    with pytest.raises(ConfigError, match="no CUDA device"):
        choose_backends("engine", "auto", "auto", Availability(True, 0, True, True))
    with pytest.raises(ConfigError, match="device=cpu"):
        choose_backends("engine", "tensorrt", "cpu", ALL)


def test_probe_does_not_import_torch_or_tensorrt():
    code = ("import sys; from dasp_core.runtime.factory import probe_availability; "
            "a = probe_availability(); "
            "assert 'torch' not in sys.modules and 'tensorrt' not in sys.modules, sys.modules; "
            "print(a.onnxruntime, a.torch)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]


def test_auto_falls_back_when_tensorrt_fails(onnx_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # "installed" but broken
    with caplog.at_level(logging.INFO, logger="dasp_core.runtime.factory"):
        est = create_estimator(onnx_path, availability=ALL, threads=1)
    assert est.backend == "onnxruntime"
    text = caplog.text
    assert "backend tensorrt could not start" in text and "using backend onnxruntime" in text


def test_auto_on_checkpoint_exports_onnx_to_cache(ckpt, tmp_path, caplog):
    avail = Availability(tensorrt=False, cuda_devices=0, onnxruntime=True, torch=True)
    with caplog.at_level(logging.INFO):
        est = create_estimator(ckpt, availability=avail, threads=1, cache_dir=tmp_path)
        again = create_estimator(ckpt, availability=avail, threads=1, cache_dir=tmp_path)
    assert est.backend == again.backend == "onnxruntime"
    cached = list((tmp_path / "onnx").glob("*_64x192_*.onnx"))
    assert len(cached) == 1 and "ONNX cache hit" in caplog.text
    assert "tensorrt: the tensorrt package is not installed" in caplog.text


# --------------------------------------------------------------------------- torch-free path

def assert_runs_without_torch(code: str) -> None:
    """Run ``code`` in a fresh interpreter; it must succeed without importing torch or
    torchvision (the node's runtime path)."""
    code += """
import sys
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision"))
assert not bad, bad
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-1] == "ok"


def test_onnxruntime_path_never_imports_torch(onnx_path):
    assert_runs_without_torch(f"""
import numpy as np
from dasp_core.runtime.factory import create_estimator
import dasp_core.runtime.tensorrt_backend, dasp_core.export.tensorrt, dasp_core.runtime.base
est = create_estimator({str(onnx_path)!r}, backend="onnxruntime", threads=1)
depth = est.predict(np.full((50, 90, 3), 128, np.uint8))
assert depth.shape == (50, 90), depth.shape
est2 = create_estimator({str(onnx_path)!r}, threads=1)   # auto
est2.predict_batch(np.zeros((2, 40, 40, 3), np.uint8))
""")


def test_ort_only_process_memory(onnx_path):
    from dasp_core.runtime.bench import GOAL_RSS_MB, ort_only_process

    r = ort_only_process(onnx_path, threads=1, frames=3, image_size=CAM)
    assert r["torch_loaded"] is False and r["heavy_modules"] == []
    assert r["depth_shape"] == list(CAM) and r["depth_finite"]
    assert 0 < r["peak_rss_mb"] < GOAL_RSS_MB


def test_bench_quick_smoke(ckpt, tmp_path, capsys):
    from dasp_core.cli import main

    out = tmp_path / "report"
    rc = main(["bench", "--quick", "--model", str(ckpt), "--out", str(out), "--no-rss",
               "--iters", "2"])
    assert rc == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert {r["backend"] for r in report["rows"]} == {"torch", "onnxruntime"}
    for r in report["rows"]:
        assert r["net"]["p50_ms"] > 0 and r["e2e"]["p99_ms"] >= r["e2e"]["p50_ms"]
    assert report["machine"]["logical_cores"] and "bench" in report["command"]
    md = out.with_suffix(".md").read_text()
    assert "| onnxruntime | 64x192 |" in md and "net vs torch" in md
    # one thread: CPU time reported beside wall time; load average recorded
    ort_row = next(r for r in report["rows"] if r["backend"] == "onnxruntime")
    assert ort_row["net_cpu"]["n"] == 2 and "vs_torch_cpu" in ort_row and "vs_torch_p99" in ort_row
    assert "CPU time, one thread" in md and report["settings"]["interleaved_block"] >= 1
    # the report names the architecture measured; random-network flags are not in the
    # command of a run that measured a given model
    assert "decoder padding reflect, activation elu" in report["architecture"]
    assert "--encoder" not in report["command"] and "decoder padding" in md


def test_bench_random_network_of_a_chosen_decoder(tmp_path):
    from dasp_core.cli import main

    out = tmp_path / "random"
    rc = main(["bench", "--quick", "--model", "random", "--encoder", "resnet18",
               "--decoder-padding", "zeros", "--decoder-activation", "relu",
               "--backends", "onnxruntime", "--out", str(out), "--no-rss", "--iters", "1"])
    assert rc == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["architecture"] == "resnet18, decoder padding zeros, activation relu"
    assert "--decoder-padding zeros" in report["command"]
    assert [r["backend"] for r in report["rows"]] == ["onnxruntime"]


def test_latency_goal_not_judged_on_a_busy_machine():
    from dasp_core.runtime.bench import QUIET_IDLE, _goals, cpu_idle_fraction

    row = {"backend": "onnxruntime", "size": [192, 640], "threads": 2, "vs_torch": 0.4}
    quiet = _goals({"rows": [row], "idle_before": 0.97})[0]
    assert quiet["met"] is True and "why_not" not in quiet
    busy = _goals({"rows": [row], "idle_before": QUIET_IDLE / 2})[0]
    assert busy["met"] is None and busy["measured"] == 0.4 and "busy machine" in busy["why_not"]
    slow = _goals({"rows": [dict(row, vs_torch=0.7)], "idle_before": None})[0]
    assert slow["met"] is False  # no /proc/stat: judged as measured
    idle = cpu_idle_fraction(0.05)
    assert idle is None or 0.0 <= idle <= 1.0


def test_time_interleaved_alternates_blocks():
    from dasp_core.runtime.bench import time_interleaved

    calls = []
    fns = [lambda: calls.append("a"), lambda: calls.append("b")]
    cpu: list = []
    times = time_interleaved(fns, iters=7, warmup=1, block=3, cpu_times=cpu)
    assert [len(t) for t in times] == [7, 7] and [len(c) for c in cpu] == [7, 7]
    # warm-up a b; then blocks of 1 untimed + 3 timed, order reversed every round
    assert "".join(calls) == "ab" + "aaaa" "bbbb" + "bbbb" "aaaa" + "aa" "bb"


# --------------------------------------------------------------------------- TensorRT: fakes

class FakeCuda:
    """Host-memory stand-in for CudaRuntime: 'device' pointers are ctypes buffers."""

    def __init__(self) -> None:
        self.buffers: Dict[int, ctypes.Array] = {}
        self.copies = 0

    def _alloc(self, n: int) -> int:
        buf = ctypes.create_string_buffer(n)
        self.buffers[ctypes.addressof(buf)] = buf
        return ctypes.addressof(buf)

    malloc = malloc_host = _alloc

    def free(self, ptr: int) -> None:
        self.buffers.pop(ptr)

    free_host = free

    def memcpy_htod_async(self, dst: int, src: int, n: int, stream: int) -> None:
        assert stream == 7
        ctypes.memmove(dst, src, n)
        self.copies += 1

    memcpy_dtoh_async = memcpy_htod_async

    def stream_create(self) -> int:
        return 7

    def stream_synchronize(self, stream: int) -> None:
        pass

    def stream_destroy(self, stream: int) -> None:
        pass

    def device_count(self) -> int:
        return 1

    def set_device(self, device: int) -> None:
        assert device == 0

    def device_name(self, device: int = 0) -> str:
        return "Fake GPU"

    def compute_capability(self, device: int = 0) -> str:
        return "8.7"


def fake_tensorrt(version: str, precision_flags: bool) -> types.ModuleType:
    """Enough of the TensorRT Python API for build_engine and TensorRTEstimator; the 'engine'
    is the ONNX graph it was built from, executed by onnxruntime on the bound buffers."""
    import onnxruntime as ort

    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.built = []  # (network flags, builder flags, parsed onnx bytes)

    class ILogger:
        Severity = types.SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

        def __init__(self) -> None:
            pass

    trt.ILogger = ILogger
    trt.Logger = ILogger
    flags = ["TF32", "REFIT"] + (["FP16", "INT8"] if precision_flags else [])
    trt.BuilderFlag = types.SimpleNamespace(**{f: f for f in flags})
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=0)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    trt.DataType = types.SimpleNamespace(FLOAT="float")
    trt.nptype = lambda dt: {"float": np.float32}[dt]

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags, self.onnx = flags, None

    class Parser:
        num_errors = 0

        def __init__(self, network: Network, logger: ILogger) -> None:
            self.network = network

        def parse(self, data: bytes) -> bool:
            onnx.checker.check_model(onnx.load_from_string(data))
            self.network.onnx = data
            return True

    class Config:
        def __init__(self) -> None:
            self.flags, self.pools = [], {}

        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            self.pools[pool] = size

        def set_flag(self, flag: str) -> None:
            self.flags.append(flag)

    class Builder:
        def __init__(self, logger: ILogger) -> None:
            pass

        def create_network(self, flags: int = 0) -> Network:
            return Network(flags)

        def create_builder_config(self) -> Config:
            return Config()

        def build_serialized_network(self, network: Network, config: Config) -> bytes:
            trt.built.append((network.flags, list(config.flags), network.onnx))
            return b"FAKEENGINE" + network.onnx

    class Context:
        def __init__(self, engine: "Engine") -> None:
            self.engine, self.addr = engine, {}

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            self.addr[name] = ptr
            return True

        def execute_async_v3(self, stream: int) -> bool:
            shapes = self.engine.shapes
            n_in = int(np.prod(shapes["image"])) * 4
            x = np.frombuffer((ctypes.c_byte * n_in).from_address(self.addr["image"]),
                              np.float32).reshape(shapes["image"]).copy()
            y = np.ascontiguousarray(self.engine.sess.run(["disparity"], {"image": x})[0],
                                     np.float32)
            ctypes.memmove(self.addr["disparity"], y.ctypes.data, y.nbytes)
            return True

    class Engine:
        def __init__(self, data: bytes) -> None:
            self.sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
            self.shapes = {"image": tuple(self.sess.get_inputs()[0].shape),
                           "disparity": tuple(self.sess.get_outputs()[0].shape)}
            self.num_io_tensors = 2

        def get_tensor_name(self, i: int) -> str:
            return ["image", "disparity"][i]

        def get_tensor_mode(self, name: str) -> str:
            return "in" if name == "image" else "out"

        def get_tensor_shape(self, name: str) -> tuple:
            return self.shapes[name]

        def get_tensor_dtype(self, name: str) -> str:
            return "float"

        def create_execution_context(self) -> Context:
            return Context(self)

    class Runtime:
        def __init__(self, logger: ILogger) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes):
            return Engine(data[10:]) if data.startswith(b"FAKEENGINE") else None

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, Parser, Runtime
    return trt


@pytest.fixture
def fake_gpu(monkeypatch):
    cuda = FakeCuda()
    monkeypatch.setattr(CudaRuntime, "_instance", cuda)

    def install(version: str = "10.3.0", precision_flags: bool = True) -> types.ModuleType:
        trt = fake_tensorrt(version, precision_flags)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        return trt

    install.cuda = cuda
    return install


def test_tensorrt10_fp16_uses_builder_flag_and_cache(fake_gpu, onnx_path, ort_est, tmp_path):
    trt = fake_gpu("10.3.0", precision_flags=True)
    est = TensorRTEstimator(onnx_path, precision="fp16", cache_dir=tmp_path)
    (net_flags, flags, graph), = trt.built
    assert flags == ["FP16"] and net_flags == 0
    assert not eo.is_fp16_graph(onnx.load_from_string(graph))  # fp32 graph + flag
    imgs = frames(2)
    batch = preprocess_batch(imgs, (H, W))
    np.testing.assert_allclose(est.infer_disparity(batch), ort_est.infer_disparity(batch),
                               atol=1e-6)
    np.testing.assert_allclose(est.predict(imgs[0]), ort_est.predict(imgs[0]), rtol=1e-5)
    assert est.info == ort_est.info and est.precision == "fp16"
    # second start: engine from the cache, no rebuild
    TensorRTEstimator(onnx_path, precision="fp16", cache_dir=tmp_path).close()
    assert len(trt.built) == 1
    est.close()
    assert not fake_gpu.cuda.buffers  # every device/pinned buffer freed


def test_tensorrt11_fp16_builds_fp16_graph_strongly_typed(fake_gpu, onnx_path, ort_est, tmp_path):
    trt = fake_gpu("11.4.0", precision_flags=False)
    est = TensorRTEstimator(onnx_path, precision="fp16", cache_dir=tmp_path)
    (net_flags, flags, graph), = trt.built
    assert flags == [] and eo.is_fp16_graph(onnx.load_from_string(graph))
    batch = preprocess_batch(frames(2), (H, W))
    assert np.abs(est.infer_disparity(batch) - ort_est.infer_disparity(batch)).max() <= 2e-3


def test_tensorrt_int8_builds_qdq_graph(fake_gpu, onnx_path, tmp_path):
    calib = tmp_path / "calib"
    calib.mkdir()
    for i, f in enumerate(frames(6, seed=2)):
        cv2.imwrite(str(calib / f"{i}.png"), f[..., ::-1])
    for version, has_flags, want in (("10.3.0", True, ["INT8", "FP16"]), ("11.4.0", False, [])):
        trt = fake_gpu(version, precision_flags=has_flags)
        est = TensorRTEstimator(onnx_path, precision="int8", cache_dir=tmp_path / version,
                                calib_dir=calib)
        (_, flags, graph), = trt.built
        assert flags == want
        assert any(n.op_type == "QuantizeLinear" for n in onnx.load_from_string(graph).graph.node)
        assert est.predict(frames(1)[0]).shape == CAM
    with pytest.raises(ConfigError, match="calib_dir"):
        TensorRTEstimator(onnx_path, precision="int8", cache_dir=tmp_path / "x")


def test_reduced_precision_onnx_is_built_as_stored(fake_gpu, onnx_path, tmp_path):
    p16 = eo.precision_variant(onnx_path, "fp16", tmp_path / "m_fp16.onnx")
    trt = fake_gpu("10.3.0", precision_flags=True)
    est = TensorRTEstimator(p16, precision="fp32", cache_dir=tmp_path / "cache")
    (net_flags, flags, graph), = trt.built
    assert graph == p16.read_bytes() and flags == []
    assert net_flags == 1 << 0  # STRONGLY_TYPED on TensorRT 10 keeps the fp16 types
    assert est.precision == "fp16"


def test_engine_file_with_sidecar_and_mismatches(fake_gpu, onnx_path, tmp_path):
    from dasp_core.export.tensorrt import build_engine, copy_engine, read_sidecar, sidecar_path

    fake_gpu("10.3.0")
    cached, info = build_engine(onnx_path, "fp32", tmp_path / "cache")
    engine = copy_engine(cached, tmp_path / "model.engine")
    est = TensorRTEstimator(engine)
    assert est.info == info and est.predict(frames(1)[0]).shape == CAM
    with pytest.raises(ModelFileError, match="has input size 64x192"):
        TensorRTEstimator(engine, input_size=(96, 320))
    fake_gpu("10.4.0")  # another TensorRT: the engine is refused with a clear reason
    with pytest.raises(ModelFileError, match="trt_version 10.3.0"):
        TensorRTEstimator(engine)
    fake_gpu("10.3.0")
    bad = tmp_path / "bad.engine"
    bad.write_bytes(b"garbage")
    sidecar_path(bad).write_text(sidecar_path(engine).read_text())
    with pytest.raises(ModelFileError, match="cannot deserialize"):
        TensorRTEstimator(bad)
    sidecar_path(bad).unlink()
    with pytest.raises(ModelFileError, match="sidecar"):
        TensorRTEstimator(bad)
    assert read_sidecar(engine)[1]["key"]["gpu_name"] == "Fake GPU"


def test_cuda_runtime_without_gpu_reports_zero_devices():
    from dasp_core.runtime.tensorrt_backend import CudaError, cuda_device_count

    n = cuda_device_count()
    assert n >= 0
    if n == 0:  # this machine: no driver; the error must say what was tried
        with pytest.raises(CudaError, match="libcudart|CUDA"):
            CudaRuntime.get().set_device(0)


# --------------------------------------------------------------------------- TensorRT: real

def _real_tensorrt():
    pytest.importorskip("tensorrt", reason="TensorRT not installed (GPU machines only)")
    from dasp_core.runtime.tensorrt_backend import cuda_device_count

    if cuda_device_count() == 0:
        pytest.skip("tensorrt is installed but no CUDA device is visible")


@pytest.mark.parametrize("precision,tol", [("fp32", 2e-3), ("fp16", 1e-2)])
def test_real_tensorrt_matches_onnxruntime(precision, tol, onnx_path, ort_est, tmp_path):
    _real_tensorrt()
    est = TensorRTEstimator(onnx_path, precision=precision, cache_dir=tmp_path)
    batch = preprocess_batch(frames(2), (H, W))
    # fp32 tolerance allows TF32 convolutions (TensorRT's default on Ampere+)
    assert np.abs(est.infer_disparity(batch) - ort_est.infer_disparity(batch)).max() <= tol
    assert est.predict(frames(1)[0]).shape == CAM
    again = TensorRTEstimator(onnx_path, precision=precision, cache_dir=tmp_path)
    assert again.path == est.path  # cache hit
