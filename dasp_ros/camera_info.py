"""Camera intrinsics for the node, in numpy: CameraInfo → K, resizing, rays, output CameraInfo.

Conventions are those of :mod:`dasp_core.geometry` (which is torch; the deployment path must not
need torch, so the few formulas used here are in numpy and tested against it; :func:`scale_K`
is the torch-free one of :mod:`dasp_core.data.augment`, shared with the dataset readers):

* pixel-centre convention: the centre of the top-left pixel is (0, 0), and resizing by
  ``s`` maps ``c -> (c + 0.5) * s - 0.5`` (exact for ``cv2.resize``);
* REP 103 optical frame (x right, y down, z forward); rays are normalised image coordinates
  ``(x/z, y/z)`` with lens distortion removed.

``sensor_msgs/CameraInfo`` (REP 104): ``roi`` is in full-resolution (unbinned) sensor
coordinates, ``binning_x/y`` of 0 or 1 mean none; a CameraInfo whose image size differs from
the image it accompanies is rescaled to it. ``image_geometry`` applies binning with
``cx / binning`` (pixel-corner convention); we use the pixel-centre form, a quarter-pixel
difference at binning 2.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Optional, Tuple

import cv2
import numpy as np

from dasp_core.data.augment import scale_K

__all__ = ["CameraInfoError", "Intrinsics", "scale_K", "scale_P", "intrinsics_from_camera_info",
           "intrinsics_from_fov", "pixel_rays", "RayCache", "camera_info_fields",
           "to_camera_info"]

DISTORTION_MODELS = ("plumb_bob", "rational_polynomial", "equidistant")
CAMERA_INFO_ERROR_REASONS = ("zero_focal", "negative_focal", "non_finite", "distortion",
                             "size")


class CameraInfoError(ValueError):
    """A CameraInfo cannot be used; ``reason`` is one of :data:`CAMERA_INFO_ERROR_REASONS`."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(f"{reason}: {message}")


def scale_P(P: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """``[3, 4]`` projection matrix of a resized image (rows 0/1 as :func:`scale_K`; the
    baseline terms ``Tx = -fx' B`` and ``Ty`` scale with the focal length)."""
    P = np.array(P, dtype=np.float64, copy=True)
    P[0, [0, 1, 3]] *= sx
    P[1, [1, 3]] *= sy
    P[0, 2] = (P[0, 2] + 0.5) * sx - 0.5
    P[1, 2] = (P[1, 2] + 0.5) * sy - 0.5
    return P


@dataclass(frozen=True)
class Intrinsics:
    """Calibration of one image size.

    Attributes:
        K: ``[3, 3]`` pixel intrinsics for ``width x height``.
        width, height: image size in pixels.
        D: distortion coefficients (empty or zeros: none).
        distortion_model: ``plumb_bob`` | ``rational_polynomial`` | ``equidistant``.
        R: ``[3, 3]`` rectification rotation; P: ``[3, 4]`` projection (pixels, this size).
    """

    K: np.ndarray
    width: int
    height: int
    D: np.ndarray = field(default_factory=lambda: np.zeros(5))
    distortion_model: str = "plumb_bob"
    R: np.ndarray = field(default_factory=lambda: np.eye(3))
    P: Optional[np.ndarray] = None

    @property
    def has_distortion(self) -> bool:
        return self.D.size > 0 and bool(np.any(self.D != 0))

    def projection(self) -> np.ndarray:
        """``P``, or ``[K | 0]`` when the CameraInfo had none."""
        if self.P is not None:
            return self.P
        return np.concatenate([self.K, np.zeros((3, 1))], axis=1)

    def resized(self, width: int, height: int) -> "Intrinsics":
        """The same camera for the image resized to ``width x height``; D and R do not change
        (they act on normalised coordinates)."""
        if (width, height) == (self.width, self.height):
            return self
        sx, sy = width / self.width, height / self.height
        return Intrinsics(scale_K(self.K, sx, sy), int(width), int(height), self.D,
                          self.distortion_model, self.R,
                          None if self.P is None else scale_P(self.P, sx, sy))

    def key(self) -> Tuple:
        """Hashable identity (for caches)."""
        return (self.width, self.height, self.distortion_model, self.K.tobytes(),
                self.D.tobytes())


def _matrix(values: Any, shape: Tuple[int, int]) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(shape)


def intrinsics_from_camera_info(msg: Any, image_size: Optional[Tuple[int, int]] = None,
                                rectified: bool = False) -> Intrinsics:
    """Usable intrinsics from a ``sensor_msgs/CameraInfo`` (rclpy or rosbags).

    Args:
        msg: the CameraInfo (``k``, ``d``, ``p``, ``r``, ``width``, ``height``, ``binning_x/y``,
            ``roi``, ``distortion_model``).
        image_size: ``(width, height)`` of the image it goes with; the calibration is rescaled
            to it when it differs (after ROI and binning). ``None``: the CameraInfo's own size.
        rectified: the image is rectified (``image_rect``): use ``P[:3, :3]`` as K and no
            distortion, as ``image_geometry`` does for rectified images.
    Raises:
        CameraInfoError: zero/negative focal length, NaN/Inf, unknown distortion model with
            non-zero coefficients, or no size at all.
    """
    K = _matrix(msg.k, (3, 3))
    P = _matrix(msg.p, (3, 4))
    R = _matrix(msg.r, (3, 3))
    D = np.asarray(msg.d, dtype=np.float64).reshape(-1)
    model = str(msg.distortion_model).strip()
    if rectified:
        if P[0, 0] == 0 and P[1, 1] == 0:  # drivers without rectification leave P empty
            P = np.concatenate([K, np.zeros((3, 1))], axis=1)
        K, D, model, R = P[:3, :3].copy(), np.zeros(5), "plumb_bob", np.eye(3)
    if not (np.all(np.isfinite(K)) and np.all(np.isfinite(D))):
        raise CameraInfoError("non_finite", f"K or D contains NaN/Inf: K={K.ravel().tolist()}")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        reason = "negative_focal" if min(K[0, 0], K[1, 1]) < 0 else "zero_focal"
        raise CameraInfoError(reason, f"focal length fx={K[0, 0]}, fy={K[1, 1]} must be > 0 "
                                      "(uncalibrated camera?)")
    if D.size and np.any(D != 0) and model not in DISTORTION_MODELS:
        raise CameraInfoError("distortion", f"distortion_model {model!r} is not supported; "
                                            f"supported: {', '.join(DISTORTION_MODELS)}")
    if model == "equidistant" and D.size not in (0, 4) and np.any(D[4:] != 0):
        raise CameraInfoError("distortion", f"equidistant needs 4 coefficients, got {D.size}")
    if not np.all(np.isfinite(P)) or P[0, 0] <= 0 or P[1, 1] <= 0:
        P = None  # an uncalibrated P is common and harmless: fall back to [K | 0]
    width, height = int(msg.width), int(msg.height)
    # ROI (full-resolution sensor pixels) then binning, pixel-centre convention
    roi = getattr(msg, "roi", None)
    x0 = int(getattr(roi, "x_offset", 0) or 0)
    y0 = int(getattr(roi, "y_offset", 0) or 0)
    if roi is not None and int(roi.width) > 0 and int(roi.height) > 0:
        width, height = int(roi.width), int(roi.height)
    if x0 or y0:
        K = K.copy()
        K[0, 2] -= x0
        K[1, 2] -= y0
        if P is not None:
            P = P.copy()
            P[0, 2] -= x0
            P[1, 2] -= y0
    bx = max(int(getattr(msg, "binning_x", 0) or 0), 1)
    by = max(int(getattr(msg, "binning_y", 0) or 0), 1)
    if bx > 1 or by > 1:
        K = scale_K(K, 1.0 / bx, 1.0 / by)
        P = None if P is None else scale_P(P, 1.0 / bx, 1.0 / by)
        width, height = width // bx, height // by
    if width <= 0 or height <= 0:
        if image_size is None:
            raise CameraInfoError("size", f"CameraInfo has size {width}x{height} and no image "
                                          "size was given")
        width, height = image_size
    intr = Intrinsics(K, width, height, D if D.size else np.zeros(5),
                      model or "plumb_bob", R, P)
    if image_size is not None and tuple(image_size) != (width, height):
        intr = intr.resized(*image_size)
    return intr


def intrinsics_from_fov(width: int, height: int, fov_deg: float) -> Intrinsics:
    """Pinhole intrinsics from a horizontal field of view (square pixels, centred principal
    point ``((W-1)/2, (H-1)/2)``, no distortion) — the node's fallback without CameraInfo."""
    if not 0 < fov_deg < 180:
        raise ValueError(f"fov_deg must be in (0, 180), got {fov_deg}")
    f = 0.5 * width / math.tan(math.radians(fov_deg) / 2.0)
    K = np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])
    return Intrinsics(K, int(width), int(height))


def pixel_rays(intr: Intrinsics, decimation: int = 1) -> np.ndarray:
    """Normalised rays ``float32 [h', w', 2]`` = ``(x/z, y/z)`` of pixels ``(u, v) = (d j, d i)``.

    ``h' = ceil(H / d)``, ``w' = ceil(W / d)`` (the pixels ``depth[::d, ::d]`` picks). Lens
    distortion is removed with OpenCV (``undistortPoints``, or ``fisheye.undistortPoints`` for
    ``equidistant``). A 3D point is ``depth * (x, y, 1)``.
    """
    d = int(decimation)
    u = np.arange(0, intr.width, d, dtype=np.float64)
    v = np.arange(0, intr.height, d, dtype=np.float64)
    uu, vv = np.meshgrid(u, v)
    if not intr.has_distortion:
        K = intr.K
        y = (vv - K[1, 2]) / K[1, 1]
        x = (uu - K[0, 2] - K[0, 1] * y) / K[0, 0]
        return np.stack([x, y], axis=-1).astype(np.float32)
    pts = np.stack([uu, vv], axis=-1).reshape(-1, 1, 2)
    if intr.distortion_model == "equidistant":
        und = cv2.fisheye.undistortPoints(pts, intr.K, intr.D[:4].reshape(4, 1))
    else:
        und = cv2.undistortPoints(pts, intr.K, intr.D)
    return und.reshape(len(v), len(u), 2).astype(np.float32)


class RayCache:
    """Keeps the last few ray grids: undistorting every pixel costs milliseconds, and the
    calibration and output size almost never change."""

    def __init__(self, size: int = 4):
        self._size = size
        self._cache: "OrderedDict[Tuple, np.ndarray]" = OrderedDict()

    def get(self, intr: Intrinsics, decimation: int = 1) -> np.ndarray:
        key = (intr.key(), int(decimation))
        rays = self._cache.get(key)
        if rays is None:
            rays = pixel_rays(intr, decimation)
            self._cache[key] = rays
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return rays


def camera_info_fields(intr: Intrinsics) -> dict:
    """Fields of the CameraInfo describing an image of ``intr`` (binning and ROI applied, so
    they are zero)."""
    D = intr.D if intr.D.size else np.zeros(5)
    return {"width": intr.width, "height": intr.height,
            "distortion_model": intr.distortion_model,
            "d": [float(x) for x in D], "k": intr.K.reshape(-1).astype(np.float64),
            "r": np.asarray(intr.R, np.float64).reshape(-1),
            "p": intr.projection().reshape(-1).astype(np.float64)}


def to_camera_info(intr: Intrinsics, header: Any = None) -> Any:
    """rclpy ``sensor_msgs.msg.CameraInfo`` for an image of ``intr``."""
    from sensor_msgs.msg import CameraInfo

    f = camera_info_fields(intr)
    msg = CameraInfo()
    if header is not None:
        msg.header = header
    msg.width, msg.height, msg.distortion_model = f["width"], f["height"], f["distortion_model"]
    msg.d, msg.k, msg.r, msg.p = f["d"], f["k"], f["r"], f["p"]
    return msg
