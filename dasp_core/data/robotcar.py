"""Oxford RobotCar reader (torch-free): raw SDK layout or RNW's processed layout → :class:`Clip`.

Formats follow the public robotcar-dataset-sdk (python/camera_model.py, image.py,
interpolate_poses.py, build_pointcloud.py, transform.py) and RNW's loaders; nothing is copied.

Raw layout (as downloaded, plus the SDK's ``models/`` and ``extrinsics/`` folders)::

    root/
      models/stereo_narrow_left.txt              # "fx fy cx cy" then 4x4 G_camera_image
      models/stereo_narrow_left_distortion_lut.bin  # float64 [2, H*W]: x row, then y row
      extrinsics/stereo.txt, extrinsics/lms_front.txt   # "x y z roll pitch yaw"
      2014-12-16-18-44-24/
        stereo.timestamps                         # "<timestamp_us> <chunk>" per line
        stereo/centre/<timestamp_us>.png          # 8-bit Bayer GBRG, 1280x960
        vo/vo.csv                                 # relative poses (header + 8 columns)
        lms_front.timestamps, lms_front/<timestamp_us>.bin   # float64 (x, y, reflectance)
        depth/<timestamp_us>_depth.npy            # optional precomputed ground truth

RNW processed layout (RNW README): ``root/<sequence>/rgb/<ts>.png`` (demosaiced and undistorted
colour), ``depth/<ts>_depth.npy`` (full-resolution ground truth, metres, 0 invalid),
``intrinsic.npy`` (3x3 or 4x4), ``train_split.txt`` (timestamps; lines starting with ``-----``
separate continuous chunks) and ``test_split.txt`` (one timestamp per line).

md4all's split files (``splits/<sequence>_train_stride_1.txt`` with ``prev target next`` per
line, ``splits/<sequence>_test.txt``) and its precomputed lidar clouds
(``<sequence>/lms_front_synchronized/vo/time_margin=+-4.0e+06/<ts>.pcd.bin``: float32 [3, N]
points in the camera frame) are read as well.

Protocol (paper: RNW's, which DASP inherits): centre crop 1152x640, resize to 576x320, K
adjusted exactly (:mod:`dasp_core.data.augment`); ground truth from front 2D lidar scans
accumulated with VO poses and projected into the centre stereo camera. md4all instead keeps
the top 768 rows of the 1280x960 image (``crop_hw=(768, 1280)``, ``crop_anchor="top_left"``).

Frames: the SDK's vehicle/camera frame is x forward, y right, z down; ``G_camera_image`` maps
the image (optical, REP 103) frame to it. VO's relative pose of each row, chained as
``A_k = A_{k-1} @ T(row_k)``, gives the vehicle pose at ``source_timestamp`` (SDK convention).
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from dasp_core.data.augment import (center_crop_box, crop_clip, resize_clip,
                                    scatter_nearest_depth)
from dasp_core.data.folder import (SampleError, to_rgb8, clip_dt, read_depth_file,
                                   read_list_file)
from dasp_core.data.sample import DOMAINS, Clip
from dasp_core.errors import ConfigError, DatasetError, check_choice

log = logging.getLogger(__name__)

__all__ = [
    "KNOWN_SEQUENCES", "STEREO_MODELS", "euler_to_so3", "build_se3_transform", "so3_to_quaternion",
    "quaternion_to_so3", "interpolate_poses", "read_vo", "read_timestamps", "demosaic_gbrg",
    "RobotCarCameraModel", "build_pointcloud", "points_to_depth_map", "parse_split_file",
    "RobotCarDataset",
]

PathLike = Union[str, os.PathLike]

#: RNW's RobotCar-Night protocol sequences (paper).
KNOWN_SEQUENCES: Dict[str, str] = {"2014-12-09-13-21-02": "day", "2014-12-16-18-44-24": "night"}

#: Image (optical: x right, y down, z forward) → SDK camera frame (x forward, y right, z down).
#: This is the ``G_camera_image`` stored in every SDK camera model file; used only when the
#: model file is absent (RNW layout without ``models/``).
G_CAMERA_IMAGE_DEFAULT = np.array([[0.0, 0.0, 1.0, 0.0],
                                   [1.0, 0.0, 0.0, 0.0],
                                   [0.0, 1.0, 0.0, 0.0],
                                   [0.0, 0.0, 0.0, 1.0]])

#: Where a ``crop_hw`` window sits: ``"center"`` = RNW's CenterCrop, top-left corner
#: ``((W - w) // 2, (H - h) // 2)`` (RNW transforms/cv2_transforms.py:136,139);
#: ``"top_left"`` = md4all's Crop with ``TOP = LEFT = 0`` (md4all config/config.py:99-100,
#: data/transforms.py:51), i.e. rows ``0 … h-1`` and columns ``0 … w-1``.
CROP_ANCHORS = ("center", "top_left")

#: stereo camera folder → SDK camera model (SDK camera_model.py mapping).
STEREO_MODELS = {"centre": "stereo_narrow_left", "left": "stereo_wide_left",
                 "right": "stereo_wide_right"}


# ----------------------------------------------------------------------------- transforms

def euler_to_so3(rpy: Sequence[float]) -> np.ndarray:
    """Roll, pitch, yaw (radians) → ``R = Rz(yaw) Ry(pitch) Rx(roll)`` (SDK convention)."""
    r, p, y = (float(a) for a in rpy)
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    Rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    Ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    Rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def build_se3_transform(xyzrpy: Sequence[float]) -> np.ndarray:
    """``[x, y, z, roll, pitch, yaw]`` (metres, radians) → ``float64 [4, 4]`` rigid transform."""
    if len(xyzrpy) != 6:
        raise ValueError(f"expected 6 values (x y z roll pitch yaw), got {len(xyzrpy)}")
    T = np.eye(4)
    T[:3, :3] = euler_to_so3(xyzrpy[3:6])
    T[:3, 3] = np.asarray(xyzrpy[:3], np.float64)
    return T


def so3_to_quaternion(R: np.ndarray) -> np.ndarray:
    """Rotations ``[..., 3, 3]`` → unit quaternions ``[..., 4]`` (w, x, y, z), w >= 0."""
    R = np.asarray(R, np.float64)
    m = R.reshape(-1, 3, 3)
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    cand = np.stack([1 + tr, 1 + 2 * m[:, 0, 0] - tr, 1 + 2 * m[:, 1, 1] - tr,
                     1 + 2 * m[:, 2, 2] - tr], -1)
    idx = cand.argmax(-1)
    q = np.zeros((m.shape[0], 4))
    s = 2.0 * np.sqrt(np.maximum(cand[np.arange(len(idx)), idx], 1e-300))  # 4 * q_i
    for i in range(4):
        sel = idx == i
        if not np.any(sel):
            continue
        a, si = m[sel], s[sel]
        if i == 0:
            q[sel] = np.stack([0.25 * si, (a[:, 2, 1] - a[:, 1, 2]) / si,
                               (a[:, 0, 2] - a[:, 2, 0]) / si, (a[:, 1, 0] - a[:, 0, 1]) / si], -1)
        elif i == 1:
            q[sel] = np.stack([(a[:, 2, 1] - a[:, 1, 2]) / si, 0.25 * si,
                               (a[:, 0, 1] + a[:, 1, 0]) / si, (a[:, 0, 2] + a[:, 2, 0]) / si], -1)
        elif i == 2:
            q[sel] = np.stack([(a[:, 0, 2] - a[:, 2, 0]) / si, (a[:, 0, 1] + a[:, 1, 0]) / si,
                               0.25 * si, (a[:, 1, 2] + a[:, 2, 1]) / si], -1)
        else:
            q[sel] = np.stack([(a[:, 1, 0] - a[:, 0, 1]) / si, (a[:, 0, 2] + a[:, 2, 0]) / si,
                               (a[:, 1, 2] + a[:, 2, 1]) / si, 0.25 * si], -1)
    q = np.where(q[:, :1] < 0, -q, q)
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return q.reshape(R.shape[:-2] + (4,))


def quaternion_to_so3(q: np.ndarray) -> np.ndarray:
    """Quaternions ``[..., 4]`` (w, x, y, z; normalised here) → rotations ``[..., 3, 3]``."""
    q = np.asarray(q, np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def interpolate_poses(pose_times: np.ndarray, poses: np.ndarray, query_times: np.ndarray
                      ) -> Tuple[np.ndarray, np.ndarray]:
    """Interpolate absolute poses at query times: slerp for rotation, linear for translation.

    Same method as the SDK's ``interpolate_poses`` (which, in some versions, truncates the
    interpolation fraction with integer division; here it is a real fraction).

    Args:
        pose_times: ``[N]`` strictly increasing times (any unit, e.g. microseconds).
        poses: ``[N, 4, 4]`` absolute poses at those times.
        query_times: ``[M]`` times.
    Returns:
        ``(poses [M, 4, 4], valid [M] bool)``; ``valid`` is False outside
        ``[pose_times[0], pose_times[-1]]`` (those poses are the nearest end pose).
    """
    t = np.asarray(pose_times, np.float64)
    qt = np.asarray(query_times, np.float64)
    if t.ndim != 1 or t.size < 1 or poses.shape != (t.size, 4, 4):
        raise ValueError(f"need [N] times and [N, 4, 4] poses, got {t.shape} and {poses.shape}")
    if np.any(np.diff(t) <= 0):
        raise ValueError("pose times must be strictly increasing")
    valid = (qt >= t[0]) & (qt <= t[-1])
    if t.size == 1:
        return np.repeat(poses[:1], qt.size, 0), valid
    hi = np.clip(np.searchsorted(t, qt, side="right"), 1, t.size - 1)
    lo = hi - 1
    frac = np.clip((qt - t[lo]) / (t[hi] - t[lo]), 0.0, 1.0)
    q = so3_to_quaternion(poses[:, :3, :3])
    q0, q1 = q[lo], q[hi]
    d = np.sum(q0 * q1, -1)
    q1 = np.where(d[:, None] < 0, -q1, q1)  # shortest arc
    d = np.abs(d)
    theta = np.arccos(np.clip(d, -1.0, 1.0))
    sin_t = np.sin(theta)
    small = sin_t < 1e-9
    w0 = np.where(small, 1 - frac, np.sin((1 - frac) * theta) / np.where(small, 1, sin_t))
    w1 = np.where(small, frac, np.sin(frac * theta) / np.where(small, 1, sin_t))
    qi = w0[:, None] * q0 + w1[:, None] * q1
    out = np.tile(np.eye(4), (qt.size, 1, 1))
    out[:, :3, :3] = quaternion_to_so3(qi)
    out[:, :3, 3] = (1 - frac)[:, None] * poses[lo, :3, 3] + frac[:, None] * poses[hi, :3, 3]
    return out, valid


def read_vo(path: PathLike) -> Tuple[np.ndarray, np.ndarray]:
    """Chain RobotCar ``vo/vo.csv`` relative poses into absolute vehicle poses.

    Each row is ``source_timestamp, destination_timestamp, x, y, z, roll, pitch, yaw``; as in
    the SDK, the pose at ``source_timestamp`` of row k is ``A_{k-1} @ T(row_k)`` and the chain
    starts with the identity at the first row's ``destination_timestamp``.

    Returns:
        ``(times int64 [N+1] microseconds, poses float64 [N+1, 4, 4])`` (vehicle → start frame).
    Raises:
        DatasetError: unreadable file or bad row (file and line named).
    """
    path = os.fspath(path)
    rows: List[Tuple[int, int, List[float]]] = []
    try:
        with open(path, newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None or len(header) < 8:
                raise DatasetError(f"{path}: expected a header 'source_timestamp,"
                                   f"destination_timestamp,x,y,z,roll,pitch,yaw'")
            for ln, row in enumerate(reader, start=2):
                if not row:
                    continue
                try:
                    rows.append((int(row[0]), int(row[1]), [float(v) for v in row[2:8]]))
                except (ValueError, IndexError) as exc:
                    raise DatasetError(f"{path}:{ln}: bad VO row {row!r} ({exc})") from exc
    except OSError as exc:
        raise DatasetError(f"cannot read VO file {path!r}: {exc}") from exc
    if not rows:
        raise DatasetError(f"{path}: no VO rows")
    times = np.empty(len(rows) + 1, np.int64)
    poses = np.empty((len(rows) + 1, 4, 4))
    times[0] = rows[0][1]
    poses[0] = np.eye(4)
    for k, (src, _dst, xyzrpy) in enumerate(rows, start=1):
        times[k] = src
        poses[k] = poses[k - 1] @ build_se3_transform(xyzrpy)
    order_ok = np.diff(times) > 0
    if not np.all(order_ok):
        # Keep the first occurrence of each time; a non-increasing row is a recording glitch.
        keep = np.concatenate([[True], order_ok])
        log.warning("%s: %d VO rows out of time order ignored", path, int((~keep).sum()))
        times, poses = times[keep], poses[keep]
    return times, poses


def read_timestamps(path: PathLike) -> Tuple[np.ndarray, np.ndarray]:
    """A RobotCar ``*.timestamps`` file → ``(times int64 [N] µs, chunk int64 [N])``."""
    path = os.fspath(path)
    times, chunks = [], []
    try:
        with open(path) as fh:
            for ln, line in enumerate(fh, start=1):
                parts = line.split()
                if not parts:
                    continue
                try:
                    times.append(int(parts[0]))
                    chunks.append(int(parts[1]) if len(parts) > 1 else 0)
                except ValueError as exc:
                    raise DatasetError(f"{path}:{ln}: expected '<timestamp> <chunk>', got "
                                       f"{line.strip()!r}") from exc
    except OSError as exc:
        raise DatasetError(f"cannot read timestamps file {path!r}: {exc}") from exc
    return np.asarray(times, np.int64), np.asarray(chunks, np.int64)


# ----------------------------------------------------------------------------- images & camera

def demosaic_gbrg(raw: np.ndarray) -> np.ndarray:
    """8-bit Bayer GBRG mosaic ``[H, W]`` (RobotCar stereo cameras) → ``uint8 [H, W, 3]`` RGB.

    GBRG (first row G B G B, second row R G R G) is OpenCV's ``BayerGR`` code: OpenCV names a
    pattern by the second row's second and third pixels.
    """
    if raw.ndim != 2:
        raise ValueError(f"Bayer image must be single-channel, got shape {raw.shape}")
    if raw.dtype != np.uint8:
        raw = (raw >> 8).astype(np.uint8) if raw.dtype == np.uint16 else raw.astype(np.uint8)
    return cv2.cvtColor(raw, cv2.COLOR_BayerGR2RGB)


class RobotCarCameraModel:
    """An SDK camera model: pinhole intrinsics, ``G_camera_image`` and the undistortion LUT.

    Args:
        models_dir: folder with ``<name>.txt`` and ``<name>_distortion_lut.bin``.
        name: model name, ``stereo_narrow_left`` for the centre stereo images (SDK mapping).
        require_lut: raise :class:`DatasetError` when the LUT file is missing.
    """

    def __init__(self, models_dir: PathLike, name: str = "stereo_narrow_left",
                 require_lut: bool = True):
        self.models_dir = os.fspath(models_dir)
        self.name = name
        ipath = os.path.join(self.models_dir, name + ".txt")
        if not os.path.isfile(ipath):
            raise DatasetError(f"RobotCar camera model {ipath!r} not found (expected the SDK's "
                               f"models/ folder: first line 'fx fy cx cy', then a 4x4 matrix)")
        try:
            with open(ipath) as fh:
                lines = [ln.split() for ln in fh if ln.strip()]
            vals = [float(x) for x in lines[0]]
            G = np.array([[float(x) for x in row] for row in lines[1:5]], np.float64)
        except (ValueError, IndexError) as exc:
            raise DatasetError(f"{ipath}: not an SDK camera model ({exc})") from exc
        if len(vals) != 4 or G.shape != (4, 4):
            raise DatasetError(f"{ipath}: expected 'fx fy cx cy' and a 4x4 G_camera_image")
        self.focal_length = (vals[0], vals[1])
        self.principal_point = (vals[2], vals[3])
        self.G_camera_image = G
        self.lut_path = os.path.join(self.models_dir, name + "_distortion_lut.bin")
        self._maps: Optional[Tuple[np.ndarray, np.ndarray]] = None
        if require_lut and not os.path.isfile(self.lut_path):
            raise DatasetError(f"undistortion LUT {self.lut_path!r} not found (SDK models/ "
                               f"folder); pass undistort=False to use distorted images")

    @property
    def K(self) -> np.ndarray:
        """``float64 [3, 3]`` pixel intrinsics of the undistorted image."""
        fx, fy = self.focal_length
        cx, cy = self.principal_point
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])

    def _load_maps(self, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
        if self._maps is not None and self._maps[0].shape == (height, width):
            return self._maps
        try:
            lut = np.fromfile(self.lut_path, np.float64)
        except OSError as exc:
            raise SampleError(self.lut_path, f"cannot read LUT ({exc})") from exc
        if lut.size != 2 * height * width:
            raise SampleError(self.lut_path, f"LUT has {lut.size // 2} entries but the image "
                                             f"has {height}x{width} = {height * width} pixels")
        lut = lut.reshape(2, height * width)
        # Row 0 = x (column), row 1 = y (row) in the distorted image, for each undistorted
        # pixel in row-major order (the SDK feeds them swapped to scipy's map_coordinates).
        map_x = lut[0].reshape(height, width).astype(np.float32)
        map_y = lut[1].reshape(height, width).astype(np.float32)
        self._maps = (map_x, map_y)
        return self._maps

    def undistort(self, image: np.ndarray) -> np.ndarray:
        """Undistort a demosaiced image with the LUT (bilinear, black outside)."""
        map_x, map_y = self._load_maps(image.shape[0], image.shape[1])
        return cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def points_to_depth_map(points_image: np.ndarray, K: np.ndarray, height: int, width: int,
                        min_depth: float = 0.0, margin: float = 0.0) -> np.ndarray:
    """Project points in the optical frame into a sparse depth map (nearest depth per pixel).

    Args:
        points_image: ``[3, N]`` points, metres, optical frame (x right, y down, z forward).
        K: ``[3, 3]`` pixel intrinsics.
        min_depth: keep points with ``z > min_depth`` (metres).
        margin: keep projections with ``margin < u < W - 1 - margin`` (and likewise v) before
            rounding to the nearest pixel.
    Returns:
        ``float32 [height, width]`` depth (z) in metres, 0 where no point landed.
    """
    pts = np.asarray(points_image, np.float64)
    z = pts[2]
    front = z > max(min_depth, 1e-6)
    pts, z = pts[:, front], z[front]
    uvw = K @ pts
    u, v = uvw[0] / z, uvw[1] / z
    inside = ((u > margin - 0.5) & (u < width - 0.5 - margin) &
              (v > margin - 0.5) & (v < height - 0.5 - margin))
    ui = np.rint(u[inside]).astype(np.int64)
    vi = np.rint(v[inside]).astype(np.int64)
    ok = (ui >= 0) & (ui < width) & (vi >= 0) & (vi < height)
    out = np.zeros((height, width), np.float32)
    return scatter_nearest_depth(ui[ok], vi[ok], z[inside][ok].astype(np.float32), out)


def build_pointcloud(lidar_dir: PathLike, lidar_times: np.ndarray, vo_times: np.ndarray,
                     vo_poses: np.ndarray, G_posesource_laser: np.ndarray, origin_time: int,
                     time_span_us: int) -> np.ndarray:
    """Accumulate 2D LMS scans within ``origin ± span`` into one cloud in the origin vehicle frame.

    Follows the SDK's ``build_pointcloud`` with VO poses: each scan ``(x, y, reflectance)`` is
    placed at z = 0 in the laser frame, moved by ``G_posesource_laser`` to the vehicle frame and
    by the interpolated VO pose relative to the origin time. Missing scan files are skipped.

    Returns:
        ``float64 [3, N]`` points (vehicle frame at ``origin_time``).
    Raises:
        SampleError: no scans in the window, or the window leaves the VO coverage.
    """
    lidar_dir = os.fspath(lidar_dir)
    sel = lidar_times[(lidar_times >= origin_time - time_span_us) &
                      (lidar_times <= origin_time + time_span_us)]
    if sel.size == 0:
        raise SampleError(f"{lidar_dir}@{origin_time}", "no lidar scans within "
                                                        f"±{time_span_us / 1e6:.1f} s")
    q = np.concatenate([[origin_time], sel]).astype(np.float64)
    poses, valid = interpolate_poses(vo_times, vo_poses, q)
    if not valid[0]:
        raise SampleError(f"{lidar_dir}@{origin_time}", "image time is outside the VO poses")
    rel = np.linalg.solve(poses[0], poses[1:])  # origin^-1 @ pose_i
    clouds = []
    for T, ok, ts in zip(rel, valid[1:], sel):
        if not ok:
            continue
        path = os.path.join(lidar_dir, f"{int(ts)}.bin")
        if not os.path.isfile(path):
            continue
        scan = np.fromfile(path, np.float64)
        if scan.size % 3:
            raise SampleError(path, f"{scan.size} doubles is not a multiple of 3 "
                                    f"(x, y, reflectance)")
        scan = scan.reshape(-1, 3).T
        pts = np.vstack([scan[0], scan[1], np.zeros(scan.shape[1]), np.ones(scan.shape[1])])
        clouds.append((T @ G_posesource_laser @ pts)[:3])
    if not clouds:
        raise SampleError(f"{lidar_dir}@{origin_time}", "no lidar scan files found in the window")
    return np.concatenate(clouds, axis=1)


# ----------------------------------------------------------------------------- splits

def parse_split_file(path: PathLike) -> Tuple[List[List[int]], List[Tuple[int, ...]]]:
    """Read a RobotCar split file (RNW or md4all format).

    * RNW: one timestamp per line (``.png`` or a path prefix allowed); lines starting with
      ``-----`` end a continuous chunk.
    * md4all: ``prev target next`` timestamps per line (training) or one per line (test).

    Returns:
        ``(chunks, triples)``: lists of timestamps per chunk (single-timestamp lines), and the
        explicit ``(prev, target, next)`` lines.
    """
    chunks: List[List[int]] = [[]]
    triples: List[Tuple[int, ...]] = []
    for line in read_list_file(path):
        if line.startswith("-----"):
            if chunks[-1]:
                chunks.append([])
            continue
        parts = line.replace(",", " ").split()
        try:
            stamps = [int(os.path.splitext(os.path.basename(p))[0]) for p in parts]
        except ValueError:
            raise DatasetError(f"{os.fspath(path)}: cannot read timestamps from line "
                               f"{line!r}") from None
        if len(stamps) == 1:
            chunks[-1].append(stamps[0])
        elif len(stamps) == 3:
            triples.append(tuple(stamps))
        else:
            raise DatasetError(f"{os.fspath(path)}: line {line!r} has {len(stamps)} timestamps; "
                               f"expected 1 (RNW) or 3 (md4all: prev target next)")
    return [c for c in chunks if c], triples


# ----------------------------------------------------------------------------- dataset

@dataclass
class _Sequence:
    name: str
    domain: str
    layout: str
    dir: str
    image_dir: str
    frame_times: np.ndarray           # all frames of the sequence, sorted (µs)
    frame_chunk: np.ndarray
    K: np.ndarray                      # full-resolution K
    camera: Optional[RobotCarCameraModel]
    T_vehicle_optical: np.ndarray
    vo: Optional[Tuple[np.ndarray, np.ndarray]]
    depth_source: str
    G_camera_vehicle: np.ndarray = dataclasses.field(default_factory=lambda: np.eye(4))
    lidar_times: Optional[np.ndarray] = None
    G_posesource_laser: Optional[np.ndarray] = None


class RobotCarDataset:
    """Oxford RobotCar clips (torch-free; ``__getitem__ -> Clip``).

    Args:
        root: dataset root (see the module docstring for both layouts).
        split: ``"train"``, ``"test"`` or ``"all"`` (every frame of the sequence). Split files
            are looked up per sequence as ``<seq>/<split>_split.txt`` (RNW),
            ``<root>/splits/<seq>_<split>.txt`` or ``<root>/splits/<seq>_<split>_stride_1.txt``
            (md4all), unless ``split_files`` names them.
        domain: keep only sequences of this domain (``"day"``/``"night"``); None = all.
        sequences: sequence folder names, or a ``{name: domain}`` mapping for sequences that
            are not RNW's two; None = RNW's day and night sequences found under ``root``.
        split_files: ``{sequence: path}`` overriding the lookup.
        layout: ``"auto"``, ``"raw"`` (SDK) or ``"rnw"`` (processed).
        offsets: clip frame offsets (frame positions in the continuous chunk); None = (-1, 0, 1)
            for training/all and (0,) for test (test targets then need no neighbours).
        crop_hw, size_hw: crop then resize (paper/RNW: (640, 1152) then (320, 576); md4all:
            (768, 1280) then (320, 544)); None skips the step.
        crop_anchor: where the ``crop_hw`` window sits (:data:`CROP_ANCHORS`): ``"center"``
            (RNW, default) or ``"top_left"`` (md4all: the top rows, from column 0).
        load_depth: read ground truth; None = only for ``split="test"``.
        depth_source: ``"auto"`` (precomputed ``depth/`` .npy, then md4all ``.pcd.bin``, then
            lidar scans), ``"npy"``, ``"pcd"``, ``"lidar"``.
        lidar_time_span_s: half-window of accumulated scans for ``"lidar"`` (md4all: 4 s).
        min_depth: lidar points closer than this (metres) are dropped.
        keep_full_depth: also put the crop-resolution ground truth (before resizing) in
            ``clip.meta['depth_full']`` with its K in ``meta['K_full']``; ``dasp eval`` then
            scores there, as RNW (1152x640 centre crop) and md4all (1280x768 top crop) do.
        undistort: undistort raw images with the SDK LUT (raw layout).
        models_dir, extrinsics_dir: SDK folders (default ``<root>/models``, ``<root>/extrinsics``).
        use_vo: read ``<seq>/vo/vo.csv`` when present for ``poses`` and ``speed``.
        camera: stereo camera folder, ``"centre"`` (RNW, default), ``"left"`` (md4all) or
            ``"right"``; selects ``stereo/<camera>`` and the SDK model.
    """

    def __init__(self, root: PathLike, split: str = "train", domain: Optional[str] = None,
                 sequences: Union[Sequence[str], Mapping[str, str], None] = None,
                 split_files: Optional[Mapping[str, PathLike]] = None, layout: str = "auto",
                 offsets: Optional[Sequence[int]] = None,
                 crop_hw: Optional[Tuple[int, int]] = (640, 1152),
                 size_hw: Optional[Tuple[int, int]] = (320, 576),
                 crop_anchor: str = "center",
                 load_depth: Optional[bool] = None, depth_source: str = "auto",
                 lidar_time_span_s: float = 4.0, min_depth: float = 0.0,
                 keep_full_depth: bool = False, undistort: bool = True,
                 models_dir: Optional[PathLike] = None,
                 extrinsics_dir: Optional[PathLike] = None, use_vo: bool = True,
                 camera: str = "centre"):
        self.root = os.fspath(root)
        self.camera = check_choice("camera", camera, tuple(STEREO_MODELS))
        self.split = check_choice("split", split, ("train", "test", "all"))
        if domain is not None:
            check_choice("domain", domain, DOMAINS)
        self.layout_arg = check_choice("layout", layout, ("auto", "raw", "rnw"))
        self.depth_source_arg = check_choice("depth_source", depth_source,
                                             ("auto", "npy", "pcd", "lidar"))
        if offsets is None:
            offsets = (0,) if split == "test" else (-1, 0, 1)
        self.offsets = tuple(int(o) for o in offsets)
        if 0 not in self.offsets:
            raise ConfigError("offsets", self.offsets, "a tuple containing 0 (the target)")
        self.crop_hw = None if crop_hw is None else (int(crop_hw[0]), int(crop_hw[1]))
        self.crop_anchor = check_choice("crop_anchor", crop_anchor, CROP_ANCHORS)
        self.size_hw = None if size_hw is None else (int(size_hw[0]), int(size_hw[1]))
        self.load_depth = (split == "test") if load_depth is None else bool(load_depth)
        self.lidar_span_us = int(round(lidar_time_span_s * 1e6))
        self.min_depth = float(min_depth)
        self.keep_full_depth = keep_full_depth
        self.undistort = undistort
        self.models_dir = os.fspath(models_dir) if models_dir else os.path.join(self.root, "models")
        self.extrinsics_dir = (os.fspath(extrinsics_dir) if extrinsics_dir
                               else os.path.join(self.root, "extrinsics"))
        self.use_vo = use_vo
        if not os.path.isdir(self.root):
            raise DatasetError(f"RobotCar root {self.root!r} does not exist")

        seq_domains = self._resolve_sequences(sequences, domain)
        self.sequences: List[_Sequence] = []
        self.items: List[Tuple[int, Tuple[int, ...]]] = []
        for name, dom in seq_domains.items():
            seq = self._open_sequence(name, dom)
            si = len(self.sequences)
            self.sequences.append(seq)
            path = self._split_path(name, split_files)
            clips = self._clips_for(seq, path)
            self.items.extend((si, c) for c in clips)
            log.info("RobotCar %s (%s, %s layout): %d %s clips%s", name, dom, seq.layout,
                     len(clips), split, f" from {path}" if path else "")
        if not self.items:
            raise DatasetError(f"RobotCar root {self.root!r}: no {split} clips with offsets "
                               f"{self.offsets} in sequences {list(seq_domains)}")

    # -- construction
    def _resolve_sequences(self, sequences, domain) -> Dict[str, str]:
        present = sorted(n for n in os.listdir(self.root)
                         if os.path.isdir(os.path.join(self.root, n)))
        if sequences is None:
            chosen = {n: d for n, d in KNOWN_SEQUENCES.items() if domain in (None, d)}
            found = {n: d for n, d in chosen.items() if n in present}
            if not found:
                raise DatasetError(
                    f"RobotCar root {self.root!r} has none of the expected sequence folders "
                    f"{sorted(chosen)} (RNW protocol); found {present[:10]}. Pass "
                    f"sequences={{name: 'day'|'night'}} for other sequences")
            return found
        if isinstance(sequences, Mapping):
            mapping = {str(k): str(v) for k, v in sequences.items()}
        else:
            mapping = {}
            for n in sequences:
                if n not in KNOWN_SEQUENCES:
                    raise ConfigError(f"sequences.{n}", n, "a {name: 'day'|'night'} mapping for "
                                      f"sequences other than {sorted(KNOWN_SEQUENCES)}")
                mapping[n] = KNOWN_SEQUENCES[n]
        for n, d in mapping.items():
            check_choice(f"sequences.{n}", d, DOMAINS)
            if n not in present:
                raise DatasetError(f"RobotCar root {self.root!r}: sequence folder {n!r} not "
                                   f"found; found {present[:10]}")
        mapping = {n: d for n, d in mapping.items() if domain in (None, d)}
        if not mapping:
            raise DatasetError(f"RobotCar: no sequence of domain {domain!r} among {sequences}")
        return mapping

    def _open_sequence(self, name: str, domain: str) -> _Sequence:
        sdir = os.path.join(self.root, name)
        raw_dir = os.path.join(sdir, "stereo", self.camera)
        rnw_dir = os.path.join(sdir, "rgb")
        layout = self.layout_arg
        if layout == "auto":
            layout = "raw" if os.path.isdir(raw_dir) else "rnw" if os.path.isdir(rnw_dir) else ""
        if not layout or not os.path.isdir(raw_dir if layout == "raw" else rnw_dir):
            raise DatasetError(
                f"RobotCar sequence {sdir!r} is not a RobotCar sequence folder: expected "
                f"stereo/centre/ (raw SDK layout) or rgb/ (RNW processed layout)")

        camera: Optional[RobotCarCameraModel] = None
        if layout == "raw":
            camera = RobotCarCameraModel(self.models_dir, STEREO_MODELS[self.camera],
                                         require_lut=self.undistort)
            tpath = os.path.join(sdir, "stereo.timestamps")
            if os.path.isfile(tpath):
                times, chunks = read_timestamps(tpath)
            else:
                times = self._times_from_dir(raw_dir)
                chunks = np.zeros_like(times)
            K = camera.K
            image_dir = raw_dir
        else:
            times = self._times_from_dir(rnw_dir)
            chunks = np.zeros_like(times)
            image_dir = rnw_dir
            model = STEREO_MODELS[self.camera]
            if os.path.isfile(os.path.join(self.models_dir, model + ".txt")):
                camera = RobotCarCameraModel(self.models_dir, model, require_lut=False)
            K = self._rnw_intrinsic(sdir, camera)
        order = np.argsort(times, kind="stable")
        times, chunks = times[order], chunks[order]
        if times.size == 0:
            raise DatasetError(f"RobotCar sequence {sdir!r}: no frames in {image_dir!r}")

        G_ci = camera.G_camera_image if camera is not None else G_CAMERA_IMAGE_DEFAULT
        G_cv = self._extrinsic("stereo", required=False)
        T_vehicle_optical = np.linalg.solve(G_cv, G_ci)  # inv(G_camera_vehicle) @ G_camera_image

        vo = None
        vo_path = os.path.join(sdir, "vo", "vo.csv")
        if self.use_vo and os.path.isfile(vo_path):
            vo = read_vo(vo_path)

        depth_source = "none"
        seq = _Sequence(name=name, domain=domain, layout=layout, dir=sdir, image_dir=image_dir,
                        frame_times=times, frame_chunk=chunks, K=K, camera=camera,
                        T_vehicle_optical=T_vehicle_optical, vo=vo, depth_source=depth_source,
                        G_camera_vehicle=G_cv)
        if self.load_depth:
            seq.depth_source = self._choose_depth_source(seq)
        return seq

    @staticmethod
    def _times_from_dir(folder: str) -> np.ndarray:
        stamps = []
        for n in os.listdir(folder):
            stem, ext = os.path.splitext(n)
            if ext.lower() == ".png" and stem.isdigit():
                stamps.append(int(stem))
        return np.asarray(stamps, np.int64)

    def _rnw_intrinsic(self, sdir: str, camera: Optional[RobotCarCameraModel]) -> np.ndarray:
        cands = [os.path.join(sdir, "intrinsic.npy")]
        # RNW keeps one intrinsic.npy (in the night sequence) for both sequences.
        cands += [os.path.join(self.root, n, "intrinsic.npy") for n in KNOWN_SEQUENCES]
        for p in cands:
            if os.path.isfile(p):
                try:
                    k = np.load(p, allow_pickle=False).astype(np.float64)
                except (OSError, ValueError) as exc:
                    raise DatasetError(f"{p}: cannot read intrinsics ({exc})") from exc
                if k.shape not in ((3, 3), (4, 4)):
                    raise DatasetError(f"{p}: intrinsics of shape {k.shape}; expected 3x3 or 4x4")
                return np.array([[k[0, 0], 0.0, k[0, 2]], [0.0, k[1, 1], k[1, 2]], [0, 0, 1.0]])
        if camera is not None:
            return camera.K
        raise DatasetError(f"RobotCar sequence {sdir!r} (RNW layout): no intrinsic.npy and no "
                           f"SDK camera model in {self.models_dir!r}")

    def _extrinsic(self, sensor: str, required: bool) -> np.ndarray:
        path = os.path.join(self.extrinsics_dir, sensor + ".txt")
        if not os.path.isfile(path):
            if required:
                raise DatasetError(f"RobotCar extrinsics {path!r} not found (SDK extrinsics/ "
                                   f"folder, 'x y z roll pitch yaw')")
            # The stereo camera defines RobotCar's vehicle frame (stereo.txt is all zeros).
            return np.eye(4)
        try:
            with open(path) as fh:
                vals = [float(x) for x in fh.readline().split()]
            return build_se3_transform(vals)
        except (ValueError, OSError) as exc:
            raise DatasetError(f"{path}: expected 'x y z roll pitch yaw' ({exc})") from exc

    def _choose_depth_source(self, seq: _Sequence) -> str:
        npy_dir = os.path.join(seq.dir, "depth")
        pcd_dir = os.path.join(seq.dir, "lms_front_synchronized")
        lms_dir = os.path.join(seq.dir, "lms_front")
        src = self.depth_source_arg
        if src == "auto":
            src = ("npy" if os.path.isdir(npy_dir) else "pcd" if os.path.isdir(pcd_dir)
                   else "lidar" if os.path.isdir(lms_dir) else "")
            if not src:
                raise DatasetError(
                    f"RobotCar sequence {seq.dir!r}: ground truth requested but there is no "
                    f"depth/ (precomputed .npy), lms_front_synchronized/ (md4all) or lms_front/ "
                    f"(raw scans); pass load_depth=False to read images only")
        if src == "npy" and not os.path.isdir(npy_dir):
            raise DatasetError(f"RobotCar: {npy_dir!r} not found (depth_source='npy')")
        if src == "pcd":
            if not os.path.isdir(pcd_dir):
                raise DatasetError(f"RobotCar: {pcd_dir!r} not found (depth_source='pcd')")
            if seq.camera is None:
                seq.camera = RobotCarCameraModel(self.models_dir, STEREO_MODELS[self.camera],
                                                 require_lut=False)
        if src == "lidar":
            if seq.vo is None:
                raise DatasetError(f"RobotCar: lidar ground truth needs {seq.dir}/vo/vo.csv")
            tpath = os.path.join(seq.dir, "lms_front.timestamps")
            if not os.path.isfile(tpath):
                raise DatasetError(f"RobotCar: {tpath!r} not found (depth_source='lidar')")
            seq.lidar_times = np.sort(read_timestamps(tpath)[0])
            seq.G_posesource_laser = self._extrinsic("lms_front", required=True)
            if seq.camera is None:
                seq.camera = RobotCarCameraModel(self.models_dir, STEREO_MODELS[self.camera],
                                                 require_lut=False)
        return src

    def _split_path(self, name: str, split_files: Optional[Mapping[str, PathLike]]
                    ) -> Optional[str]:
        if self.split == "all":
            return None
        if split_files and name in split_files:
            return os.fspath(split_files[name])
        cands = [os.path.join(self.root, name, f"{self.split}_split.txt"),
                 os.path.join(self.root, "splits", f"{name}_{self.split}.txt"),
                 os.path.join(self.root, "splits", f"{name}_{self.split}_stride_1.txt"),
                 os.path.join(self.root, "split_files", name, f"{self.split}_split.txt")]
        for p in cands:
            if os.path.isfile(p):
                return p
        raise DatasetError(f"RobotCar: no {self.split} split file for {name}; looked for "
                           f"{cands}. Pass split_files={{'{name}': path}} or split='all'")

    def _clips_for(self, seq: _Sequence, split_path: Optional[str]) -> List[Tuple[int, ...]]:
        lo, hi = -min(self.offsets), max(self.offsets)
        if split_path is None:
            chunks = self._continuous_chunks(seq)
            triples: List[Tuple[int, ...]] = []
        else:
            chunks, triples = parse_split_file(split_path)
        clips: List[Tuple[int, ...]] = []
        pos = {int(t): i for i, t in enumerate(seq.frame_times)}
        dropped = 0
        is_test = self.split == "test"
        for chunk in chunks:
            if is_test:
                # Test lists are targets, not continuous chunks: neighbours come from the
                # sequence's own frame list.
                for t in chunk:
                    c = self._neighbours(seq, pos, t)
                    if c is None:
                        dropped += 1
                    else:
                        clips.append(c)
                continue
            for j in range(lo, len(chunk) - hi):
                clips.append(tuple(int(chunk[j + o]) for o in self.offsets))
        std = sorted(self.offsets) == [-1, 0, 1]
        for prev, tgt, nxt in triples:
            if std:
                m = {-1: prev, 0: tgt, 1: nxt}
                clips.append(tuple(m[o] for o in self.offsets))
            else:
                c = self._neighbours(seq, pos, tgt)
                if c is None:
                    dropped += 1
                else:
                    clips.append(c)
        if dropped:
            log.warning("RobotCar %s: %d split entries skipped (frame or neighbours for offsets "
                        "%s not in the sequence)", seq.name, dropped, self.offsets)
        return clips

    def _neighbours(self, seq: _Sequence, pos: Dict[int, int], t: int) -> Optional[Tuple[int, ...]]:
        i = pos.get(int(t))
        if i is None:
            return None
        idx = [i + o for o in self.offsets]
        if min(idx) < 0 or max(idx) >= seq.frame_times.size:
            return None
        if len({int(seq.frame_chunk[j]) for j in idx}) != 1:
            return None
        return tuple(int(seq.frame_times[j]) for j in idx)

    def _continuous_chunks(self, seq: _Sequence) -> List[List[int]]:
        """Split all frames into chunks at chunk-id changes and time gaps > 3x the median."""
        t = seq.frame_times
        if t.size < 2:
            return [list(map(int, t))]
        dt = np.diff(t)
        med = float(np.median(dt))
        breaks = np.nonzero((dt > 3 * med) | (np.diff(seq.frame_chunk) != 0))[0] + 1
        return [list(map(int, c)) for c in np.split(t, breaks) if c.size]

    # -- loading
    def __len__(self) -> int:
        return len(self.items)

    def _load_frame(self, seq: _Sequence, t: int) -> np.ndarray:
        path = os.path.join(seq.image_dir, f"{t}.png")
        if not os.path.isfile(path):
            raise SampleError(path, "frame missing")
        data = np.fromfile(path, np.uint8)
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        if img is None:
            raise SampleError(path, "not a readable PNG (corrupt or truncated)")
        if img.ndim == 2:
            img = demosaic_gbrg(img)
            if seq.layout == "raw" and self.undistort and seq.camera is not None:
                img = seq.camera.undistort(img)
        else:
            img = to_rgb8(img, path, "BGR")  # already colour (processed images)
        return img

    def _load_depth(self, seq: _Sequence, t: int, shape: Tuple[int, int]) -> np.ndarray:
        H, W = shape
        if seq.depth_source == "npy":
            for name in (f"{t}_depth.npy", f"{t}.npy", f"{t}_depth.npz", f"{t}.npz"):
                p = os.path.join(seq.dir, "depth", name)
                if os.path.isfile(p):
                    d = read_depth_file(p)
                    if d.shape != (H, W):
                        raise SampleError(p, f"depth is {d.shape[1]}x{d.shape[0]}, image {W}x{H}")
                    return d
            raise SampleError(os.path.join(seq.dir, "depth", f"{t}_depth.npy"),
                              "ground-truth depth missing")
        cam = seq.camera
        assert cam is not None
        if seq.depth_source == "pcd":
            p = self._find_pcd(seq, t)
            pts = np.fromfile(p, np.float32)
            if pts.size % 3:
                raise SampleError(p, f"{pts.size} floats is not 3 x N")
            pts_cam = pts.reshape(3, -1).astype(np.float64)
        else:
            assert seq.vo is not None and seq.lidar_times is not None
            cloud = build_pointcloud(os.path.join(seq.dir, "lms_front"), seq.lidar_times,
                                     seq.vo[0], seq.vo[1], seq.G_posesource_laser, t,
                                     self.lidar_span_us)
            pts_cam = (seq.G_camera_vehicle @ np.vstack([cloud, np.ones(cloud.shape[1])]))[:3]
        pts_h = np.vstack([pts_cam, np.ones(pts_cam.shape[1])])
        pts_img = np.linalg.solve(cam.G_camera_image, pts_h)[:3]  # SDK camera → optical frame
        return points_to_depth_map(pts_img, seq.K, H, W, min_depth=self.min_depth)

    @staticmethod
    def _find_pcd(seq: _Sequence, t: int) -> str:
        base = os.path.join(seq.dir, "lms_front_synchronized")
        for dirpath, _dirs, files in os.walk(base):
            if f"{t}.pcd.bin" in files:
                return os.path.join(dirpath, f"{t}.pcd.bin")
        raise SampleError(os.path.join(base, f"{t}.pcd.bin"), "precomputed point cloud missing")

    def _poses_and_speed(self, seq: _Sequence, times: Sequence[int]
                         ) -> Tuple[Optional[np.ndarray], Optional[float]]:
        if seq.vo is None:
            return None, None
        tgt = times[self.offsets.index(0)]
        q = np.asarray([tgt] + list(times), np.float64)
        A, valid = interpolate_poses(seq.vo[0], seq.vo[1], q)
        if not np.all(valid):
            return None, None
        T_vo = seq.T_vehicle_optical
        rel = np.linalg.solve(A[0], A[1:])                          # target vehicle ← frame i
        poses = np.linalg.solve(T_vo, rel @ T_vo)                   # target optical ← optical i
        speed = None
        lo, hi = int(np.argmin(self.offsets)), int(np.argmax(self.offsets))
        if hi != lo and times[hi] != times[lo]:
            dist = np.linalg.norm(poses[hi][:3, 3] - poses[lo][:3, 3])
            speed = float(dist / ((times[hi] - times[lo]) * 1e-6))
        return poses, speed

    def _crop(self, clip: Clip) -> Clip:
        """Cut the ``crop_hw`` window at :attr:`crop_anchor` (frames, depth and K)."""
        ch, cw = self.crop_hw  # type: ignore[misc]
        if self.crop_anchor == "center":
            x0, y0 = center_crop_box(clip.height, clip.width, ch, cw)
        else:
            x0, y0 = 0, 0
        return crop_clip(clip, x0, y0, ch, cw)

    def __getitem__(self, index: int) -> Clip:
        si, times = self.items[index]
        seq = self.sequences[si]
        tgt = times[self.offsets.index(0)]
        source = f"robotcar:{seq.name}/{tgt}"
        frames = [self._load_frame(seq, t) for t in times]
        if len({f.shape for f in frames}) != 1:
            raise SampleError(source, f"frames differ in size: {[f.shape for f in frames]}")
        H, W = frames[0].shape[:2]
        depth = self._load_depth(seq, tgt, (H, W)) if seq.depth_source != "none" else None
        poses, speed = self._poses_and_speed(seq, times)
        clip = Clip(frames=np.stack(frames), K=seq.K, domain=seq.domain, offsets=self.offsets,
                    depth=depth, poses=poses, speed=speed,
                    dt=clip_dt(np.asarray(times, np.float64) * 1e-6, self.offsets),
                    source=source,
                    meta={"sequence": seq.name, "timestamps": list(times), "depth_sparse": True})
        try:
            if self.crop_hw is not None:
                clip = self._crop(clip)
            if self.keep_full_depth and clip.depth is not None:
                clip.meta["depth_full"] = clip.depth.copy()
                clip.meta["K_full"] = clip.K.copy()
            if self.size_hw is not None:
                clip = resize_clip(clip, self.size_hw)
        except ValueError as exc:
            raise SampleError(source, str(exc)) from exc
        return clip
