"""Dataset readers on tiny files written in the real formats (RobotCar, nuScenes, rosbag2,
image folders), the clip transforms, the config registry and the torch wrapper."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dasp_core import geometry
from dasp_core.data import augment
from dasp_core.data.folder import (BrightnessRule, FolderClipDataset, SampleError,
                                   calibration_from_dict, read_calibration, read_image,
                                   select_moving, thumbnail)
from dasp_core.data.registry import (BadSampleStats, ConcatClipDataset, build_dataset,
                                     iter_clips)
from dasp_core.data.robotcar import (RobotCarCameraModel, RobotCarDataset, build_se3_transform,
                                     demosaic_gbrg, interpolate_poses, read_vo,
                                     so3_to_quaternion)
from dasp_core.data.sample import Clip
from dasp_core.errors import ConfigError, DatasetError

# ============================================================================ helpers


def _clip(h=12, w=16, T=3, depth=True, poses=True, seed=0) -> Clip:
    rng = np.random.default_rng(seed)
    K = np.array([[10.0, 0.5, 7.0], [0.0, 11.0, 5.5], [0.0, 0.0, 1.0]])
    P = np.tile(np.eye(4), (T, 1, 1))
    P[:, 0, 3] = np.arange(T) * 0.3
    d = rng.uniform(1, 10, (h, w)).astype(np.float32) if depth else None
    return Clip(frames=rng.integers(0, 255, (T, h, w, 3), dtype=np.uint8), K=K, domain="day",
                offsets=tuple(range(-(T // 2), T - T // 2)), depth=d,
                poses=P if poses else None, masks={"moving": rng.random((h, w)) > 0.5},
                source="test")


def _project(K, X):
    p = K @ X
    return p[:2] / p[2]


# ============================================================================ augment

def test_numpy_K_ops_match_torch_geometry():
    K = np.array([[500.0, 1.0, 320.0], [0.0, 480.0, 240.0], [0, 0, 1]])
    Kt = torch.from_numpy(K)
    np.testing.assert_allclose(augment.scale_K(K, 0.5, 0.25),
                               geometry.scale_intrinsics(Kt, 0.5, 0.25).numpy())
    np.testing.assert_allclose(augment.crop_K(K, 64, 160),
                               geometry.crop_intrinsics(Kt, 64, 160).numpy())


def test_center_crop_resize_rnw_robotcar_intrinsics():
    # 1280x960 → centre crop 1152x640 (x0=64, y0=160) → 576x320 (factor 0.5)
    K = np.array([[983.044006, 0, 643.646973], [0, 983.044006, 493.378998], [0, 0, 1]])
    clip = Clip(frames=np.zeros((1, 960, 1280, 3), np.uint8), K=K, domain="night", offsets=(0,))
    out = augment.resize_clip(augment.center_crop_clip(clip, (640, 1152)), (320, 576))
    assert out.frames.shape == (1, 320, 576, 3)
    expected = np.array([[983.044006 / 2, 0, (643.646973 - 64 + 0.5) / 2 - 0.5],
                         [0, 983.044006 / 2, (493.378998 - 160 + 0.5) / 2 - 0.5], [0, 0, 1]])
    np.testing.assert_allclose(out.K, expected, atol=1e-9)


@pytest.mark.parametrize("mode", ["center_crop", "stretch"])
def test_fit_clip_keeps_projection_consistent(mode):
    # A bright pixel at a known 3D point must stay where the new K projects that point.
    H, W = 90, 160
    K = np.array([[100.0, 0, 80.0], [0, 100.0, 45.0], [0, 0, 1]])
    X = np.array([1.0, 0.4, 5.0])
    u, v = _project(K, X)
    frames = np.zeros((1, H, W, 3), np.uint8)
    frames[0, int(round(v)) - 2:int(round(v)) + 3, int(round(u)) - 2:int(round(u)) + 3] = 255
    clip = Clip(frames=frames, K=K, domain="day", offsets=(0,))
    out = augment.fit_clip(clip, (45, 60), mode)
    u2, v2 = _project(out.K, X)
    g = out.frames[0, ..., 0].astype(float)
    cy, cx = np.unravel_index(np.argmax(g), g.shape)
    ys, xs = np.nonzero(g > 0.5 * g.max())
    assert abs(xs.mean() - u2) < 0.6 and abs(ys.mean() - v2) < 0.6
    if mode == "center_crop":
        assert out.K[0, 0] == pytest.approx(out.K[1, 1])  # square pixels kept


def test_flip_clip_geometry_and_involution():
    clip = _clip()
    W = clip.width
    f = augment.flip_clip(clip)
    np.testing.assert_array_equal(f.frames, clip.frames[:, :, ::-1])
    X = np.array([0.7, -0.2, 4.0])
    u, v = _project(clip.K, X)
    u2, v2 = _project(f.K, X * [-1, 1, 1])  # mirrored world point
    assert u2 == pytest.approx(W - 1 - u) and v2 == pytest.approx(v)
    # mirrored poses are still rigid and the translation's x flips
    assert f.poses[2, 0, 3] == pytest.approx(-clip.poses[2, 0, 3])
    ff = augment.flip_clip(f)
    np.testing.assert_array_equal(ff.frames, clip.frames)
    np.testing.assert_allclose(ff.K, clip.K)
    np.testing.assert_allclose(ff.poses, clip.poses)
    np.testing.assert_array_equal(ff.depth, clip.depth)
    np.testing.assert_array_equal(ff.masks["moving"], clip.masks["moving"])


def test_resize_sparse_depth_keeps_nearest_and_position():
    d = np.zeros((8, 8), np.float32)
    d[2, 2], d[3, 3], d[6, 7] = 5.0, 3.0, 7.0  # (2,2),(3,3) both land on target pixel (1,1)
    out = augment.resize_sparse_depth(d, (4, 4))
    assert out[1, 1] == 3.0 and out[3, 3] == 7.0
    assert np.count_nonzero(out) == 2
    # no interpolation between valid and invalid: every output value is an input value
    assert set(out[out > 0].tolist()) <= {3.0, 5.0, 7.0}


def test_color_jitter_identity_and_brightness():
    clip = _clip()
    p = augment.ColorJitterParams()
    np.testing.assert_array_equal(augment.apply_color_jitter(clip.frames, p), clip.frames)
    dark = np.full((2, 4, 4, 3), 100, np.uint8)
    out = augment.apply_color_jitter(dark, augment.ColorJitterParams(brightness=1.2))
    assert np.all(out == 120)
    grey = np.full((1, 4, 4, 3), 77, np.uint8)  # hue/saturation cannot change grey
    out = augment.apply_color_jitter(grey, augment.ColorJitterParams(saturation=0.5, hue=0.3))
    assert np.all(np.abs(out.astype(int) - 77) <= 1)


def test_augment_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="augment.flip_prob"):
        augment.AugmentConfig(flip_prob=1.5)
    with pytest.raises(ConfigError, match="augment.blur"):
        augment.AugmentConfig.from_dict({"blur": 1})


# ============================================================================ RobotCar

RC_NIGHT, RC_DAY = "2014-12-16-18-44-24", "2014-12-09-13-21-02"
RC_H, RC_W = 48, 64
RC_K = np.array([[40.0, 0, 31.5], [0, 40.0, 23.5], [0, 0, 1]])
RC_T0 = 1418756721000000
RC_DT = 100_000  # µs


def _bayer_gbrg(rgb: np.ndarray) -> np.ndarray:
    m = np.zeros(rgb.shape[:2], np.uint8)
    m[0::2, 0::2] = rgb[0::2, 0::2, 1]
    m[0::2, 1::2] = rgb[0::2, 1::2, 2]
    m[1::2, 0::2] = rgb[1::2, 0::2, 0]
    m[1::2, 1::2] = rgb[1::2, 1::2, 1]
    return m


def _write_rc_models(root: Path, lut_shift=0.0):
    (root / "models").mkdir(parents=True, exist_ok=True)
    G = "0 0 1 0\n1 0 0 0\n0 1 0 0\n0 0 0 1\n"
    fx, fy, cx, cy = RC_K[0, 0], RC_K[1, 1], RC_K[0, 2], RC_K[1, 2]
    (root / "models" / "stereo_narrow_left.txt").write_text(f"{fx} {fy} {cx} {cy}\n{G}")
    v, u = np.mgrid[0:RC_H, 0:RC_W].astype(np.float64)
    np.stack([(u + lut_shift).ravel(), v.ravel()]).astype(np.float64).tofile(
        root / "models" / "stereo_narrow_left_distortion_lut.bin")
    (root / "extrinsics").mkdir(exist_ok=True)
    (root / "extrinsics" / "stereo.txt").write_text("0 0 0 0 0 0\n")
    # laser 1 m below the camera (vehicle z is down), axes aligned with the vehicle
    (root / "extrinsics" / "lms_front.txt").write_text("0 0 1.0 0 0 0\n")


def _write_rc_raw_sequence(root: Path, name: str, n=6, colour=(200, 0, 0), with_lidar=True):
    seq = root / name
    (seq / "stereo" / "centre").mkdir(parents=True)
    times = [RC_T0 + k * RC_DT for k in range(n)]
    rgb = np.zeros((RC_H, RC_W, 3), np.uint8)
    rgb[:] = colour
    for t in times:
        cv2.imwrite(str(seq / "stereo" / "centre" / f"{t}.png"), _bayer_gbrg(rgb))
    (seq / "stereo.timestamps").write_text("".join(f"{t} 1\n" for t in times))
    # VO: the vehicle moves 1 m forward (+x) per frame: 10 m/s
    (seq / "vo").mkdir()
    rows = ["source_timestamp,destination_timestamp,x,y,z,roll,pitch,yaw"]
    for k in range(1, n):
        rows.append(f"{times[k]},{times[k - 1]},1.0,0,0,0,0,0")
    (seq / "vo" / "vo.csv").write_text("\n".join(rows) + "\n")
    if with_lidar:
        # One static world point 10 m ahead, 2 m right of the camera at frame 2; the scans at
        # frames 2 and 3 see it at x = 10 and x = 9 (the vehicle moved 1 m).
        (seq / "lms_front").mkdir()
        lt = [times[2], times[3]]
        (seq / "lms_front.timestamps").write_text("".join(f"{t} 1\n" for t in lt))
        np.array([[10.0, 2.0, 0.5]]).tofile(seq / "lms_front" / f"{lt[0]}.bin")
        np.array([[9.0, 2.0, 0.5]]).tofile(seq / "lms_front" / f"{lt[1]}.bin")
    chunk1 = "\n".join(str(t) for t in times[:4])
    chunk2 = "\n".join(str(t) for t in times[4:])
    (seq / "train_split.txt").write_text(f"{chunk1}\n-----\n{chunk2}\n")
    (seq / "test_split.txt").write_text(f"{times[2]}\n")
    return times


@pytest.fixture
def rc_root(tmp_path):
    root = tmp_path / "robotcar"
    _write_rc_models(root)
    times = _write_rc_raw_sequence(root, RC_NIGHT, colour=(200, 0, 0))
    _write_rc_raw_sequence(root, RC_DAY, colour=(0, 0, 200), with_lidar=False)
    return root, times


def test_demosaic_gbrg_keeps_colours():
    for colour in [(200, 0, 0), (0, 200, 0), (0, 0, 200), (30, 120, 220)]:
        rgb = np.zeros((8, 8, 3), np.uint8)
        rgb[:] = colour
        out = demosaic_gbrg(_bayer_gbrg(rgb))
        np.testing.assert_allclose(out[2:6, 2:6].reshape(-1, 3).mean(0), colour, atol=1)


def test_robotcar_lut_identity_and_shift(tmp_path):
    _write_rc_models(tmp_path)
    cam = RobotCarCameraModel(tmp_path / "models")
    img = np.random.default_rng(0).integers(0, 255, (RC_H, RC_W, 3), dtype=np.uint8)
    np.testing.assert_array_equal(cam.undistort(img), img)
    _write_rc_models(tmp_path, lut_shift=1.0)  # undistorted (u, v) samples distorted (u+1, v)
    cam = RobotCarCameraModel(tmp_path / "models")
    out = cam.undistort(img)
    np.testing.assert_array_equal(out[:, :-1], img[:, 1:])
    assert np.all(out[:, -1] == 0)
    np.testing.assert_allclose(cam.K, RC_K)


def test_robotcar_vo_chain_and_interpolation(tmp_path):
    p = tmp_path / "vo.csv"
    p.write_text("source_timestamp,destination_timestamp,x,y,z,roll,pitch,yaw\n"
                 "200,100,1.0,0,0,0,0,0.5\n300,200,2.0,0,0,0,0,0\n")
    t, P = read_vo(p)
    np.testing.assert_array_equal(t, [100, 200, 300])
    np.testing.assert_allclose(P[1], build_se3_transform([1, 0, 0, 0, 0, 0.5]))
    # A_k = A_{k-1} @ T(row_k): the second step is along the already-turned heading
    np.testing.assert_allclose(P[2][:3, 3], [1 + 2 * np.cos(0.5), 2 * np.sin(0.5), 0])
    Q, valid = interpolate_poses(t, P, np.array([150.0, 200.0, 400.0]))
    assert valid.tolist() == [True, True, False]
    np.testing.assert_allclose(Q[1], P[1], atol=1e-12)
    np.testing.assert_allclose(Q[0][:3, 3], [0.5, 0, 0], atol=1e-12)
    yaw = np.arctan2(Q[0][1, 0], Q[0][0, 0])
    assert yaw == pytest.approx(0.25)  # slerp halfway
    q = so3_to_quaternion(P[2][:3, :3])
    assert q[0] == pytest.approx(np.cos(0.25)) and q[3] == pytest.approx(np.sin(0.25))


def test_robotcar_raw_train_clips(rc_root):
    root, times = rc_root
    ds = RobotCarDataset(root, split="train", domain="night", crop_hw=(32, 48), size_hw=(16, 24))
    # chunk 1 has 4 frames → 2 clips; chunk 2 has 2 frames → none
    assert len(ds) == 2
    clip = ds[0]
    assert clip.domain == "night" and clip.offsets == (-1, 0, 1)
    assert clip.frames.shape == (3, 16, 24, 3) and clip.depth is None
    # pure red scene stays red through demosaic + LUT + crop + resize
    mean = clip.frames.reshape(-1, 3).mean(0)
    assert mean[0] > 150 and mean[1] < 30 and mean[2] < 30
    K = augment.scale_K(augment.crop_K(RC_K, 8, 8), 0.5, 0.5)
    np.testing.assert_allclose(clip.K, K)
    # VO: 1 m per frame forward = +z in the optical frame; 10 m/s
    np.testing.assert_allclose(clip.poses[1], np.eye(4), atol=1e-12)
    np.testing.assert_allclose(clip.poses[2][:3, 3], [0, 0, 1.0], atol=1e-9)
    np.testing.assert_allclose(clip.poses[0][:3, 3], [0, 0, -1.0], atol=1e-9)
    assert clip.speed == pytest.approx(10.0) and clip.dt == pytest.approx(0.1)
    assert clip.source == f"robotcar:{RC_NIGHT}/{times[1]}"


def test_robotcar_day_night_split(rc_root):
    root, _ = rc_root
    kw = dict(split="train", crop_hw=None, size_hw=None)
    both = RobotCarDataset(root, **kw)
    assert sorted({both[i].domain for i in range(len(both))}) == ["day", "night"]
    day = RobotCarDataset(root, domain="day", **kw)
    assert {day[i].domain for i in range(len(day))} == {"day"}
    assert day[0].frames[..., 2].mean() > 150  # blue day sequence


def test_robotcar_lidar_ground_truth_known_pixel(rc_root):
    root, times = rc_root
    ds = RobotCarDataset(root, split="test", domain="night", crop_hw=None, size_hw=None,
                         lidar_time_span_s=0.15)
    assert len(ds) == 1 and ds.offsets == (0,)
    clip = ds[0]
    # both scans see the same world point: optical (2, 1, 10) → one pixel at depth 10
    u, v = _project(RC_K, np.array([2.0, 1.0, 10.0]))
    d = clip.depth
    assert np.count_nonzero(d) == 1
    assert d[int(round(v)), int(round(u))] == pytest.approx(10.0)


def test_robotcar_rnw_layout_with_npy_ground_truth(tmp_path):
    root = tmp_path / "rc"
    seq = root / RC_NIGHT
    (seq / "rgb").mkdir(parents=True)
    (seq / "depth").mkdir()
    times = [RC_T0 + k * RC_DT for k in range(4)]
    for t in times:
        img = np.zeros((RC_H, RC_W, 3), np.uint8)
        img[..., 2] = 255  # red in BGR file order
        cv2.imwrite(str(seq / "rgb" / f"{t}.png"), img)
    gt = np.zeros((RC_H, RC_W), np.float32)
    gt[20, 30] = 12.5
    np.save(seq / "depth" / f"{times[1]}_depth.npy", gt)
    np.save(seq / "intrinsic.npy", RC_K)
    (seq / "test_split.txt").write_text(f"{times[1]}\n")
    ds = RobotCarDataset(root, split="test", crop_hw=(32, 48), size_hw=(16, 24),
                         keep_full_depth=True)
    clip = ds[0]
    assert clip.frames[..., 0].min() == 255 and clip.frames[..., 2].max() == 0
    # crop (x0=8, y0=8) then halve: (30, 20) → (22, 12) → pixel centre (10.75, 5.75) → (11, 6)
    assert clip.meta["depth_full"][12, 22] == pytest.approx(12.5)
    assert clip.depth[6, 11] == pytest.approx(12.5) and np.count_nonzero(clip.depth) == 1
    np.testing.assert_allclose(clip.meta["K_full"], augment.crop_K(RC_K, 8, 8))


def test_robotcar_crop_anchor_top_left_is_md4all_crop(tmp_path):
    root = tmp_path / "rc"
    seq = root / RC_NIGHT
    (seq / "rgb").mkdir(parents=True)
    (seq / "depth").mkdir()
    t = RC_T0
    img = np.zeros((RC_H, RC_W, 3), np.uint8)
    img[:, :, 1] = np.arange(RC_H, dtype=np.uint8)[:, None]  # green = row index
    cv2.imwrite(str(seq / "rgb" / f"{t}.png"), img)
    gt = np.tile(np.arange(1, RC_H + 1, dtype=np.float32)[:, None], (1, RC_W))  # depth = row + 1
    np.save(seq / "depth" / f"{t}_depth.npy", gt)
    np.save(seq / "intrinsic.npy", RC_K)
    (seq / "test_split.txt").write_text(f"{t}\n")
    # md4all: rows 0 … h-1, columns 0 … w-1 (config TOP = LEFT = 0), K moved by nothing
    top = RobotCarDataset(root, split="test", crop_hw=(32, 48), crop_anchor="top_left",
                          size_hw=(16, 24), keep_full_depth=True)[0]
    np.testing.assert_array_equal(top.meta["depth_full"], gt[:32, :48])
    np.testing.assert_allclose(top.meta["K_full"], RC_K)
    # RNW: the centred window, rows 8 … 39
    centre = RobotCarDataset(root, split="test", crop_hw=(32, 48), size_hw=None)[0]
    np.testing.assert_array_equal(centre.depth, gt[8:40, 8:56])
    assert centre.frames[0, 0, 0, 1] == 8
    with pytest.raises(ConfigError, match="crop_anchor"):
        RobotCarDataset(root, split="test", crop_anchor="bottom")


def test_robotcar_md4all_triples_split(rc_root):
    root, times = rc_root
    (root / "splits").mkdir()
    (root / RC_NIGHT / "train_split.txt").unlink()
    (root / "splits" / f"{RC_NIGHT}_train_stride_1.txt").write_text(
        f"{times[0]} {times[1]} {times[2]}\n{times[3]} {times[4]} {times[5]}\n")
    ds = RobotCarDataset(root, split="train", domain="night", crop_hw=None, size_hw=None)
    assert len(ds) == 2
    assert ds[1].meta["timestamps"] == times[3:6]


def test_robotcar_bad_inputs(rc_root, tmp_path, caplog):
    root, times = rc_root
    with pytest.raises(DatasetError, match="expected sequence folders"):
        RobotCarDataset(tmp_path / "robotcar" / "models")
    bad = tmp_path / "notrc"
    (bad / RC_NIGHT).mkdir(parents=True)
    with pytest.raises(DatasetError, match="stereo/centre"):
        RobotCarDataset(bad)
    with pytest.raises(ConfigError, match="split"):
        RobotCarDataset(root, split="val")
    # a truncated PNG and a missing frame: clear messages, skipped and counted
    img_dir = root / RC_NIGHT / "stereo" / "centre"
    data = (img_dir / f"{times[1]}.png").read_bytes()
    (img_dir / f"{times[1]}.png").write_bytes(data[:40])
    (img_dir / f"{times[5]}.png").unlink()
    ds = RobotCarDataset(root, split="all", domain="night", crop_hw=None, size_hw=None)
    with pytest.raises(SampleError, match=f"{times[1]}.png.*corrupt or truncated"):
        ds[0]
    with pytest.raises(SampleError, match=f"{times[5]}.png: frame missing"):
        ds[3]
    stats = BadSampleStats()
    with caplog.at_level(logging.WARNING):
        good = list(iter_clips(ds, stats))
    # targets 1..4: frame 1 spoils targets 1 and 2, frame 5 spoils target 4; target 3 is fine
    assert [i for i, _ in good] == [2] and good[0][1].meta["timestamps"] == times[2:5]
    assert stats.count == 3 and stats.bad_indices == {0, 1, 3}
    assert "skipping bad sample" in caplog.text


# ============================================================================ nuScenes

NS_H, NS_W = 90, 160
NS_K = np.array([[100.0, 0, 80.0], [0, 100.0, 45.0], [0, 0, 1]])
# camera optical axes in the ego frame (ego: x forward, y left, z up)
R_EGO_CAM = np.array([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])


def _rt(R, t):
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


def _yaw(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def _write_nuscenes(root: Path, cam_points=None):
    """Two scenes (night, day), each 5 camera frames (key frames at 0 and 3) + lidar."""
    tab = root / "v1.0-mini"
    tab.mkdir(parents=True)
    for d in ("samples/CAM_FRONT", "sweeps/CAM_FRONT", "samples/LIDAR_TOP"):
        (root / d).mkdir(parents=True)
    q = lambda R: so3_to_quaternion(R).tolist()  # noqa: E731
    sensor = [{"token": "s_cam", "channel": "CAM_FRONT", "modality": "camera"},
              {"token": "s_lid", "channel": "LIDAR_TOP", "modality": "lidar"}]
    T_ego_cam = _rt(R_EGO_CAM, [1.5, 0.0, 1.5])
    T_ego_lid = _rt(_yaw(0.1), [0.9, 0.0, 1.8])
    calib = [{"token": "c_cam", "sensor_token": "s_cam", "translation": [1.5, 0.0, 1.5],
              "rotation": q(R_EGO_CAM), "camera_intrinsic": NS_K.tolist()},
             {"token": "c_lid", "sensor_token": "s_lid", "translation": [0.9, 0.0, 1.8],
              "rotation": q(_yaw(0.1)), "camera_intrinsic": []}]
    scenes, samples, sds, egos, logs = [], [], [], [], [{"token": "log0", "logfile": "x",
                                                          "vehicle": "v", "date_captured": "d",
                                                          "location": "boston"}]
    rng = np.random.default_rng(0)
    truths = {}
    for s, desc in enumerate(["Night, rain, ped crossing", "Day, parking lot"]):
        scene_tok = f"scene{s}"
        t0 = 1_500_000_000_000_000 + s * 10**9
        cam_toks = [f"cam{s}_{k}" for k in range(5)]
        sample_toks = [f"sample{s}_0", f"sample{s}_1"]
        scenes.append({"token": scene_tok, "log_token": "log0", "nbr_samples": 2,
                       "first_sample_token": sample_toks[0], "last_sample_token": sample_toks[1],
                       "name": f"scene-000{s}", "description": desc})
        for i, st in enumerate(sample_toks):
            samples.append({"token": st, "timestamp": t0 + i * 250_000, "scene_token": scene_tok,
                            "prev": sample_toks[i - 1] if i else "",
                            "next": sample_toks[i + 1] if i + 1 < len(sample_toks) else "",
                            "data": {}, "anns": []})
        for k, tok in enumerate(cam_toks):
            key = k in (0, 3)
            ts = t0 + k * 83_333
            # ego drives along its heading (global yaw 90°) at 6 m/s
            ego_t = np.array([100.0, 50.0 + 6.0 * k * 0.083333, 0.0])
            egos.append({"token": f"ego_{tok}", "timestamp": ts, "rotation": q(_yaw(np.pi / 2)),
                         "translation": ego_t.tolist()})
            folder = "samples" if key else "sweeps"
            fn = f"{folder}/CAM_FRONT/n000-2018__CAM_FRONT__{ts}.jpg"
            img = np.full((NS_H, NS_W, 3), 40 if s == 0 else 180, np.uint8)
            cv2.imwrite(str(root / fn), img)
            sds.append({"token": tok, "sample_token": sample_toks[0 if k < 3 else 1],
                        "ego_pose_token": f"ego_{tok}", "calibrated_sensor_token": "c_cam",
                        "timestamp": ts, "fileformat": "jpg", "is_key_frame": key,
                        "height": NS_H, "width": NS_W, "filename": fn,
                        "prev": cam_toks[k - 1] if k else "",
                        "next": cam_toks[k + 1] if k + 1 < 5 else ""})
        # lidar key frames, 20 ms before each camera key frame, ego 0.12 m behind
        lid_toks = [f"lid{s}_0", f"lid{s}_1"]
        for i, (lt, k) in enumerate(zip(lid_toks, (0, 3))):
            ts = t0 + k * 83_333 - 20_000
            ego_t = np.array([100.0, 50.0 + 6.0 * k * 0.083333 - 0.12, 0.0])
            T_g_el = _rt(_yaw(np.pi / 2), ego_t)
            egos.append({"token": f"ego_{lt}", "timestamp": ts, "rotation": q(_yaw(np.pi / 2)),
                         "translation": ego_t.tolist()})
            fn = f"samples/LIDAR_TOP/n000-2018__LIDAR_TOP__{ts}.pcd.bin"
            # camera-frame points with known pixels and depths
            cam_ego = np.array([100.0, 50.0 + 6.0 * k * 0.083333, 0.0])
            T_g_ec = _rt(_yaw(np.pi / 2), cam_ego)
            T_lid_cam = np.linalg.inv(T_ego_lid) @ np.linalg.inv(T_g_el) @ T_g_ec @ T_ego_cam
            pix = [(20, 30, 8.0), (100, 60, 15.0), (100, 60, 25.0), (50, 10, 0.5)]
            pts = [] if cam_points is None else list(cam_points)
            for u, v, z in pix:
                pts.append([(u - NS_K[0, 2]) / NS_K[0, 0] * z,
                            (v - NS_K[1, 2]) / NS_K[1, 1] * z, z])
            P = np.asarray(pts).T
            P_l = T_lid_cam[:3, :3] @ P + T_lid_cam[:3, 3:4]
            arr = np.zeros((P.shape[1], 5), np.float32)
            arr[:, :3] = P_l.T
            arr[:, 3] = rng.uniform(0, 100, P.shape[1])
            arr.tofile(root / fn)
            sds.append({"token": lt, "sample_token": sample_toks[i], "ego_pose_token": f"ego_{lt}",
                        "calibrated_sensor_token": "c_lid", "timestamp": ts,
                        "fileformat": "pcd", "is_key_frame": True, "height": 0, "width": 0,
                        "filename": fn, "prev": lid_toks[i - 1] if i else "",
                        "next": lid_toks[i + 1] if i + 1 < 2 else ""})
        truths[scene_tok] = {(20, 30): 8.0, (100, 60): 15.0}
    for name, rows in [("scene", scenes), ("sample", samples), ("sample_data", sds),
                       ("calibrated_sensor", calib), ("ego_pose", egos), ("sensor", sensor),
                       ("log", logs)]:
        (tab / f"{name}.json").write_text(json.dumps(rows))
    return truths


@pytest.fixture
def ns_root(tmp_path):
    root = tmp_path / "nuscenes"
    truths = _write_nuscenes(root)
    return root, truths


def test_nuscenes_lidar_projection_known_pixels(ns_root):
    from dasp_core.data.nuscenes import NuScenesDataset

    root, truths = ns_root
    ds = NuScenesDataset(root, load_depth=True, size_hw=None)
    # key frames at chain positions 0 and 3; only 3 has both neighbours
    assert len(ds) == 2
    for i in range(len(ds)):
        clip = ds[i]
        assert clip.meta["is_key_frame"] and clip.frames.shape == (3, NS_H, NS_W, 3)
        np.testing.assert_allclose(clip.K, NS_K)
        d = clip.depth
        # (100, 60) had 15 m and 25 m: the nearest wins; the 0.5 m point is dropped (z <= 1 m)
        assert np.count_nonzero(d) == 2
        assert d[30, 20] == pytest.approx(8.0, abs=1e-4)
        assert d[60, 100] == pytest.approx(15.0, abs=1e-4)
        # ego moves along +y global = forward: the next frame is ~0.5 m ahead (+z optical)
        np.testing.assert_allclose(clip.poses[1], np.eye(4), atol=1e-9)
        assert clip.poses[2][2, 3] == pytest.approx(0.5, abs=1e-3)
        assert clip.speed == pytest.approx(6.0, rel=1e-3)


def test_nuscenes_day_night_by_description_and_split_file(ns_root, tmp_path):
    from dasp_core.data.nuscenes import NuScenesDataset

    root, _ = ns_root
    night = NuScenesDataset(root, domain="night", size_hw=(48, 96))
    assert len(night) == 3 and {night[i].domain for i in range(3)} == {"night"}
    clip = night[0]
    assert clip.frames.shape == (3, 48, 96, 3)
    np.testing.assert_allclose(clip.K, augment.scale_K(NS_K, 96 / 160, 48 / 90))
    day = NuScenesDataset(root, domain="day", size_hw=None)
    assert {day[i].domain for i in range(len(day))} == {"day"}
    split = tmp_path / "night_train_split.txt"
    split.write_text("scene1\n")  # RNW lists scene tokens per domain
    ds = NuScenesDataset(root, domain="night", split_file=split, size_hw=None)
    assert len(ds) == 3 and ds[0].meta["scene"] == "scene-0001" and ds[0].domain == "night"


def test_nuscenes_bad_inputs(ns_root, tmp_path):
    from dasp_core.data.nuscenes import NuScenesDataset

    root, _ = ns_root
    with pytest.raises(DatasetError, match="v1.0-"):
        NuScenesDataset(tmp_path)
    (root / "v1.0-mini" / "ego_pose.json").rename(root / "v1.0-mini" / "x.json")
    with pytest.raises(DatasetError, match="ego_pose.json"):
        NuScenesDataset(root)
    (root / "v1.0-mini" / "x.json").rename(root / "v1.0-mini" / "ego_pose.json")
    with pytest.raises(ConfigError, match="channel"):
        NuScenesDataset(root, channel="CAM_TOP")
    ds = NuScenesDataset(root, load_depth=True, size_hw=None)
    sd = ds.tables["sample_data"]
    tok = ds.items[0].tokens[0]
    (root / sd[tok]["filename"]).write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(SampleError, match=os.path.basename(sd[tok]["filename"])):
        ds[0]
    lidar = ds.tables["sample_data"][ds._lidar_of_sample[sd[ds.items[1].tokens[1]]["sample_token"]]]
    with open(root / lidar["filename"], "ab") as fh:
        fh.write(b"\x00\x00")
    with pytest.raises(SampleError, match="not N x 5 float32"):
        ds[1]


# ============================================================================ folders

def _write_folder(root: Path, name: str, n: int, level: int, static_from=None, domain=None):
    d = root / name
    d.mkdir(parents=True)
    rng = np.random.default_rng(len(name))
    base = rng.integers(0, 60, (24, 32, 3)).astype(np.int32)
    for i in range(n):
        k = i if static_from is None else min(i, static_from)
        img = np.clip(base + level + np.roll(np.arange(32), 3 * k)[None, :, None], 0, 255)
        cv2.imwrite(str(d / f"{i:06d}.png"), img.astype(np.uint8))
    if domain:
        (d / "domain.txt").write_text(domain + "\n")
    return d


CAMINFO_YAML = """image_width: 64
image_height: 48
camera_name: front
camera_matrix:
  rows: 3
  cols: 3
  data: [40.0, 0.0, 31.5, 0.0, 40.0, 23.5, 0.0, 0.0, 1.0]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [0.0, 0.0, 0.0, 0.0, 0.0]
rectification_matrix:
  rows: 3
  cols: 3
  data: [1, 0, 0, 0, 1, 0, 0, 0, 1]
projection_matrix:
  rows: 3
  cols: 4
  data: [40.0, 0.0, 31.5, 0.0, 0.0, 40.0, 23.5, 0.0, 0.0, 0.0, 1.0, 0.0]
"""


def test_calibration_formats(tmp_path):
    p = tmp_path / "camera_info.yaml"
    p.write_text(CAMINFO_YAML)
    c = read_calibration(p)
    np.testing.assert_allclose(c.K, RC_K)
    assert (c.width, c.height) == (64, 48) and not c.has_distortion
    # images at half size: K scales with the pixel-centre convention
    np.testing.assert_allclose(c.K_for_size(24, 32), augment.scale_K(RC_K, 0.5, 0.5))
    with pytest.raises(DatasetError, match="aspect"):
        c.K_for_size(24, 64)
    j = tmp_path / "intrinsics.json"
    j.write_text(json.dumps({"fx": 40, "fy": 41, "cx": 31.5, "cy": 23.5, "domain": "night",
                             "D": [0.1, 0.01, 0, 0, 0]}))
    c = read_calibration(j)
    assert c.K[1, 1] == 41 and c.domain == "night" and c.distortion_model == "plumb_bob"
    with pytest.raises(ConfigError, match="focal"):
        calibration_from_dict({"focal": 3, "cx": 1}, "cfg")
    with pytest.raises(ConfigError, match="fx, fy, cx, cy"):
        calibration_from_dict({"cx": 1, "cy": 1}, "cfg")
    with pytest.raises(ConfigError, match="distortion_model"):
        calibration_from_dict({"K": np.eye(3).tolist(), "distortion_model": "kb8"}, "cfg")


def test_folder_dataset_domains_static_skip_and_brightness(tmp_path, caplog):
    root = tmp_path / "imgs"
    root.mkdir()
    (root / "calibration.yaml").write_text(CAMINFO_YAML)  # for 64x48; images are 32x24
    _write_folder(root, "a_dark", 5, level=0)                 # median ~30 → night (auto)
    _write_folder(root, "b_bright", 8, level=150, static_from=3)  # frames 3..7 identical
    _write_folder(root, "c_flag", 4, level=150, domain="night")   # explicit flag wins
    with caplog.at_level(logging.INFO):
        ds = FolderClipDataset(root, motion_threshold=0.5, fps=10.0)
    assert "median luminance" in caplog.text  # the user can see the measured value
    doms = {s.name: s.domain for s in ds.sequences}
    assert doms == {"a_dark": "night", "b_bright": "day", "c_flag": "night"}
    per_seq = {}
    for si, idx in ds.items:
        per_seq.setdefault(ds.sequences[si].name, []).append(idx)
    # b_bright keeps frames 0..3 only (4..7 are static copies of 3) → 2 clips
    assert per_seq["b_bright"] == [(0, 1, 2), (1, 2, 3)]
    assert len(per_seq["a_dark"]) == 3
    clip = ds[0]
    assert clip.frames.shape == (3, 24, 32, 3) and clip.dt == pytest.approx(0.1)
    np.testing.assert_allclose(clip.K, augment.scale_K(RC_K, 0.5, 0.5))
    # with a brighter threshold everything is night
    ds2 = FolderClipDataset(root, night_threshold=250)
    assert {s.domain for s in ds2.sequences} == {"night"}


def test_folder_bad_inputs(tmp_path):
    root = tmp_path / "imgs"
    _write_folder(root, "s", 4, level=100)
    with pytest.raises(DatasetError, match="no calibration"):
        FolderClipDataset(root)
    with pytest.raises(DatasetError, match="does not exist"):
        FolderClipDataset(tmp_path / "nope", calibration={"fx": 1, "fy": 1, "cx": 0, "cy": 0})
    ds = FolderClipDataset(root, calibration={"fx": 20, "fy": 20, "cx": 15.5, "cy": 11.5},
                           domain="day")
    (root / "s" / "000001.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(SampleError, match="000001.png"):
        ds[0]
    with pytest.raises(SampleError, match="not found"):
        read_image(tmp_path / "missing.png")


def test_undistortion_removes_known_distortion(tmp_path):
    from dasp_core.data.folder import Undistorter

    K = np.array([[60.0, 0, 47.5], [0, 60.0, 35.5], [0, 0, 1]])
    D = np.array([-0.3, 0.08, 0, 0, 0])
    calib = calibration_from_dict({"K": K.tolist(), "D": D.tolist(), "width": 96, "height": 72})
    X = np.array([[0.5, 0.3, 2.0]])
    dist_px, _ = cv2.projectPoints(X, np.zeros(3), np.zeros(3), K, D)
    img = np.zeros((72, 96, 3), np.uint8)
    u, v = np.rint(dist_px[0, 0]).astype(int)
    img[v - 1:v + 2, u - 1:u + 2] = 255
    out = Undistorter(calib, 72, 96)(img)
    ys, xs = np.nonzero(out[..., 0] > 100)
    u2, v2 = _project(K, X[0])
    assert abs(xs.mean() - u2) < 1.0 and abs(ys.mean() - v2) < 1.0


def test_motion_and_brightness_helpers():
    a = np.zeros((20, 40, 3), np.uint8)
    b = a.copy()
    b[:, :20] = 100
    ta, tb = thumbnail(a, 16), thumbnail(b, 16)
    assert select_moving([ta, ta, tb, tb, ta], 1.0).tolist() == [0, 2, 4]
    assert select_moving([ta, ta], 0.0).tolist() == [0, 1]
    rule = BrightnessRule(60)
    assert rule.classify([10, 20, 200]) == ("night", 20.0)
    with pytest.raises(ConfigError, match="night_threshold"):
        BrightnessRule(300)


# ============================================================================ registry & torch

def test_registry_builds_and_validates(rc_root, tmp_path):
    root, _ = rc_root
    ds = build_dataset({"kind": "robotcar", "root": str(root), "split": "train",
                        "domain": "night", "crop_hw": [32, 48], "size_hw": [16, 24]})
    assert isinstance(ds, RobotCarDataset) and ds.crop_hw == (32, 48)
    with pytest.raises(ConfigError, match=r"data\.train\.kind.*allowed: 'synthetic', 'robotcar'"):
        build_dataset({"kind": "kitti"})
    with pytest.raises(ConfigError, match=r"data\.val\.spilt.*split"):
        build_dataset({"kind": "robotcar", "root": str(root), "spilt": "train"}, "data.val")
    with pytest.raises(ConfigError, match=r"data\.train\.root"):
        build_dataset({"kind": "folder"})
    with pytest.raises(ConfigError, match=r"data\.train\.kind"):
        build_dataset({"root": "x"})
    small = {"kind": "robotcar", "root": str(root), "crop_hw": None, "size_hw": [24, 32]}
    both = build_dataset([{**small, "domain": "night"}, {**small, "domain": "day"}])
    assert isinstance(both, ConcatClipDataset) and len(both) == 4
    assert both[3].domain == "day" and both[0].domain == "night"


def test_torch_dataset_resizes_augments_and_replaces_bad_samples(rc_root):
    from torch.utils.data import DataLoader

    from dasp_core.data.sample import collate_clips
    from dasp_core.data.torch_dataset import ClipTorchDataset

    root, times = rc_root
    src = RobotCarDataset(root, split="all", domain="night", crop_hw=None, size_hw=None)
    (root / RC_NIGHT / "stereo" / "centre" / f"{times[4]}.png").write_bytes(b"broken")
    ds = ClipTorchDataset(src, size_hw=(16, 32), train=True,
                          augment={"flip_prob": 1.0, "jitter_prob": 1.0, "brightness": 0.5})
    batch = collate_clips([ds[i] for i in range(len(ds))])
    assert batch["frames"].shape == (4, 3, 3, 16, 32)
    assert batch["frames_aug"].shape == batch["frames"].shape
    # clips with frame 4 (targets 3 and 4) were replaced by readable ones and counted
    assert ds.bad_count == 2 and int(batch["n_skipped"].sum()) >= 2
    assert not set(batch["index"].tolist()) & {2, 3}
    # flipped: cx' = W - 1 - cx of the resized K
    K = augment.scale_K(augment.crop_K(RC_K, 0, 8), 0.5, 0.5)  # 64x48 → crop 64x32 → 32x16
    np.testing.assert_allclose(batch["K"][0].numpy(), augment.flip_K(K, 32), rtol=1e-6)
    assert batch["poses"][0, 2, 0, 3] == pytest.approx(0.0, abs=1e-6)
    # evaluation: no augmentation, frames_aug == frames
    ev = ClipTorchDataset(src, size_hw=(16, 32), train=False)
    item = ev[0]
    assert torch.equal(item["frames"], item["frames_aug"])
    loader = DataLoader(ev, batch_size=2, collate_fn=collate_clips, num_workers=0)
    assert next(iter(loader))["K"].shape == (2, 3, 3)


def test_torch_dataset_gives_up_on_broken_data(tmp_path):
    from dasp_core.data.torch_dataset import ClipTorchDataset

    class Broken:
        def __len__(self):
            return 5

        def __getitem__(self, i):
            raise SampleError(f"file{i}", "corrupt")

    ds = ClipTorchDataset(Broken(), max_consecutive_failures=4)
    with pytest.raises(DatasetError, match="4 bad samples in a row"):
        ds[0]


# ============================================================================ rosbag2

BAG_K = np.array([[30.0, 0, 23.5], [0, 30.0, 17.5], [0, 0, 1]])


def _moving_frame(k: int, level: int, h=36, w=48) -> np.ndarray:
    rng = np.random.default_rng(1)
    base = rng.integers(0, 40, (h, w)).astype(np.int32)
    stripes = (np.roll(np.arange(w) * 7 % 64, 4 * k)[None, :]).astype(np.int32)
    g = np.clip(base + stripes + level, 0, 255).astype(np.uint8)
    img = np.stack([g, g // 2, g // 4], -1)  # reddish: channel order is checked
    return img


def _write_bag(path: Path, frames, times_s, *, compressed=False, camera_info=True,
               encoding="rgb8", odom=None, depth=None, storage="sqlite3", corrupt=()):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.LATEST)
    T = ts.types
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]

    def header(t):
        return Header(stamp=Time(sec=int(t), nanosec=int(round((t % 1) * 1e9))),
                      frame_id="camera_optical_frame")

    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as w:
        if compressed:
            img_c = w.add_connection("/camera/image_raw/compressed",
                                     "sensor_msgs/msg/CompressedImage", typestore=ts)
        else:
            img_c = w.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        info_c = w.add_connection("/camera/camera_info", "sensor_msgs/msg/CameraInfo",
                                  typestore=ts) if camera_info else None
        odom_c = w.add_connection("/odom", "nav_msgs/msg/Odometry", typestore=ts) \
            if odom is not None else None
        depth_c = w.add_connection("/camera/depth_gt", "sensor_msgs/msg/Image", typestore=ts) \
            if depth is not None else None
        for k, (img, t) in enumerate(zip(frames, times_s)):
            tn = int(round(t * 1e9))
            h, wd = img.shape[:2]
            if compressed:
                ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
                data = np.frombuffer(buf.tobytes() if k not in corrupt else b"\xff\xd8junk",
                                     np.uint8)
                msg = T["sensor_msgs/msg/CompressedImage"](header=header(t), format="jpeg",
                                                           data=data)
            else:
                arr = img[..., ::-1] if encoding == "bgr8" else img
                msg = T["sensor_msgs/msg/Image"](header=header(t), height=h, width=wd,
                                                 encoding=encoding, is_bigendian=0, step=wd * 3,
                                                 data=np.ascontiguousarray(arr).reshape(-1))
            w.write(img_c, tn, ts.serialize_cdr(msg, msg.__msgtype__))
            if info_c is not None and k == 0:
                roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0,
                                                            width=0, do_rectify=False)
                P = np.zeros(12)
                P[[0, 2, 5, 6, 10]] = [BAG_K[0, 0], BAG_K[0, 2], BAG_K[1, 1], BAG_K[1, 2], 1]
                info = T["sensor_msgs/msg/CameraInfo"](
                    header=header(t), height=h, width=wd, distortion_model="plumb_bob",
                    d=np.zeros(5), k=BAG_K.reshape(-1).copy(), r=np.eye(3).reshape(-1),
                    p=P, binning_x=0, binning_y=0, roi=roi)
                w.write(info_c, tn, ts.serialize_cdr(info, info.__msgtype__))
            if odom_c is not None:
                V3 = T["geometry_msgs/msg/Vector3"]
                tw = T["geometry_msgs/msg/TwistWithCovariance"](
                    twist=T["geometry_msgs/msg/Twist"](linear=V3(x=float(odom[k]), y=0.0, z=0.0),
                                                       angular=V3(x=0.0, y=0.0, z=0.0)),
                    covariance=np.zeros(36))
                pose = T["geometry_msgs/msg/PoseWithCovariance"](
                    pose=T["geometry_msgs/msg/Pose"](
                        position=T["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
                        orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)),
                    covariance=np.zeros(36))
                om = T["nav_msgs/msg/Odometry"](header=header(t), child_frame_id="base_link",
                                                pose=pose, twist=tw)
                w.write(odom_c, tn, ts.serialize_cdr(om, om.__msgtype__))
            if depth_c is not None:
                d = np.asarray(depth[k], np.float32)
                dm = T["sensor_msgs/msg/Image"](header=header(t), height=h, width=wd,
                                                encoding="32FC1", is_bigendian=0, step=wd * 4,
                                                data=d.view(np.uint8).reshape(-1))
                w.write(depth_c, tn, ts.serialize_cdr(dm, dm.__msgtype__))
    return path


def test_rosbag_clips_intrinsics_colour_and_static_skip(tmp_path):
    from dasp_core.data.rosbag import RosbagClipDataset

    ks = [0, 1, 2, 3, 3, 3, 3, 4, 5]  # frames 4..6 repeat frame 3: a stop
    frames = [_moving_frame(k, 100) for k in ks]
    times = [0.1 * i for i in range(len(ks))]
    bag = _write_bag(tmp_path / "b1", frames, times, encoding="bgr8")
    ds = RosbagClipDataset(bag, domain="day", motion_threshold=1.0)
    kept = sorted({i for _, c in ds.items for i in c})
    assert kept == [0, 1, 2, 3, 7, 8]
    assert len(ds) == 4
    clip = ds[0]
    np.testing.assert_allclose(clip.K, BAG_K)
    np.testing.assert_array_equal(clip.frames[0], frames[0])  # bgr8 decoded to RGB
    assert clip.dt == pytest.approx(0.1) and clip.speed is None and clip.domain == "day"
    # the clip across the stop uses frame 3 then 7; dt from header stamps
    c = ds[3]
    assert c.meta["bag_time_ns"] == [int(round(t * 1e9)) for t in (0.3, 0.7, 0.8)]
    small = RosbagClipDataset(bag, domain="day", size_hw=(18, 24))
    assert small[0].frames.shape == (3, 18, 24, 3)
    np.testing.assert_allclose(small[0].K, augment.scale_K(BAG_K, 0.5, 0.5))


def test_rosbag_brightness_rule_per_segment(tmp_path, caplog):
    from dasp_core.data.rosbag import RosbagClipDataset

    frames = [_moving_frame(k, 0) for k in range(4)] + [_moving_frame(k, 160) for k in range(4)]
    times = [0.1 * i for i in range(4)] + [5.0 + 0.1 * i for i in range(4)]  # 4.7 s gap
    bag = _write_bag(tmp_path / "b", frames, times, compressed=True, storage="mcap")
    with caplog.at_level(logging.INFO):
        ds = RosbagClipDataset(bag, domain="auto", motion_threshold=0.5)
    assert "segment 0" in caplog.text and "median luminance" in caplog.text
    doms = [ds[i].domain for i in range(len(ds))]
    assert doms == ["night", "night", "day", "day"]  # no clip spans the gap
    ds2 = RosbagClipDataset(bag, domain="auto", night_threshold=250, motion_threshold=0.5)
    assert {ds2[i].domain for i in range(len(ds2))} == {"night"}


def test_rosbag_odometry_speed_and_motion(tmp_path):
    from dasp_core.data.rosbag import RosbagClipDataset

    frames = [_moving_frame(k, 80) for k in range(8)]
    speeds = [2.0, 2.0, 2.0, 0.0, 0.0, 3.0, 3.0, 3.0]
    bag = _write_bag(tmp_path / "b", frames, [0.1 * i for i in range(8)], odom=speeds)
    ds = RosbagClipDataset(bag, domain="night", min_speed=0.5)  # auto → odom test
    kept = sorted({i for _, c in ds.items for i in c})
    assert kept == [0, 1, 2, 5, 6, 7]
    # the 0.2 s stop is shorter than max_gap_s: clips continue across it (the camera stood still)
    assert [ds[i].speed for i in range(len(ds))] == pytest.approx([2.0, 2.0, 3.0, 3.0])
    split = RosbagClipDataset(bag, domain="night", min_speed=0.5, max_gap_s=0.25)
    assert [c for _, c in split.items] == [(0, 1, 2), (5, 6, 7)]


def test_rosbag_depth_topic(tmp_path):
    from dasp_core.data.rosbag import RosbagClipDataset

    frames = [_moving_frame(k, 80) for k in range(3)]
    depth = [np.full((36, 48), 5.0 + k, np.float32) for k in range(3)]
    for d in depth:
        d[0, 0] = np.nan
    bag = _write_bag(tmp_path / "b", frames, [0.0, 0.1, 0.2], depth=depth)
    ds = RosbagClipDataset(bag, domain="day", depth_topic="/camera/depth_gt",
                           motion_test="none")
    clip = ds[0]
    assert clip.depth[1, 1] == pytest.approx(6.0) and clip.depth[0, 0] == 0.0


def test_rosbag_bad_inputs(tmp_path):
    from dasp_core.data.rosbag import RosbagClipDataset

    frames = [_moving_frame(k, 80) for k in range(5)]
    times = [0.1 * i for i in range(5)]
    no_info = _write_bag(tmp_path / "noinfo", frames, times, camera_info=False)
    with pytest.raises(DatasetError, match="no CameraInfo.*intrinsics"):
        RosbagClipDataset(no_info, domain="day")
    ds = RosbagClipDataset(no_info, domain="day", motion_test="none",
                           intrinsics={"fx": 30, "fy": 30, "cx": 23.5, "cy": 17.5,
                                       "width": 48, "height": 36})
    np.testing.assert_allclose(ds[0].K, BAG_K)
    with pytest.raises(DatasetError, match="cannot be opened|does not exist"):
        RosbagClipDataset(tmp_path / "nothing", domain="day")
    (tmp_path / "notabag").mkdir()
    (tmp_path / "notabag" / "x.txt").write_text("hello")
    with pytest.raises(DatasetError, match="notabag.*cannot be opened"):
        RosbagClipDataset(tmp_path / "notabag", domain="day")
    # unknown encoding: clear message naming topic and index, at read time
    odd = _write_bag(tmp_path / "odd", frames, times, encoding="yuv422")
    ds = RosbagClipDataset(odd, domain="day", motion_test="none")
    with pytest.raises(SampleError, match=r"/camera/image_raw@0.*yuv422"):
        ds[0]
    # corrupt JPEG: skipped while indexing (counted in the log), the rest is usable
    cj = _write_bag(tmp_path / "cj", frames, times, compressed=True, corrupt=(2,))
    ds = RosbagClipDataset(cj, domain="day", motion_threshold=0.1)
    b = ds.bags[0]
    assert b.n_bad_indexed == 1 and b.msg_number.tolist() == [0, 1, 3, 4]
    assert ds[0].source.endswith("compressed@1")
    # same bag without the index-time decode: the bad frame surfaces as a SampleError
    ds = RosbagClipDataset(cj, domain="day", motion_test="none")
    with pytest.raises(SampleError, match=r"compressed@2"):
        ds[1]
    # several bags: a bad one is skipped and reported, the good ones are used
    ds = RosbagClipDataset([no_info, cj], domain="day", motion_test="none")
    assert len(ds.bad_bags) == 1 and "CameraInfo" in ds.bad_bags[0][1]


def test_nuscenes_table_cache(ns_root, tmp_path):
    from dasp_core.data.nuscenes import NuScenesDataset

    root, _ = ns_root
    cache = tmp_path / "cache"
    a = NuScenesDataset(root, size_hw=None, cache_dir=cache)
    files = list(cache.glob("nuscenes_*.json"))
    assert len(files) == 1
    b = NuScenesDataset(root, size_hw=None, cache_dir=cache)
    assert [i.tokens for i in a.items] == [i.tokens for i in b.items]
    np.testing.assert_array_equal(a[0].frames, b[0].frames)
    np.testing.assert_allclose(a[0].poses, b[0].poses)


# ============================================================================ synthetic data

@pytest.fixture(scope="module")
def synth_seqs():
    from dasp_core.data.synthetic import SyntheticConfig, render_sequence

    cfg = SyntheticConfig(height=48, width=96, noise=False)
    return [render_sequence(seed=s, domain=d, n_frames=5, cfg=cfg)
            for s, d in [(0, "night"), (1, "day")]]


def test_folder_reads_synthetic_write_folder(synth_seqs, tmp_path):
    from dasp_core.data.synthetic import write_folder

    seq = synth_seqs[0]
    write_folder(seq, tmp_path / "night_0")
    ds = FolderClipDataset(tmp_path / "night_0", domain="day")  # sequence.json says night
    assert len(ds) == 3
    c = ds[1]
    assert c.domain == "night"
    np.testing.assert_array_equal(c.frames, seq.frames[1:4])
    np.testing.assert_allclose(c.depth, seq.depth[2], atol=1e-6)
    np.testing.assert_allclose(c.poses, seq.poses[1:4], atol=1e-8)  # CSV keeps 9 decimals
    np.testing.assert_allclose(c.K, seq.K)
    assert c.speed == pytest.approx(seq.speeds[2]) and c.dt == pytest.approx(1 / seq.fps, rel=1e-4)
    assert set(c.masks) == set(seq.masks)
    np.testing.assert_array_equal(c.masks["moving"], seq.masks["moving"][2])


def test_rosbag_reads_synthetic_bag(synth_seqs, tmp_path):
    from dasp_core.data.rosbag import RosbagClipDataset
    from dasp_core.data.synthetic import write_synthetic_bag

    bag = write_synthetic_bag(synth_seqs, tmp_path / "bag", storage="mcap")
    ds = RosbagClipDataset(bag, depth_topic="/camera/depth_gt")  # image topic found itself
    assert [ds[i].domain for i in range(len(ds))] == ["night"] * 3 + ["day"] * 3
    c = ds[0]
    np.testing.assert_array_equal(c.frames, synth_seqs[0].frames[0:3])
    np.testing.assert_allclose(c.depth, synth_seqs[0].depth[1], atol=1e-6)
    np.testing.assert_allclose(c.K, synth_seqs[0].K)
    assert c.speed == pytest.approx(synth_seqs[0].speeds[1], rel=1e-5)


def test_registry_synthetic_kind():
    ds = build_dataset({"kind": "synthetic", "domain": "night", "seeds": 1,
                        "frames_per_sequence": 3, "render": {"height": 32, "width": 64}})
    assert len(ds) == 1 and ds[0].frames.shape == (3, 32, 64, 3)
    with pytest.raises(ConfigError, match=r"data\.train\.render\.hight"):
        build_dataset({"kind": "synthetic", "domain": "day", "seeds": 1,
                       "frames_per_sequence": 3, "render": {"hight": 32}})
    with pytest.raises(ConfigError, match=r"data\.train\.frames_per_sequence"):
        build_dataset({"kind": "synthetic", "domain": "day", "seeds": [0]})


def test_rosbag_through_dataloader_workers(tmp_path):
    """Bag readers are reopened in each worker process (no shared file handles)."""
    from torch.utils.data import DataLoader

    from dasp_core.data.rosbag import RosbagClipDataset
    from dasp_core.data.sample import collate_clips
    from dasp_core.data.torch_dataset import ClipTorchDataset

    frames = [_moving_frame(k, 90) for k in range(6)]
    bag = _write_bag(tmp_path / "b", frames, [0.1 * i for i in range(6)], compressed=True)
    src = RosbagClipDataset(bag, domain="night", motion_test="none")
    _ = src[0]  # the parent opens the bag before forking
    loader = DataLoader(ClipTorchDataset(src, size_hw=(18, 24)), batch_size=2, num_workers=2,
                        collate_fn=collate_clips)
    batches = list(loader)
    assert sum(b["frames"].shape[0] for b in batches) == len(src) == 4
    assert all(int(b["n_skipped"].sum()) == 0 for b in batches)
