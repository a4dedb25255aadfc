"""ROS domain IDs for the tests: one per test file and run, all inside Linux's safe range.

Why 1..101: ROS 2 documents domain IDs 0..101 as safe on Linux. Fast DDS derives its UDP
ports from the ID (7400 + 250 * id + offsets). From ID 102 on, those ports fall into the
kernel's ephemeral range (32768-60999), where a bind can collide with an outgoing socket.
(This did not cure test_night_drive_e2e's rare "no subscriber after 120 s": that one is Fast
DDS's LARGE_DATA transport sometimes never matching two participants on one host, at any
domain ID; docs/dds_matching.md, and dasp_ros.dds_match for how night_drive copes.)

Why from the pid: two test runs on one host (two CI jobs, a developer beside CI) must not
see each other's topics. Why a slot per file: a process one test leaves behind must not
talk into the next file's graph.
"""

import os

SLOTS = {  # one per test file (or per process of a file); ids differ within one run
    "night_drive_e2e": 0,
    "bag_replay": 1,
    "bag_replay_subprocess": 2,
    "depth_node": 3,
    "launch_real": 4,
    "shutdown": 5,
    "bag_eval_lonely": 6,
}


def ros_domain(name: str, pid: int | None = None) -> int:
    """The ROS domain ID (1..101) for test slot ``name`` of the run with process id ``pid``.

    Distinct slots of one run always get distinct IDs; runs with different pids usually
    get different ones (the pid picks the base, mod 101)."""
    pid = os.getpid() if pid is None else pid
    return 1 + (pid + SLOTS[name]) % 101
