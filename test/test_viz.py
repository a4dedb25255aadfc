"""Tests of dasp_core.viz: colour maps, error maps, strips, GIF/MP4 writers."""

from __future__ import annotations

import numpy as np
import pytest

from dasp_core.errors import ConfigError
from dasp_core.viz import (CMAPS, apply_colormap, colorize_depth, colorize_disparity,
                           colorize_inverse_depth, colormap_lut, error_map, make_strip,
                           relative_error, write_gif, write_mp4)


def luminance(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.float64)
    return 0.2126 * rgb[..., 0] + 0.7152 * rgb[..., 1] + 0.0722 * rgb[..., 2]


@pytest.mark.parametrize("cmap", CMAPS)
def test_luts(cmap):
    lut = colormap_lut(cmap)
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert not lut.flags.writeable


def test_unknown_cmap_and_order():
    with pytest.raises(ConfigError, match="magma"):
        colorize_depth(np.ones((2, 2)), cmap="rainbowz")
    with pytest.raises(ConfigError, match="rgb"):
        colorize_depth(np.ones((2, 2)), channel_order="hsv")
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        colorize_depth(np.ones((2, 2, 3)))


def test_colorize_depth_shape_invalid_black_and_monotone():
    depth = np.tile(np.linspace(1.0, 50.0, 64, dtype=np.float32), (4, 1))
    depth[0, :4] = [0.0, np.nan, np.inf, -2.0]
    img = colorize_depth(depth, 1.0, 50.0)
    assert img.shape == (4, 64, 3) and img.dtype == np.uint8
    assert (img[0, :4] == 0).all()
    assert (img[1:].reshape(-1, 3).max(axis=1) > 0).all()  # no valid pixel is pure black
    lum = luminance(img[2])
    assert np.all(np.diff(lum) <= 1e-9) and lum[0] > lum[-1] + 100  # near bright, far dark
    bgr = colorize_depth(depth, 1.0, 50.0, channel_order="bgr")
    assert np.array_equal(bgr, img[..., ::-1])
    # values outside the range clip to the ends
    ends = colorize_depth(np.array([[0.5, 1.0, 50.0, 500.0]]), 1.0, 50.0)
    assert np.array_equal(ends[0, 0], ends[0, 1]) and np.array_equal(ends[0, 2], ends[0, 3])


def test_colorize_depth_auto_range_and_all_invalid():
    d = np.random.default_rng(0).uniform(1, 80, (10, 10)).astype(np.float32)
    assert colorize_depth(d).shape == (10, 10, 3)
    assert (colorize_depth(np.zeros((3, 3))) == 0).all()
    assert colorize_depth(np.full((3, 3), 7.0)).max() > 0  # constant map does not divide by 0


def test_dilate_spreads_sparse_depth_nearest_wins():
    d = np.zeros((21, 21), np.float32)
    d[10, 10] = 5.0
    d[10, 12] = 30.0
    plain = colorize_depth(d, 1, 40)
    dense = colorize_depth(d, 1, 40, dilate=2)
    assert (plain.max(axis=2) > 0).sum() == 2
    assert (dense.max(axis=2) > 0).sum() > 10
    assert np.array_equal(dense[10, 11], plain[10, 10])  # between both: the near one wins
    assert np.array_equal(dense[10, 12], plain[10, 12])  # valid pixels keep their value


def test_colorize_disparity():
    disp = np.tile(np.linspace(0.0, 1.0, 50, dtype=np.float32), (3, 1))
    disp[0, 0] = -1.0
    disp[0, 1] = np.nan
    img = colorize_disparity(disp, max_value=1.0)
    assert img.shape == (3, 50, 3) and img.dtype == np.uint8
    assert (img[0, :2] == 0).all()
    lum = luminance(img[1])
    assert np.all(np.diff(lum) >= -1e-9) and lum[-1] > lum[0] + 100  # near (large) bright
    # default vmax = 95th percentile: the top 5 % saturate
    auto = colorize_disparity(disp[1:])
    assert np.array_equal(auto[0, -1], colormap_lut("magma")[255])


@pytest.mark.parametrize("cmap", ["turbo", "magma", "gray"])
def test_colorize_inverse_depth_ends_orders_and_invalid(cmap):
    d = np.array([[0.5, 1.0, 50.0, np.inf, np.nan, 0.0, -3.0, -np.inf]], np.float32)
    rgb = colorize_inverse_depth(d, 1.0, 50.0, cmap, channel_order="rgb")
    bgr = colorize_inverse_depth(d, 1.0, 50.0, cmap)  # default: bgr (ROS bgr8)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 8, 3)
    assert np.array_equal(bgr, rgb[..., ::-1])
    lut = colormap_lut(cmap)
    assert np.array_equal(rgb[0, 0], lut[255]) and np.array_equal(rgb[0, 1], lut[255])  # near
    assert np.array_equal(rgb[0, 2], lut[0]) and np.array_equal(rgb[0, 3], lut[0])  # far, +Inf
    assert (rgb[0, 4:] == 0).all()  # NaN, 0, negative, -Inf: black
    # linear in inverse depth: equal steps of 1/d give equal steps along the map
    inv = np.linspace(1.0 / 50.0, 1.0, 255)
    idx = colorize_inverse_depth((1.0 / inv)[None].astype(np.float32), 1.0, 50.0, "gray", "rgb")
    steps = np.diff(idx[0, :, 0].astype(int))
    assert steps.min() >= 0 and steps.max() <= 2 and idx[0, 0, 0] == 0 and idx[0, -1, 0] == 255
    with pytest.raises(ConfigError, match="near"):
        colorize_inverse_depth(d, 5.0, 5.0)
    with pytest.raises(ConfigError, match="turbo"):
        colorize_inverse_depth(d, 1.0, 5.0, "rainbowz")


def test_relative_error_and_error_map():
    gt = np.array([[10.0, 10.0, 0.0, np.nan, 100.0]], np.float32)
    pred = np.array([[10.0, 15.0, 3.0, 3.0, 3.0]], np.float32)
    err = relative_error(pred, gt, 1e-3, 80)
    assert err[0, 0] == 0 and err[0, 1] == pytest.approx(0.5)
    assert np.isnan(err[0, 2:]).all()
    img = error_map(pred, gt, 1e-3, 80, vmax=0.5)
    assert img.shape == (1, 5, 3) and img.dtype == np.uint8
    assert (img[0, 2:] == 0).all()
    assert luminance(img[0, 1]) > luminance(img[0, 0])
    with pytest.raises(ValueError, match="shape"):
        relative_error(pred[:, :3], gt)
    with pytest.raises(ConfigError):
        error_map(pred, gt, vmax=0)


def test_apply_colormap_nan_black_and_clip():
    v = np.array([[np.nan, -1.0, 0.0, 1.0, 2.0]], np.float32)
    img = apply_colormap(v, "viridis")
    lut = colormap_lut("viridis")
    assert (img[0, 0] == 0).all()
    assert np.array_equal(img[0, 1], lut[0]) and np.array_equal(img[0, 4], lut[255])


def test_make_strip_sizes_labels_and_inputs():
    a = np.full((20, 30, 3), 200, np.uint8)
    b = np.full((40, 40), 100, np.uint8)                # grey, twice the height
    c = np.full((10, 10, 3), 0.5, np.float32)           # float in [0, 1]
    strip = make_strip([a, b, c], gap=4)
    assert strip.dtype == np.uint8 and strip.shape == (20, 30 + 4 + 20 + 4 + 20, 3)
    assert (strip[:, 30:34] == 0).all()
    assert strip[5, 40, 0] == 100 and strip[5, 70, 0] == 128
    labelled = make_strip([a, b, c], labels=["image", "", "GT"], gap=4)
    assert not np.array_equal(labelled[:, :30], strip[:, :30])
    assert np.array_equal(labelled[:, 34:54], strip[:, 34:54])  # empty label: unchanged
    tall = make_strip([a, b], height=60, gap=0)
    assert tall.shape == (60, 90 + 60, 3)
    vert = make_strip([a, b], vertical=True, gap=2)
    assert vert.shape == (20 + 2 + 30, 30, 3)
    make_strip([a], labels=["δ<1.25 non-ascii ok"])
    with pytest.raises(ValueError, match="labels"):
        make_strip([a, b], labels=["x"])
    with pytest.raises(ValueError):
        make_strip([])
    with pytest.raises(ValueError, match="image 1"):
        make_strip([a, np.zeros((3, 3, 5), np.uint8)])


def test_write_gif_readable(tmp_path):
    from PIL import Image

    frames = [np.full((12, 16, 3), (i * 40, 255 - i * 40, 0), np.uint8) for i in range(5)]
    path = write_gif(frames, tmp_path / "sub" / "a.gif", fps=5)
    with Image.open(path) as im:
        assert im.size == (16, 12) and im.n_frames == 5
        assert im.info["duration"] == 200
        im.seek(3)
        px = np.asarray(im.convert("RGB"))[6, 8]
        assert abs(int(px[0]) - 120) <= 8 and abs(int(px[1]) - 135) <= 8
    with pytest.raises(ValueError, match="one size"):
        write_gif([frames[0], np.zeros((5, 5, 3), np.uint8)], tmp_path / "b.gif")
    with pytest.raises(ValueError, match="no frames"):
        write_gif([], tmp_path / "c.gif")
    with pytest.raises(ConfigError):
        write_gif(frames, tmp_path / "d.gif", fps=0)


def test_write_mp4(tmp_path):
    import cv2

    frames = (np.full((32, 48, 3), (i * 20, 0, 200), np.uint8) for i in range(6))
    try:
        path = write_mp4(frames, tmp_path / "v.mp4", fps=10)
    except RuntimeError as e:  # an OpenCV build without the mp4v writer
        pytest.skip(str(e))
    cap = cv2.VideoCapture(str(path))
    n = 0
    ok, first = cap.read()
    while ok:
        n += 1
        last = first
        ok, first = cap.read()
    cap.release()
    assert n == 6
    # last RGB frame is (100, 0, 200); OpenCV reads BGR: (200, 0, 100) up to codec loss
    assert abs(int(last[16, 24, 0]) - 200) < 25 and abs(int(last[16, 24, 2]) - 100) < 25
