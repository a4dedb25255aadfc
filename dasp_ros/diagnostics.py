"""Counters, rates and latency percentiles of the depth node, and their DiagnosticArray.

:class:`NodeStats` is written by the subscription callbacks (executor thread) and the worker
thread, and read by the diagnostics timer, so every access takes its lock; the work under the
lock is a dict increment or a deque append. :func:`diagnostic_summary` is pure (tested without
ROS); :func:`to_diagnostic_array` builds the message.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Tuple

import numpy as np

__all__ = ["COUNTERS", "LATENCIES", "LatencyWindow", "RateMeter", "NodeStats", "StatsSnapshot",
           "WarnThrottle", "SequenceGaps",
           "diagnostic_summary", "to_diagnostic_array", "OK", "WARN", "ERROR", "STALE"]

OK, WARN, ERROR, STALE = 0, 1, 2, 3  # diagnostic_msgs/DiagnosticStatus levels

#: Counters the node keeps (all start at 0 and are reported).
COUNTERS = (
    "frames_received", "frames_dropped", "frames_processed", "frames_published",
    "messages_lost",  # the middleware's message-lost event: never reached the callback
    "sequence_gaps",  # publisher sequence numbers never seen (lost anywhere before the callback)
    "incompatible_qos",  # publishers whose QoS cannot match the inputs' (not heard at all)
    "frames_idle",  # nobody subscribed to any output: the model did not run
    "decode_errors", "decode_error_empty", "decode_error_encoding", "decode_error_size",
    "decode_error_too_large", "decode_error_corrupt",
    "empty_frame_id",  # inputs without frame_id (outputs then have none unless frame_id set)
    "camera_info_received", "bad_camera_info", "camera_info_size_mismatch",
    "time_backwards", "inference_errors", "output_errors",
    "no_camera_info",  # frames whose points / depth camera_info were skipped for want of K
    "scale_pending",  # camera_height mode, no ground fitted yet: frame not published
    "scale_fit_failures",
)
#: Latency windows (seconds): model = estimator.predict; overhead = everything else the worker
#: does for a frame (decode, scale, outputs, publish); total = model + overhead; age = from
#: receiving the message to finishing its outputs (includes the wait in the latest-frame slot).
LATENCIES = ("decode", "model", "outputs", "overhead", "total", "age")


class LatencyWindow:
    """The last ``size`` durations (seconds); percentiles in milliseconds."""

    def __init__(self, size: int = 500):
        self._values: Deque[float] = deque(maxlen=size)

    def add(self, seconds: float) -> None:
        self._values.append(float(seconds))

    def __len__(self) -> int:
        return len(self._values)

    def percentiles_ms(self, qs: Tuple[float, ...] = (50.0, 99.0)) -> Optional[Tuple[float, ...]]:
        if not self._values:
            return None
        arr = np.fromiter(self._values, dtype=np.float64) * 1e3
        return tuple(float(v) for v in np.percentile(arr, qs))


class RateMeter:
    """Events per second over a sliding time window (monotonic clock)."""

    def __init__(self, window_s: float = 5.0):
        self._window = window_s
        self._times: Deque[float] = deque()

    def tick(self, now: Optional[float] = None) -> None:
        now = time.monotonic() if now is None else now
        self._times.append(now)
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self._window:
            self._times.popleft()

    def rate(self, now: Optional[float] = None) -> float:
        now = time.monotonic() if now is None else now
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        span = max(now - self._times[0], self._times[-1] - self._times[0])
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def last(self) -> Optional[float]:
        return self._times[-1] if self._times else None


class SequenceGaps:
    """Messages a publisher sent that never reached us, from publication sequence numbers.

    Counts losses the middleware's message-lost event misses, e.g. a reliable KEEP_LAST
    subscription whose history overflowed while the executor was busy (measured: 3 of 10
    2448x2048 frames, with no event). A loss at the very end of a stream shows only when a
    later message arrives. Publishers are told apart by their GID; a sequence number that does
    not grow (publisher restarted) starts over.
    """

    def __init__(self) -> None:
        self._last: Dict[Any, int] = {}

    def missed(self, publisher: Any, seq: Optional[int]) -> int:
        """Messages missed just before ``seq`` from ``publisher`` (0 if unknown)."""
        if not seq:  # the RMW does not report sequence numbers (None or 0)
            return 0
        last = self._last.get(publisher)
        self._last[publisher] = seq
        if last is None or seq <= last:
            return 0
        return seq - last - 1


class WarnThrottle:
    """At most one warning per *kind* every ``period_s`` seconds (thread-safe).

    rclpy throttles per call site, so one site that reports several kinds of problem (e.g.
    ``fx=0`` then ``K all NaN``) would hide all but the first; here each kind has its own clock.
    """

    def __init__(self, period_s: float, clock: Callable[[], float] = time.monotonic):
        self._period = period_s
        self._clock = clock
        self._last: Dict[str, float] = {}
        self._lock = threading.Lock()

    def ready(self, kind: str) -> bool:
        """True if a warning of ``kind`` may be logged now (and start its period)."""
        now = self._clock()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self._period:
                return False
            self._last[kind] = now
            return True


@dataclass
class StatsSnapshot:
    """A consistent copy of :class:`NodeStats` for reporting."""

    counters: Dict[str, int]
    latencies_ms: Dict[str, Optional[Tuple[float, float]]]
    input_rate: float
    output_rate: float
    since_last_input: Optional[float]


class NodeStats:
    """Thread-safe counters, latency windows and input/output rate meters."""

    def __init__(self, window: int = 500, rate_window_s: float = 5.0):
        self._lock = threading.Lock()
        self._counters: Counter = Counter({name: 0 for name in COUNTERS})
        self._lat = {name: LatencyWindow(window) for name in LATENCIES}
        self._in = RateMeter(rate_window_s)
        self._out = RateMeter(rate_window_s)

    def incr(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] += n

    def get(self, name: str) -> int:
        with self._lock:
            return int(self._counters[name])

    def add_latency(self, name: str, seconds: float) -> None:
        with self._lock:
            self._lat[name].add(seconds)

    def latency_ms(self, name: str) -> Optional[Tuple[float, ...]]:
        with self._lock:
            return self._lat[name].percentiles_ms()

    def latencies_raw_ms(self, name: str) -> np.ndarray:
        """All stored durations of one window in milliseconds (benchmarks)."""
        with self._lock:
            return np.fromiter(self._lat[name]._values, dtype=np.float64) * 1e3

    def input_tick(self, now: Optional[float] = None) -> None:
        with self._lock:
            self._in.tick(now)

    def output_tick(self, now: Optional[float] = None) -> None:
        with self._lock:
            self._out.tick(now)

    def snapshot(self, now: Optional[float] = None) -> StatsSnapshot:
        now = time.monotonic() if now is None else now
        with self._lock:
            last = self._in.last()
            return StatsSnapshot(
                counters=dict(self._counters),
                latencies_ms={k: w.percentiles_ms() for k, w in self._lat.items()},
                input_rate=self._in.rate(now), output_rate=self._out.rate(now),
                since_last_input=None if last is None else now - last)


def _fmt_ms(p: Optional[Tuple[float, ...]]) -> Tuple[str, str]:
    if p is None:
        return "n/a", "n/a"
    return f"{p[0]:.2f}", f"{p[1]:.2f}"


def diagnostic_summary(snap: StatsSnapshot, static: Mapping[str, str],
                       problems: List[str], stale_after_s: float = 5.0
                       ) -> Tuple[int, str, List[Tuple[str, str]]]:
    """Level, message and key/values of the node's DiagnosticStatus.

    Args:
        snap: the statistics.
        static: facts to report verbatim (backend, model, scale mode, ...).
        problems: current warnings from the node (e.g. "no CameraInfo"), each makes WARN.
        stale_after_s: no input for this long → WARN "no input".
    Returns:
        ``(level, message, [(key, value), ...])``; latencies in ms as ``p50``/``p99`` pairs.
    """
    level, msgs = OK, []
    if snap.since_last_input is None:
        level, msgs = WARN, ["no input image yet (check the image topic, its QoS and that "
                             "the publisher uses the same FASTDDS_BUILTIN_TRANSPORTS; with "
                             "LARGE_DATA see docs/dds_matching.md)"]
    elif snap.since_last_input > stale_after_s:
        level, msgs = WARN, [f"no input for {snap.since_last_input:.1f} s"]
    if problems:
        level = max(level, WARN)
        msgs.extend(problems)
    values: List[Tuple[str, str]] = list(static.items())
    values += [("input_rate_hz", f"{snap.input_rate:.2f}"),
               ("output_rate_hz", f"{snap.output_rate:.2f}")]
    for name in LATENCIES:
        p50, p99 = _fmt_ms(snap.latencies_ms.get(name))
        values += [(f"latency_{name}_p50_ms", p50), (f"latency_{name}_p99_ms", p99)]
    values += [(k, str(snap.counters.get(k, 0))) for k in COUNTERS]
    message = "; ".join(msgs) if msgs else (
        f"depth at {snap.output_rate:.1f} Hz from {snap.input_rate:.1f} Hz input")
    return level, message, values


def to_diagnostic_array(stamp: Any, name: str, hardware_id: str, level: int, message: str,
                        values: List[Tuple[str, str]]) -> Any:
    """``diagnostic_msgs/DiagnosticArray`` with one status."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    status = DiagnosticStatus(level=bytes([level]), name=name, message=message,
                              hardware_id=hardware_id,
                              values=[KeyValue(key=k, value=v) for k, v in values])
    arr = DiagnosticArray()
    arr.header.stamp = stamp
    arr.status = [status]
    return arr
