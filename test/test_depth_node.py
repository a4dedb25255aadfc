"""depth_node with the real rclpy: pub/sub, bad input, latest-frame drops, parameters,
unsubscribed outputs, metric scale, a real ONNX model, and a second process over DDS.

Each test run uses its own ROS domain (from the pid) and every test its own namespace, so
parallel runs of other test files do not cross-talk (not ROS_AUTOMATIC_DISCOVERY_RANGE=
LOCALHOST: it defeats FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA for the cross-process test).
Waits are condition loops with generous timeouts (2 shared CPU cores).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import defaultdict
from typing import Any, Callable, Dict, Optional

import numpy as np
import pytest
from ros_domain import ros_domain

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2  # noqa: E402

from dasp_core.errors import ConfigError, ModelFileError  # noqa: E402
from dasp_core.runtime.base import ModelInfo  # noqa: E402
from dasp_ros import image_codec as ic  # noqa: E402
from dasp_ros import pointcloud as pc  # noqa: E402
from dasp_ros.camera_info import scale_K  # noqa: E402
from dasp_ros.depth_node import DepthNode, LatestSlot, apply_range  # noqa: E402
from dasp_ros.diagnostics import WarnThrottle  # noqa: E402

DOMAIN = ros_domain("depth_node")
TIMEOUT = 30.0
H, W = 64, 96
K = np.array([[80.0, 0.0, 47.5], [0.0, 80.0, 31.5], [0.0, 0.0, 1.0]])
_ns = itertools.count()


class FakeEstimator:
    """DepthEstimator test double: ``fn(h, w) -> depth`` (metres), optional delay per call."""

    backend = "fake"

    def __init__(self, fn: Optional[Callable[[int, int], np.ndarray]] = None, delay: float = 0.0,
                 info: Optional[ModelInfo] = None):
        self.info = info or ModelInfo(input_height=32, input_width=64, scale_factor=1.0,
                                      scale_source="learned", name="fake")
        self.fn = fn or (lambda h, w: np.full((h, w), 5.0, np.float32))
        self.delay = delay
        self.calls = 0
        self.sizes = []
        self._active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def predict(self, image, output_size=None):
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        with self._lock:
            self._active += 1
            self.max_active = max(self.max_active, self._active)
            self.calls += 1
        try:
            if self.delay:
                time.sleep(self.delay)
            h, w = output_size or image.shape[:2]
            self.sizes.append((h, w))
            return self.fn(h, w).astype(np.float32) * np.float32(self.info.scale_factor)
        finally:
            with self._lock:
                self._active -= 1

    def predict_batch(self, images, output_size=None):
        return np.stack([self.predict(im, output_size) for im in images])

    def infer_disparity(self, batch):
        return np.full((batch.shape[0], 1) + batch.shape[2:], 0.5, np.float32)


def gradient(h: int, w: int) -> np.ndarray:
    """depth[v, u] = 1 + 0.1 u (metres)."""
    return np.broadcast_to(1.0 + 0.1 * np.arange(w, dtype=np.float32), (h, w)).copy()


@pytest.fixture(scope="module")
def ctx():
    c = Context()
    rclpy.init(context=c, domain_id=DOMAIN)
    yield c
    rclpy.shutdown(context=c)


class Harness:
    """A DepthNode plus a peer node (publishers/subscribers) on one executor."""

    def __init__(self, ctx: Context, estimator: Any, overrides: Optional[Dict[str, Any]] = None,
                 subscribe=("depth",)):
        self.ns = f"/dn{os.getpid()}_{next(_ns)}"
        ov = {"diagnostics_period": 0.2, **(overrides or {})}
        self.node = DepthNode(estimator, context=ctx, namespace=self.ns,
                              parameter_overrides=[Parameter(k, value=v) for k, v in ov.items()])
        self.peer = Node("peer", context=ctx, namespace=self.ns)
        self.executor = SingleThreadedExecutor(context=ctx)
        self.executor.add_node(self.node)
        self.executor.add_node(self.peer)
        self.got: Dict[str, list] = defaultdict(list)
        self.subs = {}
        self.image_pub = self.peer.create_publisher(Image, "image", 10)
        self.jpeg_pub = self.peer.create_publisher(CompressedImage, "image/compressed", 10)
        self.info_pub = self.peer.create_publisher(CameraInfo, "camera_info", 10)
        for topic in subscribe:
            self.subscribe(topic)
        assert self.spin_until(lambda: self.image_pub.get_subscription_count()
                               + self.jpeg_pub.get_subscription_count() > 0)

    TYPES = {"depth": Image, "depth_mm": Image, "depth/color": Image,
             "depth/camera_info": CameraInfo, "points": PointCloud2,
             "diagnostics": DiagnosticArray}

    def subscribe(self, topic: str) -> None:
        self.subs[topic] = self.peer.create_subscription(
            self.TYPES[topic], topic, lambda m, t=topic: self.got[t].append(m), 10)
        key = {"depth/camera_info": "camera_info", "depth/color": "color"}.get(topic, topic)
        if key in self.node._pubs:
            assert self.spin_until(lambda: self.node._pubs[key].get_subscription_count() > 0)

    def unsubscribe(self, topic: str) -> None:
        self.peer.destroy_subscription(self.subs.pop(topic))

    def spin_until(self, cond: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return True
            self.executor.spin_once(timeout_sec=0.02)
        return cond()

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.02)

    def count(self, name: str) -> int:
        return self.node.stats.get(name)

    def image(self, rgb: Optional[np.ndarray] = None, stamp: float = 1.0, enc="rgb8") -> Image:
        rgb = np.full((H, W, 3), 90, np.uint8) if rgb is None else rgb
        msg = ic.array_to_image(rgb, enc)
        msg.header.frame_id = "cam_optical"
        msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp), int(stamp % 1 * 1e9)
        return msg

    def camera_info(self, k=K, w=W, h=H) -> CameraInfo:
        info = CameraInfo(width=w, height=h, distortion_model="plumb_bob")
        info.k = np.asarray(k, float).ravel()
        info.p = np.concatenate([np.asarray(k, float), np.zeros((3, 1))], 1).ravel()
        info.r = np.eye(3).ravel()
        info.d = [0.0] * 5
        return info

    def send_info(self, info: Optional[CameraInfo] = None) -> None:
        n = self.count("camera_info_received")
        self.info_pub.publish(info or self.camera_info())
        assert self.spin_until(lambda: self.count("camera_info_received") > n)

    def send_and_wait(self, msg: Any, counter: str = "frames_published", pub=None) -> None:
        """Publish one message and wait until ``counter`` moved (so none overwrites it)."""
        n = self.count(counter)
        outputs = [t for t in self.subs if t != "diagnostics"]
        m = sum(len(self.got[t]) for t in outputs)
        (pub or self.image_pub).publish(msg)
        assert self.spin_until(lambda: self.count(counter) > n), \
            f"{counter} did not increase; counters {self.node.stats.snapshot().counters}"
        if counter == "frames_published" and outputs:
            # The node counts a frame when it publishes it; the peer gets it on a later spin.
            # Without this wait a loaded machine read got[...] before delivery (IndexError).
            self.spin_until(lambda: sum(len(self.got[t]) for t in outputs) > m, timeout=5.0)

    def close(self) -> None:
        self.executor.remove_node(self.node)
        self.executor.remove_node(self.peer)
        self.node.destroy_node()
        self.peer.destroy_node()
        self.executor.shutdown()


@pytest.fixture
def harness(ctx):
    made = []

    def make(*args, **kwargs) -> Harness:
        h = Harness(ctx, *args, **kwargs)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


# ----------------------------------------------------------------------------- unit

def test_latest_slot_keeps_only_newest():
    slot = LatestSlot()
    assert slot.put(1) is False and slot.put(2) is True and slot.put(3) is True
    assert slot.take(0.01) == 3 and slot.take(0.01) is None
    slot.close()
    assert slot.take(None) is None  # closed: no wait


def test_apply_range_follows_rep_117():
    depth = np.array([[np.nan, -1.0, 0.0, 0.05, 0.1, 5.0, 80.0, 81.0, np.inf]], np.float32)
    out = apply_range(depth, 0.1, 80.0)
    expected = [np.nan, np.nan, np.nan, -np.inf, 0.1, 5.0, 80.0, np.inf, np.inf]
    np.testing.assert_array_equal(out[0], np.array(expected, np.float32))
    assert out.dtype == np.float32 and depth[0, 1] == -1.0  # input untouched
    # min_range 0: nothing is "too close", non-positive depth is still invalid
    np.testing.assert_array_equal(apply_range(np.array([0.0, 1e-6], np.float32), 0.0, 80.0),
                                  np.array([np.nan, 1e-6], np.float32))


def test_warn_throttle_is_per_kind():
    now = [0.0]
    t = WarnThrottle(5.0, clock=lambda: now[0])
    assert t.ready("camera_info_zero_focal") and not t.ready("camera_info_zero_focal")
    # another kind is not hidden by the first one (fx=0, then K all NaN, then fx<0)
    assert t.ready("camera_info_non_finite") and t.ready("camera_info_negative_focal")
    now[0] = 4.9
    assert not t.ready("camera_info_zero_focal")
    now[0] = 5.0
    assert t.ready("camera_info_zero_focal")


# ----------------------------------------------------------------------------- pub/sub

def test_all_outputs_with_input_header(harness):
    est = FakeEstimator(gradient)
    h = harness(est, {"publish_depth_mm": True, "min_range": 1.05, "max_range": 6.0},
                subscribe=("depth", "depth_mm", "depth/color", "depth/camera_info", "points",
                           "diagnostics"))
    h.send_info()
    h.send_and_wait(h.image(stamp=12.25))
    assert h.spin_until(lambda: all(h.got[t] for t in h.TYPES))
    expected = gradient(H, W)
    exp32 = expected.copy()
    exp32[expected > 6.0] = np.inf
    exp32[expected < 1.05] = -np.inf

    depth = h.got["depth"][0]
    assert depth.encoding == "32FC1" and (depth.height, depth.width) == (H, W)
    assert depth.header.frame_id == "cam_optical"
    assert (depth.header.stamp.sec, depth.header.stamp.nanosec) == (12, 250_000_000)
    np.testing.assert_array_equal(ic.image_to_array(depth), exp32)

    mm = ic.image_to_array(h.got["depth_mm"][0])
    assert h.got["depth_mm"][0].encoding == "16UC1"
    np.testing.assert_array_equal(mm, np.where(np.isfinite(exp32),
                                               np.rint(expected * 1000), 0).astype(np.uint16))
    color = h.got["depth/color"][0]
    assert color.encoding == "bgr8" and ic.image_to_array(color).shape == (H, W, 3)

    info = h.got["depth/camera_info"][0]
    assert (info.width, info.height) == (W, H)
    np.testing.assert_allclose(np.asarray(info.k).reshape(3, 3), K)
    assert info.header.stamp.sec == 12

    cloud = h.got["points"][0]
    pts = pc.read_points(cloud)
    assert pts.shape == (H // 2, W // 2) and not cloud.is_dense  # decimation 2, organised
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "rgb"]
    i, j = 10, 20  # known pixel (u, v) = (40, 20)
    z = expected[20, 40]
    np.testing.assert_allclose([pts["x"][i, j], pts["y"][i, j], pts["z"][i, j]],
                               [(40 - 47.5) / 80 * z, (20 - 31.5) / 80 * z, z], rtol=1e-5)
    assert np.all(np.isnan(pts["z"][:, 0]))  # 1.0 m < min_range
    assert np.all(np.isnan(pts["z"][:, -1]))  # beyond max_range
    np.testing.assert_array_equal(pc.unpack_rgb(pts["rgb"][i, j]), [90, 90, 90])

    def last_diagnostics() -> dict:
        return {kv.key: kv.value for kv in h.got["diagnostics"][-1].status[0].values}

    # diagnostics come on a timer: the first may predate the frame, so wait for one after it
    assert h.spin_until(lambda: int(last_diagnostics().get("frames_received", 0)) >= 1)
    values = last_diagnostics()
    assert values["backend"] == "fake" and values["model_name"] == "fake"
    for key in ("latency_model_p50_ms", "latency_overhead_p99_ms", "input_rate_hz",
                "output_rate_hz", "frames_dropped", "decode_errors", "bad_camera_info"):
        assert key in values
    assert int(values["frames_received"]) >= 1


def test_network_resolution_and_dense_xyz(harness):
    est = FakeEstimator()
    h = harness(est, {"output_resolution": "network", "points_format": "xyz",
                      "points_organized": False, "points_decimation": 1,
                      "frame_id": "override_frame"},
                subscribe=("depth", "depth/camera_info", "points"))
    h.send_info()
    h.send_and_wait(h.image())
    assert h.spin_until(lambda: h.got["points"] and h.got["depth/camera_info"])
    d = h.got["depth"][0]
    assert (d.height, d.width) == (32, 64) and est.sizes[-1] == (32, 64)
    assert d.header.frame_id == "override_frame" and d.header.stamp.sec == 1
    info = h.got["depth/camera_info"][0]
    assert (info.width, info.height) == (64, 32)
    np.testing.assert_allclose(np.asarray(info.k).reshape(3, 3), scale_K(K, 64 / W, 32 / H))
    cloud = h.got["points"][0]
    assert cloud.is_dense and cloud.height == 1 and cloud.width == 32 * 64
    assert [f.name for f in cloud.fields] == ["x", "y", "z"] and cloud.point_step == 12


def test_compressed_input_and_corrupt_jpeg(harness):
    pytest.importorskip("simplejpeg")
    h = harness(FakeEstimator(), {"image_transport": "compressed"})
    rgb = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    h.send_and_wait(ic.rgb8_to_compressed(rgb, "jpeg"), pub=h.jpeg_pub)
    assert h.spin_until(lambda: h.got["depth"]) and h.got["depth"][0].width == W
    bad = CompressedImage(format="jpeg")
    bad.data = ic._bytes_array(np.frombuffer(b"\xff\xd8\xff\xe0not a jpeg at all" * 4, np.uint8))
    h.send_and_wait(bad, "decode_error_corrupt", pub=h.jpeg_pub)
    # damaged scan data that OpenCV decodes with only a warning on stderr: counted, no depth
    flipped = ic.rgb8_to_compressed(rgb, "jpeg")
    flipped.data = ic._bytes_array(np.frombuffer(truncated_scan_jpeg(rgb), np.uint8))
    n_depth = len(h.got["depth"])
    h.send_and_wait(flipped, "decode_error_corrupt", pub=h.jpeg_pub)
    h.spin_for(0.2)
    assert len(h.got["depth"]) == n_depth and h.count("decode_error_corrupt") == 2
    h.send_and_wait(ic.rgb8_to_compressed(rgb, "png"), pub=h.jpeg_pub)  # still alive


def truncated_scan_jpeg(rgb: np.ndarray) -> bytes:
    """A JPEG of ``rgb`` whose scan data lost its second half: OpenCV still returns a picture."""
    import cv2

    data = cv2.imencode(".jpg", rgb)[1].tobytes()
    sos = data.index(b"\xff\xda")
    cut = sos + (len(data) - sos) // 2
    damaged = data[:cut] + b"\xff\xd9"
    assert cv2.imdecode(np.frombuffer(damaged, np.uint8), cv2.IMREAD_COLOR) is not None
    return damaged


def test_empty_frame_id_is_warned_counted_and_overridable(harness):
    h = harness(FakeEstimator())
    msg = h.image(stamp=3.0)
    msg.header.frame_id = ""
    h.send_and_wait(msg)
    assert h.spin_until(lambda: h.got["depth"])
    assert h.count("empty_frame_id") == 1 and h.got["depth"][-1].header.frame_id == ""
    h2 = harness(FakeEstimator(), {"frame_id": "front_optical"})
    h2.send_and_wait(msg)
    assert h2.spin_until(lambda: h2.got["depth"])
    assert h2.count("empty_frame_id") == 0
    assert h2.got["depth"][-1].header.frame_id == "front_optical"


def test_best_effort_publisher_is_reported_as_incompatible(harness):
    """The default input QoS is reliable: a best-effort camera is not heard, and says so."""
    from rclpy.qos import qos_profile_sensor_data

    h = harness(FakeEstimator())
    assert h.node.config.qos_reliability == "reliable"
    pub = h.peer.create_publisher(Image, "image", qos_profile_sensor_data)
    assert h.spin_until(lambda: h.count("incompatible_qos") >= 1)
    h.peer.destroy_publisher(pub)
    h.subscribe("diagnostics")
    assert h.spin_until(lambda: any("incompatible qos" in d.status[0].message
                                    for d in h.got["diagnostics"]))


def test_middleware_losses_are_counted_and_reported(harness):
    """The subscription's message-lost event feeds ``messages_lost`` and the diagnostics."""
    import types

    h = harness(FakeEstimator(), subscribe=("depth", "diagnostics"))
    h.node._on_message_lost(types.SimpleNamespace(total_count=3, total_count_change=3))
    assert h.count("messages_lost") == 3
    assert h.spin_until(lambda: any("3 messages lost" in d.status[0].message
                                    for d in h.got["diagnostics"]))


# ----------------------------------------------------------------------------- bad input

def test_bad_inputs_are_counted_and_survived(harness):
    h = harness(FakeEstimator(), {"max_input_pixels": 12_000},
                subscribe=("depth", "points"))

    def bad(mutate):
        m = h.image(stamp=time.time())
        mutate(m)
        return m

    # no CameraInfo: depth is published, points are skipped and counted
    h.send_and_wait(h.image(stamp=time.time()))
    assert h.spin_until(lambda: h.count("no_camera_info") >= 1)
    assert not h.got["points"]
    cases = [
        (lambda m: setattr(m, "encoding", "weird16"), "decode_error_encoding"),
        (lambda m: setattr(m, "step", 10), "decode_error_size"),
        (lambda m: setattr(m, "height", H + 20), "decode_error_size"),  # data too short
        (lambda m: setattr(m, "data", ic._bytes_array(np.zeros(0, np.uint8))),
         "decode_error_empty"),
    ]
    for mutate, counter in cases:
        before = {c: h.count(c) for c in ("decode_error_encoding", "decode_error_size",
                                          "decode_error_empty")}
        h.send_and_wait(bad(mutate), counter)
        assert h.count(counter) == before[counter] + 1
        assert all(h.count(c) == v for c, v in before.items() if c != counter)
        h.send_and_wait(h.image(stamp=time.time()))  # alive and publishing
    huge = h.image(np.zeros((130, 101, 3), np.uint8), stamp=time.time())  # > 12000 px
    h.send_and_wait(huge, "decode_error_too_large")
    assert h.count("decode_errors") == 5

    # CameraInfo with zero focal length is ignored and counted; a good one enables points
    zero = h.camera_info(k=np.zeros((3, 3)))
    n = h.count("bad_camera_info")
    h.info_pub.publish(zero)
    assert h.spin_until(lambda: h.count("bad_camera_info") == n + 1)
    h.send_info()
    h.send_and_wait(h.image(stamp=time.time()))
    assert h.spin_until(lambda: h.got["points"])

    # CameraInfo of another size: rescaled and counted
    h.send_info(h.camera_info(k=scale_K(K, 2, 2), w=2 * W, h=2 * H))
    h.send_and_wait(h.image(stamp=time.time()), "camera_info_size_mismatch")

    # time going backwards
    h.send_and_wait(h.image(stamp=5.0), "time_backwards")
    h.send_and_wait(h.image(stamp=time.time()))
    assert h.node.executor is not None and h.node._worker.is_alive()


def test_estimator_exception_is_counted(harness):
    calls = {"n": 0}

    def flaky(hh, ww):
        calls["n"] += 1
        if calls["n"] == 2:  # the first call is the warm-up
            raise RuntimeError("boom")
        return np.full((hh, ww), 3.0, np.float32)

    h = harness(FakeEstimator(flaky))
    h.send_and_wait(h.image(stamp=1.0), "inference_errors")
    h.send_and_wait(h.image(stamp=2.0))


# ----------------------------------------------------------------------------- latest frame

def test_latest_frame_policy_drops_and_never_queues(harness):
    est = FakeEstimator(delay=0.25)
    h = harness(est, {"qos_reliability": "reliable", "warmup": False})
    n = 20
    for i in range(n):
        h.image_pub.publish(h.image(stamp=100.0 + i))
        h.spin_for(0.02)
    assert h.spin_until(lambda: h.count("frames_received") == n)
    done = lambda: h.count("frames_processed") + h.count("frames_dropped") == n  # noqa: E731
    assert h.spin_until(done)
    assert h.spin_until(lambda: len(h.got["depth"]) == h.count("frames_processed"))
    processed, dropped = h.count("frames_processed"), h.count("frames_dropped")
    assert dropped >= n // 2 and processed <= n // 2, (processed, dropped)
    assert est.max_active == 1
    last = h.got["depth"][-1].header.stamp
    assert (last.sec, last.nanosec) == (100 + n - 1, 0)  # the newest frame was processed
    ages = h.node.stats.latencies_raw_ms("age")
    assert ages.max() < 2 * 250 + 500  # bounded: at most one wait plus one inference


# ----------------------------------------------------------------------------- parameters

@pytest.mark.parametrize("override,needle", [
    ({"points_decimation": 0}, "points_decimation = 0"),
    ({"scale_factor": 2}, "decimal point"),
    ({"backend": "magic"}, "backend = 'magic'"),
    ({"min_range": 10.0, "max_range": 5.0}, "less than max_range"),
    ({"device": "tpu"}, "device = 'tpu'"),
])
def test_bad_parameters_fail_at_start(ctx, override, needle):
    with pytest.raises(ConfigError) as e:
        DepthNode(FakeEstimator(), context=ctx, namespace=f"/bad{next(_ns)}",
                  parameter_overrides=[Parameter(k, value=v) for k, v in override.items()])
    assert needle in str(e.value)


def test_parameters_change_at_run_time(harness):
    h = harness(FakeEstimator(), {"fallback_fov_deg": 90.0}, subscribe=("points",))
    h.send_and_wait(h.image(stamp=1.0))
    assert h.spin_until(lambda: h.got["points"])
    assert (h.got["points"][-1].height, h.got["points"][-1].width) == (H // 2, W // 2)

    res = h.node.set_parameters([Parameter("points_decimation", value=4),
                                 Parameter("max_range", value=30.0)])
    assert all(r.successful for r in res)
    assert h.node.config.points_decimation == 4 and h.node.config.max_range == 30.0
    h.got["points"].clear()
    h.send_and_wait(h.image(stamp=2.0))
    assert h.spin_until(lambda: h.got["points"])
    assert (h.got["points"][-1].height, h.got["points"][-1].width) == (H // 4, W // 4)

    (r,) = h.node.set_parameters([Parameter("min_range", value=50.0)])
    assert not r.successful and "min_range" in r.reason and "max_range" in r.reason
    (r,) = h.node.set_parameters([Parameter("points_format", value="xyzi")])
    assert not r.successful and "xyzrgb" in r.reason
    (r,) = h.node.set_parameters([Parameter("backend", value="torch")])
    assert not r.successful  # read-only
    assert h.node.config.min_range == 0.1 and h.node.config.backend == "auto"


def test_missing_model_fails_at_start_with_path(ctx, monkeypatch, tmp_path):
    missing = str(tmp_path / "nope.onnx")
    with pytest.raises(ModelFileError, match="nope.onnx"):
        DepthNode(None, context=ctx, namespace=f"/m{next(_ns)}",
                  parameter_overrides=[Parameter("model", value=missing)])
    import dasp_core.assets

    def absent(kind="onnx"):
        raise FileNotFoundError("the shipped model /x/dasp_demo.onnx is missing")

    monkeypatch.setattr(dasp_core.assets, "default_model_path", absent)
    with pytest.raises(ConfigError) as e:
        DepthNode(None, context=ctx, namespace=f"/m{next(_ns)}")
    assert e.value.key == "model" and "shipped model" in str(e.value)


def test_console_script_loads_yaml_and_fails_cleanly_on_missing_model(tmp_path):
    """The real rcl YAML parser reads config/night_depth.yaml; the node then stops at the
    missing model with exit code 1 and the path (not a traceback)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    missing = str(tmp_path / "missing_model.onnx")
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN))
    proc = subprocess.run([sys.executable, "-m", "dasp_ros.depth_node", "--ros-args",
                           "--params-file", os.path.join(root, "config", "night_depth.yaml"),
                           "-p", f"model:={missing}"], env=env, capture_output=True, text=True,
                          timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert missing in out and "does not exist" in out and "Traceback" not in out


# ----------------------------------------------------------------------------- subscriptions

def test_unsubscribed_outputs_cost_nothing(harness, monkeypatch):
    calls = defaultdict(int)
    for mod, name in ((ic, "colorize_depth"), (ic, "depth_to_mm"), (pc, "build_cloud")):
        real = getattr(mod, name)

        def wrapped(*a, _real=real, _name=name, **k):
            calls[_name] += 1
            return _real(*a, **k)

        monkeypatch.setattr(mod, name, wrapped)
    est = FakeEstimator()
    h = harness(est, {"publish_depth_mm": True, "fallback_fov_deg": 60.0}, subscribe=("depth",))
    h.send_and_wait(h.image(stamp=1.0))
    h.send_and_wait(h.image(stamp=2.0))
    assert dict(calls) == {}
    h.subscribe("depth/color")
    h.send_and_wait(h.image(stamp=3.0))
    assert h.spin_until(lambda: h.got["depth/color"])
    assert dict(calls) == {"colorize_depth": 1}

    # nobody listening at all: the model does not run
    h.unsubscribe("depth")
    h.unsubscribe("depth/color")
    assert h.spin_until(lambda: all(p.get_subscription_count() == 0
                                    for p in h.node._pubs.values()))
    n_calls = est.calls
    h.send_and_wait(h.image(stamp=4.0), "frames_idle")
    assert est.calls == n_calls


# ----------------------------------------------------------------------------- metric scale

def test_camera_height_scale_mode(harness):
    """The estimator sees a flat ground at 0.4x metric scale; the node must publish metres."""
    cam_h = 1.4

    def ground(hh, ww):
        Ks = scale_K(K, ww / W, hh / H)
        v = np.arange(hh, dtype=np.float32)[:, None]
        y = (v - Ks[1, 2]) / Ks[1, 1]
        with np.errstate(divide="ignore"):
            z = np.where(y > 1e-3, cam_h / y, 60.0)
        return np.broadcast_to(np.minimum(z, 60.0) * 0.4, (hh, ww)).astype(np.float32)

    info = ModelInfo(input_height=32, input_width=64, scale_factor=2.0, scale_source="learned")
    h = harness(FakeEstimator(ground, info=info),
                {"scale_mode": "camera_height", "camera_height": cam_h, "scale_smoothing": 0.0,
                 "max_range": 100.0})
    h.send_and_wait(h.image(stamp=1.0), "scale_pending")  # no intrinsics yet: not published
    assert not h.got["depth"]
    h.send_info()
    h.send_and_wait(h.image(stamp=2.0))
    d = ic.image_to_array(h.got["depth"][-1])
    truth = ground(H, W) / 0.4
    rows = slice(H - 20, H)  # ground rows
    np.testing.assert_allclose(d[rows], truth[rows], rtol=0.03)


def test_scale_mode_none_is_relative(harness):
    info = ModelInfo(input_height=32, input_width=64, scale_factor=4.0, scale_source="learned")
    h = harness(FakeEstimator(info=info), {"scale_mode": "none"})
    h.send_and_wait(h.image())
    np.testing.assert_allclose(ic.image_to_array(h.got["depth"][0]), 5.0)  # network units


# ----------------------------------------------------------------------------- real model

@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from dasp_core.export.onnx import export_depth_net
    from dasp_core.models.depth_net import DepthNet, DepthNetConfig

    torch.manual_seed(0)
    net = DepthNet(DepthNetConfig(encoder="resnet18")).eval()
    info = ModelInfo(input_height=64, input_width=96, min_depth=0.1, max_depth=100.0,
                     scale_factor=1.0, scale_source="learned", name="tiny-random")
    return export_depth_net(net, info, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def test_real_onnx_model_through_the_node(harness, tiny_onnx):
    h = harness(None, {"model": str(tiny_onnx), "backend": "onnxruntime", "device": "cpu",
                       "threads": 1}, subscribe=("depth", "points"))
    assert h.node.estimator.backend == "onnxruntime"
    h.send_info()
    rgb = np.random.default_rng(1).integers(0, 255, (H, W, 3), dtype=np.uint8)
    h.send_and_wait(h.image(rgb))
    assert h.spin_until(lambda: h.got["points"])
    d = ic.image_to_array(h.got["depth"][0])
    assert d.shape == (H, W)
    finite = d[np.isfinite(d)]
    assert finite.size > 0 and finite.min() >= 0.1 - 1e-4 and finite.max() <= 80.0
    assert np.all(np.isinf(d[~np.isfinite(d) & ~np.isnan(d)]))  # only +Inf beyond max_range


# ----------------------------------------------------------------------------- two processes

PUBLISHER = textwrap.dedent("""
    import sys, time
    import numpy as np
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from dasp_ros.image_codec import array_to_image

    topic, n, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    rclpy.init()
    node = rclpy.create_node("camera_sim")
    pub = node.create_publisher(Image, topic, qos_profile_sensor_data)
    end = time.monotonic() + 60
    while pub.get_subscription_count() == 0:
        if time.monotonic() > end:
            print("no subscriber matched in 60 s", flush=True)
            sys.exit(2)
        time.sleep(0.05)
    time.sleep(1.0)  # let discovery finish on both sides
    rgb = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    t0 = time.monotonic()
    for i in range(n):
        msg = array_to_image(rgb, "rgb8")
        msg.header.frame_id = "camera_optical_frame"
        msg.header.stamp.sec, msg.header.stamp.nanosec = 1000 + i, 0
        pub.publish(msg)
        time.sleep(max(0.0, t0 + (i + 1) / rate - time.monotonic()))
    time.sleep(1.0)
    print("published", n, flush=True)
    node.destroy_node()
    rclpy.shutdown()
""")


def test_cross_process_640x480_with_large_data(tmp_path):
    # NB: ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST must not be set: with it rmw_fastrtps
    # (Kilted) restricts transports and best-effort 640x480 images are lost again.
    env = dict(os.environ, FASTDDS_BUILTIN_TRANSPORTS="LARGE_DATA", ROS_DOMAIN_ID=str(DOMAIN))
    env.pop("ROS_AUTOMATIC_DISCOVERY_RANGE", None)
    saved = {k: os.environ.pop(k, None) for k in ("FASTDDS_BUILTIN_TRANSPORTS",
                                                  "ROS_AUTOMATIC_DISCOVERY_RANGE")}
    # rmw_fastrtps reads the variable when the context's first node creates the DDS
    # participant, so it stays set until the Harness exists. Both processes must agree:
    # a LARGE_DATA participant and a default one do not communicate at all.
    os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"
    c = Context()
    h = None
    proc = None
    try:
        try:
            rclpy.init(context=c, domain_id=DOMAIN)
            h = Harness(c, FakeEstimator(), {"fallback_fov_deg": 70.0, "points_decimation": 4,
                                             "qos_reliability": "best_effort"},
                        subscribe=("depth", "points"))
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        n, rate = 30, 10.0
        script = tmp_path / "publisher.py"
        script.write_text(PUBLISHER)
        proc = subprocess.Popen([sys.executable, str(script), f"{h.ns}/image", str(n), str(rate)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        h.spin_until(lambda: proc.poll() is not None, timeout=120)
        out = proc.communicate(timeout=30)[0]
        assert proc.returncode == 0, out
        # every received frame is published or counted as dropped (the worker may fall behind
        # on a loaded machine: the latest-frame policy then skips frames, and says how many)
        settled = lambda: h.count("frames_received") > 0 and \
            h.count("frames_processed") + h.count("frames_dropped") == \
            h.count("frames_received") and len(h.got["depth"]) >= h.count("frames_processed")  # noqa: E731
        assert h.spin_until(settled, timeout=30), h.node.stats.snapshot().counters
        received = h.count("frames_received")
        stamps = {m.header.stamp.sec for m in h.got["depth"]}
        assert received >= 0.8 * n, (received, h.node.stats.snapshot().counters)
        assert len(stamps) == h.count("frames_processed") >= 1
        assert h.got["depth"][0].width == 640 and h.got["points"]
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        if h is not None:
            h.close()
        rclpy.shutdown(context=c)


def test_sequence_gaps_count_what_never_reached_the_callback(harness):
    from dasp_ros.diagnostics import SequenceGaps

    g = SequenceGaps()
    assert [g.missed("a", s) for s in (1, 2, 5, 6)] == [0, 0, 2, 0]
    assert g.missed("b", 10) == 0 and g.missed("a", 1) == 0  # new publisher / restarted one
    assert g.missed("a", None) == 0 and g.missed("a", 0) == 0  # RMW without sequence numbers
    # the node reads the publisher's sequence numbers from the message info
    h = harness(FakeEstimator(), subscribe=("depth", "diagnostics"))
    for i in range(3):
        h.send_and_wait(h.image(stamp=10.0 + i))
    assert h.count("sequence_gaps") == 0
    (last,) = h.node._gaps._last.values()
    assert last >= 3  # Fast DDS reports them: a skipped one would be counted
    info = {"publisher_gid": {"data": b"x"}, "publication_sequence_number": 1}
    h.node._enqueue(h.image(stamp=20.0), False, info)
    h.node._enqueue(h.image(stamp=21.0), False, dict(info, publication_sequence_number=4))
    assert h.count("sequence_gaps") == 2
    assert h.spin_until(lambda: any("2 sequence gaps" in d.status[0].message
                                    for d in h.got["diagnostics"]))
