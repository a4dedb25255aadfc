"""Waiting for DDS matches (dasp_ros.dds_match), without ROS."""

from __future__ import annotations

import pytest

from dasp_ros.dds_match import NotMatchedError, wait_matched


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, dt: float) -> None:
        self.t += dt


def test_wait_matched_returns_once_enough_peers_match():
    clock, seen = FakeClock(), []

    def count() -> int:  # one more peer every second
        seen.append(clock.t)
        return int(clock.t)

    assert wait_matched(count, 2, timeout=5.0, topic="/t", role="subscriber", poll=0.5,
                        clock=clock, sleep=clock.sleep) == 2
    assert clock.t == pytest.approx(2.0)
    assert seen[0] == 0.0  # asked before sleeping: an early match costs nothing


def test_wait_matched_times_out_with_what_it_saw():
    clock = FakeClock()
    with pytest.raises(NotMatchedError) as e:
        wait_matched(lambda: 1, 2, timeout=3.0, topic="/camera/image_raw", role="subscriber",
                     poll=0.25, clock=clock, sleep=clock.sleep)
    assert (e.value.matched, e.value.wanted, e.value.topic) == (1, 2, "/camera/image_raw")
    assert "1 of 2 subscriber(s) matched on /camera/image_raw after 3 s" in str(e.value)
    assert isinstance(e.value, TimeoutError)  # callers that catch TimeoutError still do
    assert 3.0 < clock.t <= 3.25
    with pytest.raises(ValueError, match="wanted"):
        wait_matched(lambda: 0, 0, 1.0, "/t", "publisher")
