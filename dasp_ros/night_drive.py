"""The main job, end to end: a synthetic night drive through the real depth node over real DDS.

``python -m dasp_ros.night_drive [--out DIR]`` (``make run`` in the README):

1. renders a night drive from test seeds never used in training and records it as an mcap
   rosbag2 (camera images, CameraInfo, ground-truth depth, odometry, tf);
2. starts ``depth_node`` with the shipped model (ONNX Runtime, no torch) in its own process;
3. starts ``bag_eval`` in another process, subscribed to the node's outputs;
4. replays the bag into the node over Fast DDS, reliable QoS on every topic (as the node's
   default ``qos_reliability``) and Fast DDS's default transports (``--fastdds-transports``;
   why not LARGE_DATA: docs/dds_matching.md);
5. collects the report: accuracy (median-scaled and metric), latency, drops, a depth strip
   picture, a GIF, a PLY point cloud and an mcap bag of everything the node published.

Each process is what a user runs by hand (``ros2 run dasp_ros depth_node``, ``bag_eval``,
``bag_replay``); this script only wires them together, shows progress and prints the paths.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from dasp_ros.dds_match import EXIT_NOT_MATCHED

LOG = logging.getLogger("dasp.night_drive")

#: Night test seeds (never used for training; see dasp_core.eval presets).
DEFAULT_SEED = 10_000

#: How long bag_eval and bag_replay wait for their DDS peers before they give up (status 3).
MATCH_TIMEOUT_S = 30.0

#: The three processes' Fast DDS builtin transports. All their topics are reliable, which the
#: default transports (shared memory on one host) deliver whole, and DEFAULT always matched in
#: docs/dds_matching.md; LARGE_DATA sometimes never matches two participants on one host there.
DEFAULT_TRANSPORTS = "DEFAULT"


def _env(domain_id: int, transports: str = DEFAULT_TRANSPORTS) -> Dict[str, str]:
    env = dict(os.environ)
    env["FASTDDS_BUILTIN_TRANSPORTS"] = transports
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")
    return env


def make_bag(out: Path, seed: int, frames: int, height: int, width: int) -> Path:
    """Render a night drive and record it as an mcap bag (ground truth included)."""
    from dasp_core.data.synthetic import SyntheticConfig, render_sequence, write_synthetic_bag

    cfg = SyntheticConfig(height=height, width=width)
    seq = render_sequence(seed, "night", frames, cfg)
    bag = out / "night_drive_bag"
    if bag.exists():
        import shutil
        shutil.rmtree(bag)
    write_synthetic_bag([seq], bag, storage="mcap")
    return bag


def start_node(model: str, backend: str, threads: int, env: Dict[str, str], log: Path
               ) -> subprocess.Popen:
    """``depth_node`` in namespace /dasp, fed by /camera/image_raw + /camera/camera_info."""
    cmd = [sys.executable, "-m", "dasp_ros.depth_node", "--ros-args",
           "-r", "__ns:=/dasp", "-r", "image:=/camera/image_raw",
           "-r", "camera_info:=/camera/camera_info", "-r", "diagnostics:=/diagnostics",
           "-p", f"model:={model}", "-p", f"backend:={backend}", "-p", f"threads:={threads}",
           "-p", "qos_reliability:=reliable", "-p", "output_qos_depth:=5",
           # no range cut on the published depth: the evaluator must see the model's own
           # output (median scaling happens after; a cut at 80 m before it would bias scores)
           "-p", "min_range:=0.0", "-p", "max_range:=1000.0"]
    LOG.info("starting depth node: %s", " ".join(cmd))
    return subprocess.Popen(cmd, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _why(returncode: int) -> str:
    return (": its DDS peers never matched (docs/dds_matching.md)"
            if returncode == EXIT_NOT_MATCHED else "")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from dasp_core.assets import default_model_path

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    model = args.model or default_model_path("onnx")
    env = _env(args.domain_id, args.fastdds_transports)
    steps = tqdm(total=5, desc="night drive", unit="step", bar_format="{desc}: {n}/{total} {postfix}")
    procs: List[subprocess.Popen] = []
    try:
        steps.set_postfix_str("rendering the synthetic night drive bag")
        bag = make_bag(out, args.seed, args.frames, args.height, args.width)
        steps.update(1)

        steps.set_postfix_str("starting depth node")
        node = start_node(model, args.backend, args.threads, env, out / "depth_node.log")
        procs.append(node)
        steps.update(1)

        steps.set_postfix_str("starting evaluator")
        ready = out / ".eval_ready"
        eval_cmd = [sys.executable, "-m", "dasp_ros.bag_eval", "--bag", str(bag),
                    "--out", str(out / "eval"), "--expected", str(args.frames),
                    "--idle-timeout", "8", "--metric", "--ready-file", str(ready),
                    "--wait-for-publisher", str(MATCH_TIMEOUT_S)]
        ready.unlink(missing_ok=True)
        ev = subprocess.Popen(eval_cmd, env=env, stdout=open(out / "bag_eval.log", "w"),
                              stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(ev)
        t_end = time.monotonic() + 60 + MATCH_TIMEOUT_S
        while not ready.exists():
            for p, name in ((node, "depth_node"), (ev, "bag_eval")):
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited with {p.returncode}{_why(p.returncode)}; "
                                       f"see {out / (name + '.log')}")
            if time.monotonic() > t_end:
                raise TimeoutError(f"bag_eval did not become ready within "
                                   f"{60 + MATCH_TIMEOUT_S:.0f} s")
            time.sleep(0.1)
        steps.update(1)

        steps.set_postfix_str(f"replaying {args.frames} frames at {args.rate}x")
        # its own process, like the others: its teardown is bounded (bag_replay's watchdog);
        # two subscribers on the image topic: the node and the evaluator
        replay_cmd = [sys.executable, "-m", "dasp_ros.bag_replay", str(bag), "--rate",
                      str(args.rate), "--wait-for-subscribers", "2", "--wait-timeout",
                      str(MATCH_TIMEOUT_S), "--start-delay", "1.0", "--no-progress", "--topics",
                      "/camera/image_raw", "/camera/camera_info", "/tf"]
        replayer = subprocess.Popen(replay_cmd, env=env, stdout=open(out / "bag_replay.log", "w"),
                                    stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(replayer)
        rc = replayer.wait(timeout=180 + args.frames / max(args.rate, 0.05))
        if rc != 0:
            raise RuntimeError(f"bag_replay failed ({rc}){_why(rc)}; see {out / 'bag_replay.log'}")
        steps.update(1)

        steps.set_postfix_str("collecting outputs")
        try:
            ev.wait(timeout=120)
        except subprocess.TimeoutExpired:
            ev.send_signal(signal.SIGINT)
            ev.wait(timeout=30)
        if ev.returncode != 0:
            raise RuntimeError(f"bag_eval failed ({ev.returncode}); see {out / 'bag_eval.log'}")
        steps.update(1)
    finally:
        steps.close()
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()

    summary = json.loads((out / "eval" / "metrics.json").read_text())
    report = (out / "eval" / "report.md").read_text()
    print("\n" + report)
    print("Outputs:")
    print(f"  input bag (mcap):     {bag}")
    for k, v in summary["files"].items():
        print(f"  {k + ':':<21} {v}")
    print(f"  report:               {out / 'eval' / 'report.md'}")
    print(f"  node log:             {out / 'depth_node.log'}")
    if args.docs:
        publish_docs(Path(args.docs), out, summary, report, args.fastdds_transports)
    ok = summary["frames_out"] > 0
    return 0 if ok else 1


#: the largest drive GIF copied into the docs (it is committed with every refresh)
DOCS_GIF_BYTES = 4_000_000


def thin_gif(src: Path, dst: Path, max_bytes: int, max_stride: int = 4) -> Optional[int]:
    """Copy the animated GIF ``src`` to ``dst`` keeping every k-th frame, with the smallest
    stride k (1..``max_stride``) that makes the file at most ``max_bytes``; frame durations
    grow k-fold so the clip keeps its real-time speed. Returns k, or None when no stride fits,
    in which case ``dst`` is removed rather than left from an earlier run."""
    from PIL import Image, ImageSequence

    with Image.open(src) as gif:
        frames = [f.copy() for f in ImageSequence.Iterator(gif)]
        duration = int(gif.info.get("duration", 100))
    tmp = dst.with_name(dst.name + ".tmp")
    for k in range(1, max_stride + 1):
        kept = frames[::k]
        kept[0].save(tmp, format="GIF", save_all=True, append_images=kept[1:],
                     duration=duration * k, loop=0, optimize=False)
        if tmp.stat().st_size <= max_bytes:
            tmp.replace(dst)
            return k
    tmp.unlink()
    dst.unlink(missing_ok=True)
    return None


def publish_docs(docs: Path, out: Path, summary: Dict, report: str,
                 transports: str = DEFAULT_TRANSPORTS) -> None:
    """Copy the picture and the report into ``docs`` with the command and the machine."""
    import platform
    import shutil

    docs.mkdir(parents=True, exist_ok=True)
    files = summary["files"]
    if "depth strip" in files:
        shutil.copy(files["depth strip"], docs / "night_drive_strip.png")
    stride = None
    if "drive GIF" in files:
        # a stale GIF of an earlier model must not stay beside this run's report
        stride = thin_gif(Path(files["drive GIF"]), docs / "night_drive.gif", DOCS_GIF_BYTES)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    cmd = "python -m dasp_ros.night_drive " + " ".join(sys.argv[1:])
    body = report.split("## Files")[0].replace("# Live evaluation of the depth node", "").strip()
    text = "\n".join([
        "# The main job: a synthetic night drive through the depth node", "",
        f"Command: `{cmd}` (what `make run` runs, plus `--docs docs`).", "",
        f"Machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        "depth_node, bag_eval and the replay in three processes over Fast DDS "
        f"(`FASTDDS_BUILTIN_TRANSPORTS={transports}`, "
        "reliable QoS), the shipped model on the backend the node diagnostics below name.", "",
        "![camera | DASP depth | ground truth | error](night_drive_strip.png)", "",
        body, "",
        ("![the drive: camera over depth](night_drive.gif)"
         + (f"\n\n(one frame in {stride} of the run's GIF, to keep the file under "
            f"{DOCS_GIF_BYTES / 1e6:.0f} MB)" if stride > 1 else "")) if stride else ""])
    (docs / "night_drive.md").write_text(text + "\n")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dasp_ros.night_drive",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="outputs/night_drive", help="output folder")
    p.add_argument("--model", default="", help="model file (default: the shipped model)")
    p.add_argument("--backend", default="auto",
                   help="auto | openvino | onnxruntime | torch | tensorrt")
    p.add_argument("--threads", type=int, default=0, help="backend CPU threads (0 = default)")
    p.add_argument("--frames", type=int, default=120, help="frames in the drive")
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--width", type=int, default=800)
    p.add_argument("--rate", type=float, default=1.0, help="replay speed factor")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="night test seed")
    p.add_argument("--docs", default="", help="also copy the picture and report into this "
                   "folder (docs/night_drive.md)")
    p.add_argument("--fastdds-transports", default=DEFAULT_TRANSPORTS,
                   help="FASTDDS_BUILTIN_TRANSPORTS of the three processes (set here, not taken "
                   "from the environment; docs/dds_matching.md)")
    p.add_argument("--domain-id", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", "0") or 0),
                   help="ROS_DOMAIN_ID for all processes")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (FileNotFoundError, RuntimeError, TimeoutError, ValueError) as e:
        LOG.error("%s", e)
        return 2


if __name__ == "__main__":
    sys.exit(main())
