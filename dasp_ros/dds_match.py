"""Waiting for DDS endpoints to match, and the exit status that says they never did.

Why this exists: with ``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA`` (Fast DDS 3.2.3, the Kilted
wheels), a publisher and a subscriber on the same host sometimes never match: in
``docs/dds_matching.md`` one of two subscribers stayed unmatched after 10 s in 7 of 30
three-process trials (0 of 30 with the default transports), and test_night_drive_e2e saw it
last 120 s. A fresh publisher rarely cured it (the stuck side was a subscriber). So the tools
that wire processes together wait a bounded time for the match and then exit with
:data:`EXIT_NOT_MATCHED` and a message that says how many peers matched, instead of
waiting for data that cannot come.
"""

from __future__ import annotations

import time
from typing import Callable

#: Exit status of ``bag_replay`` / ``bag_eval`` when their endpoints did not match in time.
EXIT_NOT_MATCHED = 3


class NotMatchedError(TimeoutError):
    """``wanted`` peers were asked for on ``topic``; only ``matched`` showed up in time."""

    def __init__(self, topic: str, role: str, matched: int, wanted: int, timeout: float):
        self.topic, self.role, self.matched, self.wanted = topic, role, matched, wanted
        super().__init__(
            f"{matched} of {wanted} {role}(s) matched on {topic} after {timeout:.0f} s "
            "(with FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA, Fast DDS sometimes never matches two "
            "participants on one host: see docs/dds_matching.md)")


def wait_matched(count: Callable[[], int], wanted: int, timeout: float, topic: str, role: str,
                 poll: float = 0.05, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> int:
    """Block until ``count() >= wanted``; returns the count.

    Args:
        count: the matched-endpoint count, e.g. ``publisher.get_subscription_count``.
        wanted: how many peers to wait for (>= 1).
        timeout: seconds; raises :class:`NotMatchedError` when they pass first.
        topic, role: for the error message ("subscriber", "publisher").
    """
    if wanted < 1:
        raise ValueError(f"wanted must be >= 1, got {wanted}")
    t_end = clock() + timeout
    while True:
        n = count()
        if n >= wanted:
            return n
        if clock() > t_end:
            raise NotMatchedError(topic, role, n, wanted, timeout)
        sleep(poll)
