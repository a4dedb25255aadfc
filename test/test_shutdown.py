"""Bounded, quiet endings: the exit watchdog, signal handling, and the tools that use them.

Every case runs in its own process (signals, ``os._exit``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from ros_domain import ros_domain

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_watchdog_forces_exit_after_results_and_says_so(tmp_path):
    results = tmp_path / "results.txt"
    t0 = time.monotonic()
    proc = _python(f"""
        import time
        from dasp_ros.shutdown import exit_watchdog
        open({str(results)!r}, "w").write("scores\\n")
        print("results written", flush=True)
        with exit_watchdog(0.5, "test teardown", lambda: 3):
            time.sleep(60)  # a middleware teardown that never returns
        print("not reached")
    """)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 20
    assert proc.returncode == 3 and results.read_text() == "scores\n"
    assert "results written" in out and "not reached" not in out
    assert "test teardown did not finish within 0.5 s" in err and "exiting with status 3" in err


def test_watchdog_is_silent_when_teardown_finishes():
    proc = _python("""
        import time
        from dasp_ros.shutdown import exit_watchdog
        with exit_watchdog(5.0, "test teardown", lambda: 3):
            time.sleep(0.1)
        print("after", flush=True)
    """)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "after" in out and "did not finish" not in err


def test_repeated_signals_request_shutdown_once_without_traceback():
    proc = _python("""
        import os, signal, time
        from dasp_ros.shutdown import ShutdownRequest
        repeats = []
        stop = ShutdownRequest(on_repeat=repeats.append)
        for sig in (signal.SIGINT, signal.SIGINT, signal.SIGTERM):
            os.kill(os.getpid(), sig)
            time.sleep(0.05)
        print(stop.requested, stop.signal == signal.SIGINT, len(repeats), flush=True)
        stop.ignore_from_now()  # clean-up done: a late Ctrl-C must not kill the exit
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        print("alive", flush=True)
    """)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.split() == ["True", "True", "2", "alive"] and "Traceback" not in err


def test_depth_node_two_sigints_end_cleanly(tmp_path):
    """``depth_node`` (shipped model) gets SIGINT twice (Ctrl-C plus the one launch forwards):
    status 0, no KeyboardInterrupt traceback, no error."""
    pytest.importorskip("rclpy")
    pytest.importorskip("onnxruntime")
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1",
               ROS_DOMAIN_ID=str(ros_domain("shutdown")), RCUTILS_COLORIZED_OUTPUT="0")
    log = tmp_path / "node.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "dasp_ros.depth_node", "--ros-args",
                                 "-r", "__ns:=/sigint_test"], env=env, stdout=f,
                                stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + 60
        while "depth_node ready" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < end, log.read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert rc == 0, text
    assert "Traceback" not in text and "[ERROR]" not in text, text
