#!/usr/bin/env python3
"""How many large camera images reach ``depth_node`` across processes, per input QoS.

    python scripts/bench_large_images.py [--frames 10] [--rate 5] [--out docs/large_images.md]

For each image size and (publisher, node) reliability pair, starts ``depth_node`` (shipped
model; no output subscribers, so the model never runs and only transport is measured) and a
publisher process that sends ``--frames`` rgb8 images at ``--rate`` Hz, both with
``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA``. The node's own diagnostics give ``frames_received``,
``messages_lost`` (the subscription's message-lost event) and ``incompatible_qos``. Writes a
Markdown table with the command and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PUBLISHER = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.duration import Duration
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from dasp_ros.image_codec import array_to_image

    w, h, n, rate, rel = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
    rclpy.init()
    node = rclpy.create_node("large_image_pub")
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE if rel == "reliable"
                     else ReliabilityPolicy.BEST_EFFORT)
    pub = node.create_publisher(Image, "/bench/image", qos)
    diags = []
    node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
    end = time.monotonic() + 15  # an incompatible pair never matches
    while pub.get_subscription_count() == 0 and time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    matched = pub.get_subscription_count()
    t = time.monotonic() + 1.0
    while time.monotonic() < t:
        rclpy.spin_once(node, timeout_sec=0.05)
    rgb = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    msg = array_to_image(rgb, "rgb8")
    msg.header.frame_id = "camera_optical_frame"
    t0 = time.monotonic()
    for i in range(n):
        msg.header.stamp.sec = 1000 + i
        pub.publish(msg)
        while time.monotonic() < t0 + (i + 1) / rate:
            rclpy.spin_once(node, timeout_sec=0.01)
    acked = pub.wait_for_all_acked(Duration(seconds=20.0)) if rel == "reliable" else None
    # reports until the counters have not moved for 5 s (a loaded node may lag behind)
    seen, values, t = [], {}, time.monotonic() + 60.0
    while time.monotonic() < t:
        diags.clear()
        while not diags and time.monotonic() < t:
            rclpy.spin_once(node, timeout_sec=0.05)
        if not diags:
            break
        values = {kv.key: kv.value for kv in diags[-1].status[0].values}
        seen.append((values.get("frames_received"), values.get("messages_lost")))
        if len(seen) >= 5 and len(set(seen[-5:])) == 1 and seen[-1][0] not in (None, "0"):
            break
        if len(seen) >= 10 and len(set(seen[-10:])) == 1:
            break
    print(json.dumps({"matched": matched, "acked": acked, **{k: int(values.get(k, -1)) for k in
                      ("frames_received", "messages_lost", "sequence_gaps",
                       "incompatible_qos")}}), flush=True)
""")


def run_case(w: int, h: int, pub_rel: str, node_rel: str, frames: int, rate: float,
             domain: int) -> dict:
    env = dict(os.environ, FASTDDS_BUILTIN_TRANSPORTS="LARGE_DATA", ROS_DOMAIN_ID=str(domain),
               PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0")
    env.pop("ROS_AUTOMATIC_DISCOVERY_RANGE", None)
    node = subprocess.Popen([sys.executable, "-m", "dasp_ros.depth_node", "--ros-args",
                             "-r", "image:=/bench/image", "-p", f"qos_reliability:={node_rel}",
                             "-p", "diagnostics_period:=1.0"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        out = subprocess.run([sys.executable, "-c", PUBLISHER, str(w), str(h), str(frames),
                              str(rate), pub_rel], env=env, capture_output=True, text=True,
                             timeout=240)
        line = [x for x in out.stdout.splitlines() if x.startswith("{")]
        result = json.loads(line[-1]) if line else {"error": out.stderr[-500:]}
    finally:
        node.send_signal(signal.SIGINT)
        try:
            node.wait(timeout=20)
        except subprocess.TimeoutExpired:
            node.kill()
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--rate", type=float, default=5.0)
    p.add_argument("--sizes", nargs="+", default=["640x480", "2448x2048", "4000x3000"])
    p.add_argument("--out", default=str(ROOT / "docs" / "large_images.md"))
    args = p.parse_args()
    pairs = [("best_effort", "best_effort"), ("reliable", "best_effort"),
             ("reliable", "reliable"), ("best_effort", "reliable")]
    rows = []
    domain = 1 + os.getpid() % 101  # 1..101: above, Fast DDS ports are ephemeral ones
    for size in args.sizes:
        w, h = (int(v) for v in size.split("x"))
        for pub_rel, node_rel in pairs:
            t0 = time.monotonic()
            r = run_case(w, h, pub_rel, node_rel, args.frames, args.rate, domain)
            print(size, pub_rel, node_rel, r, f"{time.monotonic() - t0:.1f} s", flush=True)
            rows.append((size, pub_rel, node_rel, r))
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [
        "# Large images across processes: what reaches depth_node, per input QoS",
        "",
        f"Command: `python scripts/bench_large_images.py --frames {args.frames} --rate "
        f"{args.rate:g}` ({time.strftime('%Y-%m-%d', time.gmtime())}). Machine: {cpu}, "
        f"{os.cpu_count()} cores, shared with a concurrent training run (loaded). rclpy "
        "(Kilted wheels) with rmw_fastrtps, `FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA` in both "
        f"processes, rgb8 images, {args.frames} frames at {args.rate:g} Hz per row. "
        "Columns are the node's counters: `received` = `frames_received`; `lost (event)` = "
        "`messages_lost` (the subscription's message-lost event); `gaps` = `sequence_gaps` "
        "(publisher sequence numbers the node never saw, between two it did); `incompatible` "
        "= `incompatible_qos`. A loss after the last received frame shows in neither.",
        "",
        "| image | publisher | node `qos_reliability` | received | lost (event) | gaps | "
        "incompatible |",
        "|---|---|---|---|---|---|---|",
    ]
    for size, pub_rel, node_rel, r in rows:
        if "error" in r:
            lines.append(f"| {size} | {pub_rel} | {node_rel} | error | | | |")
            continue
        lines.append(f"| {size} | {pub_rel} | {node_rel} | {r['frames_received']} of "
                     f"{args.frames} | {r['messages_lost']} | {r['sequence_gaps']} | "
                     f"{r['incompatible_qos']} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
