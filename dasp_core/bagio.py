"""rosbag2 reading and writing without ROS, and message ↔ numpy converters (via ``rosbags``).

Used by the synthetic bag writer, the rosbag clip reader, and the ROS side's bag tools. No ROS
installation is needed: messages are the ``rosbags`` typestore dataclasses (the ROS 2 Humble
definitions by default; sensor_msgs, nav_msgs, tf2_msgs and geometry_msgs are identical in
later distributions, type hashes included).

Reading::

    for topic, msgtype, t_ns, msg in read_messages("drive_bag", topics=["/camera/image_raw"]):
        rgb = image_to_rgb(msg, topic)

Writing::

    with BagWriter("out_bag", storage="mcap") as bag:
        bag.write("/camera/image_raw", numpy_to_image(rgb, "rgb8", t_ns, "camera"), t_ns)

Conventions (REP 118/117, sensor_msgs): ``Image.step`` is the row length in bytes (rows may be
padded), multi-byte encodings honour ``is_bigendian``; depth images are 32FC1 in metres with
NaN for invalid, or 16UC1 / mono16 in millimetres with 0 for invalid. The pixel decoding and
encoding are :mod:`dasp_core.image_msgs` (shared with the ROS node); the converters here raise
:class:`BagFormatError` naming the topic and message index and what is allowed.
"""

from __future__ import annotations

import logging
from array import array
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from dasp_core import image_msgs
from dasp_core.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

__all__ = [
    "BagFormatError", "IMAGE_ENCODINGS", "get_typestore", "stamp_to_ns", "make_header",
    "image_to_numpy", "image_to_rgb", "image_to_depth", "numpy_to_image",
    "compressed_to_rgb", "rgb_to_compressed", "CameraModel", "camera_info_to_model",
    "make_camera_info", "OdometryData", "odometry_to_numpy", "make_odometry", "TransformData",
    "tf_to_numpy", "make_tf_message", "TransformTree", "TransformLookupError",
    "matrix_to_quaternion", "quaternion_to_matrix",
    "BagWriter", "BagReader", "read_messages", "bag_topics", "bag_custom_data",
]

# The encodings bags are read and written with here (encoding → (numpy dtype, channels)); the
# layouts come from the shared table of :mod:`dasp_core.image_msgs`.
IMAGE_ENCODINGS: Dict[str, Tuple[np.dtype, int]] = {
    enc: (np.dtype(image_msgs.ENCODINGS[enc][0]), image_msgs.ENCODINGS[enc][1])
    for enc in ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1", "mono16", "16UC1", "32FC1")}
_COLOUR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1", "mono16")
COMPRESSED_FORMATS = image_msgs.COMPRESSED_FORMATS
STORAGES = ("mcap", "sqlite3")


class BagFormatError(DatasetError, ValueError):
    """A message in a bag cannot be converted (unknown encoding, wrong size, corrupt data)."""

    def __init__(self, topic: str, index: int, problem: str, allowed: str | None = None):
        where = f"topic {topic!r}" if topic else "message"
        if index >= 0:
            where += f" message #{index}"
        msg = f"{where}: {problem}"
        if allowed:
            msg += f"; allowed: {allowed}"
        self.topic, self.index = topic, index
        super().__init__(msg)


# ============================================================================ typestore
@lru_cache(maxsize=4)
def get_typestore(store: str = "ros2_humble"):
    """The ``rosbags`` typestore ``store`` (a ``rosbags.typesys.Stores`` value, e.g.
    ``"ros2_humble"``, ``"ros2_jazzy"``, ``"latest"``)."""
    from rosbags.typesys import Stores, get_typestore as _get

    names = [s.value for s in Stores]
    if store not in names:
        raise ConfigError("bag.typestore", store, names)
    return _get(Stores(store))


def _types(ts=None):
    return (ts or get_typestore()).types


def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` → integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def make_stamp(ns: int, ts=None):
    T = _types(ts)["builtin_interfaces/msg/Time"]
    ns = int(ns)
    return T(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def make_header(stamp_ns: int, frame_id: str, ts=None):
    """``std_msgs/Header`` with the stamp in nanoseconds."""
    return _types(ts)["std_msgs/msg/Header"](stamp=make_stamp(stamp_ns, ts), frame_id=frame_id)


# ============================================================================ Image
def _decoded(decode, msg: Any, kind: str, topic: str, index: int,
             allowed: Optional[str] = None) -> np.ndarray:
    """``decode(msg)`` (a :mod:`dasp_core.image_msgs` decoder) with its
    :class:`~dasp_core.image_msgs.ImageDecodeError` turned into a :class:`BagFormatError`."""
    try:
        return decode(msg)
    except image_msgs.ImageDecodeError as exc:
        raise BagFormatError(topic, index, f"cannot decode {kind}: {exc}", allowed) from exc


def _check_encoding(msg: Any, topic: str, index: int) -> str:
    enc = str(msg.encoding)
    if enc not in IMAGE_ENCODINGS:
        raise BagFormatError(topic, index, f"Image encoding {enc!r} is not supported",
                             ", ".join(IMAGE_ENCODINGS))
    return enc


def image_to_numpy(msg: Any, topic: str = "", index: int = -1) -> np.ndarray:
    """``sensor_msgs/Image`` → array in the message's own layout.

    Returns ``[H, W]`` (one channel) or ``[H, W, C]`` with the encoding's dtype in native byte
    order and its channel order (``bgr8`` stays BGR). Row padding (``step``) is removed.

    Raises:
        BagFormatError: encoding not in :data:`IMAGE_ENCODINGS`, empty image, ``data``
            shorter than the rows need or ``step`` shorter than a row.
    """
    _check_encoding(msg, topic, index)
    return np.ascontiguousarray(_decoded(image_msgs.image_to_array, msg, "Image", topic, index))


def image_to_rgb(msg: Any, topic: str = "", index: int = -1) -> np.ndarray:
    """``sensor_msgs/Image`` (rgb8, bgr8, rgba8, bgra8, mono8, 8UC1, mono16) → uint8
    ``[H, W, 3]`` RGB (alpha dropped, grey replicated, mono16 divided by 256)."""
    enc = _check_encoding(msg, topic, index)
    if enc not in _COLOUR_ENCODINGS:
        raise BagFormatError(topic, index, f"Image encoding {enc!r} is not a colour image",
                             ", ".join(_COLOUR_ENCODINGS))
    if enc == "8UC1":  # not a camera encoding to cv_bridge; grey cameras are recorded with it
        return np.repeat(image_to_numpy(msg, topic, index)[..., None], 3, axis=2)
    return _decoded(image_msgs.image_to_rgb8, msg, "Image", topic, index)


def image_to_depth(msg: Any, topic: str = "", index: int = -1) -> np.ndarray:
    """Depth ``sensor_msgs/Image`` → float32 ``[H, W]`` metres, NaN where invalid.

    ``32FC1``: metres; non-finite values and values <= 0 become NaN (REP 117 also allows
    ±Inf; both are "no measurement" here). ``16UC1``/``mono16``: millimetres, 0 → NaN.
    """
    enc = str(msg.encoding)
    arr = image_to_numpy(msg, topic, index)
    if enc == "32FC1":
        d = arr.astype(np.float32, copy=True)
        d[~np.isfinite(d) | (d <= 0)] = np.nan
        return d
    if enc in ("16UC1", "mono16"):
        d = arr.astype(np.float32) / np.float32(1000.0)  # correctly rounded, unlike * 1e-3
        d[arr == 0] = np.nan
        return d
    raise BagFormatError(topic, index, f"Image encoding {enc!r} is not a depth image",
                         "32FC1 (metres), 16UC1 / mono16 (millimetres)")


def numpy_to_image(array: np.ndarray, encoding: str, stamp_ns: int = 0, frame_id: str = "",
                   big_endian: bool = False, step: Optional[int] = None, ts=None) -> Any:
    """Array → ``sensor_msgs/Image``.

    Args:
        array: ``[H, W]`` or ``[H, W, C]`` matching ``encoding`` (channel order as the encoding
            says; values are cast to the encoding's dtype).
        encoding: one of :data:`IMAGE_ENCODINGS`.
        stamp_ns, frame_id: header.
        big_endian: write multi-byte pixels big-endian.
        step: row length in bytes (>= width*channels*bytes; extra bytes are zero padding).

    Raises:
        ConfigError: unknown encoding, wrong shape, ``step`` too small.
    """
    if encoding not in IMAGE_ENCODINGS:
        raise ConfigError("image.encoding", encoding, list(IMAGE_ENCODINGS))
    a = np.asarray(array).astype(IMAGE_ENCODINGS[encoding][0])  # the message owns a copy
    f = image_msgs.image_fields(a, encoding, big_endian=bool(big_endian), step=step)
    Image = _types(ts)["sensor_msgs/msg/Image"]
    return Image(header=make_header(stamp_ns, frame_id, ts), **f)


# ============================================================================ CompressedImage
def compressed_to_rgb(msg: Any, topic: str = "", index: int = -1) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (jpeg or png) → uint8 ``[H, W, 3]`` RGB.

    The ``format`` field is only checked for containing ``jpeg``/``jpg``/``png`` (it looks like
    ``"rgb8; jpeg compressed bgr8"`` with image_transport, or just ``"jpeg"``).
    """
    fmt = str(msg.format).lower()
    if not any(x in fmt for x in ("jpeg", "jpg", "png")):
        raise BagFormatError(topic, index, f"CompressedImage format {msg.format!r} is not "
                             "supported", "jpeg, png (e.g. 'rgb8; jpeg compressed bgr8')")
    return _decoded(image_msgs.compressed_to_rgb8, msg, "CompressedImage", topic, index,
                    "valid jpeg/png colour image data")


def rgb_to_compressed(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90,
                      stamp_ns: int = 0, frame_id: str = "", ts=None) -> Any:
    """uint8 ``[H, W, 3]`` RGB → ``sensor_msgs/CompressedImage`` (image_transport's format
    string ``"rgb8; <fmt> compressed bgr8"``; see
    :func:`dasp_core.image_msgs.rgb8_to_compressed_fields`)."""
    f = image_msgs.rgb8_to_compressed_fields(rgb, fmt, quality)
    CI = _types(ts)["sensor_msgs/msg/CompressedImage"]
    return CI(header=make_header(stamp_ns, frame_id, ts), **f)


# ============================================================================ CameraInfo
@dataclass
class CameraModel:
    """Calibration from ``sensor_msgs/CameraInfo``.

    Attributes:
        width, height: image size in pixels.
        K: float64 ``[3, 3]`` pixel intrinsics.
        D: float64 ``[n]`` distortion coefficients.
        distortion_model: e.g. ``"plumb_bob"``, ``"rational_polynomial"``, ``"equidistant"``.
        R: float64 ``[3, 3]`` rectification rotation.
        P: float64 ``[3, 4]`` projection matrix.
        frame_id: optical frame.
    """

    width: int
    height: int
    K: np.ndarray
    D: np.ndarray
    distortion_model: str
    R: np.ndarray
    P: np.ndarray
    frame_id: str = ""


def camera_info_to_model(msg: Any, topic: str = "", index: int = -1) -> CameraModel:
    """``sensor_msgs/CameraInfo`` → :class:`CameraModel` (raises on an all-zero K)."""
    K = np.asarray(msg.k, np.float64).reshape(3, 3)
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise BagFormatError(topic, index, f"CameraInfo K has fx={K[0, 0]}, fy={K[1, 1]} "
                             "(uncalibrated camera)", "fx > 0 and fy > 0")
    return CameraModel(width=int(msg.width), height=int(msg.height), K=K,
                       D=np.asarray(msg.d, np.float64).reshape(-1),
                       distortion_model=str(msg.distortion_model),
                       R=np.asarray(msg.r, np.float64).reshape(3, 3),
                       P=np.asarray(msg.p, np.float64).reshape(3, 4),
                       frame_id=str(msg.header.frame_id))


def make_camera_info(K: np.ndarray, width: int, height: int, D: Optional[Sequence[float]] = None,
                     distortion_model: str = "plumb_bob", stamp_ns: int = 0, frame_id: str = "",
                     R: Optional[np.ndarray] = None, P: Optional[np.ndarray] = None,
                     ts=None) -> Any:
    """``sensor_msgs/CameraInfo`` for a pinhole camera (``P = [K | 0]`` unless given)."""
    K = np.asarray(K, np.float64).reshape(3, 3)
    D = np.zeros(5) if D is None else np.asarray(D, np.float64).reshape(-1)
    R = np.eye(3) if R is None else np.asarray(R, np.float64).reshape(3, 3)
    P = np.concatenate([K, np.zeros((3, 1))], 1) if P is None else \
        np.asarray(P, np.float64).reshape(3, 4)
    T = _types(ts)
    roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                do_rectify=False)
    return T["sensor_msgs/msg/CameraInfo"](
        header=make_header(stamp_ns, frame_id, ts), height=int(height), width=int(width),
        distortion_model=distortion_model, d=D, k=K.reshape(-1), r=R.reshape(-1),
        p=P.reshape(-1), binning_x=0, binning_y=0, roi=roi)


# ============================================================================ poses
def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """Rotation ``[3, 3]`` → unit quaternion ``(x, y, z, w)`` with ``w >= 0``."""
    m = np.asarray(R, np.float64)
    tr = np.trace(m)
    cand = np.array([1 + tr, 1 + 2 * m[0, 0] - tr, 1 + 2 * m[1, 1] - tr, 1 + 2 * m[2, 2] - tr])
    i = int(np.argmax(cand))
    s = 2.0 * np.sqrt(max(cand[i], 1e-300))
    if i == 0:
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4]
    elif i == 1:
        q = [s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif i == 2:
        q = [(m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4, (m[1, 0] - m[0, 1]) / s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def quaternion_to_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """Quaternion ``(x, y, z, w)`` (normalised here) → rotation ``[3, 3]``."""
    q = np.array([x, y, z, w], np.float64)
    n = np.linalg.norm(q)
    if n < 1e-12:
        raise ValueError("quaternion has zero norm")
    x, y, z, w = q / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _pose_msg(T: np.ndarray, ts=None):
    Ty = _types(ts)
    q = matrix_to_quaternion(T[:3, :3])
    return Ty["geometry_msgs/msg/Pose"](
        position=Ty["geometry_msgs/msg/Point"](x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
        orientation=Ty["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]),
                                                       z=float(q[2]), w=float(q[3])))


def _vec3(v, ts=None):
    return _types(ts)["geometry_msgs/msg/Vector3"](x=float(v[0]), y=float(v[1]), z=float(v[2]))


@dataclass
class OdometryData:
    """``nav_msgs/Odometry`` as numpy.

    Attributes:
        stamp_ns: header stamp.
        frame_id: parent frame of the pose (e.g. ``odom``).
        child_frame_id: moving frame (e.g. ``base_link``).
        T: float64 ``[4, 4]`` pose of the child in the parent frame (child → parent).
        linear, angular: float64 ``[3]`` twist in the child frame (m/s, rad/s).
    """

    stamp_ns: int
    frame_id: str
    child_frame_id: str
    T: np.ndarray
    linear: np.ndarray
    angular: np.ndarray

    @property
    def speed(self) -> float:
        return float(np.linalg.norm(self.linear))


def odometry_to_numpy(msg: Any, topic: str = "", index: int = -1) -> OdometryData:
    p, o = msg.pose.pose.position, msg.pose.pose.orientation
    try:
        R = quaternion_to_matrix(o.x, o.y, o.z, o.w)
    except ValueError:
        raise BagFormatError(topic, index, "Odometry orientation quaternion is zero",
                             "a unit quaternion") from None
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = (p.x, p.y, p.z)
    tw = msg.twist.twist
    return OdometryData(stamp_to_ns(msg.header.stamp), str(msg.header.frame_id),
                        str(msg.child_frame_id), T,
                        np.array([tw.linear.x, tw.linear.y, tw.linear.z]),
                        np.array([tw.angular.x, tw.angular.y, tw.angular.z]))


def make_odometry(T: np.ndarray, linear: Sequence[float], angular: Sequence[float],
                  stamp_ns: int, frame_id: str = "odom", child_frame_id: str = "base_link",
                  pose_cov: float = 1e-4, twist_cov: float = 1e-4, ts=None) -> Any:
    """``nav_msgs/Odometry``: pose ``T`` (child → parent ``[4, 4]``), twist in the child frame,
    diagonal covariances."""
    Ty = _types(ts)
    pc = np.diag([pose_cov] * 6).reshape(-1)
    tc = np.diag([twist_cov] * 6).reshape(-1)
    return Ty["nav_msgs/msg/Odometry"](
        header=make_header(stamp_ns, frame_id, ts), child_frame_id=child_frame_id,
        pose=Ty["geometry_msgs/msg/PoseWithCovariance"](pose=_pose_msg(np.asarray(T), ts),
                                                        covariance=pc),
        twist=Ty["geometry_msgs/msg/TwistWithCovariance"](
            twist=Ty["geometry_msgs/msg/Twist"](linear=_vec3(linear, ts),
                                                angular=_vec3(angular, ts)),
            covariance=tc))


@dataclass
class TransformData:
    """One ``geometry_msgs/TransformStamped``: ``T`` maps ``child`` coordinates to ``parent``."""

    stamp_ns: int
    parent: str
    child: str
    T: np.ndarray


def tf_to_numpy(msg: Any, topic: str = "", index: int = -1) -> List[TransformData]:
    """``tf2_msgs/TFMessage`` → list of :class:`TransformData`."""
    out = []
    for tr in msg.transforms:
        q, t = tr.transform.rotation, tr.transform.translation
        try:
            R = quaternion_to_matrix(q.x, q.y, q.z, q.w)
        except ValueError:
            raise BagFormatError(topic, index, f"transform {tr.header.frame_id}->"
                                 f"{tr.child_frame_id} has a zero quaternion",
                                 "unit quaternions") from None
        T = np.eye(4)
        T[:3, :3] = R
        T[:3, 3] = (t.x, t.y, t.z)
        out.append(TransformData(stamp_to_ns(tr.header.stamp), str(tr.header.frame_id),
                                 str(tr.child_frame_id), T))
    return out


def make_tf_message(transforms: Iterable[TransformData], ts=None) -> Any:
    """List of :class:`TransformData` → ``tf2_msgs/TFMessage``."""
    Ty = _types(ts)
    items = []
    for tr in transforms:
        q = matrix_to_quaternion(tr.T[:3, :3])
        items.append(Ty["geometry_msgs/msg/TransformStamped"](
            header=make_header(tr.stamp_ns, tr.parent, ts), child_frame_id=tr.child,
            transform=Ty["geometry_msgs/msg/Transform"](
                translation=_vec3(tr.T[:3, 3], ts),
                rotation=Ty["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]),
                                                            z=float(q[2]), w=float(q[3])))))
    return Ty["tf2_msgs/msg/TFMessage"](transforms=items)


class TransformLookupError(DatasetError, LookupError):
    """Two frames of a :class:`TransformTree` cannot be chained (not connected, or a link on
    the way changes over the recording)."""


def _frame(name: str) -> str:
    """tf2 ignores a leading slash (a ROS 1 habit); so do the lookups here."""
    return str(name).lstrip("/")


class _Edge:
    """The transform of one child frame to its parent: /tf_static versions and /tf samples."""

    __slots__ = ("parent", "static", "stamps", "bag_times", "values", "first", "dynamic")

    def __init__(self, parent: str):
        self.parent = parent
        self.static: List[Tuple[int, np.ndarray]] = []   # (bag time ns, T) per change
        self.stamps: List[int] = []                      # /tf header stamps (ns)
        self.bag_times: List[int] = []                   # /tf bag times (ns)
        self.values = array("d")                         # /tf x y z qx qy qz qw, once dynamic
        self.first: Optional[Tuple[float, ...]] = None   # first /tf x y z qx qy qz qw
        self.dynamic = False                             # a /tf value differed from the first


def _xyzq_to_matrix(v: Sequence[float]) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = quaternion_to_matrix(*v[3:7])
    T[:3, 3] = v[:3]
    return T


class TransformTree:
    """The tf tree of a recording, for chaining fixed transforms (e.g. a camera extrinsic).

    Each frame has one parent (its first one; a later different parent is ignored and
    counted in ``n_reparented``). ``/tf_static`` transforms are fixed, with every change kept
    by bag time (a re-published static transform replaces the old one, as in tf2). A ``/tf``
    transform is *static-like* while it never changes by more than ``tolerance`` (drivers
    that publish a fixed mount on ``/tf``); otherwise it is *dynamic* and its samples are
    kept for :meth:`samples`. Frame names lose a leading ``/``. ``/tf`` samples are kept as
    translation + quaternion and compared without building matrices: a bag's ``/tf`` can hold
    many thousands of transforms.

    Args:
        tolerance: largest change (metres, quaternion components) of a ``/tf`` transform
            that still counts as fixed.
    """

    def __init__(self, tolerance: float = 1e-6):
        self.tolerance = float(tolerance)
        self._edges: Dict[str, _Edge] = {}
        self.n_reparented = 0
        self.n_bad = 0

    def __len__(self) -> int:
        return len(self._edges)

    def add(self, tr: TransformData, bag_time_ns: int, static: bool) -> None:
        """Record one transform from ``/tf_static`` (``static``) or ``/tf``."""
        T = np.asarray(tr.T, np.float64)
        self._add(tr.parent, tr.child, tr.stamp_ns, (*T[:3, 3], *matrix_to_quaternion(T[:3, :3])),
                  bag_time_ns, static)

    def add_message(self, msg: Any, bag_time_ns: int, static: bool) -> None:
        """Record every transform of a ``tf2_msgs/TFMessage`` (zero quaternions are counted
        in ``n_bad`` and skipped)."""
        for tr in msg.transforms:
            t, q = tr.transform.translation, tr.transform.rotation
            v = (t.x, t.y, t.z, q.x, q.y, q.z, q.w)
            if q.x * q.x + q.y * q.y + q.z * q.z + q.w * q.w < 1e-24:
                self.n_bad += 1
                continue
            self._add(tr.header.frame_id, tr.child_frame_id, stamp_to_ns(tr.header.stamp), v,
                      bag_time_ns, static)

    def _same(self, a: Sequence[float], b: Sequence[float]) -> bool:
        tol = self.tolerance
        if any(abs(x - y) > tol for x, y in zip(a[:3], b[:3])):
            return False
        na = sum(x * x for x in a[3:]) ** 0.5
        nb = sum(x * x for x in b[3:]) ** 0.5
        d = max(abs(x / na - y / nb) for x, y in zip(a[3:], b[3:]))
        return d <= tol or max(abs(x / na + y / nb) for x, y in zip(a[3:], b[3:])) <= tol

    def _add(self, parent: str, child: str, stamp_ns: int, v: Tuple[float, ...],
             bag_time_ns: int, static: bool) -> None:
        parent, child = _frame(parent), _frame(child)
        edge = self._edges.get(child)
        if edge is None:
            edge = self._edges[child] = _Edge(parent)
        elif edge.parent != parent:
            self.n_reparented += 1
            return
        if static:
            T = _xyzq_to_matrix(v)
            if not edge.static or not np.allclose(edge.static[-1][1], T, rtol=0,
                                                  atol=self.tolerance):
                edge.static.append((int(bag_time_ns), T))
            return
        edge.stamps.append(int(stamp_ns))
        edge.bag_times.append(int(bag_time_ns))
        if edge.first is None:
            edge.first = tuple(float(x) for x in v)
        elif not edge.dynamic and not self._same(edge.first, v):
            edge.dynamic = True  # samples are kept from here on (the earlier ones equal first)
            edge.values.extend(edge.first * (len(edge.stamps) - 1))
        if edge.dynamic:
            edge.values.extend(v)

    def parent(self, frame: str) -> Optional[str]:
        edge = self._edges.get(_frame(frame))
        return edge.parent if edge is not None else None

    def frames(self) -> List[str]:
        """Every frame named in the tree, sorted."""
        return sorted(set(self._edges) | {e.parent for e in self._edges.values()})

    def is_dynamic(self, child: str) -> bool:
        """Whether the transform of ``child`` to its parent changes (a ``/tf``-only edge that
        moves; ``/tf_static`` versions never count)."""
        e = self._edges[_frame(child)]
        return not e.static and e.dynamic

    def describe(self) -> str:
        """``parent -> child [static|tf fixed|tf moving]`` for every link, for messages."""
        out = []
        for child, e in sorted(self._edges.items()):
            kind = "static" if e.static else "tf moving" if e.dynamic else "tf fixed"
            out.append(f"{e.parent} -> {child} [{kind}]")
        return ", ".join(out) or "(no transforms)"

    def ancestors(self, frame: str) -> List[str]:
        """``[frame, parent, grandparent, ..., root]`` (stops at a loop)."""
        chain = [_frame(frame)]
        while chain[-1] in self._edges:
            p = self._edges[chain[-1]].parent
            if p in chain:
                break
            chain.append(p)
        return chain

    def path(self, target: str, source: str) -> Tuple[List[str], List[str]]:
        """The links between two frames: ``(up, down)`` where ``up`` lists the child frames
        walked from ``source`` up to the common ancestor and ``down`` those from ``target`` up
        to it. Raises :class:`TransformLookupError` when the frames are not connected."""
        a_src, a_tgt = self.ancestors(source), self.ancestors(target)
        common = next((f for f in a_src if f in set(a_tgt)), None)
        if common is None:
            known = ", ".join(self.frames()) or "none"
            raise TransformLookupError(
                f"frames {_frame(target)!r} and {_frame(source)!r} are not connected in the tf "
                f"tree (frames: {known}; links: {self.describe()})")
        return a_src[:a_src.index(common)], a_tgt[:a_tgt.index(common)]

    def chain(self, target: str, source: str) -> List[str]:
        """Frame names from ``target`` to ``source`` through their common ancestor."""
        up, down = self.path(target, source)
        common = self.ancestors(source)[len(up)]
        return down + [common] + list(reversed(up))

    def fixed(self, child: str, bag_time_ns: int) -> np.ndarray:
        """``T_parent_child`` of a fixed link as it was at ``bag_time_ns`` (the first
        ``/tf_static`` version before a later one replaced it; static-like ``/tf`` links are
        constant). Raises :class:`TransformLookupError` for a moving link."""
        e = self._edges[_frame(child)]
        if e.static:
            k = 0
            while k + 1 < len(e.static) and e.static[k + 1][0] <= bag_time_ns:
                k += 1
            return e.static[k][1]
        if e.dynamic:
            raise TransformLookupError(
                f"the transform {e.parent} -> {_frame(child)} on /tf changes during the "
                f"recording (a moving joint), so it is not a fixed mount")
        return _xyzq_to_matrix(e.first)

    def change_times(self) -> np.ndarray:
        """Bag times (ns, sorted) at which some ``/tf_static`` link was replaced by a new
        version: fixed-link lookups are constant between them."""
        return np.asarray(sorted({t for e in self._edges.values() for t, _ in e.static[1:]}),
                          np.int64)

    def samples(self, child: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``/tf`` samples of a link in recording order: ``(header stamps ns [N], bag times
        ns [N], [N, 7] x y z qx qy qz qw)`` (translation in metres, quaternion as sent)."""
        e = self._edges[_frame(child)]
        n = len(e.stamps)
        if e.dynamic:
            v = np.frombuffer(e.values, np.float64).reshape(n, 7).copy()
        else:
            v = np.tile(np.asarray(e.first or (0.0,) * 6 + (1.0,)), (n, 1))
        return np.asarray(e.stamps, np.int64), np.asarray(e.bag_times, np.int64), v

    def lookup(self, target: str, source: str, bag_time_ns: int = 0) -> np.ndarray:
        """``T_target_source`` (maps ``source`` coordinates into ``target``) chained through
        fixed links, as they were at ``bag_time_ns``.

        Raises:
            TransformLookupError: the frames are not connected, or a link between them moves.
        """
        up, down = self.path(target, source)
        T_c_s = np.eye(4)
        for child in reversed(up):      # common ← ... ← source
            T_c_s = T_c_s @ self.fixed(child, bag_time_ns)
        T_c_t = np.eye(4)
        for child in reversed(down):
            T_c_t = T_c_t @ self.fixed(child, bag_time_ns)
        return np.linalg.solve(T_c_t, T_c_s)


# ============================================================================ writing
class BagWriter:
    """rosbag2 writer (context manager); creates a connection per topic on first write.

    Args:
        path: bag directory to create (must not exist).
        storage: ``"mcap"`` or ``"sqlite3"``.
        store: typestore name for message definitions (see :func:`get_typestore`).
        latched: topics written with transient-local QoS (``/tf_static`` by default), so a
            player republishes them to late subscribers.
    """

    def __init__(self, path: str | Path, storage: str = "mcap", store: str = "ros2_humble",
                 latched: Sequence[str] = ("/tf_static",)):
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGES:
            raise ConfigError("bag.storage", storage, STORAGES)
        self.path = Path(path)
        if self.path.exists():
            raise DatasetError(f"bag {str(self.path)!r} already exists; not overwriting "
                               "(choose a new path or delete it)")
        self.ts = get_typestore(store)
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=Writer.VERSION_LATEST, storage_plugin=plugin)
        self._conns: Dict[Tuple[str, str], Any] = {}
        self._latched = set(latched)
        self._open = False
        self.counts: Dict[str, int] = {}

    def open(self) -> "BagWriter":
        self._writer.open()
        self._open = True
        return self

    def __enter__(self) -> "BagWriter":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def set_metadata(self, key: str, value: str) -> None:
        """Store a string in the bag's ``custom_data`` (metadata.yaml)."""
        self._writer.set_custom_data(key, str(value))

    def _qos(self, topic: str):
        if topic not in self._latched:
            return ()
        from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness,
                                        QosReliability, QosTime)
        inf = QosTime(2147483647, 4294967295)
        return [Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE,
                    QosDurability.TRANSIENT_LOCAL, inf, inf, QosLiveliness.AUTOMATIC, inf,
                    False)]

    def write(self, topic: str, msg: Any, timestamp_ns: int, msgtype: Optional[str] = None
              ) -> None:
        """Serialise ``msg`` (a typestore dataclass) and write it at ``timestamp_ns``."""
        if not self._open:
            raise DatasetError(f"bag {str(self.path)!r} is not open (use 'with BagWriter(...)')")
        mt = msgtype or getattr(msg, "__msgtype__", None)
        if not mt:
            raise ConfigError("bag.msgtype", type(msg).__name__, "a rosbags message or msgtype")
        key = (topic, mt)
        conn = self._conns.get(key)
        if conn is None:
            if any(t == topic for t, _ in self._conns):
                raise DatasetError(f"topic {topic!r} already has another type in "
                                   f"{str(self.path)!r}; one type per topic")
            conn = self._writer.add_connection(topic, mt, typestore=self.ts,
                                               offered_qos_profiles=self._qos(topic))
            self._conns[key] = conn
        self._writer.write(conn, int(timestamp_ns), self.ts.serialize_cdr(msg, mt))
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def close(self) -> None:
        if self._open:
            self._writer.close()
            self._open = False


# ============================================================================ reading
class BagReader:
    """rosbag2 (directory, ``.mcap`` or ``.db3``) or ROS 1 ``.bag`` reader.

    Message definitions stored in the bag are used; bags without them fall back to the
    Humble typestore. Deserialisation failures are logged and counted in ``n_errors`` and the
    message is skipped (``errors="skip"``), or raised as :class:`BagFormatError` (``"raise"``).
    """

    def __init__(self, path: str | Path, errors: str = "skip"):
        from rosbags.highlevel import AnyReader

        if errors not in ("skip", "raise"):
            raise ConfigError("bag.errors", errors, ("skip", "raise"))
        self.path = Path(path)
        if not self.path.exists():
            raise DatasetError(f"bag {str(self.path)!r} does not exist")
        self.errors = errors
        self.n_errors = 0
        try:
            self._reader = AnyReader([self.path], default_typestore=get_typestore())
        except Exception as exc:  # rosbags raises several unrelated types here
            raise DatasetError(f"bag {str(self.path)!r} cannot be opened: {exc}") from exc
        self._is_open = False

    def __enter__(self) -> "BagReader":
        try:
            self._reader.open()
        except Exception as exc:
            raise DatasetError(f"bag {str(self.path)!r} cannot be opened: {exc}") from exc
        self._is_open = True
        return self

    def __exit__(self, *exc) -> None:
        if self._is_open:
            self._reader.close()
            self._is_open = False

    @property
    def topics(self) -> Dict[str, Tuple[str, int]]:
        """topic → (msgtype, message count)."""
        return {t: (info.msgtype or "", int(info.msgcount))
                for t, info in self._reader.topics.items()}

    def messages(self, topics: Optional[Sequence[str]] = None, start_ns: Optional[int] = None,
                 stop_ns: Optional[int] = None) -> Iterator[Tuple[str, str, int, Any]]:
        """Yield ``(topic, msgtype, timestamp_ns, msg)`` in time order."""
        conns = self._reader.connections
        if topics is not None:
            wanted = set(topics)
            conns = [c for c in conns if c.topic in wanted]
            if not conns:
                return
        counters: Dict[str, int] = {}
        for conn, t, raw in self._reader.messages(connections=conns, start=start_ns,
                                                  stop=stop_ns):
            i = counters.get(conn.topic, 0)
            counters[conn.topic] = i + 1
            try:
                msg = self._reader.deserialize(raw, conn.msgtype)
            except Exception as exc:
                self.n_errors += 1
                err = BagFormatError(conn.topic, i, f"cannot deserialise {conn.msgtype}: {exc}")
                if self.errors == "raise":
                    raise err from exc
                log.warning("%s (bag %s); skipped", err, self.path)
                continue
            yield conn.topic, conn.msgtype, int(t), msg


def read_messages(path: str | Path, topics: Optional[Sequence[str]] = None,
                  errors: str = "skip") -> Iterator[Tuple[str, str, int, Any]]:
    """Iterate ``(topic, msgtype, timestamp_ns, msg)`` over a bag in time order.

    Args:
        path: rosbag2 directory (mcap or sqlite3 inside), a ``.mcap``/``.db3`` file, or a
            ROS 1 ``.bag``.
        topics: only these topics (None = all).
        errors: ``"skip"`` (log and skip undecodable messages) or ``"raise"``.
    """
    with BagReader(path, errors=errors) as r:
        yield from r.messages(topics)


def bag_topics(path: str | Path) -> Dict[str, Tuple[str, int]]:
    """topic → (msgtype, message count) of a bag."""
    with BagReader(path) as r:
        return r.topics


def bag_custom_data(path: str | Path) -> Dict[str, str]:
    """The ``custom_data`` strings of a rosbag2 directory's ``metadata.yaml`` ({} if none)."""
    import yaml

    meta = Path(path) / "metadata.yaml"
    if not meta.is_file():
        return {}
    try:
        doc = yaml.safe_load(meta.read_text())
    except yaml.YAMLError as exc:
        raise DatasetError(f"bag {str(path)!r}: metadata.yaml is not valid YAML: {exc}") from exc
    info = (doc or {}).get("rosbag2_bagfile_information", {}) or {}
    return {str(k): str(v) for k, v in (info.get("custom_data") or {}).items()}
