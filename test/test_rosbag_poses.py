"""Camera poses from rosbag2 recordings: Odometry / tf → ``Clip.poses`` (pose.source odometry)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from dasp_core import bagio
from dasp_core.bagio import TransformData, TransformLookupError, TransformTree
from dasp_core.data.rosbag import PoseTrack, RosbagClipDataset, camera_extrinsic_matrix
from dasp_core.errors import ConfigError, DatasetError

K = np.array([[20.0, 0, 11.5], [0, 20.0, 7.5], [0, 0, 1]])
H, W = 16, 24
T0 = 1_700_000_000 * 1_000_000_000  # absolute stamps, as a robot records them
# the REP 103 optical frame in a body frame (x forward, y left, z up)
R_BODY_OPTICAL = np.array([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])


def _rt(R=np.eye(3), t=(0.0, 0.0, 0.0)) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


def _rz(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def _ry(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _base_pose(t_s: float) -> np.ndarray:
    """Base in odom: drives 2 m/s along x while turning 0.3 rad/s, far from the origin (the
    float32 tensors must still be exact: poses are relative to the target camera)."""
    return _rt(_rz(0.3 * t_s), (5000.0 + 2.0 * t_s, -3000.0 + 0.5 * t_s, 0.1 * t_s))


def _relative(poses: np.ndarray, s: int, t: int) -> np.ndarray:
    """``T_s_t = inv(T_w_s) @ T_w_t`` as the trainer computes it."""
    return np.linalg.solve(poses[s], poses[t])


def _write(path: Path, image_times, odom_times=(), *, tf_static=(), tf=(), odom_child="base_link",
           image_frame="camera_optical_frame", tf_odom_times=()):
    """A bag: mono images with CameraInfo, Odometry of :func:`_base_pose` at ``odom_times``,
    ``/tf_static`` and ``/tf`` transforms ``(parent, child, T)`` (``tf`` repeated with every
    image), and ``/tf`` odom → base_link at ``tf_odom_times``. Times in seconds after T0."""
    events = []
    for k, t in enumerate(image_times):
        events.append((t, 0, k))
    for t in odom_times:
        events.append((t, 1, None))
    for t in tf_odom_times:
        events.append((t, 2, None))
    with bagio.BagWriter(path, storage="mcap") as bag:
        if tf_static:
            bag.write("/tf_static", bagio.make_tf_message(
                [TransformData(T0, p, c, T) for p, c, T in tf_static], bag.ts), T0)
        for t, kind, k in sorted(events, key=lambda e: (e[0], e[1])):
            ns = T0 + int(round(t * 1e9))
            if kind == 0:
                rng = np.random.default_rng(k)
                img = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
                bag.write("/camera/image_raw", bagio.numpy_to_image(img, "rgb8", ns, image_frame,
                                                                    ts=bag.ts), ns)
                bag.write("/camera/camera_info", bagio.make_camera_info(
                    K, W, H, stamp_ns=ns, frame_id=image_frame, ts=bag.ts), ns)
                if tf:
                    bag.write("/tf", bagio.make_tf_message(
                        [TransformData(ns, p, c, T) for p, c, T in tf], bag.ts), ns)
            elif kind == 1:
                bag.write("/odom", bagio.make_odometry(_base_pose(t), [2.0, 0, 0], [0, 0, 0.3], ns,
                                                       "odom", odom_child, ts=bag.ts), ns)
            else:
                bag.write("/tf", bagio.make_tf_message(
                    [TransformData(ns, "odom", "base_link", _base_pose(t))], bag.ts), ns)
    return path


# A camera mount chained over three links: base_footprint → base_link (on /tf, never changing),
# base_link → camera_link (tf_static), camera_link → camera_optical_frame (tf_static).
T_FP_BL = _rt(t=(0.0, 0.0, 0.2))
T_BL_CL = _rt(_ry(0.1), (1.2, 0.3, 1.5))
T_CL_CO = _rt(R_BODY_OPTICAL)
T_FP_CO = T_FP_BL @ T_BL_CL @ T_CL_CO
MOUNT = dict(tf_static=[("base_link", "camera_link", T_BL_CL),
                        ("camera_link", "camera_optical_frame", T_CL_CO)],
             tf=[("base_footprint", "base_link", T_FP_BL)])


def _expected(times_s, T_base_cam=T_FP_CO) -> np.ndarray:
    return np.stack([_base_pose(t) @ T_base_cam for t in times_s])


def _times(ds, clip_index):
    _, frames = ds.items[clip_index]
    return [(int(ds.bags[0].times[i]) - T0) * 1e-9 for i in frames]


# ============================================================================ synthetic truth

@pytest.fixture(scope="module")
def synth():
    from dasp_core.data.synthetic import SyntheticConfig, render_sequence

    cfg = SyntheticConfig(height=24, width=48, noise=False)
    return [render_sequence(seed=s, domain=d, n_frames=5, cfg=cfg)
            for s, d in [(0, "night"), (1, "day")]]


@pytest.mark.parametrize("odom_topic", ["auto", None])  # Odometry, then /tf without it
def test_synthetic_bag_poses_match_ground_truth(synth, tmp_path, odom_topic, caplog):
    from dasp_core.data.synthetic import write_synthetic_bag

    bag = write_synthetic_bag(synth, tmp_path / "bag")
    with caplog.at_level(logging.INFO, logger="dasp_core.data.rosbag"):
        ds = RosbagClipDataset(bag, motion_test="none", odom_topic=odom_topic,
                               offsets=(0, -1, 1))
    src = "Odometry /odom (odom -> base_link" if odom_topic else \
        "/tf odom -> base_link -> camera_optical_frame"
    assert f"camera poses from {src}" in caplog.text and "6 of 6 clips have them" in caplog.text
    assert len(ds) == 6  # 3 per drive; the odom frame restarts between drives
    for i in range(len(ds)):
        clip = ds[i]
        seq = synth[0] if i < 3 else synth[1]
        first = ds.items[i][1]
        gt = seq.poses[[f - (0 if i < 3 else 5) for f in first]]
        np.testing.assert_allclose(clip.poses[0], np.eye(4), atol=1e-12)  # target frame
        for s in (1, 2):
            np.testing.assert_allclose(_relative(clip.poses, s, 0), _relative(gt, s, 0),
                                       atol=1e-5)
        # the same motion as the ground truth: one fixed world transform for the whole clip
        W_ = gt[0] @ np.linalg.inv(clip.poses[0])
        np.testing.assert_allclose(W_ @ clip.poses, gt, atol=1e-5)


def test_synthetic_bag_poses_reach_the_trainer_tensors(synth, tmp_path):
    from dasp_core.data.sample import collate_clips
    from dasp_core.data.synthetic import write_synthetic_bag

    bag = write_synthetic_bag(synth[:1], tmp_path / "bag", compressed=True)
    ds = RosbagClipDataset(bag, motion_test="none", size_hw=(16, 32))
    batch = collate_clips([ds[0], ds[1]])
    assert bool(batch["has_poses"].all())
    gt = synth[0].poses
    rel = np.linalg.solve(batch["poses"][0, 0].double().numpy(),
                          batch["poses"][0, 1].double().numpy())
    np.testing.assert_allclose(rel, np.linalg.solve(gt[0], gt[1]), atol=1e-5)


# ============================================================================ extrinsic

def test_extrinsic_chained_from_tf_static_and_fixed_tf(tmp_path, caplog):
    times = [0.1 * k for k in range(6)]
    bag = _write(tmp_path / "b", times, times, odom_child="base_footprint", **MOUNT)
    with caplog.at_level(logging.INFO, logger="dasp_core.data.rosbag"):
        ds = RosbagClipDataset(bag, domain="day", motion_test="none")
    assert ("extrinsic from tf (base_footprint -> base_link -> camera_link -> "
            "camera_optical_frame)") in caplog.text
    for i in range(len(ds)):
        exp = _expected(_times(ds, i))
        np.testing.assert_allclose(ds[i].poses, np.linalg.solve(exp[1], exp), atol=1e-9)
    # the same mount given explicitly, as a matrix and as xyz + quaternion
    q = bagio.matrix_to_quaternion(T_FP_CO[:3, :3])
    for given in (T_FP_CO.tolist(), {"xyz": T_FP_CO[:3, 3].tolist(), "quaternion": q.tolist()}):
        ds2 = RosbagClipDataset(bag, domain="day", motion_test="none", camera_extrinsic=given)
        np.testing.assert_allclose(ds2[2].poses, ds[2].poses, atol=1e-9)
    # an extrinsic relative to base_link while the Odometry moves base_footprint: chained
    ds4 = RosbagClipDataset(bag, domain="day", motion_test="none", base_frame="base_link",
                            camera_extrinsic=(T_BL_CL @ T_CL_CO).tolist())
    np.testing.assert_allclose(ds4[2].poses, ds[2].poses, atol=1e-9)
    # a wrong explicit extrinsic really changes the motion (the test can fail)
    ds3 = RosbagClipDataset(bag, domain="day", motion_test="none", camera_extrinsic=np.eye(4))
    assert np.abs(ds3[2].poses - ds[2].poses).max() > 0.01


def test_missing_extrinsic_leaves_poses_none_with_a_clear_log(tmp_path, caplog):
    times = [0.1 * k for k in range(5)]
    bag = _write(tmp_path / "noextr", times, times)  # Odometry, but no tf at all
    with caplog.at_level(logging.INFO, logger="dasp_core.data.rosbag"):
        ds = RosbagClipDataset(bag, domain="day", motion_test="none")
    assert all(ds[i].poses is None for i in range(len(ds)))
    assert ds[0].speed == pytest.approx(2.0)  # the speed is still read
    warn = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("no /tf_static or /tf" in r.getMessage() and "camera_extrinsic" in r.getMessage()
               for r in warn)
    with pytest.raises(DatasetError, match="no clips"):
        RosbagClipDataset(bag, domain="day", motion_test="none", require_poses=True)
    # tf present but the camera frame is not in it
    bag2 = _write(tmp_path / "other", times, times, image_frame="cam_front_optical", **MOUNT)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dasp_core.data.rosbag"):
        ds = RosbagClipDataset(bag2, domain="day", motion_test="none")
    assert ds[0].poses is None
    assert "'base_link' and 'cam_front_optical' are not connected" in caplog.text
    # a body (x-forward) frame as the camera: used as asked, with a warning
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dasp_core.data.rosbag"):
        RosbagClipDataset(bag2, domain="day", motion_test="none", camera_frame="camera_link")
    assert "'camera_link' is not named like an optical frame" in caplog.text
    # ... the optical frame fixes it
    ds = RosbagClipDataset(bag2, domain="day", motion_test="none",
                           camera_frame="camera_optical_frame")
    exp = _expected(_times(ds, 0), T_BL_CL @ T_CL_CO)
    np.testing.assert_allclose(ds[0].poses, np.linalg.solve(exp[1], exp), atol=1e-9)


def test_camera_on_a_moving_joint_is_not_a_fixed_extrinsic(tmp_path, caplog):
    times = [0.1 * k for k in range(5)]
    bag = _write(tmp_path / "b", times, times, tf_static=MOUNT["tf_static"][1:])
    # base_link → camera_link turns over time (a pan unit): add it to /tf per image
    with bagio.BagWriter(tmp_path / "pan", storage="mcap") as w:
        for topic, mt, t, msg in bagio.read_messages(bag):
            w.write(topic, msg, t, mt)
            if topic == "/camera/image_raw":
                w.write("/tf", bagio.make_tf_message([TransformData(
                    t, "base_link", "camera_link", _rt(_rz((t - T0) * 1e-9)))], w.ts), t)
    with caplog.at_level(logging.WARNING, logger="dasp_core.data.rosbag"):
        ds = RosbagClipDataset(tmp_path / "pan", domain="day", motion_test="none")
    assert ds[0].poses is None
    assert "base_link -> camera_link on /tf changes during the recording" in caplog.text


def test_camera_extrinsic_config_errors():
    np.testing.assert_allclose(camera_extrinsic_matrix(np.eye(4).ravel().tolist()), np.eye(4))
    skewed = np.eye(4)
    skewed[3, 2] = 1.0
    T = camera_extrinsic_matrix({"xyz": [1, 2, 3], "rpy": [0, 0, np.pi / 2]})
    np.testing.assert_allclose(T, _rt(_rz(np.pi / 2), (1, 2, 3)), atol=1e-12)
    T = camera_extrinsic_matrix({"xyz": [0, 0, 0], "quaternion": [0, 0, 0, 2]})  # normalised
    np.testing.assert_allclose(T, np.eye(4))
    bad = [
        ([[1, 0, 0], [0, 1, 0], [0, 0, 1]], r"camera_extrinsic = .*4x4 matrix"),
        ("base_link", r"camera_extrinsic = .*4x4 matrix"),
        (np.diag([2.0, 1, 1, 1]), "orthonormal"),
        (np.diag([-1.0, 1, 1, 1]), "determinant"),
        (skewed, "last row 0 0 0 1"),
        ([[np.nan] * 4] * 4, "finite"),
        ({"xyz": [1, 2, 3]}, r"camera_extrinsic = .*quaternion"),
        ({"xyz": [1, 2], "rpy": [0, 0, 0]}, r"camera_extrinsic\.xyz"),
        ({"xyz": [1, 2, 3], "quaternion": [0, 0, 0, 0]}, r"camera_extrinsic\.quaternion"),
        ({"xyz": [1, 2, 3], "quaternion": [0, 0, 0, 1], "rpy": [0, 0, 0]}, "camera_extrinsic"),
        ({"translation": [1, 2, 3], "rotation": [0, 0, 0, 1]}, "camera_extrinsic"),
    ]
    for value, match in bad:
        with pytest.raises(ConfigError, match=match):
            camera_extrinsic_matrix(value)
    with pytest.raises(ConfigError, match="camera_extrinsic"):
        RosbagClipDataset("/nonexistent", camera_extrinsic=[1, 2, 3])
    with pytest.raises(ConfigError, match="tf_fixed_frame"):
        RosbagClipDataset("/nonexistent", tf_fixed_frame="")
    with pytest.raises(ConfigError, match="camera_frame"):
        RosbagClipDataset("/nonexistent", camera_frame=3)


# ============================================================================ time

def test_poses_interpolated_between_odometry_messages(tmp_path):
    odom = [0.1 * k for k in range(8)]                 # 10 Hz odometry
    images = [0.03 + 0.1 * k for k in range(6)]        # camera between the odometry messages
    bag = _write(tmp_path / "b", images, odom, odom_child="base_footprint", **MOUNT)
    ds = RosbagClipDataset(bag, domain="day", motion_test="none")
    assert len(ds) == 4
    for i in range(len(ds)):
        # _base_pose is linear in translation and turns at a constant rate: slerp + linear
        # interpolation reproduce it exactly between samples
        exp = _expected(_times(ds, i))
        np.testing.assert_allclose(ds[i].poses, np.linalg.solve(exp[1], exp), atol=1e-9)
    # header stamps are the clock when every message has one: shifting the images' bag times
    # (recording latency) changes nothing
    bag2 = tmp_path / "late"
    with bagio.BagWriter(bag2, storage="mcap") as w:
        for topic, mt, t, msg in bagio.read_messages(bag):
            w.write(topic, msg, t + (40_000_000 if topic == "/camera/image_raw" else 0), mt)
    ds2 = RosbagClipDataset(bag2, domain="day", motion_test="none")
    np.testing.assert_allclose(ds2[1].poses, ds[1].poses, atol=1e-9)


def test_pose_track_interpolation_and_gaps():
    t = np.array([0, 100, 200, 1500, 1600], np.int64) * 1_000_000  # a 1.3 s gap
    T = np.stack([_rt(_rz(0.1 * k), (k, 0, 0)) for k in range(5)])
    track = PoseTrack.build(t[::-1], T[::-1], max_gap_s=1.0)  # any order in
    assert track.seg.tolist() == [0, 0, 0, 1, 1]
    q = np.array([50, 200, 700, 1500, 1550, -1, 1700], np.int64) * 1_000_000
    P, valid = track.at(q)
    assert valid.tolist() == [True, True, False, True, True, False, False]
    np.testing.assert_allclose(P[0], _rt(_rz(0.05), (0.5, 0, 0)), atol=1e-12)
    np.testing.assert_allclose(P[1], T[2], atol=1e-12)
    np.testing.assert_allclose(P[4], _rt(_rz(0.35), (3.5, 0, 0)), atol=1e-12)
    # repeated stamps keep the last message
    track = PoseTrack.build([0, 0, 5], T[:3], 1.0)
    assert len(track) == 2
    np.testing.assert_allclose(track.T[0], T[1])


def test_clip_outside_odometry_time_range(tmp_path, caplog):
    images = [0.1 * k for k in range(10)]
    odom = [0.1 * k for k in range(2, 8)]              # odometry starts late and ends early
    bag = _write(tmp_path / "b", images, odom, odom_child="base_footprint", **MOUNT)
    with caplog.at_level(logging.INFO, logger="dasp_core.data.rosbag"):
        ds = RosbagClipDataset(bag, domain="day", motion_test="none")
    assert len(ds) == 8
    has = [ds[i].poses is not None for i in range(len(ds))]
    # clip i holds frames i, i+1, i+2: all three inside [0.2, 0.7] s for i = 2..5
    assert has == [False, False, True, True, True, True, False, False]
    assert "4 of 8 clips have them (4 with a frame outside" in caplog.text
    strict = RosbagClipDataset(bag, domain="day", motion_test="none", require_poses=True)
    assert [c for _, c in strict.items] == [c for (_, c), h in zip(ds.items, has) if h]
    assert all(strict[i].poses is not None for i in range(len(strict)))


def test_tf_motion_without_odometry(tmp_path, caplog):
    images = [0.05 + 0.1 * k for k in range(5)]
    tf_odom = [0.1 * k for k in range(7)]
    bag = _write(tmp_path / "b", images, (), tf_odom_times=tf_odom,
                 tf_static=[("base_link", "camera_link", T_BL_CL),
                            ("camera_link", "camera_optical_frame", T_CL_CO)])
    with caplog.at_level(logging.INFO, logger="dasp_core.data.rosbag"):
        ds = RosbagClipDataset(bag, domain="day", motion_test="none")
    assert "/tf odom -> base_link -> camera_link -> camera_optical_frame" in caplog.text
    exp = _expected(_times(ds, 0), T_BL_CL @ T_CL_CO)
    np.testing.assert_allclose(ds[0].poses, np.linalg.solve(exp[1], exp), atol=1e-9)
    # a fixed frame that is not in the tree: no poses, said so
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dasp_core.data.rosbag"):
        ds = RosbagClipDataset(bag, domain="day", motion_test="none", tf_fixed_frame="map")
    assert ds[0].poses is None and "/tf has no 'map' frame" in caplog.text
    # no motion source at all: poses None, an info line (PoseNet still trains on it)
    bag2 = _write(tmp_path / "still", images)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dasp_core.data.rosbag"):
        ds = RosbagClipDataset(bag2, domain="day", motion_test="none")
    assert ds[0].poses is None and "no Odometry topic and no /tf" in caplog.text


# ============================================================================ TransformTree

def test_transform_tree_chains_versions_and_errors():
    tree = TransformTree()
    A, B, C = _rt(_rz(0.2), (1, 0, 0)), _rt(_ry(0.3), (0, 2, 0)), _rt(t=(0, 0, 3))
    tree.add(TransformData(0, "base", "/arm", A), 0, static=True)  # a leading / is dropped
    tree.add(TransformData(0, "arm", "cam", B), 0, static=True)
    tree.add(TransformData(0, "base", "imu", C), 0, static=False)
    tree.add(TransformData(5, "base", "imu", C), 5, static=False)
    # siblings: cam → imu through their common ancestor "base"
    np.testing.assert_allclose(tree.lookup("imu", "cam"), np.linalg.inv(C) @ A @ B, atol=1e-12)
    np.testing.assert_allclose(tree.lookup("cam", "cam"), np.eye(4))
    assert tree.chain("imu", "cam") == ["imu", "base", "arm", "cam"]
    # a re-published static transform replaces the old one from its bag time on
    A2 = _rt(t=(9, 0, 0))
    tree.add(TransformData(100, "base", "arm", A2), 100, static=True)
    tree.add(TransformData(150, "base", "arm", A2), 150, static=True)  # same value: no version
    assert tree.change_times().tolist() == [100]
    np.testing.assert_allclose(tree.lookup("base", "cam", 99), A @ B, atol=1e-12)
    np.testing.assert_allclose(tree.lookup("base", "cam", 100), A2 @ B, atol=1e-12)
    # a second parent is ignored and counted
    tree.add(TransformData(0, "world", "cam", C), 0, static=True)
    assert tree.n_reparented == 1 and tree.parent("cam") == "arm"
    with pytest.raises(TransformLookupError, match="'base' and 'elsewhere' are not connected"):
        tree.lookup("base", "elsewhere")
    tree.add(TransformData(6, "base", "imu", _rt(t=(0, 0, 4))), 6, static=False)
    assert tree.is_dynamic("imu")
    with pytest.raises(TransformLookupError, match="base -> imu on /tf changes"):
        tree.lookup("imu", "cam")
    st, bt, v = tree.samples("imu")
    assert st.tolist() == [0, 5, 6] and v.shape == (3, 7)
    np.testing.assert_allclose(v[:, :3], [(0, 0, 3), (0, 0, 3), (0, 0, 4)])
    np.testing.assert_allclose(v[:, 3:], [(0, 0, 0, 1)] * 3)
    # a quaternion of the other sign is the same rotation: still fixed
    tree.add_message(bagio.make_tf_message([TransformData(0, "base", "gps", _rt())]), 0, False)
    flipped = bagio.make_tf_message([TransformData(1, "base", "gps", _rt())])
    flipped.transforms[0].transform.rotation.w = -1.0
    tree.add_message(flipped, 1, False)
    assert not tree.is_dynamic("gps")
    flipped.transforms[0].transform.rotation.w = 0.0  # zero quaternion: skipped, counted
    tree.add_message(flipped, 2, False)
    assert tree.n_bad == 1 and tree.samples("gps")[0].size == 2
