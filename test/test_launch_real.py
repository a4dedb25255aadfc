"""``launch/night_depth.launch.py`` through the real upstream launch stack, in its own processes.

The upstream ``launch``, ``launch_ros`` and ``ros2launch`` packages live beside the repository in
``../shared/upstream/ros2_launch`` (not installable from a package index). Each test installs
nothing itself: a module fixture installs the package the way colcon does
(``setup.py install --prefix P --single-version-externally-managed``: ament index, ``share/``,
``lib/dasp_ros/``), then every launch runs as ``ros2 launch dasp_ros night_depth.launch.py``
would (``test/launch_support/ros2_launch.py`` calls the same ``ros2launch.api`` functions) in a
new process group, with its own ``ROS_DOMAIN_ID``, ``ROS_HOME`` and temp directory. A marker in
the environment finds every process a launch started, so "nothing left running" is checked
for real. RViz is a stand-in executable in its own ament prefix (rviz2 is not installable here).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import sysconfig
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional

import pytest
from ros_domain import ros_domain

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = ROOT.parent / "shared" / "upstream" / "ros2_launch"
SUPPORT = ROOT / "test" / "launch_support"
LAUNCH = [sys.executable, str(SUPPORT / "ros2_launch.py"), "dasp_ros", "night_depth.launch.py"]
DOMAIN = ros_domain("launch_real")

if not (UPSTREAM / "launch_ros").is_dir():
    pytest.skip(f"the upstream ROS 2 launch stack is not at {UPSTREAM} (it ships in shared/ "
                "beside the repository, not with a clone of it): launch file not run",
                allow_module_level=True)
for _module in ("osrf_pycommon", "lark", "rclpy", "ament_index_python"):
    pytest.importorskip(_module, reason=f"{_module} missing: pip install -e '.[all]'")


def _pids_with(marker: str) -> List[int]:
    """Processes whose environment holds ``marker`` (everything a launch started)."""
    needle = f"DASP_LAUNCH_TEST={marker}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:  # gone, or not ours to read
                pass
    return pids


class Stack:
    """The colcon-style install and the environment of launches against it."""

    def __init__(self, base: Path):
        self.base = base
        prefix = base / "install"
        build = base / "build"
        build.mkdir()
        out = subprocess.run(
            [sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(build), "build",
             "--build-base", str(build / "b"), "install", "--prefix", str(prefix),
             "--single-version-externally-managed", "--record", str(build / "record.txt")],
            cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        self.prefix = prefix
        purelib = sysconfig.get_path("purelib", vars={"base": str(prefix)})
        assert (Path(purelib) / "dasp_ros").is_dir() and \
            (prefix / "lib" / "dasp_ros" / "depth_node").is_file()
        self.pythonpath = os.pathsep.join([purelib, str(UPSTREAM), str(SUPPORT)])
        self.rviz_prefix = self._fake_rviz(base / "rviz_prefix")

    @staticmethod
    def _fake_rviz(prefix: Path) -> Path:
        """An ament prefix with a ``rviz2`` that records its arguments and waits for SIGINT."""
        (prefix / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
        (prefix / "share" / "ament_index" / "resource_index" / "packages" / "rviz2").touch()
        exe = prefix / "lib" / "rviz2" / "rviz2"
        exe.parent.mkdir(parents=True)
        exe.write_text(f"#!{sys.executable}\n" + (
            "import json, os, signal, sys, time\n"
            "stop = []\n"
            "signal.signal(signal.SIGINT, lambda *a: stop.append(1))\n"
            "with open(os.environ['FAKE_RVIZ_RECORD'], 'w') as f:\n"
            "    json.dump(sys.argv[1:], f)\n"
            "while not stop:\n"
            "    time.sleep(0.1)\n"
            "time.sleep(0.3)  # like a GUI closing\n"))
        exe.chmod(0o755)
        return prefix

    def env(self, case: Path, rviz: bool = False) -> Dict[str, str]:
        """Environment of one launch: its own ROS home, temp dir, domain and process marker."""
        for sub in ("ros_home", "tmp"):
            (case / sub).mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AMENT_", "ROS_", "FASTDDS_", "RMW_"))}
        prefixes = [str(self.prefix)] + ([str(self.rviz_prefix)] if rviz else [])
        env.update(AMENT_PREFIX_PATH=os.pathsep.join(prefixes), PYTHONPATH=self.pythonpath,
                   ROS_HOME=str(case / "ros_home"), TMPDIR=str(case / "tmp"),
                   ROS_DOMAIN_ID=str(DOMAIN), PYTHONUNBUFFERED="1",
                   RCUTILS_COLORIZED_OUTPUT="0", FAKE_RVIZ_RECORD=str(case / "rviz_args.json"),
                   DASP_LAUNCH_TEST=uuid.uuid4().hex)
        return env

    def run(self, args: List[str], env: Dict[str, str], timeout: float = 60
            ) -> subprocess.CompletedProcess:
        return subprocess.run(LAUNCH + args, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Stack:
    return Stack(tmp_path_factory.mktemp("ros2_launch"))


def _assert_nothing_left(env: Dict[str, str], case: Path) -> None:
    marker = env["DASP_LAUNCH_TEST"]
    end = time.monotonic() + 10
    while _pids_with(marker) and time.monotonic() < end:
        time.sleep(0.1)
    assert _pids_with(marker) == [], "processes of the launch still running"
    assert list((case / "tmp").iterdir()) == [], "files left in the temp directory"


def test_show_args_lists_every_argument(stack, tmp_path):
    from dasp_ros.launch_spec import ARGUMENTS

    out = stack.run(["--show-args"], stack.env(tmp_path))
    assert out.returncode == 0, out.stderr
    for arg in ARGUMENTS:
        assert f"'{arg.name}':" in out.stdout
    assert "[true | false, any case]" in out.stdout


# Seen once in four full-suite runs on the 2-core machine (2026-12-05): both tests below lost
# every line of the node's output from the launch's stdout in the same run (and the peer gave no
# report), then passed on rerun, alone and in three later full runs; the cause is not known.
# One rerun keeps CI from failing on that; a test that fails twice still fails.
LAUNCH_FLAKE = pytest.mark.flaky(reruns=1, reruns_delay=2)


@LAUNCH_FLAKE
@pytest.mark.parametrize("case", ["rviz_missing", "model_missing", "params_file_missing",
                                  "bad_choice", "node_fails_at_start"])
def test_failures_end_non_zero_with_nothing_running(stack, tmp_path, case):
    env = stack.env(tmp_path)
    bad_params = tmp_path / "params.yaml"
    bad_params.write_text("/**:\n  ros__parameters:\n    model: /no/such/model.onnx\n")
    args, needle = {
        "rviz_missing": (["rviz:=True"], "needs RViz: package 'rviz2' is not installed"),
        "model_missing": (["model:=/no/such/model.onnx"], "model:='/no/such/model.onnx': no "
                                                           "such file"),
        "params_file_missing": ([f"params_file:={tmp_path}/none.yaml"], "no such file"),
        "bad_choice": (["log_level:=loud"], "log_level:='loud' is not allowed"),
        # the launch cannot see this one coming: the model is named in the params file
        "node_fails_at_start": ([f"params_file:={bad_params}"], "exited with status 1"),
    }[case]
    out = stack.run(args, env)
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    assert needle in text, text
    if case == "node_fails_at_start":
        assert "cannot start: model file '/no/such/model.onnx'" in text
    else:
        assert "process started" not in text, text  # checked before anything started
    assert "Traceback" not in text
    _assert_nothing_left(env, tmp_path)


@LAUNCH_FLAKE
def test_launch_runs_the_node_and_ends_cleanly_on_ctrl_c(stack, tmp_path):
    """Arguments in any case, compressed input, RViz, outputs, then Ctrl-C while the camera
    streams: status 0, no error or traceback, nothing left running, no temp files.

    Ctrl-C in a terminal sends SIGINT to the whole process group, and launch forwards one more
    to each node: the node gets two (a third is sent here too), the case that used to end in a
    KeyboardInterrupt traceback.
    """
    env = stack.env(tmp_path, rviz=True)
    log = tmp_path / "launch.log"
    args = ["camera_namespace:=/cam", "compressed:=True", "rviz:=TRUE", "use_sim_time:=False",
            "log_level:=INFO", "fastdds_large_data:=On"]
    with open(log, "w") as f:
        launch = subprocess.Popen(LAUNCH + args, env=env, stdin=subprocess.DEVNULL, stdout=f,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    peer_env = dict(env, FASTDDS_BUILTIN_TRANSPORTS="LARGE_DATA", DASP_LAUNCH_TEST="peer",
                    PYTHONPATH=os.pathsep.join([str(ROOT), env["PYTHONPATH"]]))
    peer = subprocess.Popen([sys.executable, str(SUPPORT / "peer.py"), "/cam", "2"],
                            env=peer_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    report: Optional[dict] = None
    try:
        end = time.monotonic() + 120
        while report is None and time.monotonic() < end and peer.poll() is None:
            line = peer.stdout.readline()
            if line.startswith("{"):
                report = json.loads(line)
        assert report is not None and "error" not in report, \
            f"peer: {report}\nlaunch log:\n{log.read_text()}"

        # topics and types the README lists, in the launch's namespace
        topics = report["topics"]
        for name, kind in [("/cam/depth", "sensor_msgs/msg/Image"),
                           ("/cam/depth/camera_info", "sensor_msgs/msg/CameraInfo"),
                           ("/cam/depth/color", "sensor_msgs/msg/Image"),
                           ("/cam/points", "sensor_msgs/msg/PointCloud2"),
                           ("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray")]:
            assert kind in topics.get(name, []), (name, topics)
        # frames in -> depth and points out, each with the input's stamp and frame
        for sec in report["sent"]:
            assert [sec, 500_000_000, "cam_optical", "32FC1", 128, 96] in report["depth"]
            assert [sec, "cam_optical", 64 * 48] in report["points"]  # decimation 2
        diag = report["diagnostics"]
        assert int(diag["frames_published"]) >= 2 and diag["input_topic"] == \
            "/cam/image_raw/compressed"
        assert diag["messages_lost"] == "0" and diag["decode_errors"] == "0"

        # RViz got a config in ROS_HOME whose topics follow the arguments
        rviz_args = json.loads((tmp_path / "rviz_args.json").read_text())
        cfg = Path(rviz_args[rviz_args.index("-d") + 1])
        assert cfg.parent == tmp_path / "ros_home" / "dasp_ros" and cfg.suffix == ".rviz"
        assert "/cam/image_raw/compressed" in cfg.read_text()
        assert "use_sim_time:=false" in rviz_args

        node_pid = int(re.search(r"\[depth_node-1\]: process started with pid \[(\d+)\]",
                                 log.read_text()).group(1))
        time.sleep(1.0)  # frames are streaming into the node
        os.killpg(launch.pid, signal.SIGINT)
        time.sleep(0.05)
        try:
            os.kill(node_pid, signal.SIGINT)
        except ProcessLookupError:  # already done
            pass
        rc = launch.wait(timeout=40)
    finally:
        peer.terminate()
        peer.wait(timeout=10)
        if launch.poll() is None:
            os.killpg(launch.pid, signal.SIGKILL)
            launch.wait()
    text = log.read_text()
    assert rc == 0, text
    for bad in ("Traceback", "KeyboardInterrupt", "context is invalid", "frame failed",
                "[depth_node-1] [ERROR]", "[ERROR] [depth_node-1]", "[ERROR] [launch]",
                "SIGTERM", "SIGKILL"):
        assert bad not in text, f"{bad!r} in the launch output:\n{text}"
    assert "[depth_node-1]: process has finished cleanly" in text, text
    _assert_nothing_left(env, tmp_path)
