"""Metric scale for monocular depth at run time (numpy only; no torch, no ROS).

Self-supervised monocular depth is known only up to scale. The node turns the network's depth
into metres from one declared source (DESIGN.md, "Scale"):

* ``model``: the factor stored in the model's :class:`~dasp_core.runtime.base.ModelInfo`
  (learned in training from odometry speed, or calibrated and written at export); the
  estimator's ``predict`` already applies it.
* ``fixed``: a user-calibrated factor that *replaces* the model's.
* ``camera_height``: the camera's known height above a flat ground (ours): back-project the
  lower part of the image, fit a plane with RANSAC, and scale so that the camera-to-plane
  distance equals the known height; the fitted height is smoothed over time (EMA in log space,
  so that ×2 and ×½ errors weigh the same).
* ``none``: relative depth (the network's own units), flagged to the user.

Frames: REP 103 optical frame (x right, y down, z forward); for an upright camera "up" is
``-y``. Depth is z-depth (not ray length).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from dasp_core.errors import check_choice, check_range
from dasp_core.runtime.base import ModelInfo

__all__ = ["SCALE_MODES", "pinhole_rays", "PlaneFit", "fit_plane_ransac", "GroundPlaneConfig",
           "GroundPlaneScale", "MetricScaler"]

SCALE_MODES = ("model", "fixed", "camera_height", "none")
UP = np.array([0.0, -1.0, 0.0])  # optical frame: y points down


def pinhole_rays(K: np.ndarray, height: int, width: int) -> np.ndarray:
    """Normalised rays ``float32 [H, W, 2]`` = ``K^-1 (u, v, 1)`` (x/z, y/z), no distortion.

    Pixel-centre convention: pixel (u, v) has its centre at integer coordinates.
    """
    K = np.asarray(K, dtype=np.float64)
    v, u = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64),
                       indexing="ij")
    y = (v - K[1, 2]) / K[1, 1]
    x = (u - K[0, 2] - K[0, 1] * y) / K[0, 0]
    return np.stack([x, y], axis=-1).astype(np.float32)


@dataclass
class PlaneFit:
    """Plane ``n · X + d = 0`` with unit ``normal`` pointing up (towards the camera side).

    ``height`` = ``d`` = distance of the camera centre above the plane (same units as the
    points); ``inlier_ratio`` is the share of points within the RANSAC threshold.
    """

    normal: np.ndarray
    d: float
    inlier_ratio: float
    n_points: int

    @property
    def height(self) -> float:
        return self.d

    @property
    def tilt_deg(self) -> float:
        """Angle between the plane normal and the camera's up axis (-y), degrees."""
        return math.degrees(math.acos(float(np.clip(self.normal @ UP, -1.0, 1.0))))


def _refine(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares plane through ``points [N, 3]`` (smallest principal axis); n · up >= 0."""
    c = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - c, full_matrices=False)
    n = vt[2]
    if n @ UP < 0:
        n = -n
    return n, float(-n @ c)


def fit_plane_ransac(points: np.ndarray, threshold: float, iterations: int = 64,
                     max_tilt_deg: float = 20.0, min_inlier_ratio: float = 0.3,
                     rng: Optional[np.random.Generator] = None) -> Optional[PlaneFit]:
    """Fit the ground plane to ``points [N, 3]`` (camera frame) with RANSAC + least squares.

    All hypotheses are scored at once (``[iterations, N]`` distances), then the best one's
    inliers are refitted by SVD and re-scored.

    Args:
        points: ``float [N, 3]`` finite points.
        threshold: inlier distance, in the points' units.
        iterations: number of 3-point hypotheses.
        max_tilt_deg: reject planes whose normal is further than this from up (-y): walls,
            and camera pitch/roll beyond what is expected.
        min_inlier_ratio: reject fits supported by fewer points than this share.
    Returns:
        The fit, or ``None`` when there are too few points, no hypothesis within the tilt
        limit, too few inliers, or the plane is not below the camera (``d <= 0``).
    """
    pts = np.asarray(points, dtype=np.float64)
    n_pts = pts.shape[0]
    if n_pts < 10:
        return None
    rng = rng if rng is not None else np.random.default_rng(0)
    idx = rng.integers(0, n_pts, size=(iterations, 3))
    p0, p1, p2 = pts[idx[:, 0]], pts[idx[:, 1]], pts[idx[:, 2]]
    normals = np.cross(p1 - p0, p2 - p0)
    norm = np.linalg.norm(normals, axis=1)
    ok = norm > 1e-12
    normals = normals[ok] / norm[ok, None]
    p0 = p0[ok]
    normals *= np.where(normals @ UP < 0, -1.0, 1.0)[:, None]
    cos_max = math.cos(math.radians(max_tilt_deg))
    keep = normals @ UP >= cos_max
    normals, p0 = normals[keep], p0[keep]
    if normals.shape[0] == 0:
        return None
    d = -np.einsum("ij,ij->i", normals, p0)
    counts = (np.abs(pts @ normals.T + d[None, :]) < threshold).sum(axis=0)
    best = int(np.argmax(counts))
    inliers = np.abs(pts @ normals[best] + d[best]) < threshold
    if inliers.sum() < 3:
        return None
    n, dd = _refine(pts[inliers])
    inliers = np.abs(pts @ n + dd) < threshold
    ratio = float(inliers.mean())
    fit = PlaneFit(n, dd, ratio, n_pts)
    if ratio < min_inlier_ratio or dd <= 0 or n @ UP < cos_max:
        return None
    return fit


@dataclass
class GroundPlaneConfig:
    """Settings of the camera-height scale estimate (ours).

    Attributes:
        roi_fraction: lower share of image rows searched for ground (0, 1].
        max_points: random subsample of the ROI (bounds the cost, ~1 ms).
        iterations: RANSAC hypotheses.
        inlier_threshold: inlier distance relative to the ROI's median depth (scale-free).
        min_inlier_ratio: share of ROI points that must lie on the plane.
        max_tilt_deg: largest accepted angle between plane normal and camera up (-y).
        smoothing: weight of the previous height in the log-space EMA, [0, 1).
        seed: RNG seed (reproducible fits).
    """

    roi_fraction: float = 0.35
    max_points: int = 2000
    iterations: int = 64
    inlier_threshold: float = 0.02
    min_inlier_ratio: float = 0.3
    max_tilt_deg: float = 20.0
    smoothing: float = 0.9
    seed: int = 0

    def validate(self) -> "GroundPlaneConfig":
        check_range("ground_roi_fraction", self.roi_fraction, 0.0, 1.0, lo_open=True)
        check_range("ground.max_points", self.max_points, 10)
        check_range("ground.iterations", self.iterations, 1)
        check_range("ground.inlier_threshold", self.inlier_threshold, 0.0, lo_open=True)
        check_range("ground.min_inlier_ratio", self.min_inlier_ratio, 0.0, 1.0)
        check_range("ground_max_tilt_deg", self.max_tilt_deg, 0.0, 90.0)
        check_range("scale_smoothing", self.smoothing, 0.0, 1.0, hi_open=True)
        return self


class GroundPlaneScale:
    """Tracks the camera's height above the ground in the depth map's own units.

    ``update(depth, rays)`` fits the ground in the lower image, folds the fitted height into
    a log-space EMA and returns the smoothed height; ``scale(camera_height)`` is the factor
    that turns this depth into metres. ``reset()`` forgets the history (time jumped).
    """

    def __init__(self, cfg: Optional[GroundPlaneConfig] = None):
        self.cfg = (cfg or GroundPlaneConfig()).validate()
        self._rng = np.random.default_rng(self.cfg.seed)
        self._log_height: Optional[float] = None
        self.last_fit: Optional[PlaneFit] = None
        self.n_fits = 0
        self.n_failures = 0

    @property
    def height(self) -> Optional[float]:
        """Smoothed camera height above the plane in depth units, or ``None`` before a fit."""
        return None if self._log_height is None else math.exp(self._log_height)

    def reset(self) -> None:
        self._log_height = None
        self.last_fit = None

    def ground_points(self, depth: np.ndarray, rays: np.ndarray) -> np.ndarray:
        """Camera-frame points ``[N, 3]`` of the ROI (lower rows), finite depth > 0,
        randomly subsampled to ``max_points``."""
        if depth.shape != rays.shape[:2]:
            raise ValueError(f"depth {depth.shape} and rays {rays.shape[:2]} differ in size")
        h = depth.shape[0]
        top = min(h - 1, int(round(h * (1.0 - self.cfg.roi_fraction))))
        z = depth[top:].reshape(-1)
        r = rays[top:].reshape(-1, 2)
        ok = np.flatnonzero(np.isfinite(z) & (z > 0))
        if ok.size > self.cfg.max_points:
            ok = self._rng.choice(ok, self.cfg.max_points, replace=False)
        z, r = z[ok].astype(np.float64), r[ok].astype(np.float64)
        return np.stack([r[:, 0] * z, r[:, 1] * z, z], axis=1)

    def fit(self, depth: np.ndarray, rays: np.ndarray) -> Optional[PlaneFit]:
        """One-frame ground fit (no smoothing)."""
        pts = self.ground_points(depth, rays)
        if pts.shape[0] < 10:
            return None
        thr = self.cfg.inlier_threshold * float(np.median(pts[:, 2]))
        return fit_plane_ransac(pts, thr, self.cfg.iterations, self.cfg.max_tilt_deg,
                                self.cfg.min_inlier_ratio, self._rng)

    def update(self, depth: np.ndarray, rays: np.ndarray) -> Optional[float]:
        """Fit this frame and return the smoothed height (``None`` until the first fit).

        Args:
            depth: ``[H, W]`` depth in the network's units (non-finite or <= 0 ignored).
            rays: ``[H, W, 2]`` normalised rays of the same pixels.
        """
        fit = self.fit(depth, rays)
        self.last_fit = fit
        if fit is None:
            self.n_failures += 1
        else:
            self.n_fits += 1
            lh = math.log(fit.height)
            a = self.cfg.smoothing
            self._log_height = lh if self._log_height is None else \
                a * self._log_height + (1.0 - a) * lh
        return self.height

    def scale(self, camera_height: float) -> Optional[float]:
        """Factor turning the tracked depth units into metres, or ``None`` before a fit."""
        h = self.height
        return None if h is None else camera_height / h


class MetricScaler:
    """Applies the node's ``scale_mode`` to the estimator's depth.

    The estimator's ``predict`` returns ``network depth × info.scale_factor``; each mode first
    removes that factor where it replaces it.

    Attributes (may be changed between frames): ``scale_factor`` (fixed mode),
    ``camera_height`` (metres, camera_height mode).
    """

    def __init__(self, mode: str, info: ModelInfo, scale_factor: float = 1.0,
                 camera_height: float = 1.5, ground: Optional[GroundPlaneConfig] = None):
        self.mode = check_choice("scale_mode", mode, SCALE_MODES)
        self.info = info
        self.scale_factor = float(scale_factor)
        self.camera_height = float(camera_height)
        self.ground = GroundPlaneScale(ground) if mode == "camera_height" else None
        self._model_factor = float(info.scale_factor) if info.scale_factor > 0 else 1.0

    @property
    def needs_rays(self) -> bool:
        return self.mode == "camera_height"

    @property
    def is_metric(self) -> bool:
        """False when the output is relative depth (mode ``none``, or ``model`` with a model
        that carries no scale)."""
        return self.mode in ("fixed", "camera_height") or (self.mode == "model"
                                                             and self.info.is_metric)

    def relative_warning(self) -> Optional[str]:
        """A one-time warning text when the output is not in metres, else ``None``."""
        if self.mode == "none":
            return ("scale_mode 'none': depth is relative (network units), not metres; set "
                    "scale_mode to model, fixed or camera_height for metric depth")
        if self.mode == "model" and not self.info.is_metric:
            return (f"model {self.info.name!r} has scale_source 'none': its depth is relative, "
                    "not metres; set scale_mode to fixed (scale_factor) or camera_height")
        return None

    def current_factor(self) -> Optional[float]:
        """Factor applied to the network's own depth units, or ``None`` (camera_height mode,
        no ground fitted yet)."""
        if self.mode == "model":
            return self._model_factor
        if self.mode == "fixed":
            return self.scale_factor
        if self.mode == "none":
            return 1.0
        return self.ground.scale(self.camera_height)

    def apply(self, depth: np.ndarray, rays: Optional[np.ndarray] = None
              ) -> Optional[np.ndarray]:
        """Estimator depth ``float32 [H, W]`` → output depth (metres unless relative).

        Args:
            depth: the estimator's output (already × ``info.scale_factor``).
            rays: ``[H, W, 2]`` normalised rays (camera_height mode; without them the ground
                cannot be fitted and the last estimate is used).
        Returns:
            The scaled depth, or ``None`` in camera_height mode before the first ground fit.
        """
        if self.mode == "model":
            return depth
        raw = depth if self._model_factor == 1.0 else depth / np.float32(self._model_factor)
        if self.mode == "camera_height" and rays is not None:
            self.ground.update(raw, rays)
        factor = self.current_factor()
        if factor is None:
            return None
        return raw if factor == 1.0 else raw * np.float32(factor)
