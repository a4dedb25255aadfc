"""The tests' ROS domain IDs stay in Linux's safe range and never collide within one run."""

from ros_domain import SLOTS, ros_domain


def test_domains_in_safe_range_and_distinct_per_run():
    for pid in list(range(0, 5000, 7)) + [4_194_303]:
        ids = [ros_domain(name, pid) for name in SLOTS]
        assert all(1 <= i <= 101 for i in ids), (pid, ids)
        assert len(set(ids)) == len(ids), (pid, ids)
