"""The camera side of the launch tests: feeds the launched depth node and reports what came back.

    python peer.py NAMESPACE FRAMES

Publishes CameraInfo and FRAMES JPEG frames (``NAMESPACE/image_raw/compressed``, reliable QoS,
known stamps, frame_id ``cam_optical``) one at a time, waiting for each frame's depth and
points, then prints one JSON line: the graph's topics and types, per frame the outputs'
stamps and frame ids, and the node's last diagnostics values. It then keeps streaming frames at
10 Hz (a camera that does not stop when the launch is interrupted) until it is terminated.
Run with ``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA`` like the node.
"""

import json
import signal
import sys
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from dasp_ros.image_codec import rgb8_to_compressed

H, W = 96, 128


def main(ns: str, frames: int) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    rclpy.init()
    node = rclpy.create_node("launch_test_peer")
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    img_pub = node.create_publisher(CompressedImage, f"{ns}/image_raw/compressed", qos)
    info_pub = node.create_publisher(CameraInfo, f"{ns}/camera_info", qos)
    got = {"depth": [], "points": [], "diag": []}
    node.create_subscription(Image, f"{ns}/depth", got["depth"].append, qos)
    node.create_subscription(PointCloud2, f"{ns}/points", got["points"].append, qos)
    node.create_subscription(DiagnosticArray, "/diagnostics", got["diag"].append, 10)

    def spin_until(cond, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not cond():
            rclpy.spin_once(node, timeout_sec=0.05)
        return cond()

    if not spin_until(lambda: img_pub.get_subscription_count() > 0, 90):
        print(json.dumps({"error": f"nobody subscribed {img_pub.topic_name} within 90 s"}))
        return 1
    info = CameraInfo(width=W, height=H, distortion_model="plumb_bob")
    info.k = [100.0, 0.0, W / 2 - 0.5, 0.0, 100.0, H / 2 - 0.5, 0.0, 0.0, 1.0]
    info.p = [100.0, 0.0, W / 2 - 0.5, 0.0, 0.0, 100.0, H / 2 - 0.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.d = [0.0] * 5
    rgb = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)

    def frame(sec: int) -> CompressedImage:
        msg = rgb8_to_compressed(rgb, "jpeg")
        msg.header.frame_id = "cam_optical"
        msg.header.stamp.sec, msg.header.stamp.nanosec = sec, 500_000_000
        return msg

    info_pub.publish(info)
    spin_until(lambda: False, 0.5)
    sent = []
    for i in range(frames):
        n_depth, n_points = len(got["depth"]), len(got["points"])
        for _ in range(3):  # the first frames may go out before the node's reader is matched
            info_pub.publish(info)
            img_pub.publish(frame(100 + i))
            if spin_until(lambda: len(got["depth"]) > n_depth and len(got["points"]) > n_points,
                          10):
                break
        sent.append(100 + i)
    got["diag"].clear()  # a report written after the frames
    spin_until(lambda: got["diag"], 5)
    report = {
        "topics": {name: types for name, types in node.get_topic_names_and_types()},
        "sent": sent,
        "depth": [(m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id, m.encoding,
                   m.width, m.height) for m in got["depth"]],
        "points": [(m.header.stamp.sec, m.header.frame_id, m.width * m.height)
                   for m in got["points"]],
        "diagnostics": {kv.key: kv.value for kv in got["diag"][-1].status[0].values}
        if got["diag"] else {},
    }
    print(json.dumps(report), flush=True)
    sec = 1000
    while True:  # a camera keeps streaming while the launch is interrupted
        img_pub.publish(frame(sec))
        sec += 1
        spin_until(lambda: False, 0.1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
