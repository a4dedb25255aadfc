"""bag_eval scoring logic without ROS: stamp matching, drops, latency, lidar projection."""

from __future__ import annotations

import numpy as np
import pytest

from dasp_core.eval.metrics import compute_depth_metrics
from dasp_ros.bag_eval import OnlineEvaluator, load_ground_truth, markdown_report, project_lidar


def _gt(h=12, w=16, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.uniform(2, 25, (h, w)).astype(np.float32)
    g[0, :] = 0  # invalid row (sky)
    return g


def test_perfect_prediction_scores_zero_error_and_counts_drops():
    gts = {i * 100_000_000: _gt(seed=i) for i in range(5)}
    ev = OnlineEvaluator(gts, protocol="synthetic", metric=True)
    for i, s in enumerate(sorted(gts)):
        ev.on_input(s, t_recv=float(i))
    for i, s in enumerate(sorted(gts)[:4]):  # last frame never answered
        ev.on_depth(s, t_recv=i + 0.05, depth=gts[s] * 3.0)  # wrong scale, right shape
    summ = ev.summary()
    assert summ["frames_in"] == 5 and summ["frames_out"] == 4 and summ["dropped"] == 1
    assert summ["median_scaled"]["metrics"]["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert summ["metric"]["metrics"]["abs_rel"] == pytest.approx(2.0, rel=1e-3)  # 3x too far
    assert summ["latency_ms"]["p50"] == pytest.approx(50.0, abs=1e-6)
    md = markdown_report(summ, {"backend": "onnxruntime"}, {"report": "x"})
    assert "synthetic" in md and "| median | 4 |" in md and "onnxruntime" in md
    # 3x too far but the same range of distances: the spread says so
    assert summ["metric"]["spread"]["ratio_rel"] == pytest.approx(1.0, rel=5e-3)
    assert summ["metric"]["spread"]["pred_p50"] == pytest.approx(
        3.0 * summ["metric"]["spread"]["gt_p50"], rel=5e-3)
    assert "Depth spread (none (metric))" in md and "(1.00 of it)" in md


def test_scores_match_offline_metric_per_image_average():
    gts = {i: _gt(seed=i) for i in range(3)}
    preds = {i: gts[i] * np.float32(1.0 + 0.1 * i) + 0.5 for i in gts}
    ev = OnlineEvaluator(gts, protocol="synthetic", gt_tolerance_ns=0)
    for i in gts:
        ev.on_input(i, 0.0)
        ev.on_depth(i, 0.01, preds[i])
    expected = np.mean([compute_depth_metrics(preds[i], gts[i], 1e-3, 80.0)["abs_rel"]
                        for i in gts])
    assert ev.summary()["median_scaled"]["metrics"]["abs_rel"] == pytest.approx(expected, rel=1e-6)


def test_gt_matching_tolerance_and_duplicates():
    gts = {1_000_000_000: _gt()}
    ev = OnlineEvaluator(gts, gt_tolerance_ns=10_000_000)
    assert ev.on_depth(1_005_000_000, 0.0, _gt()) is not None  # 5 ms off: matched
    assert ev.on_depth(1_005_000_000, 0.0, _gt()) is None  # duplicate stamp ignored
    assert ev.on_depth(1_050_000_000, 0.0, _gt()) is None  # 50 ms off: no truth
    assert ev.unmatched_gt == 1


def test_nan_and_inf_predictions_are_handled_like_the_node_publishes_them():
    gts = {0: _gt()}
    pred = gts[0].copy()
    pred[5, 5] = np.nan  # node: invalid
    pred[6, 6] = np.inf  # node: beyond range
    pred[7, 7] = -np.inf  # node: closer than min range
    ev = OnlineEvaluator(gts)
    s = ev.on_depth(0, 0.0, pred)
    assert s is not None and np.isfinite(s["metrics"]["abs_rel"])


def test_prediction_resized_to_ground_truth():
    gts = {0: np.full((8, 8), 10.0, np.float32)}
    ev = OnlineEvaluator(gts)
    s = ev.on_depth(0, 0.0, np.full((4, 4), 10.0, np.float32))
    assert s["metrics"]["abs_rel"] == pytest.approx(0.0)


def test_project_lidar_known_pixel_and_nearest_wins():
    K = np.array([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]])
    pts = np.array([[0.0, 0.0, 10.0],   # centre pixel (50, 40) at 10 m
                    [0.0, 0.0, 20.0],   # same pixel, farther: hidden
                    [1.0, 0.5, 5.0],    # u = 50 + 100*0.2 = 70, v = 40 + 100*0.1 = 50
                    [0.0, 0.0, -3.0],   # behind the camera
                    [100.0, 0.0, 1.0]])  # outside the image
    d = project_lidar(pts, K, 80, 100)
    assert d[40, 50] == pytest.approx(10.0)
    assert d[50, 70] == pytest.approx(5.0)
    assert (d > 0).sum() == 2
    # with an extrinsic: lidar x forward → camera z forward
    T = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)
    d2 = project_lidar(np.array([[10.0, 0.0, 0.0]]), K, 80, 100, T)
    assert d2[40, 50] == pytest.approx(10.0)


def _write_gt_bag(bag):
    """/camera/depth_gt: one 2x2 32FC1 frame (one NaN); /camera/bad: an rgb8 'depth'."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    Image, Header, Time = (ts.types[n] for n in ("sensor_msgs/msg/Image", "std_msgs/msg/Header",
                                                  "builtin_interfaces/msg/Time"))
    depth = np.array([[1.5, np.nan], [3.0, 4.0]], np.float32)
    with Writer(bag, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        c = w.add_connection("/camera/depth_gt", "sensor_msgs/msg/Image", typestore=ts)
        c2 = w.add_connection("/camera/bad", "sensor_msgs/msg/Image", typestore=ts)
        msg = Image(header=Header(stamp=Time(sec=7, nanosec=5), frame_id="cam"), height=2, width=2,
                    encoding="32FC1", is_bigendian=0, step=8, data=depth.view(np.uint8).reshape(-1))
        w.write(c, 1, ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))
        bad = Image(header=Header(stamp=Time(sec=7, nanosec=5), frame_id="cam"), height=2, width=2,
                    encoding="rgb8", is_bigendian=0, step=6, data=np.zeros(12, np.uint8))
        w.write(c2, 1, ts.serialize_cdr(bad, "sensor_msgs/msg/Image"))


def test_load_ground_truth_from_bag_depth_image(tmp_path):
    bag = tmp_path / "gt"
    _write_gt_bag(bag)
    gt = load_ground_truth(bag, "/camera/depth_gt")
    assert list(gt) == [7_000_000_005]
    np.testing.assert_array_equal(gt[7_000_000_005], [[1.5, 0.0], [3.0, 4.0]])
    with pytest.raises(ValueError, match="encoding 'rgb8'"):
        load_ground_truth(bag, "/camera/bad")


def test_command_exits_3_when_no_depth_publisher_matches(tmp_path):
    """--wait-for-publisher: no node in the domain → status 3 (night_drive reports it as such)
    and no ready file, so nobody starts a replay into an evaluator that cannot listen."""
    pytest.importorskip("rclpy")
    import os
    import subprocess
    import sys

    from ros_domain import ros_domain

    bag = tmp_path / "gt"
    _write_gt_bag(bag)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root, ROS_DOMAIN_ID=str(ros_domain("bag_eval_lonely")))
    ready = tmp_path / "ready"
    out = subprocess.run([sys.executable, "-m", "dasp_ros.bag_eval", "--bag", str(bag),
                          "--out", str(tmp_path / "eval"), "--ready-file", str(ready),
                          "--wait-for-publisher", "1"],
                         env=env, capture_output=True, text=True, timeout=90)
    assert out.returncode == 3, out.stderr
    assert "0 of 1 publisher(s) matched on /dasp/depth after 1 s" in out.stderr
    assert not ready.exists()
