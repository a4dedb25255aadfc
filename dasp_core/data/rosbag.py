"""rosbag2 recordings from a robot → clips (torch-free, no ROS installation needed).

Works with any rosbag2 (sqlite3 or mcap) that has a ``sensor_msgs/msg/Image`` or
``sensor_msgs/msg/CompressedImage`` topic. Messages are read with ``rosbags`` and turned into
numpy by :mod:`dasp_core.bagio`.

How a bag becomes clips (each step logged):

1. **Index once.** One pass over the bag records the bag time of every image message, the
   first ``CameraInfo`` of the camera, the ``Odometry`` speeds, the depth-topic times, and —
   when the motion test or the brightness rule needs them — a 64-px grey thumbnail per frame.
   Frames are decoded again only when a clip is read.
2. **Segments.** A gap longer than ``max_gap_s`` between frames starts a new segment; clips
   never span one.
3. **Near-static frames are dropped** (ours): ``motion_test="image"`` keeps a frame when its
   thumbnail differs from the last kept frame by more than ``motion_threshold`` grey levels
   (mean absolute difference); ``"odom"`` keeps frames where the odometry speed is at least
   ``min_speed`` m/s; ``"auto"`` uses odom when the bag has it.
4. **Day or night** is the user's flag, or (``domain="auto"``) the brightness rule: the median
   grey level of each ``brightness_window_s`` stretch of a segment against
   ``night_threshold``; each measured value is logged so the threshold can be moved.
5. **Speed** (m/s) at the target frame comes from Odometry (``|twist.linear|``) when present.
6. **Camera poses** (``Clip.poses``, for ``pose.source: odometry``): the Odometry pose of its
   ``child_frame_id`` (the base) in its ``header.frame_id``, interpolated at each image time
   (slerp + linear), times the camera extrinsic ``T_base_cam`` (from ``camera_extrinsic``, or
   chained through ``/tf_static`` and unchanging ``/tf`` links from the base to the image's
   ``header.frame_id``). Without an Odometry topic, the ``/tf`` chain from ``tf_fixed_frame``
   (``odom``) down to the camera is interpolated instead. Header stamps are used when every
   image and motion message has one, bag times otherwise. Poses are expressed in the target
   camera's frame (``poses[target] = I``); a clip with a frame outside the motion's time range
   or in a gap of it (> ``max_gap_s``) has ``poses=None`` (or is dropped with
   ``require_poses``). The source and the counts are logged once per bag.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from dasp_core import bagio
from dasp_core.data.augment import fit_clip
from dasp_core.data.robotcar import euler_to_so3, interpolate_poses, quaternion_to_so3
from dasp_core.data.folder import (BrightnessRule, Calibration, SampleError, Undistorter,
                                   calibration_from_dict, clip_dt, median_luminance,
                                   read_calibration, select_moving, thumbnail)
from dasp_core.data.sample import DOMAINS, Clip
from dasp_core.errors import ConfigError, DatasetError, check_choice, check_range

log = logging.getLogger(__name__)

__all__ = ["IMAGE_TYPES", "CAMERA_INFO_TYPE", "ODOMETRY_TYPE", "TF_TYPE", "RosbagClipDataset",
           "camera_extrinsic_matrix", "PoseTrack", "CameraMotion"]

PathLike = Union[str, os.PathLike]

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
ODOMETRY_TYPE = "nav_msgs/msg/Odometry"
TF_TYPE = "tf2_msgs/msg/TFMessage"
_DEPTH_ENCODINGS = ("32FC1", "16UC1", "mono16")
_THUMB_W = 64


# ----------------------------------------------------------------------------- message helpers

def _stamp_s(msg: Any) -> Optional[float]:
    """Header stamp in seconds, or None when the message has none or it is zero."""
    header = getattr(msg, "header", None)
    st = getattr(header, "stamp", None)
    if st is None:
        return None
    t = bagio.stamp_to_ns(st) * 1e-9
    return t if t > 0 else None


def _decode_rgb(msg: Any, msgtype: str, topic: str, index: int, where: str) -> np.ndarray:
    """Image/CompressedImage → ``uint8 [H, W, 3]`` RGB; :class:`SampleError` when impossible."""
    try:
        if msgtype.endswith("CompressedImage"):
            return bagio.compressed_to_rgb(msg, topic, index)
        return bagio.image_to_rgb(msg, topic, index)
    except bagio.BagFormatError as exc:
        raise SampleError(where, str(exc)) from exc


def _decode_thumb(msg: Any, msgtype: str, topic: str, index: int, where: str) -> np.ndarray:
    """Grey thumbnail for the motion/brightness tests; JPEG/PNG decoded at 1/4 size directly."""
    if msgtype.endswith("CompressedImage"):
        data = np.asarray(msg.data, np.uint8).reshape(-1)
        small = cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_4) if data.size else None
        if small is not None:
            return thumbnail(small, _THUMB_W)
    return thumbnail(_decode_rgb(msg, msgtype, topic, index, where), _THUMB_W)


def _decode_depth(msg: Any, topic: str, where: str) -> np.ndarray:
    """Depth Image (32FC1 metres / 16UC1 millimetres) → ``float32 [H, W]`` metres, 0 invalid."""
    try:
        d = bagio.image_to_depth(msg, topic)
    except bagio.BagFormatError as exc:
        raise SampleError(where, str(exc)) from exc
    return np.nan_to_num(d, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def _camera_info_calibration(msg: Any, topic: str, where: str) -> Calibration:
    """CameraInfo → :class:`Calibration` (all-zero distortion means none)."""
    try:
        cam = bagio.camera_info_to_model(msg, topic, 0)
    except bagio.BagFormatError as exc:
        raise DatasetError(f"{where}: {exc}; set intrinsics instead") from exc
    model = cam.distortion_model or "plumb_bob"
    has_d = cam.D.size > 0 and bool(np.any(cam.D != 0))
    return calibration_from_dict(
        {"K": cam.K.tolist(), "width": cam.width, "height": cam.height,
         "D": cam.D.tolist() if has_d else None,
         "distortion_model": model if has_d else "none"}, source=where)


# ----------------------------------------------------------------------------- camera motion

def camera_extrinsic_matrix(value: Any, key: str = "camera_extrinsic") -> np.ndarray:
    """A camera extrinsic from a config → ``T_base_cam`` float64 ``[4, 4]``.

    ``T_base_cam`` maps camera (REP 103 optical frame: x right, y down, z forward) coordinates
    into the robot base frame, i.e. the tf transform with parent = base, child = camera (what
    ``static_transform_publisher --frame-id base_link --child-frame-id camera_optical_frame``
    publishes). Accepted forms:

    * a 4x4 matrix (nested lists) or 16 numbers row-major;
    * ``{xyz: [x, y, z], quaternion: [qx, qy, qz, qw]}`` (metres; ROS order, w last);
    * ``{xyz: [x, y, z], rpy: [roll, pitch, yaw]}`` (radians, ``R = Rz(yaw) Ry(pitch) Rx(roll)``
      as in tf2).

    Raises:
        ConfigError: anything else, naming ``key`` (non-finite numbers, a last row other than
            ``0 0 0 1``, a rotation that is not orthonormal with determinant +1, a zero
            quaternion).
    """
    forms = ("a 4x4 matrix or 16 numbers (row-major), {xyz: [x, y, z], quaternion: "
             "[qx, qy, qz, qw]} or {xyz: [x, y, z], rpy: [roll, pitch, yaw]} (metres, radians)")

    def numbers(v: Any, n: int, what: str) -> np.ndarray:
        try:
            a = np.asarray(v, np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}.{what}", v, f"{n} numbers") from None
        if a.size != n or not np.all(np.isfinite(a)):
            raise ConfigError(f"{key}.{what}", v, f"{n} finite numbers")
        return a

    T = np.eye(4)
    if isinstance(value, Mapping):
        extra = set(value) - {"xyz", "quaternion", "rpy"}
        if extra or "xyz" not in value or ("quaternion" in value) == ("rpy" in value):
            raise ConfigError(key, dict(value), forms)
        T[:3, 3] = numbers(value["xyz"], 3, "xyz")
        if "quaternion" in value:
            q = numbers(value["quaternion"], 4, "quaternion")
            if np.linalg.norm(q) < 1e-9:
                raise ConfigError(f"{key}.quaternion", value["quaternion"],
                                  "a non-zero quaternion [qx, qy, qz, qw]")
            T[:3, :3] = bagio.quaternion_to_matrix(*q)
        else:
            T[:3, :3] = euler_to_so3(numbers(value["rpy"], 3, "rpy"))
        return T
    try:
        a = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        raise ConfigError(key, value, forms) from None
    if a.size != 16 or a.ndim not in (1, 2) or (a.ndim == 2 and a.shape != (4, 4)):
        raise ConfigError(key, value, forms)
    T = a.reshape(4, 4)
    R = T[:3, :3]
    if not np.all(np.isfinite(T)) or not np.allclose(T[3], (0, 0, 0, 1), atol=1e-9):
        raise ConfigError(key, value, "a rigid transform: finite, last row 0 0 0 1")
    if not np.allclose(R.T @ R, np.eye(3), atol=1e-5) or np.linalg.det(R) <= 0:
        raise ConfigError(key, value, "a rigid transform: the top-left 3x3 block a rotation "
                                      "(orthonormal, determinant +1)")
    return T.copy()


@dataclass
class PoseTrack:
    """Poses of a moving frame in a fixed frame (e.g. ``base_link`` in ``odom``), to be
    interpolated at image times.

    Attributes:
        t_ns: int64 ``[N]`` strictly increasing times (ns).
        T: float64 ``[N, 4, 4]`` pose at each time (moving frame → fixed frame).
        seg: int64 ``[N]`` segment of each sample: never interpolated across.
    """

    t_ns: np.ndarray
    T: np.ndarray
    seg: np.ndarray

    @classmethod
    def build(cls, t_ns: Sequence[int], T: np.ndarray, max_gap_s: float) -> "PoseTrack":
        """Sort by time (stable), keep the last sample of equal times, and start a new segment
        after a gap longer than ``max_gap_s`` (a dropout or a restart of the odometry)."""
        t = np.asarray(t_ns, np.int64)
        T = np.asarray(T, np.float64).reshape(-1, 4, 4)
        order = np.argsort(t, kind="stable")
        t, T = t[order], T[order]
        last = np.append(t[1:] != t[:-1], True)  # keep the last of equal times
        t, T = t[last], T[last]
        brk = np.diff(t) > int(round(max_gap_s * 1e9))
        seg = np.concatenate([[0], np.cumsum(brk)]).astype(np.int64)
        return cls(t, T, seg)

    def __len__(self) -> int:
        return int(self.t_ns.size)

    def at(self, q_ns: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Poses at ``q_ns`` (int64 ``[M]``): slerp rotation, linear translation.

        Returns ``(T [M, 4, 4], valid [M])``; ``valid`` is False before the first sample,
        after the last, and between two samples of different segments.
        """
        q = np.asarray(q_ns, np.int64)
        n = self.t_ns.size
        if n == 0:
            return np.tile(np.eye(4), (q.size, 1, 1)), np.zeros(q.size, bool)
        t0 = self.t_ns[0]  # relative times keep nanoseconds exact in float64
        T, valid = interpolate_poses((self.t_ns - t0).astype(np.float64), self.T,
                                     (q - t0).astype(np.float64))
        lo = np.searchsorted(self.t_ns, q, side="right") - 1
        lo_c, hi_c = np.clip(lo, 0, n - 1), np.clip(lo + 1, 0, n - 1)
        exact = (lo >= 0) & (self.t_ns[lo_c] == q)
        same = (lo >= 0) & (lo + 1 < n) & (self.seg[lo_c] == self.seg[hi_c])
        return T, valid & (exact | same)


def _check_optical(bag: str, frame: str, is_camera: bool) -> None:
    """Warn when the camera frame is not named like an optical frame: REP 103 puts images in
    the optical frame (z forward, x right, y down), but some drivers stamp the x-forward body
    frame, which would turn every pose by 90 degrees without any error."""
    if is_camera and frame and "optical" not in frame.lower():
        log.warning("bag %s: the camera frame %r is not named like an optical frame; poses "
                    "assume it is the REP 103 optical frame (z forward, x right, y down). If it "
                    "is the x-forward body frame, set camera_frame to the optical one.", bag,
                    frame)


class _NoMotion(Exception):
    """A bag has no source of camera motion (its clips get no poses)."""


def _per_version(tree: bagio.TransformTree, bag_times: np.ndarray, fixed) -> np.ndarray:
    """``fixed(t)`` (a 4x4 from fixed tf links as they were at bag time ``t``) for every time
    in ``bag_times``: evaluated once per span between ``/tf_static`` changes. ``[N, 4, 4]``."""
    version = np.searchsorted(tree.change_times(), bag_times, side="right")
    out = np.empty((bag_times.size, 4, 4))
    for v in np.unique(version):
        sel = version == v
        out[sel] = fixed(int(bag_times[np.argmax(sel)]))
    return out


@dataclass
class _OdometryLog:
    """The Odometry poses met while indexing (header stamps, bag times, frames, poses)."""

    stamps: List[int] = field(default_factory=list)
    bag_times: List[int] = field(default_factory=list)
    frames: List[Tuple[str, str]] = field(default_factory=list)
    poses: List[np.ndarray] = field(default_factory=list)

    def add(self, od: bagio.OdometryData, bag_time_ns: int) -> None:
        self.stamps.append(int(od.stamp_ns))
        self.bag_times.append(int(bag_time_ns))
        self.frames.append((od.frame_id.lstrip("/"), od.child_frame_id.lstrip("/")))
        self.poses.append(od.T)


@dataclass
class CameraMotion:
    """Camera poses of every indexed image of a bag, and where they came from.

    Attributes:
        T_world_cam: float64 ``[N, 4, 4]`` camera (optical frame) → fixed frame per image.
        valid: bool ``[N]``: False where the image time is outside the motion source's time
            range or falls in a gap of it.
        source: one line for the log (topic, frames, extrinsic, time base).
    """

    T_world_cam: np.ndarray
    valid: np.ndarray
    source: str


# ----------------------------------------------------------------------------- bag access

class _Bag:
    """A :class:`dasp_core.bagio.BagReader` opened on first use and reopened after a fork
    (each DataLoader worker gets its own file handles)."""

    def __init__(self, path: str):
        self.path = path
        self._reader: Optional[bagio.BagReader] = None
        self._pid: Optional[int] = None

    def reader(self) -> bagio.BagReader:
        if self._reader is None or self._pid != os.getpid():
            self._reader = bagio.BagReader(self.path, errors="raise").__enter__()
            self._pid = os.getpid()
        return self._reader

    @property
    def topics(self) -> Dict[str, Tuple[str, int]]:
        return self.reader().topics

    def first(self, topic: str) -> Any:
        """First deserialised message of ``topic`` (None when it has none or it is unreadable)."""
        try:
            for _t, _m, _ts, msg in self.reader().messages([topic]):
                return msg
        except bagio.BagFormatError as exc:
            log.warning("bag %s: %s", self.path, exc)
        return None

    def read_at(self, topic: str, t_ns: int, ordinal: int, where: str) -> Tuple[Any, str]:
        """The ``ordinal``-th message of ``topic`` with bag time ``t_ns`` and its type."""
        k = 0
        try:
            for _t, msgtype, ts, msg in self.reader().messages([topic], t_ns, t_ns + 1):
                if ts != t_ns:
                    continue
                if k == ordinal:
                    return msg, msgtype
                k += 1
        except bagio.BagFormatError as exc:
            raise SampleError(where, str(exc)) from exc
        raise SampleError(where, "message not found in the bag (bag changed since indexing?)")

    def close(self) -> None:
        """Release the file (reopened on the next read); keeps many bags from holding handles."""
        if self._reader is not None and self._pid == os.getpid():
            self._reader.__exit__(None, None, None)
        self._reader = None

    def __getstate__(self) -> Dict[str, Any]:
        return {"path": self.path, "_reader": None, "_pid": None}


@dataclass
class _BagIndex:
    path: str
    name: str
    image_topic: str
    image_type: str
    times: np.ndarray                 # bag time (ns) of every image message
    ordinal: np.ndarray               # index among messages with the same bag time
    msg_number: np.ndarray            # position of the message on its topic (for messages)
    stamps: np.ndarray                # header stamp (s), bag time where missing
    calib: Calibration
    odom_t: Optional[np.ndarray] = None
    odom_speed: Optional[np.ndarray] = None
    depth_topic: Optional[str] = None
    depth_times: Optional[np.ndarray] = None
    frame_domain: Dict[int, str] = field(default_factory=dict)
    motion: Optional[CameraMotion] = None   # camera poses per image (None: no motion source)
    motion_note: str = ""                   # why there is none
    motion_failed: bool = False             # a motion source exists but cannot be used
    bag: Optional[_Bag] = None
    undistorter: Optional[Undistorter] = None
    thumbs: Optional[List[np.ndarray]] = None   # only while the clips are being formed
    n_bad_indexed: int = 0


class RosbagClipDataset:
    """Clips from one or more rosbag2 recordings (torch-free; ``__getitem__ -> Clip``).

    Args:
        paths: a bag folder/file or a list of them.
        image_topic: the camera topic; None picks the only Image/CompressedImage colour topic.
        camera_info_topic: None picks the CameraInfo topic in the image topic's namespace
            (or the only one).
        intrinsics: calibration dict (``K`` or ``fx, fy, cx, cy``, ``width, height``, optional
            ``D``) or a calibration/camera_info YAML path; used when the bag has no CameraInfo
            (and overrides it when given).
        odom_topic: ``"auto"`` (the only Odometry topic, if any), a topic, or None (ignore).
        depth_topic: optional ground-truth depth topic (32FC1 metres or 16UC1 millimetres),
            registered to the camera; matched by bag time within ``sync_tolerance_s``.
        offsets: clip frame offsets, e.g. (-1, 0, 1) (positions among kept frames).
        domain: ``"day"``, ``"night"`` or ``"auto"`` (brightness rule, logged per window).
        night_threshold: median grey level (0..255) below which ``auto`` says night.
        brightness_window_s: length of the stretches classified by the brightness rule.
        motion_test: ``"auto"``, ``"image"``, ``"odom"`` or ``"none"``.
        motion_threshold: grey levels for the image motion test.
        min_speed: m/s for the odom motion test.
        max_gap_s: a larger gap between consecutive (kept) frames splits the recording.
        frame_stride: use every n-th image message (e.g. 3 for a 30 fps camera).
        size_hw, resize_mode: optional output size (see :func:`dasp_core.data.augment.fit_clip`).
        undistort: remove the CameraInfo distortion.
        sync_tolerance_s: depth ↔ image matching tolerance.
        camera_extrinsic: ``T_base_cam`` (camera optical frame → ``base_frame``): a 4x4
            matrix, 16 numbers, ``{xyz, quaternion: [qx, qy, qz, qw]}`` or ``{xyz, rpy}``
            (see :func:`camera_extrinsic_matrix`); None looks the camera up in the bag's tf
            tree.
        camera_frame: the camera's optical frame in the tf tree; None uses the images'
            ``header.frame_id``.
        base_frame: the frame ``camera_extrinsic`` is relative to; None means the Odometry
            ``child_frame_id`` (``base_link`` for ``/tf`` motion). When it differs from the
            Odometry child, the two are chained through tf.
        tf_fixed_frame: the fixed frame of ``/tf`` motion (REP 105 ``odom``: continuous).
        require_poses: drop clips without camera poses (for ``pose.source: odometry``);
            a bag with no motion source then gives no clips.
    """

    def __init__(self, paths: Union[PathLike, Sequence[PathLike]],
                 image_topic: Optional[str] = None, camera_info_topic: Optional[str] = None,
                 intrinsics: Union[Mapping[str, Any], PathLike, None] = None,
                 odom_topic: Optional[str] = "auto", depth_topic: Optional[str] = None,
                 offsets: Sequence[int] = (-1, 0, 1), domain: str = "auto",
                 night_threshold: float = 60.0, brightness_window_s: float = 60.0,
                 motion_test: str = "auto", motion_threshold: float = 1.0,
                 min_speed: float = 0.3, max_gap_s: float = 1.0, frame_stride: int = 1,
                 size_hw: Optional[Tuple[int, int]] = None, resize_mode: str = "center_crop",
                 undistort: bool = True, sync_tolerance_s: float = 0.02,
                 camera_extrinsic: Any = None, camera_frame: Optional[str] = None,
                 base_frame: Optional[str] = None, tf_fixed_frame: str = "odom",
                 require_poses: bool = False):
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.paths = [os.fspath(p) for p in paths]
        if not self.paths:
            raise ConfigError("paths", paths, "one or more rosbag2 folders or files")
        check_choice("domain", domain, DOMAINS + ("auto",))
        check_choice("motion_test", motion_test, ("auto", "image", "odom", "none"))
        check_choice("resize_mode", resize_mode, ("center_crop", "stretch"))
        check_range("motion_threshold", motion_threshold, 0.0)
        check_range("min_speed", min_speed, 0.0)
        check_range("max_gap_s", max_gap_s, 0.0, lo_open=True)
        check_range("brightness_window_s", brightness_window_s, 0.0, lo_open=True)
        check_range("sync_tolerance_s", sync_tolerance_s, 0.0)
        if int(frame_stride) < 1:
            raise ConfigError("frame_stride", frame_stride, "an integer >= 1")
        self.offsets = tuple(int(o) for o in offsets)
        if 0 not in self.offsets:
            raise ConfigError("offsets", self.offsets, "a tuple containing 0 (the target)")
        self.image_topic = image_topic
        self.camera_info_topic = camera_info_topic
        self.odom_topic = odom_topic
        self.depth_topic = depth_topic
        self.domain = domain
        self.rule = BrightnessRule(night_threshold)
        self.window_s = float(brightness_window_s)
        self.motion_test = motion_test
        self.motion_threshold = float(motion_threshold)
        self.min_speed = float(min_speed)
        self.max_gap_s = float(max_gap_s)
        self.frame_stride = int(frame_stride)
        self.size_hw = None if size_hw is None else (int(size_hw[0]), int(size_hw[1]))
        self.resize_mode = resize_mode
        self.undistort = undistort
        self.sync_tol_ns = int(round(sync_tolerance_s * 1e9))
        self.extrinsic = None if camera_extrinsic is None else \
            camera_extrinsic_matrix(camera_extrinsic)
        for key, frame in (("camera_frame", camera_frame), ("base_frame", base_frame)):
            if frame is not None and (not isinstance(frame, str) or not frame.strip("/")):
                raise ConfigError(key, frame, "a tf frame name, or null")
        self.camera_frame = camera_frame.strip("/") if camera_frame else None
        self.base_frame = base_frame.strip("/") if base_frame else None
        if not isinstance(tf_fixed_frame, str) or not tf_fixed_frame.strip("/"):
            raise ConfigError("tf_fixed_frame", tf_fixed_frame, "a frame name such as 'odom'")
        self.tf_fixed_frame = tf_fixed_frame.strip("/")
        self.require_poses = bool(require_poses)
        self.user_calib: Optional[Calibration] = None
        if isinstance(intrinsics, Mapping):
            self.user_calib = calibration_from_dict(intrinsics, source="intrinsics")
        elif intrinsics is not None:
            self.user_calib = read_calibration(intrinsics)

        self.bags: List[_BagIndex] = []
        self.items: List[Tuple[int, Tuple[int, ...]]] = []
        self.bad_bags: List[Tuple[str, str]] = []
        for path in self.paths:
            try:
                idx = self._index_bag(path)
            except DatasetError as exc:
                if len(self.paths) == 1:
                    raise
                log.error("skipping bag %s: %s", path, exc)
                self.bad_bags.append((path, str(exc)))
                continue
            bi = len(self.bags)
            self.bags.append(idx)
            clips = self._clips(idx)
            clips = self._log_motion(idx, clips)
            self.items.extend((bi, c) for c in clips)
            log.info("bag %s: %d image messages on %s, %d clips", idx.name, idx.times.size,
                     idx.image_topic, len(clips))
        if not self.items:
            reasons = "; ".join(f"{p}: {r}" for p, r in self.bad_bags)
            raise DatasetError(f"rosbag: no clips of {len(self.offsets)} frames from "
                               f"{self.paths}" + (f" ({reasons})" if reasons else ""))

    # -- indexing
    def _open(self, path: str) -> Tuple[_Bag, Dict[str, str]]:
        """Open a bag (DatasetError naming it when it is missing or not a bag) → topic types."""
        bag = _Bag(path)
        topics = bag.topics  # BagReader raises DatasetError for a missing or unreadable bag
        return bag, {t: m for t, (m, _n) in topics.items()}

    def _pick_topics(self, path: str, bag: _Bag, types: Dict[str, str]
                     ) -> Tuple[str, str, Optional[str], Optional[str], List[str]]:
        listing = ", ".join(f"{t} [{m}]" for t, m in sorted(types.items()))
        if self.image_topic is not None:
            if types.get(self.image_topic) not in IMAGE_TYPES:
                raise DatasetError(f"bag {path!r}: image_topic {self.image_topic!r} is not an "
                                   f"Image/CompressedImage topic; topics: {listing}")
            image_topic = self.image_topic
        else:
            cands = []
            for t, m in sorted(types.items()):
                if m not in IMAGE_TYPES or t == self.depth_topic:
                    continue
                if m.endswith("/Image"):
                    msg = bag.first(t)
                    if msg is not None and getattr(msg, "encoding", "") in _DEPTH_ENCODINGS:
                        continue  # a depth image, not a camera
                cands.append(t)
            if len(cands) > 1:
                # e.g. a camera plus mask/overlay images: the one named like an image wins
                named = [t for t in cands if "image" in t.lower()]
                cands = named if len(named) == 1 else cands
            if len(cands) != 1:
                raise DatasetError(
                    f"bag {path!r}: {'no' if not cands else 'several'} camera image topics "
                    f"({', '.join(cands) or 'none'}); set image_topic. Topics: {listing}")
            image_topic = cands[0]
        info_topic = self.camera_info_topic
        infos = [t for t, m in types.items() if m == CAMERA_INFO_TYPE]
        if info_topic is not None:
            if types.get(info_topic) != CAMERA_INFO_TYPE:
                raise DatasetError(f"bag {path!r}: camera_info_topic {info_topic!r} is not a "
                                   f"CameraInfo topic; topics: {listing}")
        else:
            ns = image_topic.rstrip("/").rsplit("/", 1)[0]
            if ns.endswith("/image_raw") or ns.endswith("/image_rect") or ns.endswith("/image"):
                ns = ns.rsplit("/", 1)[0]  # .../image_raw/compressed → camera namespace
            same = [t for t in infos if t.rsplit("/", 1)[0] == ns]
            info_topic = same[0] if len(same) == 1 else infos[0] if len(infos) == 1 else None
        odom = None
        if self.odom_topic == "auto":
            odoms = [t for t, m in types.items() if m == ODOMETRY_TYPE]
            odom = odoms[0] if len(odoms) == 1 else None
            if len(odoms) > 1:
                log.warning("bag %s: several Odometry topics %s; set odom_topic to use one",
                            path, odoms)
        elif self.odom_topic is not None:
            if types.get(self.odom_topic) != ODOMETRY_TYPE:
                raise DatasetError(f"bag {path!r}: odom_topic {self.odom_topic!r} is not a "
                                   f"nav_msgs/Odometry topic; topics: {listing}")
            odom = self.odom_topic
        if self.depth_topic is not None and types.get(self.depth_topic) != IMAGE_TYPES[0]:
            raise DatasetError(f"bag {path!r}: depth_topic {self.depth_topic!r} is not an "
                               f"Image topic; topics: {listing}")
        # tf topics (namespaced robots record e.g. /robot1/tf); skipped when nothing needs them
        tf_topics = [] if (odom is not None and self.extrinsic is not None
                           and self.base_frame is None) else sorted(
            t for t, m in types.items() if m == TF_TYPE and t.rstrip("/").rsplit("/", 1)[-1]
            in ("tf", "tf_static"))
        return image_topic, types[image_topic], info_topic, odom, tf_topics

    def _index_bag(self, path: str) -> _BagIndex:
        from tqdm import tqdm

        bag, types = self._open(path)
        name = os.path.basename(os.path.normpath(path))
        image_topic, image_type, info_topic, odom_topic, tf_topics = \
            self._pick_topics(path, bag, types)

        calib = self.user_calib
        if calib is None:
            if info_topic is None:
                raise DatasetError(
                    f"bag {path!r} has no CameraInfo topic for {image_topic} and no intrinsics "
                    f"were given; set intrinsics: {{fx, fy, cx, cy, width, height}} or a "
                    f"camera_info YAML file")
            msg = bag.first(info_topic)
            if msg is None:
                raise DatasetError(f"bag {path!r}: no readable message on {info_topic}; set "
                                   f"intrinsics")
            calib = _camera_info_calibration(msg, info_topic, f"{path}:{info_topic}")

        need_thumbs = self.domain == "auto" or self.motion_test == "image" or (
            self.motion_test == "auto" and odom_topic is None)
        topics = [image_topic] + ([odom_topic] if odom_topic else []) + \
                 ([self.depth_topic] if self.depth_topic else []) + tf_topics
        counts = bag.topics
        n_img = counts[image_topic][1]
        times: List[int] = []
        stamps: List[float] = []
        thumbs: List[np.ndarray] = []
        odom_t: List[float] = []
        odom_v: List[float] = []
        depth_t: List[int] = []
        numbers: List[int] = []
        header_ns: List[int] = []        # image header stamps, 0 where missing
        image_frame = ""
        odom_log = _OdometryLog()
        tree = bagio.TransformTree()
        n_seen = 0
        bad = 0
        # A separate reader that skips (and counts) undecodable messages instead of raising.
        with bagio.BagReader(path, errors="skip") as reader:
            for topic, msgtype, t, msg in tqdm(
                    reader.messages(topics), total=sum(counts[x][1] for x in topics),
                    desc=f"indexing {name}", unit="msg", leave=False, disable=n_img < 500):
                if topic == image_topic:
                    i = n_seen
                    n_seen += 1
                    if i % self.frame_stride:
                        continue
                    if need_thumbs:
                        where = f"{path}:{image_topic}@{i}"
                        try:
                            thumbs.append(_decode_thumb(msg, msgtype, topic, i, where))
                        except SampleError as exc:
                            bad += 1
                            log.warning("skipping bad image while indexing: %s", exc)
                            continue
                    st = _stamp_s(msg)
                    stamps.append(st if st is not None else t * 1e-9)
                    header_ns.append(bagio.stamp_to_ns(msg.header.stamp) if st is not None
                                     else 0)
                    image_frame = image_frame or str(msg.header.frame_id)
                    times.append(t)
                    numbers.append(i)
                elif topic == odom_topic:
                    try:
                        od = bagio.odometry_to_numpy(msg, topic)
                    except bagio.BagFormatError as exc:
                        log.warning("bag %s: %s; skipped", name, exc)
                        continue
                    odom_v.append(od.speed)
                    odom_t.append(t * 1e-9)
                    odom_log.add(od, t)
                elif topic in tf_topics:
                    tree.add_message(msg, t, topic.rstrip("/").endswith("tf_static"))
                else:
                    depth_t.append(t)
            bad += reader.n_errors
        if bad:
            log.warning("bag %s: %d unreadable messages skipped while indexing", name, bad)
        if not times:
            raise DatasetError(f"bag {path!r}: no readable image messages on {image_topic}")
        t_arr = np.asarray(times, np.int64)
        order = np.argsort(t_arr, kind="stable")
        t_arr = t_arr[order]
        ordinal = np.zeros(t_arr.size, np.int64)
        for k in range(1, t_arr.size):
            if t_arr[k] == t_arr[k - 1]:
                ordinal[k] = ordinal[k - 1] + 1
        idx = _BagIndex(path=path, name=name, image_topic=image_topic, image_type=image_type,
                        times=t_arr, ordinal=ordinal,
                        msg_number=np.asarray(numbers, np.int64)[order],
                        stamps=np.asarray(stamps, np.float64)[order], calib=calib,
                        depth_topic=self.depth_topic,
                        depth_times=(np.sort(np.asarray(depth_t, np.int64))
                                     if self.depth_topic else None),
                        bag=bag, n_bad_indexed=bad)
        if odom_t:
            o = np.argsort(odom_t, kind="stable")
            idx.odom_t = np.asarray(odom_t)[o]
            idx.odom_speed = np.asarray(odom_v)[o]
        idx.thumbs = [thumbs[k] for k in order] if need_thumbs else None
        if tree.n_bad:
            log.warning("bag %s: %d tf transforms with a zero quaternion skipped", name,
                        tree.n_bad)
        if tree.n_reparented:
            log.warning("bag %s: %d tf transforms gave a frame a second parent; ignored (a frame "
                        "has one parent in tf)", name, tree.n_reparented)
        try:
            idx.motion = self._camera_motion(
                idx, odom_topic, odom_log, tree, image_frame,
                np.asarray(header_ns, np.int64)[order])
        except (bagio.TransformLookupError, _NoMotion) as exc:
            idx.motion_note = str(exc)
            idx.motion_failed = isinstance(exc, bagio.TransformLookupError)
        bag.close()
        return idx

    # -- clip formation
    def _segments(self, t_s: np.ndarray) -> List[np.ndarray]:
        if t_s.size == 0:
            return []
        breaks = np.nonzero(np.diff(t_s) > self.max_gap_s)[0] + 1
        return [s for s in np.split(np.arange(t_s.size), breaks) if s.size]

    def _clips(self, idx: _BagIndex) -> List[Tuple[int, ...]]:
        thumbs = idx.thumbs
        t_s = idx.times * 1e-9
        test = self.motion_test
        if test == "auto":
            test = "odom" if idx.odom_t is not None else "image"
        if test == "odom" and idx.odom_t is None:
            raise DatasetError(f"bag {idx.path!r}: motion_test='odom' but no Odometry topic")
        lo, hi = -min(self.offsets), max(self.offsets)
        clips: List[Tuple[int, ...]] = []
        n_kept = 0
        for si, seg in enumerate(self._segments(t_s)):
            if self.domain == "auto":
                self._classify_segment(idx, si, seg, thumbs)
            else:
                idx.frame_domain.update({int(i): self.domain for i in seg})
            if test == "image":
                kept = seg[select_moving([thumbs[i] for i in seg], self.motion_threshold)]
            elif test == "odom":
                v = np.interp(t_s[seg], idx.odom_t, idx.odom_speed)
                kept = seg[v >= self.min_speed]
            else:
                kept = seg
            n_kept += kept.size
            # kept frames far apart in time (a long stop) must not be in one clip
            for run in self._segments(t_s[kept]):
                frames = kept[run]
                for j in range(lo, frames.size - hi):
                    clips.append(tuple(int(frames[j + o]) for o in self.offsets))
        log.info("bag %s: kept %d of %d frames (motion test %s%s)", idx.name, n_kept,
                 idx.times.size, test,
                 f", threshold {self.motion_threshold} grey levels" if test == "image"
                 else f", min speed {self.min_speed} m/s" if test == "odom" else "")
        idx.thumbs = None  # free memory: the index is built
        return clips

    def _camera_motion(self, idx: _BagIndex, odom_topic: Optional[str], odom: _OdometryLog,
                       tree: bagio.TransformTree, image_frame: str, header_ns: np.ndarray
                       ) -> CameraMotion:
        """Camera pose of every indexed image (see the module docstring, step 6).

        Raises:
            _NoMotion: the bag has no motion source (no Odometry, no /tf motion).
            dasp_core.bagio.TransformLookupError: it has one, but the camera cannot be placed
                on it (extrinsic not found, camera on a moving joint, frames not named).
        """
        cam = (self.camera_frame or image_frame).lstrip("/")
        stamped = bool(header_ns.size) and bool(np.all(header_ns > 0))

        def times(stamps: np.ndarray, bag_times: np.ndarray) -> Tuple[np.ndarray, np.ndarray,
                                                                        str]:
            """Motion and image times on one clock: header stamps when all have one."""
            if stamped and np.all(stamps > 0):
                return stamps, header_ns, "header stamps"
            return bag_times, idx.times, "bag times"

        if odom_topic is not None and odom.poses:
            fixed, base = Counter(odom.frames).most_common(1)[0][0]
            keep = [i for i, f in enumerate(odom.frames) if f == (fixed, base)]
            if len(keep) < len(odom.frames):
                log.warning("bag %s: %d of %d Odometry messages name frames other than %s -> "
                            "%s; not used for poses", idx.name, len(odom.frames) - len(keep),
                            len(odom.frames), fixed or "''", base or "''")
            t_m, t_q, clock = times(np.asarray(odom.stamps, np.int64)[keep],
                                    np.asarray(odom.bag_times, np.int64)[keep])
            track = PoseTrack.build(t_m, np.stack([odom.poses[i] for i in keep]), self.max_gap_s)
            if self.extrinsic is not None and self.base_frame in (None, base):
                T_bc, how = np.broadcast_to(self.extrinsic, (idx.times.size, 4, 4)), \
                    "camera_extrinsic"
            elif self.extrinsic is not None:
                T_bb, how = self._fixed_chain(idx, tree, base, self.base_frame)
                T_bc, how = T_bb @ self.extrinsic, f"{how} and camera_extrinsic"
            elif not base:
                raise bagio.TransformLookupError(
                    f"Odometry {odom_topic} has an empty child_frame_id, so the camera cannot "
                    f"be placed on it; set camera_extrinsic (T_base_cam)")
            else:
                T_bc, how = self._fixed_chain(idx, tree, base, cam)
            T_wb, valid = track.at(t_q)
            return CameraMotion(T_wb @ T_bc, valid, f"Odometry {odom_topic} ({fixed or '?'} -> "
                                f"{base or '?'}, {len(track)} poses, {clock}) with {how}")

        fixed = self.tf_fixed_frame
        if not len(tree) or fixed not in tree.frames():
            raise _NoMotion("no Odometry topic" + (f"; /tf has no {fixed!r} frame "
                            f"(tf_fixed_frame); frames: {', '.join(tree.frames())}"
                            if len(tree) else " and no /tf"))
        frame = (self.base_frame or "base_link") if self.extrinsic is not None else cam
        _check_optical(idx.name, frame, self.extrinsic is None)
        chain = tree.ancestors(frame)
        if not frame or fixed not in chain:
            raise bagio.TransformLookupError(
                f"no Odometry topic, and {frame or 'the camera (no image frame_id)'!r} is not "
                f"below {fixed!r} in the tf tree ({tree.describe()}); set camera_frame, "
                f"base_frame + camera_extrinsic, or tf_fixed_frame")
        links = chain[:chain.index(fixed)]
        if not any(tree.is_dynamic(c) for c in links):
            raise _NoMotion(f"no Odometry topic, and no /tf link between {fixed!r} and "
                            f"{frame!r} moves")
        T = np.tile(np.eye(4), (idx.times.size, 1, 1))
        valid = np.ones(idx.times.size, bool)
        clocks = set()
        for child in reversed(links):  # fixed <- ... <- frame
            if tree.is_dynamic(child):
                st, bt, xyzq = tree.samples(child)
                Ts = np.tile(np.eye(4), (st.size, 1, 1))
                Ts[:, :3, :3] = quaternion_to_so3(xyzq[:, [6, 3, 4, 5]])  # (w, x, y, z) there
                Ts[:, :3, 3] = xyzq[:, :3]
                t_m, t_q, clock = times(st, bt)
                T_c, ok = PoseTrack.build(t_m, Ts, self.max_gap_s).at(t_q)
                valid &= ok
                clocks.add(clock)
            else:
                T_c = _per_version(tree, idx.times, lambda t, c=child: tree.fixed(c, t))
            T = T @ T_c
        how = " -> ".join(reversed(chain[:chain.index(fixed) + 1]))
        if self.extrinsic is not None:
            T = T @ self.extrinsic
            how += f" with camera_extrinsic to {cam or 'the camera'}"
        return CameraMotion(T, valid, f"/tf {how} ({', '.join(sorted(clocks))})")

    def _fixed_chain(self, idx: _BagIndex, tree: bagio.TransformTree, base: str, cam: str
                     ) -> Tuple[np.ndarray, str]:
        """``T_base_cam`` per image (``[N, 4, 4]``) chained through fixed tf links, and a
        description of the chain."""
        if not cam:
            raise bagio.TransformLookupError(
                "the images have no header.frame_id; set camera_frame or camera_extrinsic")
        _check_optical(idx.name, cam, self.extrinsic is None)
        if not len(tree):
            raise bagio.TransformLookupError(
                f"no /tf_static or /tf in the bag to place the camera {cam!r} on {base!r}; "
                f"set camera_extrinsic (T_base_cam)")
        try:
            T = _per_version(tree, idx.times, lambda t: tree.lookup(base, cam, t))
        except bagio.TransformLookupError as exc:
            raise bagio.TransformLookupError(
                f"placing {cam!r} on {base!r}: {exc}; set camera_extrinsic (T_base_cam)"
                + ("" if self.extrinsic is None else " relative to the Odometry child frame")
            ) from None
        path = " -> ".join(tree.chain(base, cam))
        return T, f"extrinsic from tf ({path})"

    def _log_motion(self, idx: _BagIndex, clips: List[Tuple[int, ...]]
                    ) -> List[Tuple[int, ...]]:
        """Log the bag's motion source once, count clips without poses (dropped when
        ``require_poses``)."""
        m = idx.motion
        if m is None:
            level = logging.WARNING if idx.motion_failed or self.require_poses else logging.INFO
            log.log(level, "bag %s: no camera poses (%s); %s", idx.name, idx.motion_note,
                    "its clips are dropped (require_poses)" if self.require_poses else
                    "its clips cannot train with pose.source=odometry (PoseNet can)")
            return [] if self.require_poses else clips
        ok = [bool(np.all(m.valid[list(c)])) for c in clips]
        n_bad = len(clips) - sum(ok)
        log.info("bag %s: camera poses from %s; %d of %d clips have them%s", idx.name, m.source,
                 sum(ok), len(clips),
                 f" ({n_bad} with a frame outside the motion's time range or in a gap of it "
                 f"> max_gap_s {self.max_gap_s:g} s: "
                 f"{'dropped (require_poses)' if self.require_poses else 'no poses'})"
                 if n_bad else "")
        return [c for c, k in zip(clips, ok) if k] if self.require_poses else clips

    def _classify_segment(self, idx: _BagIndex, si: int, seg: np.ndarray, thumbs) -> None:
        t_s = idx.times[seg] * 1e-9
        win = np.floor((t_s - t_s[0]) / self.window_s).astype(np.int64)
        for w in np.unique(win):
            members = seg[win == w]
            lum = [median_luminance(thumbs[i]) for i in members]
            dom, value = self.rule.classify(lum)
            t0, t1 = t_s[win == w][0] - t_s[0], t_s[win == w][-1] - t_s[0]
            log.info("bag %s segment %d [%.1f-%.1f s]: median luminance %.1f (night below "
                     "%.1f) -> %s", idx.name, si, t0, t1, value, self.rule.night_threshold, dom)
            idx.frame_domain.update({int(i): dom for i in members})

    # -- dataset protocol
    def __len__(self) -> int:
        return len(self.items)

    def _frame(self, idx: _BagIndex, i: int) -> np.ndarray:
        n = int(idx.msg_number[i])
        where = f"{idx.path}:{idx.image_topic}@{n}"
        msg, msgtype = idx.bag.read_at(idx.image_topic, int(idx.times[i]), int(idx.ordinal[i]),
                                       where)
        return _decode_rgb(msg, msgtype, idx.image_topic, n, where)

    def _depth(self, idx: _BagIndex, i: int, shape: Tuple[int, int]) -> Optional[np.ndarray]:
        dt = idx.depth_times
        if dt is None or dt.size == 0:
            return None
        t = int(idx.times[i])
        j = int(np.clip(np.searchsorted(dt, t), 1, dt.size - 1)) if dt.size > 1 else 0
        j = j if dt.size == 1 or abs(dt[j] - t) <= abs(dt[j - 1] - t) else j - 1
        if abs(int(dt[j]) - t) > self.sync_tol_ns:
            return None
        where = f"{idx.path}:{idx.depth_topic}@{t}"
        msg, _ = idx.bag.read_at(idx.depth_topic, int(dt[j]), 0, where)
        d = _decode_depth(msg, idx.depth_topic, where)
        if d.shape != shape:
            raise SampleError(where, f"depth is {d.shape[1]}x{d.shape[0]} but the image is "
                                     f"{shape[1]}x{shape[0]}")
        return d

    def __getitem__(self, index: int) -> Clip:
        bi, frame_idx = self.items[index]
        idx = self.bags[bi]
        tgt = frame_idx[self.offsets.index(0)]
        source = f"rosbag:{idx.path}:{idx.image_topic}@{int(idx.msg_number[tgt])}"
        frames = [self._frame(idx, i) for i in frame_idx]
        if len({f.shape for f in frames}) != 1:
            raise SampleError(source, f"frames differ in size: {[f.shape for f in frames]}")
        H, W = frames[0].shape[:2]
        try:
            K = idx.calib.K_for_size(H, W)
        except DatasetError as exc:
            raise SampleError(source, str(exc)) from exc
        if self.undistort and idx.calib.has_distortion:
            if idx.undistorter is None or idx.undistorter.size != (H, W):
                idx.undistorter = Undistorter(idx.calib, H, W)
            frames = [idx.undistorter(f) for f in frames]
        depth = self._depth(idx, tgt, (H, W)) if idx.depth_topic else None
        speed = None
        if idx.odom_t is not None:
            speed = float(np.interp(idx.times[tgt] * 1e-9, idx.odom_t, idx.odom_speed))
        poses = None
        m = idx.motion
        if m is not None and bool(np.all(m.valid[list(frame_idx)])):
            # in the target camera's frame: exact float32 tensors whatever the odom origin
            poses = np.linalg.solve(m.T_world_cam[tgt], m.T_world_cam[list(frame_idx)])
        clip = Clip(frames=np.stack(frames), K=K, domain=idx.frame_domain.get(tgt, "day"),
                    offsets=self.offsets, depth=depth, speed=speed, poses=poses,
                    dt=clip_dt(idx.stamps[list(frame_idx)], self.offsets), source=source,
                    meta={"bag": idx.path, "topic": idx.image_topic,
                          "bag_time_ns": [int(idx.times[i]) for i in frame_idx]})
        if self.size_hw is not None:
            clip = fit_clip(clip, self.size_hw, self.resize_mode)
        return clip
