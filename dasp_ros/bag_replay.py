"""Replay a rosbag2 recording (sqlite3 or mcap) onto live topics, like ``ros2 bag play --clock``.

``ros2 run dasp_ros bag_replay BAG [--rate R] [--loop] [--topics T ...] [--remap A:=B]``

Reads the bag with ``rosbags`` (no rosbag2_py needed) and publishes each message's serialized
CDR bytes unchanged (``Publisher.publish(bytes)``), so stamps, frame ids and payloads are
exactly the recorded ones and replay costs no (de)serialisation. ``/clock`` carries the bag
time so nodes started with ``use_sim_time:=true`` follow it.

The pacing logic (:class:`ReplaySchedule`) is plain Python and tested without ROS.

The command always ends on its own: the message counts (or the error) are logged first, then
the ROS node is torn down under :func:`dasp_ros.shutdown.exit_watchdog`, because Fast DDS's TCP
transport (``LARGE_DATA``) can block ``rcl_node_fini`` for ever; after
:data:`~dasp_ros.shutdown.TEARDOWN_TIMEOUT_S` the process exits with its status and says so.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from dasp_ros.dds_match import EXIT_NOT_MATCHED, NotMatchedError, wait_matched
from dasp_ros.shutdown import TEARDOWN_TIMEOUT_S, exit_watchdog

LOG = logging.getLogger("dasp.bag_replay")


@dataclass
class ReplaySchedule:
    """Maps bag time to wall time for a given rate.

    ``wall_offset(t_bag) = (t_bag - t_first) / rate`` seconds after the start. ``rate <= 0``
    means "as fast as possible" (offset always 0).
    """

    t_first_ns: int
    rate: float = 1.0

    def wall_offset(self, t_bag_ns: int) -> float:
        if self.rate <= 0:
            return 0.0
        return (t_bag_ns - self.t_first_ns) * 1e-9 / self.rate


def parse_remaps(items: Sequence[str]) -> Dict[str, str]:
    """``["/a:=/b", ...]`` → ``{"/a": "/b"}``; raises ValueError naming a malformed item."""
    out: Dict[str, str] = {}
    for item in items:
        if ":=" not in item:
            raise ValueError(f"--remap {item!r} is not of the form FROM:=TO")
        src, dst = item.split(":=", 1)
        if not src.startswith("/") or not dst.startswith("/"):
            raise ValueError(f"--remap {item!r}: both topics must be absolute (start with '/')")
        out[src] = dst
    return out


def message_class(msgtype: str):
    """``"sensor_msgs/msg/Image"`` → the rclpy message class, or None if not installed."""
    try:
        pkg, kind, name = msgtype.split("/")
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ValueError, ImportError, AttributeError):
        return None


def iter_bag(path: str | Path, topics: Optional[Sequence[str]] = None
             ) -> Tuple[List[Tuple[str, str]], Iterator[Tuple[str, str, int, bytes]]]:
    """Open a rosbag2 folder/file; return ([(topic, msgtype)], iterator of raw messages).

    The iterator yields ``(topic, msgtype, timestamp_ns, cdr_bytes)`` in time order.
    Raises FileNotFoundError / ValueError with the path when the bag cannot be opened.
    """
    from rosbags.rosbag2 import Reader

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"bag {p} does not exist")
    reader = Reader(p)
    try:
        reader.open()
    except Exception as e:
        raise ValueError(f"bag {p} cannot be opened as rosbag2 (sqlite3 or mcap): {e}") from None
    conns = [c for c in reader.connections if topics is None or c.topic in topics]
    if topics:
        missing = sorted(set(topics) - {c.topic for c in reader.connections})
        if missing:
            have = sorted({c.topic for c in reader.connections})
            reader.close()
            raise ValueError(f"bag {p} has no topic(s) {missing}; it has {have}")
    listing = sorted({(c.topic, c.msgtype) for c in conns})

    def gen() -> Iterator[Tuple[str, str, int, bytes]]:
        try:
            for conn, t, raw in reader.messages(connections=conns):
                yield conn.topic, conn.msgtype, int(t), bytes(raw)
        finally:
            reader.close()

    return listing, gen()


def replay(bag: str, rate: float = 1.0, loop: bool = False, topics: Optional[Sequence[str]] = None,
           remaps: Optional[Dict[str, str]] = None, clock: bool = True, reliable: bool = True,
           wait_for_subscribers: int = 0, wait_timeout: float = 30.0,
           start_delay: float = 0.0, progress: bool = True, node_name: str = "dasp_bag_replay",
           context=None, teardown_timeout: Optional[float] = None) -> Dict[str, int]:
    """Publish a bag's messages on live topics. Returns messages published per topic.

    Args:
        bag: rosbag2 path (folder with metadata.yaml, or a single .mcap/.db3 file).
        rate: playback speed factor (1 = recorded speed, 0 = as fast as possible).
        loop: start again at the end until interrupted.
        topics: only these topics (default all whose types are installed).
        remaps: ``{bag_topic: live_topic}``.
        clock: publish ``/clock`` with the bag time of every message.
        reliable: reliable QoS (default; best-effort subscribers still match), else best effort.
        wait_for_subscribers: before starting, wait until the first image-like topic has this
            many subscribers (so the first frames are not lost while a node starts); raises
            :class:`~dasp_ros.dds_match.NotMatchedError` after ``wait_timeout`` seconds (the
            command line exits with status 3 then; see ``dds_match``).
        teardown_timeout: bound the node's teardown to this many seconds, then exit the
            *process* (``os._exit``) with status 0 (replay done), 3 (subscribers never
            matched) or 2 (another error); the counts or
            the error are logged before. For command-line use only; None waits.
    """
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy, DurabilityPolicy
    from tqdm import tqdm

    remaps = remaps or {}
    own_context = context is None and not rclpy.ok()
    if own_context:
        rclpy.init()
    node = rclpy.create_node(node_name, context=context) if context else rclpy.create_node(node_name)
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                     reliability=ReliabilityPolicy.RELIABLE if reliable
                     else ReliabilityPolicy.BEST_EFFORT,
                     durability=DurabilityPolicy.VOLATILE)
    counts: Dict[str, int] = {}
    status = {"code": 1}  # exit status if the teardown has to be cut short
    try:
        listing, _ = iter_bag(bag, topics)
        pubs = {}
        for topic, msgtype in listing:
            cls = message_class(msgtype)
            if cls is None:
                LOG.warning("skipping %s: message type %s is not installed", topic, msgtype)
                continue
            pubs[topic] = node.create_publisher(cls, remaps.get(topic, topic), qos)
            counts[topic] = 0
        if not pubs:
            raise ValueError(f"bag {bag}: nothing to publish (topics {listing})")
        clock_pub = None
        if clock:
            from rosgraph_msgs.msg import Clock
            clock_pub = node.create_publisher(Clock, "/clock", 10)
        if wait_for_subscribers > 0:
            image_pubs = [p for t, p in pubs.items() if "image" in t and "depth" not in t] or \
                list(pubs.values())
            wait_matched(image_pubs[0].get_subscription_count, wait_for_subscribers,
                         wait_timeout, image_pubs[0].topic_name, "subscriber")
        if start_delay > 0:
            time.sleep(start_delay)
        while True:
            _, messages = iter_bag(bag, list(pubs))
            schedule: Optional[ReplaySchedule] = None
            t0 = time.monotonic()
            bar = tqdm(desc=f"replay {Path(bag).name}", unit="msg", disable=not progress)
            for topic, _msgtype, t_ns, raw in messages:
                if schedule is None:
                    schedule = ReplaySchedule(t_ns, rate)
                delay = t0 + schedule.wall_offset(t_ns) - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if clock_pub is not None:
                    from rosgraph_msgs.msg import Clock
                    c = Clock()
                    c.clock.sec, c.clock.nanosec = divmod(t_ns, 1_000_000_000)
                    clock_pub.publish(c)
                pubs[topic].publish(raw)
                counts[topic] += 1
                bar.update(1)
            bar.close()
            if not loop:
                break
        if reliable:  # a process that exits right away would lose what is not yet delivered
            from rclpy.duration import Duration
            for pub in pubs.values():
                if not pub.wait_for_all_acked(Duration(seconds=5.0)):
                    LOG.warning("%s: not every subscriber acknowledged the last messages "
                                "within 5 s", pub.topic_name)
        status["code"] = 0
        for topic, n in counts.items():
            LOG.info("published %d messages on %s", n, topic)
    except (FileNotFoundError, ValueError, TimeoutError) as e:
        status["code"] = EXIT_NOT_MATCHED if isinstance(e, NotMatchedError) else 2
        LOG.error("%s", e)  # now: the teardown below may end the process
        raise
    except KeyboardInterrupt:
        status["code"] = 130
        raise
    finally:
        guard = exit_watchdog(teardown_timeout, "bag_replay teardown", lambda: status["code"]) \
            if teardown_timeout else contextlib.nullcontext()
        with guard:
            node.destroy_node()
            if own_context:
                rclpy.shutdown()
    return counts


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bag_replay", description=__doc__.split("\n\n")[0])
    p.add_argument("bag", help="rosbag2 folder or .mcap/.db3 file")
    p.add_argument("--rate", type=float, default=1.0, help="speed factor; 0 = as fast as possible")
    p.add_argument("--loop", action="store_true", help="repeat until interrupted")
    p.add_argument("--topics", nargs="+", default=None, help="only these bag topics")
    p.add_argument("--remap", nargs="+", default=[], metavar="FROM:=TO", help="topic remaps")
    p.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    p.add_argument("--best-effort", action="store_true", help="best-effort QoS (default reliable)")
    p.add_argument("--wait-for-subscribers", type=int, default=0, metavar="N",
                   help="wait until the image topic has N subscribers before starting")
    p.add_argument("--wait-timeout", type=float, default=30.0,
                   help="seconds to wait for the subscribers; exit status 3 if they do not match")
    p.add_argument("--start-delay", type=float, default=0.0, help="seconds to wait before playing")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args, _ros_args = build_parser().parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        remaps = parse_remaps(args.remap)
    except ValueError as e:
        LOG.error("%s", e)
        return 2
    try:
        counts = replay(args.bag, rate=args.rate, loop=args.loop, topics=args.topics,
                        remaps=remaps, clock=not args.no_clock,
                        reliable=not args.best_effort,
                        wait_for_subscribers=args.wait_for_subscribers,
                        wait_timeout=args.wait_timeout, start_delay=args.start_delay,
                        progress=not args.no_progress, teardown_timeout=TEARDOWN_TIMEOUT_S)
    except NotMatchedError:
        return EXIT_NOT_MATCHED  # replay() logged it (dds_match)
    except (FileNotFoundError, ValueError, TimeoutError):
        return 2  # replay() logged it
    except KeyboardInterrupt:
        return 130
    return 0 if counts else 1


if __name__ == "__main__":
    sys.exit(main())
