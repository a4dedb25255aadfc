"""dasp_core.scale: RANSAC ground plane on synthetic scenes, scale modes, smoothing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dasp_core.errors import ConfigError
from dasp_core.runtime.base import ModelInfo
from dasp_core.scale import (GroundPlaneConfig, GroundPlaneScale, MetricScaler, fit_plane_ransac,
                             pinhole_rays)

H, W = 120, 160
K = np.array([[120.0, 0.0, 79.5], [0.0, 120.0, 59.5], [0.0, 0.0, 1.0]])


def ground_scene(height=1.5, pitch_deg=5.0, wall=40.0, noise=0.0, outliers=0.0, seed=0):
    """Metric z-depth of a flat ground seen by a camera ``height`` m up, pitched down; rows
    that do not see the ground within ``wall`` m see a wall at ``wall`` m."""
    rays = pinhole_rays(K, H, W).astype(np.float64)
    th = math.radians(pitch_deg)
    up = np.array([0.0, -math.cos(th), -math.sin(th)])  # world up in the camera frame
    denom = -(up[1] * rays[..., 1] + up[2])  # -(up . (x, y, 1))
    with np.errstate(divide="ignore"):
        z = np.where(denom > 1e-6, height / denom, np.inf)
    z = np.minimum(z, wall)
    rng = np.random.default_rng(seed)
    z = z * (1.0 + noise * rng.standard_normal(z.shape))
    if outliers:
        mask = rng.random(z.shape) < outliers
        z[mask] *= rng.uniform(0.3, 0.8, mask.sum())  # obstacles in front of the ground
    return z.astype(np.float32), rays.astype(np.float32)


def test_pinhole_rays_invert_K():
    rays = pinhole_rays(K, H, W)
    assert rays.shape == (H, W, 2)
    np.testing.assert_allclose(rays[59, 79], [-0.5 / 120, -0.5 / 120], atol=1e-7)
    np.testing.assert_allclose(rays[0, 0], [-79.5 / 120, -59.5 / 120], rtol=1e-6)


def test_ransac_recovers_plane_height_and_tilt_with_outliers():
    rng = np.random.default_rng(1)
    n = 1500
    xz = rng.uniform([-5, 2], [5, 30], (n, 2))
    pts = np.stack([xz[:, 0], np.full(n, 1.2), xz[:, 1]], 1)  # ground 1.2 below (y down)
    pts[:, 1] += 0.01 * rng.standard_normal(n)
    pts[:400] = rng.uniform([-5, -3, 2], [5, 1, 30], (400, 3))  # 27% clutter
    fit = fit_plane_ransac(pts, threshold=0.05, rng=rng)
    assert fit is not None
    assert fit.height == pytest.approx(1.2, abs=0.01)
    assert fit.tilt_deg < 1.0 and fit.inlier_ratio > 0.6


def test_ransac_rejects_walls_and_planes_above():
    rng = np.random.default_rng(2)
    n = 500
    wall = np.stack([np.full(n, 3.0), rng.uniform(-2, 2, n), rng.uniform(2, 20, n)], 1)
    assert fit_plane_ransac(wall, 0.05, rng=rng) is None  # normal along x: too tilted
    ceiling = np.stack([rng.uniform(-5, 5, n), np.full(n, -2.0), rng.uniform(2, 20, n)], 1)
    assert fit_plane_ransac(ceiling, 0.05, rng=rng) is None  # plane above the camera
    assert fit_plane_ransac(wall[:5], 0.05) is None  # too few points


@pytest.mark.parametrize("pitch", [0.0, 6.0])
def test_ground_scale_recovers_relative_factor(pitch):
    metric, rays = ground_scene(height=1.5, pitch_deg=pitch, noise=0.01, outliers=0.1)
    rel = 0.37
    g = GroundPlaneScale(GroundPlaneConfig(smoothing=0.0))
    h = g.update(metric * rel, rays)
    assert h == pytest.approx(1.5 * rel, rel=0.03)
    assert g.scale(1.5) == pytest.approx(1 / rel, rel=0.03)
    assert g.last_fit.tilt_deg == pytest.approx(pitch, abs=1.0)


def test_ground_scale_smoothing_in_log_space_and_reset():
    metric, rays = ground_scene()
    g = GroundPlaneScale(GroundPlaneConfig(smoothing=0.5))
    g.update(metric * 1.0, rays)
    h2 = g.update(metric * 4.0, rays)  # one frame 4x off moves the estimate only halfway (log)
    assert h2 == pytest.approx(1.5 * 2.0, rel=0.03)
    g.reset()
    assert g.height is None and g.scale(1.5) is None
    assert g.update(np.full((H, W), np.nan, np.float32), rays) is None  # nothing to fit
    assert g.n_failures == 1


def test_metric_scaler_modes():
    info = ModelInfo(scale_factor=2.0, scale_source="learned")
    est = np.full((4, 5), 6.0, np.float32)  # estimator output = network depth 3.0 x 2.0
    assert MetricScaler("model", info).apply(est)[0, 0] == pytest.approx(6.0)
    assert MetricScaler("fixed", info, scale_factor=0.5).apply(est)[0, 0] == pytest.approx(1.5)
    none = MetricScaler("none", info)
    assert none.apply(est)[0, 0] == pytest.approx(3.0)
    assert none.relative_warning() and not none.is_metric
    assert MetricScaler("model", info).relative_warning() is None
    rel_model = MetricScaler("model", ModelInfo(scale_source="none"))
    assert rel_model.relative_warning() and not rel_model.is_metric
    with pytest.raises(ConfigError, match="scale_mode"):
        MetricScaler("gps", info)


def test_metric_scaler_camera_height_end_to_end():
    metric, rays = ground_scene(height=1.2, noise=0.005)
    info = ModelInfo(scale_factor=3.0, scale_source="learned")
    s = MetricScaler("camera_height", info, camera_height=1.2,
                     ground=GroundPlaneConfig(smoothing=0.0))
    assert s.apply(metric * 0.25 * 3.0) is None  # no rays yet: no fit, nothing published
    out = s.apply(metric * 0.25 * 3.0, rays)  # network depth = 0.25 x metric
    ground = np.isfinite(metric) & (metric < 39)
    np.testing.assert_allclose(out[ground], metric[ground], rtol=0.03)
    s.camera_height = 2.4  # run-time change takes effect at once
    assert s.current_factor() == pytest.approx(2 * 4.0, rel=0.03)


def test_config_validation_names_parameters():
    with pytest.raises(ConfigError, match="scale_smoothing"):
        GroundPlaneConfig(smoothing=1.0).validate()
    with pytest.raises(ConfigError, match="ground_roi_fraction"):
        GroundPlaneConfig(roi_fraction=0.0).validate()
