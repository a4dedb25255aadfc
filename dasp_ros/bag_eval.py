"""Score a running depth node against a recording's ground truth, live, over real topics.

``ros2 run dasp_ros bag_eval --bag BAG [--out DIR] [--protocol synthetic] ...``

Subscribes to the camera images the replay publishes and to the node's outputs (``depth``,
``points``, ``depth/color``, ``diagnostics``), matches them by header stamp, and scores each
depth image against the bag's ground truth (a depth image topic, 32FC1 metres or 16UC1 mm, or
lidar PointCloud2 projected with the bag's CameraInfo; read straight from the bag file, so the
truth never crosses DDS). It writes:

* ``report.md`` / ``metrics.json`` — the metric table of ``dasp eval`` (median-scaled and, for
  metric models, metric), end-to-end latency (output receive time minus input receive time in
  this process: decode + inference + publish, transport on both sides cancels), input frames
  without output (drops) and the node's own diagnostics;
* ``outputs/`` — an mcap rosbag2 of everything the node published (raw CDR, unchanged), which
  RViz (via ``ros2 bag play``) or Foxglove opens;
* ``strip.png`` (camera | depth | ground truth | error), ``drive.gif``, ``points.ply``.

Scoring logic (:class:`OnlineEvaluator`) is plain Python and is tested without ROS.

The command always ends on its own: it stops after ``--expected`` frames, ``--idle-timeout`` or
``--duration`` (or SIGINT/SIGTERM), writes every result, prints the report, and only then tears
the ROS node down, bounded by :func:`dasp_ros.shutdown.exit_watchdog` (Fast DDS's TCP transport
can block that for ever; the process then exits 0 after saying so).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from dasp_core.bagio import get_typestore, image_to_depth, stamp_to_ns
from dasp_core.data.robotcar import points_to_depth_map
from dasp_core.eval.metrics import MetricAccumulator, get_protocol
from dasp_ros.bag_replay import iter_bag
from dasp_ros.dds_match import EXIT_NOT_MATCHED, NotMatchedError, wait_matched
from dasp_ros.shutdown import TEARDOWN_TIMEOUT_S, exit_watchdog

LOG = logging.getLogger("dasp.bag_eval")

DEPTH_GT_ENCODINGS = ("32FC1", "16UC1")


# ----------------------------------------------------------------------------- ground truth

def project_lidar(points: np.ndarray, K: np.ndarray, height: int, width: int,
                  T_cam_lidar: Optional[np.ndarray] = None, min_z: float = 0.1) -> np.ndarray:
    """Lidar points → sparse depth image by z-buffering.

    Args:
        points: ``[N, 3]`` metres in the lidar frame (or the camera optical frame if
            ``T_cam_lidar`` is None).
        K: ``[3, 3]`` pixel intrinsics of a ``height x width`` image.
        T_cam_lidar: ``[4, 4]`` lidar → camera optical frame.
        min_z: drop points closer than this in front of the camera (metres).
    Returns:
        ``float32 [height, width]`` depth in metres, 0 where no point lands (nearest wins).
    """
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    pts = pts[np.isfinite(pts).all(axis=1)]  # organised clouds mark "no return" with NaN
    if T_cam_lidar is not None:
        pts = pts @ T_cam_lidar[:3, :3].T + T_cam_lidar[:3, 3]
    return points_to_depth_map(pts.T, K, height, width, min_depth=min_z)  # the readers' z-buffer


def load_ground_truth(bag: str | Path, gt_topic: str, camera_info_topic: Optional[str] = None,
                      T_cam_lidar: Optional[np.ndarray] = None) -> Dict[int, np.ndarray]:
    """Read the truth from the bag: ``{header stamp ns: depth float32 [H, W] metres, 0 invalid}``.

    ``gt_topic`` is a depth image (32FC1 metres with NaN invalid, or 16UC1 millimetres with 0
    invalid) or a PointCloud2 (then ``camera_info_topic`` gives K and the image size, and
    each cloud is projected; clouds are matched to camera stamps by the caller).
    """
    from dasp_ros.pointcloud import read_points

    ts = get_typestore()
    topics = [gt_topic] + ([camera_info_topic] if camera_info_topic else [])
    _, messages = iter_bag(bag, topics)
    out: Dict[int, np.ndarray] = {}
    K, size = None, None
    clouds: List[Tuple[int, np.ndarray]] = []
    n_gt = 0  # message index on gt_topic, for error messages
    for topic, msgtype, _t, raw in messages:
        msg = ts.deserialize_cdr(raw, msgtype)
        stamp = stamp_to_ns(msg.header.stamp)
        if topic == camera_info_topic:
            K = np.asarray(msg.k, np.float64).reshape(3, 3)
            size = (int(msg.height), int(msg.width))
        elif msgtype == "sensor_msgs/msg/Image":
            if msg.encoding not in DEPTH_GT_ENCODINGS:
                raise ValueError(f"{bag}: ground-truth topic {gt_topic} has encoding "
                                 f"{msg.encoding!r}; allowed: {', '.join(DEPTH_GT_ENCODINGS)}")
            out[stamp] = np.nan_to_num(image_to_depth(msg, gt_topic, n_gt), nan=0.0)
            n_gt += 1
        elif msgtype == "sensor_msgs/msg/PointCloud2":
            grid = read_points(msg, ["x", "y", "z"]).reshape(-1)
            clouds.append((stamp, np.stack([grid["x"], grid["y"], grid["z"]], axis=1)))
        else:
            raise ValueError(f"{bag}: ground-truth topic {gt_topic} is {msgtype}; allowed: "
                             f"sensor_msgs/msg/Image (depth) or sensor_msgs/msg/PointCloud2")
    if clouds:
        if K is None or size is None:
            raise ValueError(f"{bag}: lidar ground truth needs --camera-info-topic with a "
                             f"CameraInfo (K and image size) in the bag")
        for stamp, pts in clouds:
            out[stamp] = project_lidar(pts, K, size[0], size[1], T_cam_lidar)
    if not out:
        raise ValueError(f"{bag}: no ground truth on {gt_topic}")
    return out


# ----------------------------------------------------------------------------- scoring

@dataclass
class OnlineEvaluator:
    """Matches inputs, outputs and ground truth by stamp and accumulates scores.

    ``gt_tolerance_ns``: an output is scored against the ground truth with the nearest stamp
    within this tolerance (lidar and camera are rarely stamped identically).
    """

    gt: Dict[int, np.ndarray]
    protocol: str = "synthetic"
    metric: bool = False
    gt_tolerance_ns: int = 20_000_000
    keep_frames: int = 120
    inputs: Dict[int, float] = field(default_factory=dict)
    outputs: Dict[int, float] = field(default_factory=dict)
    frames: List[Tuple[int, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    per_image: List[Dict[str, Any]] = field(default_factory=list)
    unmatched_gt: int = 0
    errors: int = 0

    def __post_init__(self) -> None:
        p = get_protocol(self.protocol)
        self._proto = p
        # the protocol's own median rule too (md4all: torch.median's lower middle value)
        self._acc = MetricAccumulator.for_protocol(p, median_scaling=True)
        self._acc_metric = MetricAccumulator.for_protocol(p, median_scaling=False)
        self._gt_stamps = np.array(sorted(self.gt), dtype=np.int64)
        self._images: Dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def _match_gt(self, stamp: int) -> Optional[np.ndarray]:
        if self._gt_stamps.size == 0:
            return None
        i = int(np.searchsorted(self._gt_stamps, stamp))
        best = min((j for j in (i - 1, i) if 0 <= j < self._gt_stamps.size),
                   key=lambda j: abs(int(self._gt_stamps[j]) - stamp))
        if abs(int(self._gt_stamps[best]) - stamp) > self.gt_tolerance_ns:
            return None
        return self.gt[int(self._gt_stamps[best])]

    def on_input(self, stamp: int, t_recv: float, image_rgb: Optional[np.ndarray] = None) -> None:
        """An input image with header ``stamp`` (ns) arrived at ``t_recv`` (s, this clock)."""
        with self._lock:
            self.inputs.setdefault(stamp, t_recv)
            if image_rgb is not None and len(self._images) < 4 * self.keep_frames:
                self._images[stamp] = image_rgb

    def on_depth(self, stamp: int, t_recv: float, depth: np.ndarray) -> Optional[Dict[str, Any]]:
        """A published depth image (metres, NaN invalid) for ``stamp`` arrived at ``t_recv``."""
        with self._lock:
            if stamp in self.outputs:
                return None
            self.outputs[stamp] = t_recv
            gt = self._match_gt(stamp)
            if gt is None:
                self.unmatched_gt += 1
                return None
            if gt.shape != depth.shape:
                import cv2
                depth = cv2.resize(depth, (gt.shape[1], gt.shape[0]),
                                   interpolation=cv2.INTER_NEAREST)
            # REP 117 as the node publishes it: +Inf beyond max range, -Inf closer than min
            # range, NaN invalid (scored as the far cap: a model may not skip pixels)
            pred = np.where(np.isneginf(depth), np.float32(self._proto.min_depth), depth)
            pred = np.where(np.isfinite(pred), pred, np.float32(self._proto.max_depth))
            try:
                s = self._acc.update(pred, gt)
                if self.metric:
                    self._acc_metric.update(pred, gt)
            except ValueError as e:
                self.errors += 1
                LOG.warning("frame %d not scored: %s", stamp, e)
                return None
            if s is not None:
                self.per_image.append({"stamp": stamp, **s["metrics"]})
            if stamp in self._images and len(self.frames) < self.keep_frames:
                self.frames.append((stamp, self._images.pop(stamp), depth, gt))
            return s

    def latencies_ms(self) -> np.ndarray:
        with self._lock:
            return np.array([(self.outputs[s] - self.inputs[s]) * 1e3
                             for s in self.outputs if s in self.inputs], dtype=np.float64)

    def summary(self) -> Dict[str, Any]:
        lat = self.latencies_ms()
        n_in = len(self.inputs)
        answered = sum(1 for s in self.inputs if s in self.outputs)
        out: Dict[str, Any] = {
            "protocol": self._proto.to_dict(),
            "median_scaled": self._acc.summary(),
            "frames_in": n_in, "frames_out": len(self.outputs), "frames_answered": answered,
            "dropped": n_in - answered, "drop_rate": (n_in - answered) / n_in if n_in else 0.0,
            "unmatched_gt": self.unmatched_gt, "score_errors": self.errors,
            "input_stamps": sorted(self.inputs), "per_image": list(self.per_image),
            "latency_ms": ({"p50": float(np.percentile(lat, 50)),
                            "p99": float(np.percentile(lat, 99)),
                            "mean": float(lat.mean()), "max": float(lat.max()), "n": int(lat.size)}
                           if lat.size else {}),
        }
        if self.metric:
            out["metric"] = self._acc_metric.summary()
        return out


def markdown_report(summary: Dict[str, Any], diagnostics: Dict[str, str],
                    files: Dict[str, str]) -> str:
    """The human-readable report: accuracy, latency, drops, node diagnostics, files."""
    from dasp_core.eval.metrics import METRIC_NAMES

    p = summary["protocol"]
    lines = ["# Live evaluation of the depth node", "",
             f"Protocol `{p['name']}`: GT valid in ({p['min_depth']:g}, {p['max_depth']:g}) m, "
             "per-image averaging.", "",
             "| scaling | images | " + " | ".join(METRIC_NAMES) + " |",
             "|---|---|" + "---|" * len(METRIC_NAMES)]
    rows = [("median", summary["median_scaled"])]
    if "metric" in summary:
        rows.append(("none (metric)", summary["metric"]))
    for name, s in rows:
        m = s["metrics"]
        lines.append(f"| {name} | {s['n_images']} | " +
                     " | ".join(f"{m.get(k, float('nan')):.3f}" for k in METRIC_NAMES) + " |")
    sp = rows[-1][1].get("spread") or {}
    if sp.get("n_pixels"):
        # the published depth's range of distances against the scene's (the last row: the
        # metres the node publishes when the model has a scale)
        lines += ["", f"Depth spread ({rows[-1][0]}), all scored pixels: p2 / p50 / p98 "
                      f"{sp['pred_p2']:.2f} / {sp['pred_p50']:.2f} / {sp['pred_p98']:.1f} m "
                      f"(ground truth {sp['gt_p2']:.2f} / {sp['gt_p50']:.2f} / "
                      f"{sp['gt_p98']:.1f} m), p98/p2 {sp['pred_ratio']:.1f} against "
                      f"{sp['gt_ratio']:.1f} ({sp['ratio_rel']:.2f} of it), log-depth "
                      f"correlation {sp['log_corr']:.3f}."]
    lat = summary["latency_ms"]
    lines += ["", "| frames in | depth out | dropped | latency p50 | latency p99 |",
              "|---|---|---|---|---|",
              f"| {summary['frames_in']} | {summary['frames_out']} | {summary['dropped']} "
              f"({100 * summary['drop_rate']:.1f} %) | "
              + (f"{lat['p50']:.1f} ms | {lat['p99']:.1f} ms |" if lat else "– | – |"),
              "", "Latency = depth receive time − image receive time in the evaluator process "
              "(decode, inference, post-processing and publishing in the node)."]
    if diagnostics:
        lines += ["", "## Node diagnostics (last message)", "", "| key | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in diagnostics.items()]
    if files:
        lines += ["", "## Files", ""] + [f"- {k}: `{v}`" for k, v in files.items()]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- outputs

def write_pictures(ev: OnlineEvaluator, out_dir: Path, max_depth: float) -> Dict[str, str]:
    """Strip picture (camera | depth | GT | error) of the middle frame and a GIF of the drive."""
    from dasp_core import viz

    files: Dict[str, str] = {}
    if not ev.frames:
        return files
    frames = sorted(ev.frames, key=lambda f: f[0])
    _, img, depth, gt = frames[len(frames) // 2]
    d = np.where(np.isfinite(depth), depth, 0)
    scale = float(np.median(gt[gt > 0]) / max(np.median(d[gt > 0]), 1e-6)) if (gt > 0).any() else 1.0
    import cv2
    img_s = cv2.resize(img, (gt.shape[1], gt.shape[0])) if img.shape[:2] != gt.shape else img
    d_s = cv2.resize(d, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_NEAREST)
    strip = viz.make_strip([img_s, viz.colorize_depth(d_s * scale, 0, max_depth),
                            viz.colorize_depth(gt, 0, max_depth),
                            viz.error_map(d_s * scale, gt)],
                           ["camera (night)", "DASP depth", "ground truth", "abs. rel. error"])
    p = out_dir / "strip.png"
    cv2.imwrite(str(p), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    files["strip"] = str(p)
    gif = []
    step = max(1, len(frames) // 60)  # at most ~60 frames, 320 px wide panels: a few MB
    for _, img, depth, _gt in frames[::step]:
        dd = np.where(np.isfinite(depth), depth, 0)
        w = min(320, dd.shape[1])
        h = int(round(dd.shape[0] * w / dd.shape[1]))
        dd = cv2.resize(dd, (w, h), interpolation=cv2.INTER_NEAREST)
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        gif.append(viz.make_strip([img, viz.colorize_depth(dd, 0, max_depth)], vertical=True))
    p = out_dir / "drive.gif"
    viz.write_gif(gif, p, fps=8 / step)
    files["gif"] = str(p)
    return files


class _Recorder:
    """Writes raw CDR messages to an mcap rosbag2, creating a connection per topic."""

    def __init__(self, path: Path):
        from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

        if path.exists():
            import shutil
            shutil.rmtree(path)
        self._ts = get_typestore()
        self._w = Writer(path, version=8, storage_plugin=StoragePlugin.MCAP)
        # mcap-internal zstd chunks: Foxglove and `ros2 bag play` read them natively
        self._w.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        self._w.open()
        self._conns: Dict[str, Any] = {}
        self._lock = threading.Lock()
        self.count = 0

    def write(self, topic: str, msgtype: str, raw: bytes, t_ns: int) -> None:
        with self._lock:
            conn = self._conns.get(topic)
            if conn is None:
                conn = self._conns[topic] = self._w.add_connection(topic, msgtype,
                                                                   typestore=self._ts)
            self._w.write(conn, t_ns, raw)
            self.count += 1

    def close(self) -> None:
        with self._lock:
            self._w.close()


# ----------------------------------------------------------------------------- ROS node

def run(args: argparse.Namespace, teardown_timeout: Optional[float] = None) -> Dict[str, Any]:
    """Subscribe, score until done (expected frames, idle timeout, duration or a signal), write
    and print the report, then tear down.

    Args:
        teardown_timeout: bound the ROS teardown to this many seconds, then exit the *process*
            with status 0 (results are written by then). For command-line use; None waits.
    """
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

    from dasp_ros.image_codec import image_to_array, msg_to_rgb8

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    T = None
    if args.lidar_to_camera:
        T = np.eye(4)
        T[:3, :] = np.asarray(args.lidar_to_camera, np.float64).reshape(3, 4)
    gt = load_ground_truth(args.bag, args.gt_topic, args.camera_info_topic, T)
    LOG.info("ground truth: %d frames from %s %s", len(gt), args.bag, args.gt_topic)
    ev = OnlineEvaluator(gt, protocol=args.protocol, metric=args.metric,
                         gt_tolerance_ns=int(args.gt_tolerance * 1e9))
    recorder = _Recorder(out_dir / "outputs") if not args.no_record else None
    state = {"last": time.monotonic(), "diag": {}, "cloud": None, "stop": False}

    own = not rclpy.ok()
    if own:
        rclpy.init()
    node = rclpy.create_node("dasp_bag_eval")
    reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    ns = args.node_namespace.rstrip("/")

    def topic(name: str) -> str:
        return f"{ns}/{name}" if ns else name

    def on_image(raw: bytes) -> None:
        t = time.monotonic()
        cls = CompressedImage if args.compressed else Image
        msg = deserialize_message(raw, cls)
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        img = None
        if len(ev._images) < 4 * ev.keep_frames:
            try:
                img = msg_to_rgb8(msg)[::2, ::2].copy()
            except Exception:  # a bad input is the node's problem to report, not ours
                img = None
        ev.on_input(stamp, t, img)
        state["last"] = t

    def record(name: str, msgtype: str):
        def cb(raw: bytes) -> None:
            if recorder is not None:
                recorder.write(topic(name), msgtype, raw, time.time_ns())
            if name != "diagnostics":  # periodic: says nothing about the stream being alive
                state["last"] = time.monotonic()
            if name == "depth":
                msg = deserialize_message(raw, Image)
                stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                ev.on_depth(stamp, time.monotonic(), image_to_array(msg).astype(np.float32))
            elif name == "points" and state["cloud"] is None and len(ev.outputs) > 3:
                state["cloud"] = deserialize_message(raw, PointCloud2)
            elif name == "diagnostics":
                # keep the last report written while depth was flowing, not the idle one after
                if state["diag"] and time.monotonic() - state["last"] > 1.5:
                    return
                msg = deserialize_message(raw, DiagnosticArray)
                for st in msg.status:
                    state["diag"] = {kv.key: kv.value for kv in st.values}
                    state["diag"]["status"] = st.message
        return cb

    image_topic = args.image_topic + ("/compressed" if args.compressed else "")
    node.create_subscription(CompressedImage if args.compressed else Image, image_topic,
                             on_image, reliable, raw=True)
    depth_sub = node.create_subscription(Image, topic("depth"),
                                         record("depth", "sensor_msgs/msg/Image"), reliable,
                                         raw=True)
    node.create_subscription(PointCloud2, topic("points"),
                             record("points", "sensor_msgs/msg/PointCloud2"), reliable, raw=True)
    node.create_subscription(Image, topic("depth/color"),
                             record("depth/color", "sensor_msgs/msg/Image"), reliable, raw=True)
    node.create_subscription(CameraInfo, topic("depth/camera_info"),
                             record("depth/camera_info", "sensor_msgs/msg/CameraInfo"), reliable,
                             raw=True)
    node.create_subscription(DiagnosticArray, args.diagnostics_topic,
                             record("diagnostics", "diagnostic_msgs/msg/DiagnosticArray"), 10,
                             raw=True)

    def _stop(*_a):
        state["stop"] = True
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, _stop)
        except ValueError:  # not the main thread (tests)
            pass
    ready = Path(args.ready_file) if args.ready_file else None
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    status = {"code": 1}  # exit status if the teardown has to be cut short
    try:
        if args.wait_for_publisher > 0:
            try:
                # matched publishers where rclpy has the call (Iron+), else the graph's count
                count = getattr(depth_sub, "get_publisher_count", None) or \
                    (lambda: node.count_publishers(depth_sub.topic_name))
                wait_matched(count, 1, args.wait_for_publisher, depth_sub.topic_name,
                             "publisher")
            except NotMatchedError:
                status["code"] = EXIT_NOT_MATCHED
                raise
        t_start = time.monotonic()
        if ready:
            ready.write_text("ready\n")
        while not state["stop"]:
            ex.spin_once(timeout_sec=0.05)
            now = time.monotonic()
            got_any = len(ev.outputs) > 0
            if args.expected and len(ev.inputs) >= args.expected and \
                    all(s in ev.outputs for s in list(ev.inputs)[-3:]):
                # all inputs in; give the node a moment for the last outputs
                if now - state["last"] > 1.0:
                    break
            if got_any and now - state["last"] > args.idle_timeout:
                break
            if args.duration and now - t_start > args.duration:
                break
        if recorder is not None:
            recorder.close()
            recorder = None
        summary = _write_results(ev, state, out_dir, args)
        print(Path(summary["files"]["report"]).read_text(), flush=True)
        status["code"] = 0
    finally:
        if recorder is not None:  # an error: keep what was recorded
            recorder.close()
        guard = exit_watchdog(teardown_timeout, "bag_eval teardown", lambda: status["code"]) \
            if teardown_timeout else contextlib.nullcontext()
        with guard:
            ex.shutdown()
            node.destroy_node()
            if own:
                rclpy.shutdown()
    return summary


def _write_results(ev: "OnlineEvaluator", state: Dict[str, Any], out_dir: Path,
                   args: argparse.Namespace) -> Dict[str, Any]:
    """metrics.json, report.md, points.ply and the pictures; returns the summary."""
    from dasp_core.ply import write_ply
    from dasp_ros.pointcloud import read_points, unpack_rgb

    summary = ev.summary()
    files: Dict[str, str] = {}
    if not args.no_record:
        files["outputs bag (mcap)"] = str(out_dir / "outputs")
    if state["cloud"] is not None:
        grid = read_points(state["cloud"]).reshape(-1)
        pts = np.stack([grid["x"], grid["y"], grid["z"]], axis=1)
        cols = unpack_rgb(grid["rgb"]) if "rgb" in grid.dtype.names else None
        files["point cloud (PLY)"] = str(write_ply(out_dir / "points.ply", pts, cols))
    pics = write_pictures(ev, out_dir, get_protocol(args.protocol).max_depth)
    if "strip" in pics:
        files["depth strip"] = pics["strip"]
    if "gif" in pics:
        files["drive GIF"] = pics["gif"]
    summary["diagnostics"] = state["diag"]
    summary["files"] = files
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2, default=float))
    (out_dir / "report.md").write_text(markdown_report(summary, state["diag"], files))
    files["report"] = str(out_dir / "report.md")
    summary["files"] = files
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bag_eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--bag", required=True, help="the rosbag2 being replayed (ground truth source)")
    p.add_argument("--out", default="bag_eval", help="output folder")
    p.add_argument("--gt-topic", default="/camera/depth_gt",
                   help="ground truth: depth Image (32FC1 m / 16UC1 mm) or lidar PointCloud2")
    p.add_argument("--camera-info-topic", default=None,
                   help="CameraInfo topic in the bag (needed for lidar ground truth)")
    p.add_argument("--lidar-to-camera", type=float, nargs=12, default=None,
                   metavar="R|t", help="3x4 row-major lidar→camera optical transform")
    p.add_argument("--image-topic", default="/camera/image_raw", help="the node's input topic")
    p.add_argument("--compressed", action="store_true", help="the input is image/compressed")
    p.add_argument("--node-namespace", default="/dasp",
                   help="namespace of the node's outputs (depth, points, ...)")
    p.add_argument("--diagnostics-topic", default="/diagnostics")
    p.add_argument("--protocol", default="synthetic", help="evaluation protocol name")
    p.add_argument("--metric", action="store_true",
                   help="also score without median scaling (metric models)")
    p.add_argument("--gt-tolerance", type=float, default=0.02,
                   help="max stamp difference to ground truth (s)")
    p.add_argument("--expected", type=int, default=0, help="stop after this many input frames")
    p.add_argument("--idle-timeout", type=float, default=5.0,
                   help="stop this many seconds after the last message")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds")
    p.add_argument("--no-record", action="store_true", help="do not write the outputs bag")
    p.add_argument("--ready-file", default=None, help="touch this file once subscribed")
    p.add_argument("--wait-for-publisher", type=float, default=0.0, metavar="SECONDS",
                   help="before the ready file, wait this long for the node's depth publisher "
                   "to match; exit status 3 if it does not (0: do not wait)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args, _ros = build_parser().parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run(args, teardown_timeout=TEARDOWN_TIMEOUT_S)
    except NotMatchedError as e:
        LOG.error("%s", e)
        return EXIT_NOT_MATCHED
    except (FileNotFoundError, ValueError) as e:
        LOG.error("%s", e)
        return 2
    return 0  # run() printed the report


if __name__ == "__main__":
    sys.exit(main())
