"""``depth_node``: camera images in, metric depth, point clouds and diagnostics out.

Topics (relative; remap or namespace them):

=====================  ===========================  ============================================
``image``              sensor_msgs/Image            input (``image_transport: raw``)
``image/compressed``   sensor_msgs/CompressedImage  input (``image_transport: compressed``)
``camera_info``        sensor_msgs/CameraInfo       input intrinsics (optional, see below)
``depth``              sensor_msgs/Image 32FC1      metres; NaN invalid (incl. depth <= 0),
                                                    +Inf beyond ``max_range``, -Inf closer
                                                    than ``min_range`` (REP 117/118)
``depth_mm``           sensor_msgs/Image 16UC1      millimetres, 0 invalid (REP 118)
``depth/camera_info``  sensor_msgs/CameraInfo       intrinsics of the output size
``depth/color``        sensor_msgs/Image bgr8       colourised inverse depth (for people)
``points``             sensor_msgs/PointCloud2      xyz / xyzrgb in the optical frame
``diagnostics``        diagnostic_msgs/DiagnosticArray  rates, latencies, drops, errors
=====================  ===========================  ============================================

Every output carries the input image's header (stamp and optical ``frame_id``, unless the
``frame_id`` parameter overrides it; an input without ``frame_id`` is warned about and counted
as ``empty_frame_id``). Parameters: :mod:`dasp_ros.params`.

Losses are counted, not silent: frames replaced in the slot (``frames_dropped``), messages the
middleware reports lost before they reached us (``messages_lost``, the subscription's
message-lost event), publisher sequence numbers we never saw (``sequence_gaps``: any loss
before the callback, including the input queue overflowing while the executor was busy) and
publishers whose QoS cannot match ours (``incompatible_qos``).

Shutdown (:func:`main`): a signal only asks for it; the worker thread is stopped before the
node and the context go, so no frame is published into a dead context.

Threading (ours): the executor thread runs the subscription callbacks, which only *store* the
newest message in a one-slot buffer (:class:`LatestSlot`; the message it replaces is counted
as dropped) and return. One dedicated worker thread takes the newest message and runs decode →
``estimator.predict`` → scale → outputs → publish. A worker thread rather than a timer in a
MultiThreadedExecutor because it wakes the moment a frame arrives (a timer adds up to one
period of latency or spins), runs with any executor (``rclpy.spin`` included), and keeps the
executor free for camera_info, parameter services and the diagnostics timer while the model
runs (onnxruntime, TensorRT and torch release the GIL during inference). There is never a
backlog: at most one frame waits, and it is always the newest.

Outputs nobody subscribes to are not computed (``get_subscription_count()`` is checked per
output and frame); with no subscriber at all the model does not run.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header

from dasp_core.errors import ConfigError, DaspError, ModelFileError
from dasp_core.runtime.base import DepthEstimator
from dasp_core.scale import GroundPlaneConfig, MetricScaler
from dasp_ros import image_codec, pointcloud
from dasp_ros.camera_info import (CameraInfoError, Intrinsics, RayCache,
                                  intrinsics_from_camera_info, intrinsics_from_fov,
                                  to_camera_info)
from dasp_ros.diagnostics import (NodeStats, SequenceGaps, WarnThrottle, diagnostic_summary,
                                  to_diagnostic_array)
from dasp_ros.launch_spec import dds_environment_hints
from dasp_ros.params import NodeConfig, declare_parameters, parameters_from_list
from dasp_ros.shutdown import NODE_TEARDOWN_S, ShutdownRequest, exit_watchdog

__all__ = ["DepthNode", "LatestSlot", "load_estimator", "apply_range", "main"]

THROTTLE_S = 5.0  # seconds between repeats of the same kind of warning


class LatestSlot:
    """A one-element mailbox: ``put`` replaces what is there, ``take`` waits for an item.

    The latest-frame policy of the node: a robot wants the newest depth, not a backlog.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._closed = False

    def put(self, item: Any) -> bool:
        """Store ``item``; return True if it replaced an item nobody took (a drop)."""
        with self._cond:
            dropped = self._item is not None
            self._item = item
            self._cond.notify()
            return dropped

    def take(self, timeout: Optional[float] = None) -> Any:
        """Remove and return the item, waiting up to ``timeout`` s; ``None`` if none/closed."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


@dataclass
class _Frame:
    msg: Any
    received: float  # time.monotonic() when the callback ran
    compressed: bool


def apply_range(depth: np.ndarray, min_range: float, max_range: float) -> np.ndarray:
    """Depth ``[H, W]`` metres → the ``depth`` output's values (REP 117).

    NaN stays NaN and depth ``<= 0`` becomes NaN (erroneous: no camera sees at or behind
    itself), ``> max_range`` → +Inf (beyond range), ``0 < depth < min_range`` → -Inf (too
    close). Returns a new float32 array.
    """
    out = np.array(depth, dtype=np.float32, copy=True)
    with np.errstate(invalid="ignore"):
        np.copyto(out, np.float32(np.inf), where=out > max_range)
        np.copyto(out, np.float32(-np.inf), where=out < min_range)
        np.copyto(out, np.float32(np.nan), where=np.asarray(depth) <= 0)
    return out


def load_estimator(cfg: NodeConfig) -> DepthEstimator:
    """The estimator the parameters ask for (``model``, ``backend``, ``device``, ...).

    Raises:
        ConfigError: ``model`` is empty and the shipped model is missing.
        ModelFileError: the model file does not exist (or the backend cannot load it).
    """
    path = cfg.model
    if not path:
        try:
            from dasp_core.assets import default_model_path

            path = default_model_path()
        except FileNotFoundError as e:
            raise ConfigError("model", "", f"a model file path; the default (shipped model) is "
                                           f"unavailable: {e}") from None
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise ModelFileError(path, "does not exist (parameter 'model')",
                             "an existing .onnx, .pt or .engine file")
    from dasp_core.runtime.factory import create_estimator

    return create_estimator(path, backend=cfg.backend, device=cfg.device,
                            threads=cfg.threads or None, precision=cfg.precision)


def _qos(reliability: str, depth: int) -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort"
                      else ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def _stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


class DepthNode(Node):
    """The depth node (see the module docstring).

    Args:
        estimator: an already loaded :class:`~dasp_core.runtime.base.DepthEstimator` (tests,
            embedding); ``None`` loads the one the ``model``/``backend``/... parameters name.
        node_name: ROS node name.
        **node_kwargs: passed to ``rclpy.node.Node`` (``namespace``, ``context``,
            ``parameter_overrides``, ``cli_args``, ...).
    Raises:
        ConfigError: a parameter is invalid (names it and what is allowed).
        ModelFileError: the model is missing or cannot be run.
    """

    def __init__(self, estimator: Optional[DepthEstimator] = None, *,
                 node_name: str = "depth_node", **node_kwargs: Any):
        super().__init__(node_name, **node_kwargs)
        self._slot = LatestSlot()
        self._stop = threading.Event()
        self._worker: Optional[threading.Thread] = None
        try:
            self._setup(estimator)
        except BaseException:
            self._stop_worker()
            super().destroy_node()
            raise

    # ------------------------------------------------------------------ set-up
    def _setup(self, estimator: Optional[DepthEstimator]) -> None:
        cfg = declare_parameters(self)
        self._cfg: NodeConfig = cfg
        self.stats = NodeStats()
        log = self.get_logger()
        self._estimator = estimator if estimator is not None else load_estimator(cfg)
        info = self._estimator.info
        self._scaler = MetricScaler(cfg.scale_mode, info, cfg.scale_factor, cfg.camera_height,
                                    GroundPlaneConfig(roi_fraction=cfg.ground_roi_fraction,
                                                      max_tilt_deg=cfg.ground_max_tilt_deg,
                                                      smoothing=cfg.scale_smoothing))
        warning = self._scaler.relative_warning()
        if warning:
            log.warning(warning)
        self._rays = RayCache()
        self._cam_lock = threading.Lock()
        self._camera_info: Optional[Any] = None  # newest valid CameraInfo message
        self._intr_cache: Dict[Tuple, Intrinsics] = {}
        self._last_stamp_ns: Optional[int] = None
        self._reset_scale = False
        self._warned_no_info = False
        self._last_error_counts: Dict[str, int] = {}
        self._throttle = WarnThrottle(THROTTLE_S)
        self._gaps = SequenceGaps()

        out_qos = _qos(cfg.output_qos_reliability, cfg.output_qos_depth)
        self._pubs = {
            "depth": self.create_publisher(Image, "depth", out_qos),
            "depth_mm": self.create_publisher(Image, "depth_mm", out_qos),
            "camera_info": self.create_publisher(CameraInfo, "depth/camera_info", out_qos),
            "color": self.create_publisher(Image, "depth/color", out_qos),
            "points": self.create_publisher(PointCloud2, "points", out_qos),
        }
        self._diag_pub = self.create_publisher(DiagnosticArray, "diagnostics", 10)

        if cfg.warmup:
            self._warmup()

        in_qos = _qos(cfg.qos_reliability, cfg.qos_depth)
        events = SubscriptionEventCallbacks(message_lost=self._on_message_lost,
                                            incompatible_qos=self._on_incompatible_qos)
        if cfg.image_transport == "compressed":
            self._image_sub = self.create_subscription(
                CompressedImage, "image/compressed", self._on_compressed, in_qos,
                event_callbacks=events)
        else:
            self._image_sub = self.create_subscription(Image, "image", self._on_image, in_qos,
                                                       event_callbacks=events)
        self._info_sub = self.create_subscription(
            CameraInfo, "camera_info", self._on_camera_info, in_qos,
            event_callbacks=SubscriptionEventCallbacks(
                incompatible_qos=self._on_incompatible_qos))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._diag_timer = self.create_timer(cfg.diagnostics_period, self._publish_diagnostics)
        self._worker = threading.Thread(target=self._worker_loop, name="depth_worker",
                                        daemon=True)
        self._worker.start()
        for level, text in dds_environment_hints(
                reliable_input=cfg.qos_reliability == "reliable"):
            (log.warning if level == "warn" else log.info)(text)
        log.info(f"backend {self._estimator.backend}: "
                 f"{getattr(self._estimator, 'selection', 'estimator given by the caller')}")
        log.info(f"depth_node ready: backend {self._estimator.backend}, model "
                 f"{info.name!r} {info.input_width}x{info.input_height}, scale_mode "
                 f"{cfg.scale_mode}, input {self._image_sub.topic_name} "
                 f"({cfg.qos_reliability}), output resolution {cfg.output_resolution}")

    def _warmup(self) -> None:
        info = self._estimator.info
        try:
            img = np.zeros((info.input_height, info.input_width, 3), np.uint8)
            out = self._estimator.predict(img, output_size=(info.input_height, info.input_width))
        except Exception as e:
            raise ModelFileError(self._cfg.model or info.name,
                                 f"warm-up inference failed ({type(e).__name__}: {e})") from e
        if np.asarray(out).shape != (info.input_height, info.input_width):
            raise ModelFileError(self._cfg.model or info.name,
                                 f"predict returned shape {np.asarray(out).shape}",
                                 f"({info.input_height}, {info.input_width})")

    # ------------------------------------------------------------------ public helpers
    @property
    def config(self) -> NodeConfig:
        """The current parameter snapshot."""
        return self._cfg

    @property
    def estimator(self) -> DepthEstimator:
        return self._estimator

    def destroy_node(self) -> None:
        self._stop_worker()
        super().destroy_node()

    def _stop_worker(self) -> None:
        self._stop.set()
        self._slot.close()
        if self._worker is not None and self._worker.is_alive():
            self._worker.join(timeout=30.0)

    # ------------------------------------------------------------------ callbacks
    def _check_stamp(self, header: Any) -> None:
        stamp = _stamp_ns(header)
        if self._last_stamp_ns is not None and stamp < self._last_stamp_ns:
            self.stats.incr("time_backwards")
            self._reset_scale = True  # a bag looped or the clock jumped: forget the history
            self._warn("time_backwards",
                       f"image stamp went backwards by {(self._last_stamp_ns - stamp) / 1e9:.3f} "
                       "s (bag loop or clock jump); temporal state reset")
        self._last_stamp_ns = stamp

    def _warn(self, kind: str, text: str) -> None:
        """Log a warning unless one of the same ``kind`` was logged in the last THROTTLE_S."""
        if self._throttle.ready(kind):
            self.get_logger().warning(text)

    def _on_message_lost(self, info: Any) -> None:
        n = int(info.total_count_change)
        self.stats.incr("messages_lost", n)
        self._warn("messages_lost",
                   f"{n} message(s) on {self._image_sub.topic_name} lost in the middleware "
                   f"({info.total_count} so far): large best-effort images? Use "
                   "qos_reliability: reliable with a reliable publisher")

    def _on_incompatible_qos(self, info: Any) -> None:
        self.stats.incr("incompatible_qos", int(info.total_count_change))
        policy = getattr(info.last_policy_kind, "name", str(info.last_policy_kind))
        hint = (" (a best-effort camera is not heard by qos_reliability: reliable; set "
                "qos_reliability: best_effort for it)" if "RELIABILITY" in policy else "")
        self._warn("incompatible_qos", f"a publisher's QoS cannot match this node's inputs: "
                                       f"{policy}{hint}; nothing from it is received")

    def _enqueue(self, msg: Any, compressed: bool, info: Any) -> None:
        now = time.monotonic()
        self.stats.incr("frames_received")
        gid = info.get("publisher_gid") or {}
        missed = self._gaps.missed(bytes(gid.get("data", b"")),
                                   info.get("publication_sequence_number"))
        if missed:
            self.stats.incr("sequence_gaps", missed)
            self._warn("sequence_gaps",
                       f"{missed} image(s) from a publisher on {self._image_sub.topic_name} never "
                       "arrived (sequence numbers skipped: lost in the middleware or dropped "
                       "from the input queue while the node was busy)")
        self.stats.input_tick(now)
        self._check_stamp(msg.header)
        if self._slot.put(_Frame(msg, now, compressed)):
            self.stats.incr("frames_dropped")

    def _on_image(self, msg: Image, info: Any) -> None:
        self._enqueue(msg, False, info)

    def _on_compressed(self, msg: CompressedImage, info: Any) -> None:
        self._enqueue(msg, True, info)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.stats.incr("camera_info_received")
        try:
            size = None if (msg.width > 0 and msg.height > 0) else (1, 1)
            intrinsics_from_camera_info(msg, size, rectified=self._cfg.rectified)
        except CameraInfoError as e:
            self.stats.incr("bad_camera_info")
            self._warn(f"camera_info_{e.reason}",
                       f"ignoring CameraInfo on {self._info_sub.topic_name}: {e}")
            return
        with self._cam_lock:
            if self._camera_info is None:
                self.get_logger().info(f"first valid CameraInfo ({msg.width}x{msg.height}, "
                                       f"{msg.distortion_model or 'no distortion'})")
            self._camera_info = msg
            self._intr_cache.clear()

    def _on_set_parameters(self, params: Any) -> SetParametersResult:
        changes = parameters_from_list(params)
        if not changes:
            return SetParametersResult(successful=True)
        try:
            new = self._cfg.updated(changes)
        except ConfigError as e:
            return SetParametersResult(successful=False, reason=str(e))
        self._scaler.scale_factor = new.scale_factor
        self._scaler.camera_height = new.camera_height
        if self._scaler.ground is not None:
            g = self._scaler.ground.cfg
            g.roi_fraction = new.ground_roi_fraction
            g.max_tilt_deg = new.ground_max_tilt_deg
            g.smoothing = new.scale_smoothing
        self._cfg = new  # one reference swap: the worker reads a consistent snapshot
        self.get_logger().info(f"parameters changed: {changes}")
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ worker
    def _worker_loop(self) -> None:
        while not self._stop.is_set():
            frame = self._slot.take(timeout=0.2)
            if frame is None or self._stop.is_set():
                continue
            try:
                self._process(frame)
            except Exception as e:  # never let one frame kill the node
                self.stats.incr("output_errors")
                self.get_logger().error(f"frame failed: {type(e).__name__}: {e}\n"
                                        f"{traceback.format_exc()}",
                                        throttle_duration_sec=THROTTLE_S)

    def _wanted(self, cfg: NodeConfig) -> Dict[str, bool]:
        p = self._pubs
        return {
            "depth": cfg.publish_depth and p["depth"].get_subscription_count() > 0,
            "depth_mm": cfg.publish_depth_mm and p["depth_mm"].get_subscription_count() > 0,
            "camera_info": (cfg.publish_camera_info
                            and p["camera_info"].get_subscription_count() > 0),
            "color": cfg.publish_color and p["color"].get_subscription_count() > 0,
            "points": cfg.publish_points and p["points"].get_subscription_count() > 0,
        }

    def _intrinsics(self, width: int, height: int, cfg: NodeConfig) -> Optional[Intrinsics]:
        """Intrinsics of the input image size: CameraInfo, else the fallback FOV, else None."""
        with self._cam_lock:
            info_msg = self._camera_info
            key = (id(info_msg), width, height, cfg.rectified, cfg.fallback_fov_deg)
            intr = self._intr_cache.get(key)
        if info_msg is not None:
            info_size = (int(info_msg.width), int(info_msg.height))
            if intr is None:
                try:
                    intr = intrinsics_from_camera_info(info_msg, (width, height), cfg.rectified)
                except CameraInfoError as e:  # validated on arrival; kept for safety
                    self.stats.incr("bad_camera_info")
                    self._warn(f"camera_info_{e.reason}", str(e))
                    return None
                with self._cam_lock:
                    self._intr_cache[key] = intr
            binned = (int(info_msg.binning_x) > 1 or int(info_msg.binning_y) > 1
                      or int(info_msg.roi.width) > 0)
            if info_size[0] > 0 and not binned and info_size != (width, height):
                self.stats.incr("camera_info_size_mismatch")
                self._warn("camera_info_size_mismatch",
                           f"CameraInfo is {info_size[0]}x{info_size[1]} but the image is "
                           f"{width}x{height}; rescaling the intrinsics")
            return intr
        if cfg.fallback_fov_deg > 0:
            if intr is None:
                intr = intrinsics_from_fov(width, height, cfg.fallback_fov_deg)
                with self._cam_lock:
                    self._intr_cache[key] = intr
            return intr
        return None

    def _header(self, msg: Any, cfg: NodeConfig) -> Header:
        if cfg.frame_id:
            return Header(stamp=msg.header.stamp, frame_id=cfg.frame_id)
        if not msg.header.frame_id:
            self.stats.incr("empty_frame_id")
            self._warn("empty_frame_id",
                       f"image on {self._image_sub.topic_name} has an empty frame_id: the outputs "
                       "have no TF frame (RViz and TF users cannot place them); fix the camera "
                       "driver or set the frame_id parameter")
        return msg.header

    def _process(self, frame: _Frame) -> None:
        cfg = self._cfg
        stats, log = self.stats, self.get_logger()
        want = self._wanted(cfg)
        if not any(want.values()):
            stats.incr("frames_idle")
            return
        t0 = time.perf_counter()
        try:
            if frame.compressed:
                rgb = image_codec.compressed_to_rgb8(frame.msg, cfg.max_input_pixels)
            else:
                rgb = image_codec.image_to_rgb8(frame.msg, cfg.max_input_pixels)
        except image_codec.ImageDecodeError as e:
            stats.incr("decode_errors")
            stats.incr(f"decode_error_{e.reason}")
            self._warn(f"decode_{e.reason}", f"skipping image on {self._image_sub.topic_name}: {e}")
            return
        t_decoded = time.perf_counter()
        stats.add_latency("decode", t_decoded - t0)
        H, W = rgb.shape[:2]
        info = self._estimator.info
        out_h, out_w = (H, W) if cfg.output_resolution == "camera" else \
            (info.input_height, info.input_width)
        intr_in = self._intrinsics(W, H, cfg)
        intr = None if intr_in is None else intr_in.resized(out_w, out_h)

        t_m0 = time.perf_counter()
        try:
            depth = self._estimator.predict(rgb, output_size=(out_h, out_w))
        except Exception as e:
            stats.incr("inference_errors")
            log.error(f"inference failed: {type(e).__name__}: {e}",
                      throttle_duration_sec=THROTTLE_S)
            return
        t_m1 = time.perf_counter()
        depth = np.asarray(depth, dtype=np.float32)
        if depth.shape != (out_h, out_w):
            stats.incr("inference_errors")
            log.error(f"estimator returned depth {depth.shape}, expected {(out_h, out_w)}",
                      throttle_duration_sec=THROTTLE_S)
            return
        stats.incr("frames_processed")

        # metric scale
        if self._reset_scale:
            self._reset_scale = False
            if self._scaler.ground is not None:
                self._scaler.ground.reset()
        rays_full = self._rays.get(intr, 1) if intr is not None and \
            (self._scaler.needs_rays or want["points"]) else None
        if self._scaler.needs_rays:
            fails = self._scaler.ground.n_failures
            depth_m = self._scaler.apply(depth, rays_full)
            if self._scaler.ground.n_failures > fails:
                stats.incr("scale_fit_failures")
        else:
            depth_m = self._scaler.apply(depth)
        if depth_m is None:
            stats.incr("scale_pending")
            self._warn("scale_pending", "scale_mode camera_height: no ground plane fitted yet "
                       f"({'no intrinsics' if intr is None else 'fit failed'}); not publishing")
            return
        depth32 = apply_range(depth_m, cfg.min_range, cfg.max_range)
        header = self._header(frame.msg, cfg)

        # outputs: each one only when somebody listens
        published = False
        if want["depth"]:
            self._pubs["depth"].publish(image_codec.array_to_image(depth32, "32FC1", header))
            published = True
        if want["depth_mm"]:
            self._pubs["depth_mm"].publish(
                image_codec.array_to_image(image_codec.depth_to_mm(depth32), "16UC1", header))
            published = True
        if want["color"]:
            # the scaled depth, not depth32: too-close pixels saturate near instead of black
            bgr = image_codec.colorize_depth(depth_m, cfg.color_min_depth, cfg.color_max_depth,
                                             cfg.color_map)
            self._pubs["color"].publish(image_codec.array_to_image(bgr, "bgr8", header))
            published = True
        if want["camera_info"] or want["points"]:
            if intr is None:
                stats.incr("no_camera_info")
                if not self._warned_no_info:
                    self._warned_no_info = True
                    log.warning(f"no valid CameraInfo on {self._info_sub.topic_name} yet and "
                                "fallback_fov_deg is 0: skipping points and depth/camera_info")
            else:
                if want["camera_info"]:
                    self._pubs["camera_info"].publish(to_camera_info(intr, header))
                    published = True
                if want["points"]:
                    self._pubs["points"].publish(
                        self._cloud(depth32, rays_full, rgb, (out_h, out_w), cfg, header))
                    published = True
        t_end = time.perf_counter()
        model_s = t_m1 - t_m0
        stats.add_latency("model", model_s)
        stats.add_latency("outputs", t_end - t_m1)
        stats.add_latency("overhead", (t_end - t0) - model_s)
        stats.add_latency("total", t_end - t0)
        stats.add_latency("age", time.monotonic() - frame.received)
        if published:
            stats.incr("frames_published")
            stats.output_tick()

    def _cloud(self, depth32: np.ndarray, rays_full: np.ndarray, rgb: np.ndarray,
               out_size: Tuple[int, int], cfg: NodeConfig, header: Any) -> PointCloud2:
        d = cfg.points_decimation
        colors = None
        if cfg.points_format == "xyzrgb":
            if rgb.shape[:2] != out_size:
                rgb = cv2.resize(rgb, (out_size[1], out_size[0]), interpolation=cv2.INTER_AREA)
            colors = rgb[::d, ::d]
        xyz = pointcloud.points_buffer(depth32[::d, ::d], rays_full[::d, ::d], colors is not None)
        cloud = pointcloud.build_cloud(xyz, colors, organized=cfg.points_organized)
        return pointcloud.cloud_to_msg(cloud, header)

    # ------------------------------------------------------------------ diagnostics
    def _problems(self, snap: Any) -> list:
        problems = []
        counters = snap.counters
        for key in ("decode_errors", "bad_camera_info", "inference_errors", "output_errors",
                    "time_backwards", "no_camera_info", "scale_pending", "messages_lost",
                    "sequence_gaps",
                    "incompatible_qos", "empty_frame_id"):
            delta = counters.get(key, 0) - self._last_error_counts.get(key, 0)
            if delta > 0:
                problems.append(f"{delta} {key.replace('_', ' ')} since last report")
        self._last_error_counts = {k: counters.get(k, 0) for k in counters}
        if not self._scaler.is_metric:
            problems.append("depth is relative, not metres")
        return problems

    def _publish_diagnostics(self) -> None:
        snap = self.stats.snapshot()
        cfg, info = self._cfg, self._estimator.info
        factor = self._scaler.current_factor()
        est = self._estimator
        static = {"backend": str(est.backend), "precision": str(getattr(est, "precision", "")),
                  "backend_choice": str(getattr(est, "selection", "estimator given by the caller")),
                  "model": cfg.model or info.name,
                  "model_name": info.name, "model_version": info.version,
                  "network_input": f"{info.input_width}x{info.input_height}",
                  "scale_mode": cfg.scale_mode,
                  "scale_factor": "pending" if factor is None else f"{factor:.6g}",
                  "output_resolution": cfg.output_resolution,
                  "input_topic": self._image_sub.topic_name,
                  "camera_info": "yes" if self._camera_info is not None else
                  ("fallback fov" if cfg.fallback_fov_deg > 0 else "none")}
        level, message, values = diagnostic_summary(
            snap, static, self._problems(snap), stale_after_s=max(5.0, 3 * cfg.diagnostics_period))
        name = f"{self.get_name()}: depth estimation"
        self._diag_pub.publish(to_diagnostic_array(self.get_clock().now().to_msg(), name,
                                                   str(self._estimator.backend), level,
                                                   message, values))


def main(args: Optional[list] = None) -> int:
    """Console script ``depth_node`` (``ros2 run dasp_ros depth_node --ros-args ...``).

    Returns 0 after a shutdown by SIGINT/SIGTERM (also repeated ones), 1 when the node cannot
    start (bad parameter, model or backend).
    """
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    # rclpy's handlers would shut the context down under the running worker thread
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    log = rclpy.logging.get_logger("depth_node")
    stop = ShutdownRequest(on_repeat=lambda _sig: None)  # a 2nd Ctrl-C must not interrupt clean-up
    try:
        node = DepthNode()
    except (DaspError, FileNotFoundError, RuntimeError) as e:  # bad parameter / model / backend
        log.fatal(f"cannot start: {e}")
        rclpy.try_shutdown()
        return 1
    executor = SingleThreadedExecutor()
    executor.add_node(node)

    def spin() -> None:
        try:
            executor.spin()
        except ExternalShutdownException:
            pass

    # The executor spins in its own thread (blocked in rcl_wait, where Python signal handlers
    # cannot run) so that the main thread, waiting on an Event, handles signals at once.
    spinner = threading.Thread(target=spin, name="executor", daemon=True)
    spinner.start()
    try:
        while not stop.wait(0.5) and spinner.is_alive():
            pass
    finally:
        # launch sends SIGTERM 5 s after SIGINT: end before that even if DDS teardown blocks
        with exit_watchdog(NODE_TEARDOWN_S, "depth_node shutdown", lambda: 0):
            executor.shutdown()  # wakes the executor thread; no callback runs after this
            spinner.join()
            node.destroy_node()  # stops the worker first, then publishers and subscriptions
            # keep our handlers: a late signal during DDS teardown must not kill us with -2/-15
            rclpy.try_shutdown(uninstall_handlers=False)
        stop.ignore_from_now()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
