#!/usr/bin/env python3
"""Benchmark of depth_node over real DDS: the node's own work, and the whole node per backend.

Every run has a separate "camera" process that publishes 640x480 rgb8 images plus CameraInfo
and subscribes to every output (so every output is computed), both processes with
``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA``:

1. **Overhead**: a zero-cost estimator (the real preprocess/postprocess of
   ``dasp_core.runtime``, the network replaced by a constant disparity) — what the node adds
   per frame: decode, preprocess + postprocess, scale, depth/depth_mm/colour/point cloud,
   publish. Also a stage-by-stage micro-benchmark of the same functions without ROS.
   Beside the wall time of each frame, the worker thread's CPU time per frame: the work
   itself, which other processes on a shared machine barely change.
2. **Latest-frame under overload**: 30 Hz input, a slow model (default 100 ms). The node's RSS
   must stay flat (no backlog anywhere) and the age of published depth (receive time − image
   stamp, same host clock) must stay bounded (about one model run plus one frame period).
3. **Whole node per backend** (``--variants``): the real network — eager torch, onnxruntime
   fp32/int8, OpenVINO fp32/bf16/int8 and the node's default (``backend=auto,
   precision=auto``) — at ``--size`` (192x640) with ``--threads``, a 30 Hz camera, every
   output subscribed: published depth rate, model and overhead time, node RSS. Each variant's
   node runs in a process of its own (its RSS holds only that runtime), one after the other.

Writes ``bench_node.md`` (a Markdown section for docs), ``bench_node.json`` and PNG figures
into ``--out``.

    .venv/bin/python scripts/bench_node.py --out docs/bench/node      # full
    .venv/bin/python scripts/bench_node.py --quick --out /tmp/bn      # smoke test
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

log = logging.getLogger("bench_node")
WIDTH, HEIGHT = 640, 480
K = np.array([[500.0, 0.0, 319.5], [0.0, 500.0, 239.5], [0.0, 0.0, 1.0]])


class Spinner:
    """Spins an executor in a thread until :meth:`stop` (joined before nodes are destroyed,
    so no callback runs into a destroyed node)."""

    def __init__(self, executor: Any):
        self._ex = executor
        self._run = True
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while self._run:
            self._ex.spin_once(timeout_sec=0.05)

    def stop(self) -> None:
        self._run = False
        self._thread.join()
        self._ex.shutdown()


# ----------------------------------------------------------------------------- camera process

def camera_main(args: argparse.Namespace) -> int:
    """Child: publish images + CameraInfo at ``--rate``, record output arrivals, write JSON."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from dasp_ros.image_codec import array_to_image

    rclpy.init(domain_id=args.domain)
    node = rclpy.create_node("bench_camera", namespace=args.ns)
    # reliable, like the node's default input (qos_reliability: reliable): a best-effort
    # publisher is not heard by a reliable subscription at all
    qos = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST,
                     reliability=ReliabilityPolicy.RELIABLE)
    img_pub = node.create_publisher(Image, "image", qos)
    info_pub = node.create_publisher(CameraInfo, "camera_info", qos)
    arrivals: Dict[str, List[Tuple[float, float]]] = {"depth": [], "points": [], "other": []}

    def on(kind: str):
        def cb(msg: Any) -> None:
            stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            arrivals[kind].append((time.time(), stamp))
        return cb

    for topic, typ, kind in (("depth", Image, "depth"), ("depth_mm", Image, "other"),
                             ("depth/color", Image, "other"),
                             ("depth/camera_info", CameraInfo, "other"),
                             ("points", PointCloud2, "points")):
        node.create_subscription(typ, topic, on(kind), 10)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    spinner = Spinner(ex)
    end = time.monotonic() + 60
    while img_pub.get_subscription_count() == 0:
        if time.monotonic() > end:
            print("no subscriber for the image in 60 s", file=sys.stderr)
            return 2
        time.sleep(0.05)
    time.sleep(1.0)
    rgb = np.random.default_rng(0).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    info = CameraInfo(width=WIDTH, height=HEIGHT, distortion_model="plumb_bob")
    info.k = K.ravel()
    info.p = np.concatenate([K, np.zeros((3, 1))], 1).ravel()
    info.r = np.eye(3).ravel()
    info.d = [0.0] * 5
    n = int(args.duration * args.rate)
    t0 = time.monotonic()
    for i in range(n):
        now = time.time()
        msg = array_to_image(rgb, "rgb8")
        msg.header.frame_id = "camera_optical_frame"
        msg.header.stamp.sec, msg.header.stamp.nanosec = int(now), int(now % 1 * 1e9)
        info.header = msg.header
        info_pub.publish(info)
        img_pub.publish(msg)
        time.sleep(max(0.0, t0 + (i + 1) / args.rate - time.monotonic()))
    time.sleep(max(1.0, 3 * args.model_ms / 1000))
    spinner.stop()
    Path(args.result).write_text(json.dumps({"published": n, "arrivals": arrivals}))
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


# ----------------------------------------------------------------------------- node process

class ZeroCostEstimator:
    """The runtime's real preprocess/postprocess around a network that costs nothing (a
    constant disparity); ``delay_s`` simulates a slow network."""

    backend = "zero-cost"

    def __init__(self, delay_s: float = 0.0):
        from dasp_core.runtime.base import ModelInfo

        self.info = ModelInfo(input_height=192, input_width=640, min_depth=0.1, max_depth=100.0,
                              scale_factor=1.0, scale_source="learned", name="zero-cost")
        self.delay_s = delay_s
        rows = np.linspace(0.02, 0.6, self.info.input_height, dtype=np.float32)[:, None]
        self._disp = np.broadcast_to(rows, (self.info.input_height, self.info.input_width)) \
            .copy()[None, None]

    def infer_disparity(self, batch: np.ndarray) -> np.ndarray:
        if self.delay_s:
            time.sleep(self.delay_s)
        return np.broadcast_to(self._disp, (batch.shape[0],) + self._disp.shape[1:])

    def predict(self, image: np.ndarray, output_size=None) -> np.ndarray:
        from dasp_core.runtime.preprocess import postprocess, preprocess

        disp = self.infer_disparity(preprocess(image, (self.info.input_height,
                                                       self.info.input_width)))
        return postprocess(disp[0, 0], self.info, output_size or image.shape[:2])

    def predict_batch(self, images, output_size=None):
        return np.stack([self.predict(im, output_size) for im in images])


def rss_mib() -> float:
    """Resident set size of this process in MiB (from /proc, no psutil)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_node(name: str, estimator: Any, rate: float, duration: float, model_ms: float,
             domain: int, out: Path) -> Dict[str, Any]:
    """Run DepthNode here and the camera process beside it; return stats and samples."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from dasp_ros.depth_node import DepthNode

    ns = f"/bench_{name}_{os.getpid()}"
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain)
    overrides = {"publish_depth_mm": True, "points_decimation": 2, "diagnostics_period": 1.0}
    node = DepthNode(estimator, context=ctx, namespace=ns,
                     parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    cpu_ms: List[float] = []
    process = node._process

    def timed(frame: Any) -> None:  # the worker thread's CPU time for one frame
        c0 = time.thread_time()
        process(frame)
        cpu_ms.append((time.thread_time() - c0) * 1e3)

    node._process = timed
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    spinner = Spinner(ex)
    result = out / f"camera_{name}.json"
    cmd = [sys.executable, __file__, "--role", "camera", "--ns", ns, "--rate", str(rate),
           "--duration", str(duration), "--domain", str(domain), "--model-ms", str(model_ms),
           "--result", str(result)]
    env = dict(os.environ, FASTDDS_BUILTIN_TRANSPORTS="LARGE_DATA")
    env.pop("ROS_AUTOMATIC_DISCOVERY_RANGE", None)
    proc = subprocess.Popen(cmd, env=env)
    t0 = time.monotonic()
    rss: List[Tuple[float, float]] = []
    while proc.poll() is None:
        rss.append((time.monotonic() - t0, rss_mib()))
        time.sleep(0.25)
    if proc.returncode != 0:
        raise RuntimeError(f"camera process failed with exit code {proc.returncode}")
    cam = json.loads(result.read_text())
    stats = node.stats
    lat = {k: stats.latencies_raw_ms(k).tolist() for k in
           ("decode", "model", "outputs", "overhead", "total", "age")}
    lat["worker_cpu"] = cpu_ms
    counters = stats.snapshot().counters
    spinner.stop()
    node.destroy_node()
    rclpy.shutdown(context=ctx)
    return {"latencies_ms": lat, "counters": counters, "rss": rss, "camera": cam,
            "backend": str(estimator.backend), "precision": str(getattr(estimator, "precision", "")),
            "selection": str(getattr(estimator, "selection", ""))}


# ----------------------------------------------------------------------------- micro-benchmark

def micro_benchmark(repeats: int) -> Dict[str, List[float]]:
    """Per-stage times (ms) of the node's work on one 640x480 frame, without ROS transport."""
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image  # noqa: F401  (message types must be importable)

    from dasp_core.runtime.preprocess import postprocess, preprocess
    from dasp_ros import image_codec as ic
    from dasp_ros import pointcloud as pc
    from dasp_ros.camera_info import Intrinsics, pixel_rays
    from dasp_ros.depth_node import apply_range

    est = ZeroCostEstimator()
    rgb = np.random.default_rng(0).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    msg = ic.array_to_image(rgb, "rgb8")
    rays = pixel_rays(Intrinsics(K, WIDTH, HEIGHT))
    state: Dict[str, Any] = {}
    stages = {
        "decode rgb8": lambda: state.__setitem__("rgb", ic.image_to_rgb8(msg)),
        "preprocess": lambda: state.__setitem__("x", preprocess(state["rgb"], (192, 640))),
        "postprocess": lambda: state.__setitem__(
            "d", postprocess(est._disp[0, 0], est.info, (HEIGHT, WIDTH))),
        "range mask": lambda: state.__setitem__("d32", apply_range(state["d"], 0.1, 80.0)),
        "depth msg": lambda: state.__setitem__("m", ic.array_to_image(state["d32"], "32FC1")),
        "depth_mm msg": lambda: ic.array_to_image(ic.depth_to_mm(state["d32"]), "16UC1"),
        "colour msg": lambda: ic.array_to_image(ic.colorize_depth(state["d"], 1.0, 50.0),
                                                "bgr8"),
        "cloud msg (dec 2)": lambda: state.__setitem__("c", pc.cloud_to_msg(pc.build_cloud(
            pc.depth_to_xyz(state["d32"][::2, ::2], rays[::2, ::2]), rgb[::2, ::2]))),
        "serialize depth": lambda: serialize_message(state["m"]),
        "serialize cloud": lambda: serialize_message(state["c"]),
    }
    times: Dict[str, List[float]] = {k: [] for k in stages}
    for i in range(repeats + 3):
        for name, fn in stages.items():
            t = time.perf_counter()
            fn()
            if i >= 3:  # warm-up
                times[name].append((time.perf_counter() - t) * 1e3)
    return times


# ----------------------------------------------------------------------------- whole node

DEFAULT_VARIANTS = ("torch:fp32", "onnxruntime:fp32", "onnxruntime:int8", "openvino:fp32",
                    "openvino:bf16", "openvino:int8", "auto:auto")


def prepare_models(model: Optional[str], size: Tuple[int, int], variants: List[str],
                   calib_frames: int = 32) -> Dict[str, Optional[str]]:
    """The files the variants run: the checkpoint (torch), its ONNX export at ``size`` and,
    for int8 variants, the Q/DQ graph beside it (calibrated like ``dasp bench``: synthetic night
    frames of training seeds)."""
    from dasp_core.runtime.bench import _calibration, _default_model
    from dasp_core.runtime.openvino_backend import int8_sibling

    ckpt = Path(model) if model and not model.endswith(".onnx") else (
        None if model else _default_model())
    if model and model.endswith(".onnx"):
        from dasp_core.export import cache_dir
        from dasp_core.export.onnx import file_sha256

        # a copy keyed by content, so the int8 graph beside it belongs to this model
        onnx_path = cache_dir("bench_node") / f"{file_sha256(model)[:16]}_{Path(model).name}"
        if not onnx_path.is_file():
            onnx_path.write_bytes(Path(model).read_bytes())
    else:
        from dasp_core.runtime.factory import onnx_for_checkpoint

        # keyed by the checkpoint's sha256: a retrained model is exported again
        onnx_path = onnx_for_checkpoint(ckpt, size)
    if any(v.endswith(":int8") for v in variants) and not int8_sibling(onnx_path).is_file():
        from dasp_core.export.onnx import precision_variant

        notes: List[str] = []
        precision_variant(onnx_path, "int8", int8_sibling(onnx_path),
                          calibration=_calibration(size, None, None, None, calib_frames, notes))
    return {"checkpoint": str(ckpt) if ckpt else None, "onnx": str(onnx_path)}


def variant_estimator(variant: str, files: Dict[str, Optional[str]], threads: int,
                      size: Tuple[int, int]) -> Any:
    """``backend:precision`` → a loaded estimator, as the node would load it."""
    backend, precision = variant.split(":")
    if backend == "torch":
        from dasp_core.runtime.torch_backend import TorchEstimator

        if not files["checkpoint"]:
            raise RuntimeError("torch needs a .pt checkpoint")
        return TorchEstimator(files["checkpoint"], "cpu", precision, threads, size)
    from dasp_core.runtime.factory import create_estimator

    return create_estimator(files["onnx"], backend=backend, device="cpu", threads=threads,
                            precision=precision)


def variant_main(args: argparse.Namespace) -> int:
    """Child: one variant's whole node at ``--rate`` for ``--variant-duration`` s."""
    files = json.loads(args.files)
    est = variant_estimator(args.variant, files, args.threads, tuple(args.size_hw))
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench_node_") as tmp:  # the camera's raw samples
        res = run_node(args.variant.replace(":", "_"), est, args.rate, args.variant_duration,
                       50.0, args.domain, Path(tmp))
    Path(args.result).write_text(json.dumps(res, default=float))
    return 0


def summarise_variant(variant: str, res: Dict[str, Any], duration: float) -> Dict[str, Any]:
    lat, c = res["latencies_ms"], res["counters"]
    arr = np.array(res["camera"]["arrivals"]["depth"])
    rate = (len(arr) - 1) / (arr[-1, 0] - arr[0, 0]) if len(arr) > 1 else 0.0
    rss = [v for _, v in res["rss"]]
    return {"variant": variant, "runs": f"{res['backend']} {res['precision']}",
            "selection": res.get("selection", ""), "output_hz": rate,
            "published": len(arr), "camera_frames": res["camera"]["published"],
            "processed": c.get("frames_processed", 0), "dropped": c.get("frames_dropped", 0),
            "model_p50": pct(lat["model"], 50), "model_p99": pct(lat["model"], 99),
            "overhead_p50": pct(lat["overhead"], 50), "overhead_p99": pct(lat["overhead"], 99),
            "total_p50": pct(lat["total"], 50), "rss_max_mib": max(rss) if rss else float("nan"),
            "duration_s": duration}


def run_variants(args: argparse.Namespace, out: Path) -> List[Dict[str, Any]]:
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    size = tuple(int(v) for v in args.size.lower().split("x"))
    files = prepare_models(args.model, size, variants, args.calib_frames)
    rows = []
    for v in variants:
        if v.startswith("torch:") and not files["checkpoint"]:
            log.warning("skipping %s: needs a .pt checkpoint", v)
            continue
        result = out / f"variant_{v.replace(':', '_')}.json"
        cmd = [sys.executable, __file__, "--role", "variant", "--variant", v,
               "--files", json.dumps(files), "--threads", str(args.threads),
               "--size", args.size, "--rate", str(args.rate),
               "--variant-duration", str(args.variant_duration), "--domain", str(args.domain),
               "--result", str(result)]
        log.info("whole node: %s, %g Hz for %g s", v, args.rate, args.variant_duration)
        proc = subprocess.run(cmd, env=dict(os.environ, FASTDDS_BUILTIN_TRANSPORTS="LARGE_DATA"))
        if proc.returncode != 0 or not result.is_file():
            log.warning("variant %s failed (exit %s)", v, proc.returncode)
            rows.append({"variant": v, "failed": f"exit {proc.returncode}"})
            continue
        rows.append(summarise_variant(v, json.loads(result.read_text()), args.variant_duration))
        result.unlink()  # the raw samples are large; the summary goes into bench_node.json
    return rows


# ----------------------------------------------------------------------------- report

def pct(values: List[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def write_report(out: Path, micro: Dict[str, List[float]], over: Dict[str, Any],
                 slow: Dict[str, Any], args: argparse.Namespace,
                 variants: Optional[List[Dict[str, Any]]] = None,
                 machine: Optional[Dict[str, Any]] = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # figure 1: per-stage micro-benchmark + in-node latency distributions
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    names = list(micro)
    p50 = [pct(micro[n], 50) for n in names]
    p99 = [pct(micro[n], 99) for n in names]
    y = np.arange(len(names))
    axes[0].barh(y - 0.2, p50, 0.4, label="p50")
    axes[0].barh(y + 0.2, p99, 0.4, label="p99")
    axes[0].set_yticks(y, names)
    axes[0].invert_yaxis()
    axes[0].set_xlabel("ms per 640x480 frame")
    axes[0].set_title("node stages (no transport)")
    axes[0].legend()
    lat = over["latencies_ms"]
    for key, label in (("decode", "decode"), ("model", "pre+postprocess (zero-cost net)"),
                       ("outputs", "outputs + publish"), ("total", "total")):
        if lat[key]:
            axes[1].hist(lat[key], bins=40, histtype="step", label=label)
    axes[1].set_xlabel("ms")
    axes[1].set_ylabel("frames")
    axes[1].set_title(f"in the node at {args.overhead_rate:g} Hz over DDS")
    axes[1].legend()
    fig.tight_layout()
    f1 = out / "bench_node_overhead.png"
    fig.savefig(f1, dpi=110)
    plt.close(fig)

    # figure 2: RSS and depth age under overload
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    t, r = zip(*slow["rss"]) if slow["rss"] else ((), ())
    axes[0].plot(t, r)
    axes[0].set_xlabel("s")
    axes[0].set_ylabel("node RSS [MiB]")
    axes[0].set_title(f"{args.rate:g} Hz input, {args.model_ms:g} ms model")
    arr = np.array(slow["camera"]["arrivals"]["depth"])
    if arr.size:
        axes[1].plot(arr[:, 0] - arr[0, 0], (arr[:, 0] - arr[:, 1]) * 1e3, ".", ms=3)
    axes[1].set_xlabel("s")
    axes[1].set_ylabel("published depth age [ms]")
    axes[1].set_title("age = arrival − image stamp")
    fig.tight_layout()
    f2 = out / "bench_node_overload.png"
    fig.savefig(f2, dpi=110)
    plt.close(fig)

    def row(name: str, values: List[float]) -> str:
        return f"| {name} | {pct(values, 50):.2f} | {pct(values, 99):.2f} |"

    ages = ((arr[:, 0] - arr[:, 1]) * 1e3).tolist() if arr.size else []
    rss_vals = [v for _, v in slow["rss"]]
    q = len(rss_vals) // 4  # skip the first quarter: start-up allocations, DDS buffers
    rss_growth = (np.mean(rss_vals[3 * q:]) - np.mean(rss_vals[q:2 * q])) if q else float("nan")
    c_over, c_slow = over["counters"], slow["counters"]
    m = machine or {}
    lines = [
        "## depth_node overhead, latest-frame behaviour and the whole node per backend",
        "",
        f"`{args.command}`: {WIDTH}x{HEIGHT} rgb8 "
        "input from a separate process over Fast DDS (`FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA` "
        "in both), every output subscribed (depth, depth_mm, depth/color, depth/camera_info, "
        "points xyzrgb with decimation 2), camera-resolution output. "
        f"Machine: {m.get('cpu', '?')}, {os.cpu_count()} CPU cores, {m.get('memory_gb', '?')} "
        f"GB; {args.started}; load average (1/5/15 min) before {args.load_before}, after "
        f"{getattr(args, 'load_after', '?')}.",
        "",
        "### Per-frame work of the node, model excluded",
        "",
        f"Zero-cost estimator (runtime preprocess/postprocess, constant network output), "
        f"{args.overhead_rate:g} Hz input, {c_over['frames_processed']} frames processed, "
        f"{c_over['frames_dropped']} dropped.",
        "",
        "| Stage (in the node) | p50 [ms] | p99 [ms] |",
        "|---|---|---|",
        row("decode", lat["decode"]),
        row("preprocess + postprocess (network = 0)", lat["model"]),
        row("outputs (scale, depth, depth_mm, colour, cloud, publish)", lat["outputs"]),
        row("**total per frame** (wall)", lat["total"]),
        row("**worker CPU time per frame** (the work itself)", lat.get("worker_cpu", [])),
        row("receive → outputs published (incl. wait in slot)", lat["age"]),
        "",
        f"Stages without ROS transport ({len(next(iter(micro.values())))} repeats):",
        "",
        "| Stage | p50 [ms] | p99 [ms] |",
        "|---|---|---|",
        *[row(n, v) for n, v in micro.items()],
        "",
        f"![overhead]({f1.name})",
        "",
        "### 30 Hz input, slow model: no backlog",
        "",
        f"{args.rate:g} Hz input for {args.duration:g} s, model {args.model_ms:g} ms: "
        f"{c_slow['frames_received']} frames received, {c_slow['frames_processed']} processed, "
        f"{c_slow['frames_dropped']} dropped by the latest-frame slot "
        f"({slow['camera']['published']} published by the camera).",
        "",
        "| Measure | Value |",
        "|---|---|",
        f"| published depth age p50 / p99 / max [ms] | {pct(ages, 50):.0f} / {pct(ages, 99):.0f}"
        f" / {max(ages) if ages else float('nan'):.0f} |",
        f"| node RSS first / last [MiB] | {rss_vals[0] if rss_vals else float('nan'):.1f} / "
        f"{rss_vals[-1] if rss_vals else float('nan'):.1f} |",
        f"| RSS growth, last quarter − second quarter mean [MiB] | {rss_growth:.2f} |",
        "",
        "The age stays near one model run plus up to one frame period (the newest frame waits "
        "at most one inference); a queue would make it grow without bound, and the RSS with it.",
        "",
        f"![overload]({f2.name})",
        "",
    ]
    if variants:
        lines += [
            "### The whole node per backend",
            "",
            f"{args.rate:g} Hz camera for {args.variant_duration:g} s per variant, network "
            f"{args.size}, {args.threads} threads, every output subscribed; each node in a "
            "process of its own, one after the other. Output rate = published depth messages "
            "per second at the camera; model = `predict()` (resize, network, depth, resize "
            "back); overhead = everything else in the node per frame (decode, scale, every "
            "output, publishing).",
            "",
            "| variant | runs | output Hz | processed / dropped | model p50 / p99 ms | "
            "overhead p50 / p99 ms | node RSS max MiB |",
            "|---|---|---|---|---|---|---|",
        ]
        for v in variants:
            if "failed" in v:
                lines.append(f"| {v['variant']} | failed ({v['failed']}) | | | | | |")
                continue
            lines.append(f"| {v['variant']} | {v['runs']} | {v['output_hz']:.1f} | "
                         f"{v['processed']} / {v['dropped']} | {v['model_p50']:.1f} / "
                         f"{v['model_p99']:.1f} | {v['overhead_p50']:.1f} / "
                         f"{v['overhead_p99']:.1f} | {v['rss_max_mib']:.0f} |")
        auto = next((v for v in variants if v["variant"] == "auto:auto" and "failed" not in v),
                    None)
        if auto:
            lines += ["", f"Default (`backend: auto`, `precision: auto`): {auto['selection']}."]
        lines.append("")
    md = out / "bench_node.md"
    md.write_text("\n".join(lines))
    (out / "bench_node.json").write_text(json.dumps({
        "command": args.command, "machine": machine, "load_before": args.load_before,
        "load_after": getattr(args, "load_after", None), "micro_ms": micro, "overhead": over,
        "overload": slow, "variants": variants or []}, default=float))
    return md


# ----------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="outputs/bench_node", help="output directory")
    p.add_argument("--quick", action="store_true", help="smoke test: a few seconds per run")
    p.add_argument("--rate", type=float, default=30.0, help="input rate of the overload run [Hz]")
    p.add_argument("--model-ms", type=float, default=100.0, help="slow model time [ms]")
    p.add_argument("--duration", type=float, default=60.0, help="overload run length [s]")
    p.add_argument("--overhead-rate", type=float, default=10.0,
                   help="input rate of the overhead run [Hz]")
    p.add_argument("--overhead-duration", type=float, default=30.0, help="overhead run [s]")
    p.add_argument("--repeats", type=int, default=200, help="micro-benchmark repeats")
    p.add_argument("--domain", type=int, default=1 + os.getpid() % 101,
                   help="ROS_DOMAIN_ID (1..101: above, Fast DDS ports are ephemeral ones)")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help="whole-node runs, comma list of backend:precision (auto:auto = the "
                        "node's default); empty = none")
    p.add_argument("--variant-duration", type=float, default=20.0,
                   help="seconds of 30 Hz input per variant")
    p.add_argument("--model", help="model for the variants (.pt, or .onnx: no torch variant); "
                                   "default: the shipped checkpoint")
    p.add_argument("--size", default="192x640", help="network input size of the variants")
    p.add_argument("--threads", type=int, default=2, help="inference threads of the variants")
    p.add_argument("--calib-frames", type=int, default=32,
                   help="synthetic night frames (training seeds) calibrating the int8 graph")
    # internal: the camera child process
    p.add_argument("--role", choices=("node", "camera", "variant"), default="node",
                   help=argparse.SUPPRESS)
    p.add_argument("--variant", default="", help=argparse.SUPPRESS)
    p.add_argument("--files", default="{}", help=argparse.SUPPRESS)
    p.add_argument("--ns", default="", help=argparse.SUPPRESS)
    p.add_argument("--result", default="", help=argparse.SUPPRESS)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.role == "camera":
        return camera_main(args)
    args.size_hw = [int(v) for v in args.size.lower().split("x")]
    if args.role == "variant":
        logging.basicConfig(level=logging.WARNING)
        return variant_main(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.quick:
        args.duration, args.overhead_duration, args.repeats = 4.0, 3.0, 10
        args.variant_duration = min(args.variant_duration, 4.0)
    args.command = "scripts/bench_node.py " + " ".join(sys.argv[1:] if argv is None else argv)
    args.started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    args.load_before = [round(v, 2) for v in os.getloadavg()]
    # rmw_fastrtps reads this when the first node of a context creates its participant;
    # the camera process gets the same value (mismatched participants do not communicate)
    os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"
    os.environ.pop("ROS_AUTOMATIC_DISCOVERY_RANGE", None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log.info("micro-benchmark (%d repeats)", args.repeats)
    micro = micro_benchmark(args.repeats)
    log.info("overhead run: zero-cost model, %g Hz for %g s", args.overhead_rate,
             args.overhead_duration)
    over = run_node("overhead", ZeroCostEstimator(), args.overhead_rate, args.overhead_duration,
                    0.0, args.domain, out)
    log.info("overload run: %g Hz, %g ms model, %g s", args.rate, args.model_ms, args.duration)
    slow = run_node("overload", ZeroCostEstimator(args.model_ms / 1000.0), args.rate,
                    args.duration, args.model_ms, args.domain, out)
    variants = run_variants(args, out) if args.variants.strip() else []
    args.load_after = [round(v, 2) for v in os.getloadavg()]
    from dasp_core.runtime.bench import machine_info

    md = write_report(out, micro, over, slow, args, variants, machine_info())
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
