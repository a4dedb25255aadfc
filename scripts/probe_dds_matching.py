#!/usr/bin/env python3
"""How often do a publisher and two subscribers in three processes on one host match, and
do large images arrive, per Fast DDS builtin transport setting? Writes a markdown report.

Each trial: a fresh ROS domain (1..101), two subscriber processes, then one publisher
process that waits up to ``--match-timeout`` s for both (``get_subscription_count``), then
publishes ``--frames`` rgb8 images of ``--width`` x ``--height`` at 10 Hz with the chosen
reliability; the subscribers count what arrives. The same shape as ``night_drive``
(bag_replay → depth_node and bag_eval). Results: docs/dds_matching.md.

    python scripts/probe_dds_matching.py --trials 30 --transports DEFAULT LARGE_DATA \\
        --report docs/dds_matching.md
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from tqdm import tqdm

TOPIC = "/probe/image_raw"


def _qos(reliable: bool):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    return QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE if reliable
                      else ReliabilityPolicy.BEST_EFFORT)


def run_subscriber(ready: str, seconds: float, reliable: bool) -> None:
    """Subscribe, touch ``ready``, count messages for ``seconds``, print the count."""
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("probe_sub")
    got: List[int] = []
    node.create_subscription(Image, TOPIC, lambda m: got.append(1), _qos(reliable))
    Path(ready).write_text("ready")
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        rclpy.spin_once(node, timeout_sec=0.1)
    print(f"received {len(got)}", flush=True)
    node.destroy_node()
    rclpy.shutdown()


def run_publisher(timeout: float, frames: int, width: int, height: int, reliable: bool) -> None:
    """Wait for two subscribers, publish ``frames`` images, print the match count and time."""
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("probe_pub")
    pub = node.create_publisher(Image, TOPIC, _qos(reliable))
    t0 = time.monotonic()
    while pub.get_subscription_count() < 2 and time.monotonic() - t0 < timeout:
        time.sleep(0.05)
    matched, t_match = pub.get_subscription_count(), time.monotonic() - t0
    if matched:
        time.sleep(1.0)  # the subscribers' side of the match (a volatile reader misses earlier data)
        msg = Image(height=height, width=width, encoding="rgb8", step=3 * width,
                    data=bytes(3 * width * height))
        for _ in range(frames):
            pub.publish(msg)
            time.sleep(0.1)
        time.sleep(1.0)
    print(f"matched {matched} after {t_match:.2f}", flush=True)
    node.destroy_node()
    rclpy.shutdown()


def trial(transports: str, args: argparse.Namespace, tmp: Path) -> Dict[str, float]:
    """One publisher and two subscribers in a fresh domain; returns what each saw."""
    env = dict(os.environ, FASTDDS_BUILTIN_TRANSPORTS=transports,
               ROS_DOMAIN_ID=str(random.randint(1, 101)))
    me = [sys.executable, os.path.abspath(__file__)]
    rel = ["--reliable"] if args.reliable else []
    listen_s = args.match_timeout + args.frames * 0.1 + 6
    readies = [tmp / f"ready{i}" for i in range(2)]
    for r in readies:
        r.unlink(missing_ok=True)
    subs = [subprocess.Popen(me + ["--role", "sub", "--ready", str(r), "--seconds",
                                   str(listen_s)] + rel, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True) for r in readies]
    t_end = time.monotonic() + 30
    while not all(r.exists() for r in readies) and time.monotonic() < t_end:
        time.sleep(0.05)
    pub = subprocess.run(me + ["--role", "pub", "--match-timeout", str(args.match_timeout),
                               "--frames", str(args.frames), "--width", str(args.width),
                               "--height", str(args.height)] + rel,
                         env=env, capture_output=True, text=True, timeout=listen_s + 30)
    received = []
    for s in subs:
        out, _ = s.communicate(timeout=listen_s + 30)
        received.append(int(out.split()[-1]) if out.strip() else -1)
    words = pub.stdout.split()
    return {"matched": int(words[1]), "t_match": float(words[3]),
            "received_min": min(received), "received_max": max(received)}


def report(results: Dict[str, List[Dict[str, float]]], args: argparse.Namespace) -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                if ln.startswith("model name")), platform.processor())
    try:
        from importlib.metadata import version
        fastdds = version("ros-fastdds")
    except Exception:  # not the PyPI wheels
        fastdds = "unknown"
    lines = [
        "# DDS matching and large images across three processes, per Fast DDS transport", "",
        f"Command: `python scripts/probe_dds_matching.py {' '.join(sys.argv[1:])}`", "",
        f"Machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, rclpy "
        f"from the Kilted PyPI wheels (ros-fastdds {fastdds}). Each trial: a fresh domain, two "
        f"subscriber processes, one publisher process waiting up to {args.match_timeout:.0f} s "
        f"for both, then {args.frames} rgb8 frames of {args.width}x{args.height} at 10 Hz, "
        f"{'reliable' if args.reliable else 'best-effort'} QoS on both sides.", "",
        "| FASTDDS_BUILTIN_TRANSPORTS | trials | publisher matched both | matched one | "
        "matched none | match time p50 / max (s) | trials where every frame reached both |",
        "|---|---:|---:|---:|---:|---:|---:|"]
    for tr, rs in results.items():
        ok = [r for r in rs if r["matched"] >= 2]
        times = [r["t_match"] for r in ok]
        full = sum(1 for r in ok if r["received_min"] == args.frames)
        lines.append(
            f"| {tr} | {len(rs)} | {len(ok)} | {sum(r['matched'] == 1 for r in rs)} | "
            f"{sum(r['matched'] == 0 for r in rs)} | "
            + (f"{statistics.median(times):.2f} / {max(times):.2f}" if times else "–")
            + f" | {full} of {len(ok)} |")
    return "\n".join(lines) + "\n"


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--transports", nargs="+", default=["DEFAULT", "LARGE_DATA"])
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--match-timeout", type=float, default=10.0)
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--reliable", action="store_true", help="reliable QoS (default best effort)")
    p.add_argument("--report", default="", help="write the markdown report here")
    p.add_argument("--seed", type=int, default=0, help="domain choice")
    p.add_argument("--role", choices=["sub", "pub"], help=argparse.SUPPRESS)
    p.add_argument("--ready", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role == "sub":
        run_subscriber(args.ready, args.seconds, args.reliable)
        return 0
    if args.role == "pub":
        run_publisher(args.match_timeout, args.frames, args.width, args.height, args.reliable)
        return 0
    random.seed(args.seed)
    results: Dict[str, List[Dict[str, float]]] = {t: [] for t in args.transports}
    with tempfile.TemporaryDirectory() as tmp:
        # interleaved, so that a slow or noisy stretch of time hits every setting alike
        with tqdm(total=args.trials * len(args.transports), desc="trials") as bar:
            for _ in range(args.trials):
                for tr in args.transports:
                    results[tr].append(trial(tr, args, Path(tmp)))
                    bar.set_postfix_str(f"{tr}: matched {results[tr][-1]['matched']}")
                    bar.update(1)
    text = report(results, args)
    print(text)
    if args.report:
        Path(args.report).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
