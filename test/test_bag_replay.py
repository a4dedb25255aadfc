"""bag_replay: pacing logic without ROS, and a real replay into a real rclpy subscriber."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from ros_domain import ros_domain

from dasp_ros.bag_replay import ReplaySchedule, iter_bag, message_class, parse_remaps


def _write_bag(path, storage: str, n: int = 5, period_ns: int = 50_000_000):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    Image = ts.types["sensor_msgs/msg/Image"]
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    t0 = 1_700_000_000_000_000_000
    with Writer(path, version=8, storage_plugin=plugin) as w:
        conn = w.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        for i in range(n):
            t = t0 + i * period_ns
            data = np.full((4, 6, 3), i, np.uint8)
            msg = Image(header=Header(stamp=Time(sec=t // 10**9, nanosec=t % 10**9),
                                      frame_id="camera_optical_frame"),
                        height=4, width=6, encoding="rgb8", is_bigendian=0, step=18,
                        data=data.reshape(-1))
            w.write(conn, t, ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    return t0


def test_schedule_maps_bag_time_to_wall_time():
    s = ReplaySchedule(t_first_ns=1_000_000_000, rate=2.0)
    assert s.wall_offset(1_000_000_000) == 0.0
    assert s.wall_offset(3_000_000_000) == pytest.approx(1.0)  # 2 s of bag at 2x
    assert ReplaySchedule(0, rate=0).wall_offset(10**12) == 0.0  # as fast as possible


def test_parse_remaps_and_errors():
    assert parse_remaps(["/a:=/b", "/c/d:=/e"]) == {"/a": "/b", "/c/d": "/e"}
    with pytest.raises(ValueError, match="FROM:=TO"):
        parse_remaps(["/a=/b"])
    with pytest.raises(ValueError, match="absolute"):
        parse_remaps(["a:=/b"])


def test_message_class_lookup():
    from sensor_msgs.msg import Image

    assert message_class("sensor_msgs/msg/Image") is Image
    assert message_class("no_such_pkg/msg/Thing") is None
    assert message_class("garbage") is None


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_iter_bag_reads_both_storages(tmp_path, storage):
    bag = tmp_path / f"bag_{storage}"
    t0 = _write_bag(bag, storage)
    listing, it = iter_bag(bag)
    assert listing == [("/camera/image_raw", "sensor_msgs/msg/Image")]
    msgs = list(it)
    assert [m[2] - t0 for m in msgs] == [i * 50_000_000 for i in range(5)]
    with pytest.raises(ValueError, match="no topic"):
        iter_bag(bag, ["/nope"])
    with pytest.raises(FileNotFoundError):
        iter_bag(tmp_path / "missing")


def test_replay_publishes_recorded_messages(tmp_path):
    rclpy = pytest.importorskip("rclpy")
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from dasp_ros.bag_replay import replay

    bag = tmp_path / "bag"
    t0 = _write_bag(bag, "mcap", n=5)
    os.environ.setdefault("ROS_DOMAIN_ID", str(ros_domain("bag_replay")))
    rclpy.init()
    try:
        sub_node = rclpy.create_node("replay_test_sub")
        got = []
        sub_node.create_subscription(Image, "/cam/image", got.append,
                                     QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        ex = SingleThreadedExecutor()
        ex.add_node(sub_node)
        stop = threading.Event()
        th = threading.Thread(target=lambda: [ex.spin_once(timeout_sec=0.05)
                                              for _ in iter(stop.is_set, True)], daemon=True)
        th.start()
        counts = replay(str(bag), rate=0, remaps={"/camera/image_raw": "/cam/image"},
                        wait_for_subscribers=1, wait_timeout=20, start_delay=0.5, progress=False)
        deadline = time.monotonic() + 10
        while len(got) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        th.join(timeout=5)
        assert counts == {"/camera/image_raw": 5}
        assert len(got) == 5
        stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec - t0 for m in got]
        assert stamps == [i * 50_000_000 for i in range(5)]  # recorded stamps, unchanged
        assert [int(np.frombuffer(m.data, np.uint8)[0]) for m in got] == list(range(5))
        assert got[0].header.frame_id == "camera_optical_frame"
        sub_node.destroy_node()
    finally:
        rclpy.shutdown()


def test_replay_command_ends_on_its_own_with_counts(tmp_path):
    """The CLI over LARGE_DATA (the transport whose teardown can hang) ends in bounded time."""
    pytest.importorskip("rclpy")
    import subprocess
    import sys

    bag = tmp_path / "bag"
    _write_bag(bag, "mcap", n=5)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, FASTDDS_BUILTIN_TRANSPORTS="LARGE_DATA", PYTHONPATH=root,
               ROS_DOMAIN_ID=str(ros_domain("bag_replay_subprocess")))
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "dasp_ros.bag_replay", str(bag), "--rate", "0",
                          "--no-progress"], env=env, capture_output=True, text=True, timeout=60)
    # the watchdog bounds the teardown at TEARDOWN_TIMEOUT_S; the run itself takes ~1 s
    assert time.monotonic() - t0 < 30
    assert out.returncode == 0, out.stderr
    assert "published 5 messages on /camera/image_raw" in out.stderr
    bad = subprocess.run([sys.executable, "-m", "dasp_ros.bag_replay", str(tmp_path / "none")],
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "does not exist" in bad.stderr
    # nobody subscribes in this domain: the distinct status night_drive reports as unmatched
    lonely = subprocess.run([sys.executable, "-m", "dasp_ros.bag_replay", str(bag),
                             "--wait-for-subscribers", "1", "--wait-timeout", "1",
                             "--no-progress"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert lonely.returncode == 3, lonely.stderr
    assert "0 of 1 subscriber(s) matched on /camera/image_raw after 1 s" in lonely.stderr
