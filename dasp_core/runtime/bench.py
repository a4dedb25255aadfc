"""``dasp bench``: the inference backends and precisions side by side, on one machine, in one
run: latency, memory and accuracy.

For every variant — eager torch fp32, onnxruntime fp32 / int8 (the Q/DQ graph), OpenVINO fp32 /
bf16 / int8, TensorRT when present — × input size × thread count it measures, after warm-up:

* **net**: ``infer_disparity`` on a preprocessed frame (the network alone);
* **e2e**: ``predict`` on a camera-sized RGB frame (default 480x640: resize + network + depth
  + resize back), what a ROS node pays per frame;

and reports p50/p90/p99 latency (ms), frames/s (1000 / mean ms), each variant's ratio to eager
torch (p50 and p99), the machine (CPU model, cores, memory, library versions, GPU), the
command line and the load average. Then:

* **memory**: the resident memory (RSS) of a separate process that loads only one runtime the
  way the node does (``create_estimator``), per variant, plus the node's default
  (``backend=auto, precision=auto``) and which backend/precision that picks and why;
* **accuracy**: AbsRel of every variant on the synthetic night test set
  (``synthetic-night-test``, the first ``--accuracy-sequences`` drives), and its change
  relative to fp32 of the same network.

The int8 variants run the Q/DQ graph :func:`dasp_core.export.onnx.quantize_int8_qdq` writes,
calibrated on ``--calib-dir`` / ``--calib-bag`` frames, or by default on synthetic night frames
rendered from training seeds (never the test seeds).

Goals checked (issue 17, at 192x640 on 2 threads): onnxruntime ≤ 0.6× eager torch; the
default configuration's ``predict()`` ≤ 0.2× eager torch; reduced precisions' AbsRel within
2 % (relative) of fp32; the default configuration's process ≤ 600 MB RSS.

Variants that share an input size and thread count are timed side by side, in alternating
blocks of :data:`BLOCK` calls (:func:`time_interleaved`), so a burst of other work on a shared
machine hits all of them alike; the load averages before and after are in the report. Torch
runs ``DepthNet.forward_disparity`` (scale 0 only), the same work as the exported graph.

``--quick`` is a smoke test (a few iterations, one small size, fp32 only, no accuracy pass).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from dasp_core import __version__
from dasp_core.errors import ConfigError, DaspError

HELP = "latency benchmark of the inference backends"
log = logging.getLogger("dasp.bench")

GOAL_SIZE = (192, 640)
GOAL_THREADS = 2
GOAL_ORT_RATIO = 0.6
GOAL_DEFAULT_RATIO = 0.2
GOAL_ABSREL_REL = 0.02
GOAL_RSS_MB = 600.0
# below this idle CPU share just before the run, the machine counts as busy: latencies then
# mostly measure the scheduler (torch's OpenMP threads suffer most from being descheduled),
# so the latency goal is reported as not established rather than met or missed
QUIET_IDLE = 0.8
CALIB_SEED = 9000  # first synthetic seed of the default int8 calibration frames (training range)
BACKEND_NAMES = ("torch", "onnxruntime", "openvino", "tensorrt")
#: precisions each CPU backend can measure (tensorrt: ``--precision``)
BACKEND_PRECISIONS = {"torch": ("fp32",), "onnxruntime": ("fp32", "int8"),
                      "openvino": ("fp32", "bf16", "int8")}
BLOCK = 5  # timed calls per backend before switching to the next (time_interleaved)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="dasp checkpoint (.pt) or .onnx, or 'random' (a random-weights "
                                   "network of --encoder/--decoder-*: latency only); default: "
                                   "the shipped model, else 'random'")
    p.add_argument("--encoder", default="resnet18",
                   help="encoder of the random-weights network when no model is given")
    p.add_argument("--decoder-padding", default="reflect", choices=("reflect", "zeros"),
                   help="decoder padding of the random-weights network (model.depth."
                        "decoder_padding)")
    p.add_argument("--decoder-activation", default="elu", choices=("elu", "relu"),
                   help="decoder activation of the random-weights network (model.depth."
                        "decoder_activation)")
    p.add_argument("--backends", default=None,
                   help="comma list of torch, onnxruntime, openvino, tensorrt (default: all; "
                        "unavailable ones are reported as skipped; --quick: torch,onnxruntime)")
    p.add_argument("--precisions", default=None,
                   help="comma list of CPU precisions to measure where a backend has them: "
                        "fp32, bf16 (openvino on a bf16 CPU), int8 (onnxruntime and openvino "
                        "on the Q/DQ graph) (default fp32,bf16,int8; --quick: fp32)")
    p.add_argument("--size", action="append", metavar="HxW",
                   help="network input size (repeatable); default 192x640 (--quick: 64x192)")
    p.add_argument("--threads", type=int, nargs="+", default=None,
                   help="CPU thread counts for torch/onnxruntime (default 1 2 4; --quick: 1)")
    p.add_argument("--iters", type=int, default=None,
                   help="timed iterations per configuration (default 100; --quick: 5)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed iterations first (default 10; --quick: 1)")
    p.add_argument("--image-size", default=None, metavar="HxW",
                   help="camera frame size for the end-to-end predict() timing (default "
                        "480x640; --quick: 128x384)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"),
                   help="TensorRT precision (int8 needs --calib-dir)")
    p.add_argument("--calib-dir", help="calibration images for the int8 graphs (default: "
                                       "synthetic night frames of training seeds)")
    p.add_argument("--calib-bag", help="calibration frames from a recording instead")
    p.add_argument("--calib-topic", help="image topic of --calib-bag (default: its only one)")
    p.add_argument("--calib-frames", type=int, default=32,
                   help="calibration frames (rendered, or sampled from the folder/bag)")
    p.add_argument("--accuracy-sequences", type=int, default=None,
                   help="synthetic night test drives for the AbsRel pass (default 12; 0 = no "
                        "accuracy pass; --quick: 0)")
    p.add_argument("--accuracy-frames", type=int, default=4,
                   help="frames per test drive in the AbsRel pass")
    p.add_argument("--device", default="cpu", choices=("cpu", "auto"),
                   help="device for torch/onnxruntime (TensorRT always uses the GPU)")
    p.add_argument("--rss-frames", type=int, default=50,
                   help="frames each runtime-only process runs before its RSS is read")
    p.add_argument("--no-rss", action="store_true", help="skip the runtime-only processes")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 64x192, 1 thread, 5 iterations, torch+onnxruntime")
    p.add_argument("--out", help="report base path: writes OUT.md and OUT.json")


# --------------------------------------------------------------------------- measurement

def latency_stats(times_ms: Sequence[float]) -> Dict[str, float]:
    """p50/p90/p99/mean/min (ms) and fps (1000 / mean) of a list of latencies in ms."""
    t = np.asarray(times_ms, dtype=np.float64)
    if t.size == 0:
        raise ValueError("no timings")
    mean = float(t.mean())
    return {"p50_ms": float(np.percentile(t, 50)), "p90_ms": float(np.percentile(t, 90)),
            "p99_ms": float(np.percentile(t, 99)), "mean_ms": mean, "min_ms": float(t.min()),
            "fps": 1000.0 / mean if mean > 0 else float("inf"), "n": int(t.size)}


def time_call(fn: Callable[[], Any], iters: int, warmup: int) -> Dict[str, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return latency_stats(times)


def time_interleaved(fns: Sequence[Callable[[], Any]], iters: int, warmup: int,
                     block: int = BLOCK, cpu_times: Optional[List[List[float]]] = None
                     ) -> List[List[float]]:
    """Latencies (ms) of several callables measured side by side: rounds of ``block`` timed
    calls each, the order reversed every round, one untimed call before each block.

    Why (ours): on a shared machine the load changes over seconds; timing one backend after
    the other lets a burst of other work land on only one of them. Alternating short blocks
    spreads it over all. The untimed call lets the previous runtime's worker threads stop
    spinning and re-warms this one's caches, so neither pays for the other's tail.

    ``cpu_times``: a list of empty lists, one per callable, filled with the calling thread's
    CPU time per call (ms). With one compute thread (torch and onnxruntime both run in the
    caller then) that is the work done, which other processes on the machine barely change.
    """
    if cpu_times is not None:
        cpu_times[:] = [[] for _ in fns]
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: List[List[float]] = [[] for _ in fns]
    order = list(range(len(fns)))
    rnd = 0
    while any(len(t) < iters for t in times):
        for k in (order if rnd % 2 == 0 else order[::-1]):
            n = min(block, iters - len(times[k]))
            if n <= 0:
                continue
            fns[k]()
            for _ in range(n):
                c0 = time.thread_time_ns()
                t0 = time.perf_counter_ns()
                fns[k]()
                times[k].append((time.perf_counter_ns() - t0) / 1e6)
                if cpu_times is not None:
                    cpu_times[k].append((time.thread_time_ns() - c0) / 1e6)
        rnd += 1
    return times


def _proc_status_mb(key: str) -> Optional[float]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0  # kB → MiB
    except OSError:
        pass
    return None


def rss_mb() -> Dict[str, Optional[float]]:
    """Current and peak resident memory of this process in MiB (Linux /proc; peak falls back to
    getrusage elsewhere)."""
    peak = _proc_status_mb("VmHWM")
    if peak is None:
        try:
            import resource

            ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            peak = ru / (1024.0 * 1024.0) if sys.platform == "darwin" else ru / 1024.0
        except ImportError:  # pragma: no cover - Windows
            peak = None
    return {"rss_mb": _proc_status_mb("VmRSS"), "peak_rss_mb": peak}


_RUNTIME_ONLY_SCRIPT = r"""
import json, sys
import numpy as np
from dasp_core.runtime.factory import create_estimator
from dasp_core.runtime.bench import rss_mb
path, backend, precision = sys.argv[1], sys.argv[2], sys.argv[3]
threads, frames, h, w = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
before = rss_mb()
est = create_estimator(path, backend=backend, device="cpu", threads=threads or None,
                       precision=precision)
img = (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)
for _ in range(frames):
    depth = est.predict(img)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "tensorrt"))
print(json.dumps({"startup": before, **rss_mb(), "heavy_modules": heavy,
                  "torch_loaded": "torch" in sys.modules, "depth_shape": list(depth.shape),
                  "depth_finite": bool(np.isfinite(depth).all()), "backend": est.backend,
                  "precision": getattr(est, "precision", "fp32"),
                  "selection": getattr(est, "selection", "")}))
"""


def runtime_only_process(model: str | os.PathLike, backend: str = "auto",
                         precision: str = "auto", threads: int = 2, frames: int = 20,
                         image_size: Tuple[int, int] = (480, 640), timeout: float = 300.0
                         ) -> Dict[str, Any]:
    """Load ``model`` with ``create_estimator`` in a fresh interpreter, as the node does, run
    ``frames`` frames; return its RSS (MiB), the heavy modules it loaded (torch must not be
    among them), which backend/precision ran (and why, for ``auto``) and a sanity check of
    its output."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-c", _RUNTIME_ONLY_SCRIPT, str(model), backend, precision,
           str(threads), str(frames), str(image_size[0]), str(image_size[1])]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"{backend}-only process failed ({res.returncode}): "
                           f"{res.stderr.strip()[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def ort_only_process(onnx_path: str | os.PathLike, threads: int = 2, frames: int = 20,
                     image_size: Tuple[int, int] = (480, 640), timeout: float = 300.0
                     ) -> Dict[str, Any]:
    """:func:`runtime_only_process` with onnxruntime fp32 (the graph as stored)."""
    return runtime_only_process(onnx_path, "onnxruntime", "auto", threads, frames, image_size,
                                timeout)


# --------------------------------------------------------------------------- machine

def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what platform says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> Optional[str]:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return None
    dist = {"cv2": "opencv-python-headless"}.get(module, module)
    try:
        return version(dist)
    except PackageNotFoundError:
        mod = sys.modules.get(module)
        return getattr(mod, "__version__", None) if mod else None


def machine_info() -> Dict[str, Any]:
    """CPU model, core counts, memory, OS, Python and library versions, GPU (if any)."""
    info: Dict[str, Any] = {"cpu": cpu_model(), "logical_cores": os.cpu_count(),
                            "platform": platform.platform(), "python": platform.python_version(),
                            "dasp": __version__}
    try:
        info["usable_cores"] = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        info["usable_cores"] = os.cpu_count()
    try:
        pages, page = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gb"] = round(pages * page / 1e9, 1)
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        pass
    for mod in ("numpy", "cv2", "onnxruntime", "openvino", "onnx", "torch", "torchvision",
                "tensorrt"):
        info[f"{mod}_version"] = _version(mod)
    info["omp_num_threads"] = os.environ.get("OMP_NUM_THREADS")
    from dasp_core.runtime.factory import _importable

    if _importable("tensorrt"):
        from dasp_core.runtime.cuda import CudaError, CudaRuntime

        try:
            cuda = CudaRuntime.get()
            if cuda.device_count():
                info["gpu"] = cuda.device_name(0)
                info["gpu_compute_capability"] = cuda.compute_capability(0)
                info["cuda_runtime"] = cuda.runtime_version()
        except CudaError as e:
            info["gpu"] = f"none ({e})"
    return info


# --------------------------------------------------------------------------- the run

def _parse_hw(text: str, key: str) -> Tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(key, text, "HEIGHTxWIDTH, e.g. 720x1280") from None
    if h < 1 or w < 1:
        raise ConfigError(key, text, "positive HEIGHTxWIDTH")
    return h, w


def _default_model() -> Optional[Path]:
    try:
        from dasp_core.assets import default_model_path  # provided by the lead

        # the checkpoint, not the ONNX file: the benchmark runs torch beside onnxruntime
        path = Path(default_model_path("checkpoint"))
        return path if path.is_file() else None
    except (ImportError, AttributeError, OSError, DaspError):
        return None


def _random_checkpoint(encoder: str, size: Tuple[int, int], workdir: Path,
                       decoder: Tuple[str, str] = ("reflect", "elu")) -> Path:
    import torch

    from dasp_core.checkpoint import save_checkpoint
    from dasp_core.models.depth_net import DepthNet, DepthNetConfig
    from dasp_core.runtime.base import ModelInfo

    torch.manual_seed(0)
    net = DepthNet(DepthNetConfig(encoder=encoder, decoder_padding=decoder[0],
                                  decoder_activation=decoder[1])).eval()
    info = ModelInfo(input_height=size[0], input_width=size[1],
                     name=f"random-{encoder}-{decoder[0]}-{decoder[1]}")
    return save_checkpoint(workdir / f"random_{encoder}.pt", net, info)


def _decoder_of(ckpt: Path) -> str:
    """``padding + activation`` of a checkpoint's decoder, for the report."""
    from dasp_core.checkpoint import read_checkpoint

    cfg = read_checkpoint(ckpt).get("depth_config") or {}
    return (f"{cfg.get('encoder', '?')}, decoder padding {cfg.get('decoder_padding', 'reflect')}"
            f", activation {cfg.get('decoder_activation', 'elu')}")


def _available(name: str) -> Optional[str]:
    """None when the backend can run here, else why not."""
    from dasp_core.runtime.factory import _importable

    if name == "torch":
        return None if _importable("torch") else "torch not installed"
    if name in ("onnxruntime", "openvino"):
        return None if _importable(name) else f"{name} not installed"
    if not _importable("tensorrt"):
        return "tensorrt not installed"
    from dasp_core.runtime.cuda import cuda_device_count

    return None if cuda_device_count() > 0 else "no CUDA device"


def _variants(backends: Sequence[str], precisions: Sequence[str], trt_precision: str
              ) -> List[Tuple[str, str]]:
    """``(backend, precision)`` pairs to measure, torch first (the reference)."""
    out: List[Tuple[str, str]] = []
    for b in backends:
        if b == "tensorrt":
            out.append((b, trt_precision))
            continue
        for p in BACKEND_PRECISIONS[b]:
            if p in precisions:
                out.append((b, p))
    return out


def _calibration(size: Tuple[int, int], calib_dir: Optional[str], calib_bag: Optional[str],
                 calib_topic: Optional[str], frames: int, note: List[str]) -> np.ndarray:
    """Preprocessed calibration frames ``float32 [N, 3, h, w]`` for the int8 graphs."""
    from dasp_core.export import onnx as eo

    if calib_bag:
        note.append(f"int8 calibration: {frames} frames of {calib_bag}")
        return eo.load_calibration_bag(calib_bag, size, frames, calib_topic)
    if calib_dir:
        note.append(f"int8 calibration: up to {frames} images of {calib_dir}")
        return eo.load_calibration_images(calib_dir, size, frames)
    from dasp_core.data.synthetic import SequenceRenderer, SyntheticConfig
    from dasp_core.runtime.preprocess import preprocess

    per = 4
    seeds = range(CALIB_SEED, CALIB_SEED + max(1, -(-frames // per)))
    cfg = SyntheticConfig()
    batch = []
    for seed in seeds:
        r = SequenceRenderer(seed, "night", per * 3, cfg)
        for i in range(0, per * 3, 3):
            if len(batch) < frames:
                batch.append(preprocess(r.render(i).image, size)[0])
    note.append(f"int8 calibration: {len(batch)} synthetic night frames (training seeds "
                f"{seeds.start}-{seeds.stop - 1}, not the test seeds)")
    return np.stack(batch)


def accuracy_pass(estimators: Sequence[Tuple[str, str, Any]], sequences: int, frames: int
                  ) -> List[Dict[str, Any]]:
    """AbsRel of each ``(backend, precision, estimator)`` on the same synthetic night test
    frames, and each one's depth against the first fp32 estimator's (median relative
    difference): the accuracy cost of a precision, measured."""
    from dasp_core.eval.evaluate import build_preset, evaluate

    ds = build_preset("synthetic-night-test", frames_per_sequence=frames, n_sequences=sequences)
    clips = [ds[i] for i in range(len(ds))]  # render once, score every variant on the same
    images = [c.frames[c.target_index] for c in clips]
    # the reference for "how far from fp32": onnxruntime fp32 (what ran before), else any fp32
    ref_est = next((e for b, p, e in estimators if (b, p) == ("onnxruntime", "fp32")),
                   next((e for _, p, e in estimators if p == "fp32"), None))
    ref_depths = [ref_est.predict(im) for im in images] if ref_est is not None else None
    rows = []
    for b, p, est in estimators:
        res = evaluate(est, clips, "synthetic", progress=False, label=f"{b} {p}")
        row = {"backend": b, "precision": p, "n_images": res.n_images,
               "absrel_median_scaled": res.scores["median"].metrics["abs_rel"]}
        if "metric" in res.scores:
            row["absrel_metric"] = res.scores["metric"].metrics["abs_rel"]
        if ref_depths is not None:
            diffs = [np.abs(est.predict(im) - d) / d for im, d in zip(images, ref_depths)]
            all_d = np.concatenate([x.ravel() for x in diffs])
            row["depth_vs_fp32_median"] = float(np.median(all_d))
            row["depth_vs_fp32_p99"] = float(np.percentile(all_d, 99))
        rows.append(row)
    ref = {r["backend"]: r for r in rows if r["precision"] == "fp32"}
    base = ref.get("onnxruntime") or next(iter(ref.values()), None)
    for r in rows:
        if base is not None:
            for key in ("absrel_median_scaled", "absrel_metric"):
                if key in r and key in base and base[key]:
                    r[key + "_vs_fp32"] = r[key] / base[key] - 1.0
    return rows


def run_benchmark(model: Optional[str], backends: Sequence[str], sizes: Sequence[Tuple[int, int]],
                  threads: Sequence[int], iters: int, warmup: int,
                  image_size: Tuple[int, int], precision: str = "fp32", device: str = "cpu",
                  calib_dir: Optional[str] = None, encoder: str = "resnet18",
                  decoder: Tuple[str, str] = ("reflect", "elu"), rss: bool = True, rss_frames: int = 50,
                  command: Optional[str] = None, precisions: Sequence[str] = ("fp32",),
                  calib_bag: Optional[str] = None, calib_topic: Optional[str] = None,
                  calib_frames: int = 32, accuracy_sequences: int = 0,
                  accuracy_frames: int = 4) -> Dict[str, Any]:
    """Measure every configuration; returns the report dict (see :func:`render_markdown`)."""
    from tqdm import tqdm

    command = command or shlex.join([Path(sys.argv[0]).name] + sys.argv[1:])
    report: Dict[str, Any] = {"command": command,
                              "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                              "machine": machine_info(), "settings": {
                                  "iters": iters, "warmup": warmup, "image_size": list(image_size),
                                  "precision": precision, "precisions": list(precisions),
                                  "device": device},
                              "rows": [], "skipped": [], "notes": []}
    frame = (np.random.default_rng(0).random(image_size + (3,)) * 255).astype(np.uint8)
    with tempfile.TemporaryDirectory(prefix="dasp_bench_") as tmp:
        work = Path(tmp)
        ckpt: Optional[Path] = None
        onnx_fixed: Optional[Path] = None
        if model == "random":
            ckpt = _random_checkpoint(encoder, sizes[0], work, decoder)
            report["notes"].append(f"random-weights {encoder} (latency is weight-independent)")
        elif model and model.endswith(".onnx"):
            onnx_fixed = Path(model)
        elif model:
            ckpt = Path(model)
        else:
            ckpt = _default_model()
            if ckpt is None:
                ckpt = _random_checkpoint(encoder, sizes[0], work, decoder)
                report["notes"].append(f"no model given and no shipped model: random-weights "
                                       f"{encoder} (latency is weight-independent)")
        report["model"] = str(model or ckpt)
        if ckpt is not None:
            report["architecture"] = _decoder_of(ckpt)
        if onnx_fixed is not None:
            from dasp_core.runtime.onnx_backend import read_onnx_model_info

            info = read_onnx_model_info(onnx_fixed)
            sizes = [(info.input_height, info.input_width)]
            report["notes"].append("ONNX model: its fixed input size only; no torch row")

        onnx_files: Dict[Tuple[int, int], Path] = {}

        def onnx_for(size: Tuple[int, int]) -> Path:
            if onnx_fixed is not None:
                return onnx_fixed
            if size not in onnx_files:
                from dasp_core.checkpoint import load_depth_model
                from dasp_core.export.onnx import export_depth_net

                net, info, _ = load_depth_model(ckpt, "cpu")
                onnx_files[size] = export_depth_net(net, info, work / f"bench_{size[0]}x{size[1]}"
                                                    ".onnx", size)
            return onnx_files[size]

        int8_files: Dict[Tuple[int, int], Path] = {}

        def int8_for(size: Tuple[int, int]) -> Path:
            """The Q/DQ int8 graph beside the fp32 file (where both int8 backends find it)."""
            if size not in int8_files:
                from dasp_core.export.onnx import precision_variant
                from dasp_core.runtime.openvino_backend import int8_sibling

                src = onnx_for(size)
                dst = int8_sibling(src)
                if not dst.is_file():
                    if onnx_fixed is not None:  # never write next to the user's file
                        local = work / src.name
                        local.write_bytes(src.read_bytes())
                        src, dst = local, int8_sibling(local)
                    calib = _calibration(size, calib_dir, calib_bag, calib_topic, calib_frames,
                                         report["notes"])
                    precision_variant(src, "int8", dst, calibration=calib)
                int8_files[size] = dst
            return int8_files[size]

        configs: List[Tuple[str, str, Tuple[int, int], Optional[int]]] = []
        for b, prec in _variants(backends, precisions, precision):
            why = _available(b)
            if b == "torch" and ckpt is None:
                why = "needs a .pt checkpoint"
            if b == "openvino" and prec == "bf16" and why is None:
                from dasp_core.runtime.openvino_backend import native_bf16

                why = None if native_bf16() else "bf16: this CPU has no native bf16"
            if why:
                report["skipped"].append({"backend": b, "precision": prec, "reason": why})
                continue
            for size in sizes:
                for t in ([None] if b == "tensorrt" else threads):
                    configs.append((b, prec, size, t))

        # variants that share a (size, threads) setting are measured side by side
        groups: Dict[Tuple[Tuple[int, int], Optional[int]], List[Tuple[str, str]]] = {}
        for b, prec, size, t in configs:
            groups.setdefault((size, t), []).append((b, prec))
        report["load_before"] = _loadavg()
        report["idle_before"] = cpu_idle_fraction()
        for (size, t), names in tqdm(list(groups.items()), desc="bench", unit="config"):
            ests = []
            for b, prec in names:
                try:
                    ests.append((b, _make(b, prec, ckpt, onnx_for, int8_for, size, t, device,
                                          calib_dir)))
                except Exception as e:
                    log.warning("%s %s %dx%d threads=%s: cannot start: %s", b, prec, *size, t, e)
                    report["skipped"].append({"backend": b, "precision": prec,
                                              "size": list(size), "threads": t,
                                              "reason": f"{type(e).__name__}: {e}"})
            if not ests:
                continue
            measured = _measure([e for _, e in ests], frame, size, iters, warmup, t)
            for (b, est), m in zip(ests, measured):
                row = {"backend": b, "size": list(size), "threads": t, **m}
                report["rows"].append(row)
                log.info("%s %s %dx%d threads=%s: net p50 %.2f ms, e2e p50 %.2f ms", b,
                         row["precision"], *size, t, row["net"]["p50_ms"], row["e2e"]["p50_ms"])
                if hasattr(est, "close"):
                    est.close()
        report["load_after"] = _loadavg()
        report["idle_after"] = cpu_idle_fraction()
        report["settings"]["interleaved_block"] = BLOCK
        _ratios(report["rows"])
        size = GOAL_SIZE if GOAL_SIZE in sizes else sizes[0]
        t_goal = GOAL_THREADS if GOAL_THREADS in threads else threads[0]
        if accuracy_sequences > 0:
            ests = []
            for b, prec, s_, t in configs:
                if s_ == size and t in (t_goal, None):
                    try:
                        ests.append((b, prec, _make(b, prec, ckpt, onnx_for, int8_for, size, t,
                                                    device, calib_dir)))
                    except Exception as e:  # already reported as skipped above
                        log.warning("accuracy: %s %s cannot start: %s", b, prec, e)
            log.info("accuracy pass: %d variants on %d synthetic night test drives x %d frames",
                     len(ests), accuracy_sequences, accuracy_frames)
            report["accuracy"] = {"data": f"synthetic-night-test, first {accuracy_sequences} "
                                          f"drives x {accuracy_frames} frames",
                                  "size": list(size), "rows": accuracy_pass(
                                      ests, accuracy_sequences, accuracy_frames)}
        if rss:
            procs = []
            for b, prec in [("auto", "auto")] + sorted({(b, p) for b, p, _, _ in configs
                                                        if b in ("onnxruntime", "openvino")}):
                if b != "auto" and prec == "int8":
                    int8_for(size)
                try:
                    r = runtime_only_process(onnx_for(size), b, prec, t_goal, rss_frames,
                                             image_size)
                    procs.append({"variant": f"{b} {prec}", "size": list(size),
                                  "threads": t_goal, "frames": rss_frames, **r})
                except Exception as e:
                    report["skipped"].append({"backend": f"{b} {prec} process",
                                              "reason": str(e)[-500:]})
            report["runtime_processes"] = procs
            report["ort_only_process"] = next((p for p in procs
                                               if p["variant"] == "onnxruntime fp32"), None)
            report["default_config"] = next((p for p in procs if p["variant"] == "auto auto"),
                                            None)
    report["goals"] = _goals(report)
    return report


def cpu_idle_fraction(seconds: float = 1.0) -> Optional[float]:
    """Share of all CPUs' time that was idle over the next ``seconds`` (Linux /proc/stat);
    None elsewhere. Taken before the timed loops: how much other work the machine had."""
    def snap() -> Tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + (v[4] if len(v) > 4 else 0), sum(v)

    try:
        i0, t0 = snap()
        time.sleep(seconds)
        i1, t1 = snap()
    except (OSError, ValueError, IndexError):
        return None
    return round((i1 - i0) / (t1 - t0), 3) if t1 > t0 else None


def _loadavg() -> Optional[List[float]]:
    """1/5/15-minute load averages (how busy the machine was), None where unavailable."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):  # pragma: no cover - Windows
        return None


def _measure(ests: Sequence[Any], frame: np.ndarray, size: Tuple[int, int], iters: int,
             warmup: int, threads: Optional[int] = None) -> List[Dict[str, Any]]:
    """Network-only and end-to-end timings of estimators run side by side
    (:func:`time_interleaved`). Every backend gets the same preprocessed input (network) or
    the same camera frame (end to end), so preprocessing is timed alike for all or not at all.
    With ``threads == 1`` the network's CPU time is reported too (``net_cpu``).
    """
    from dasp_core.runtime.preprocess import preprocess

    x = preprocess(frame, size)
    cpu: List[List[float]] = []
    net = time_interleaved([lambda e=e: e.infer_disparity(x) for e in ests], iters, warmup,
                           cpu_times=cpu)
    e2e = time_interleaved([lambda e=e: e.predict(frame) for e in ests], max(1, iters // 2),
                           max(1, warmup // 2))
    rows = []
    for e, n, t, c in zip(ests, net, e2e, cpu):
        row = {"precision": getattr(e, "precision", "fp32"),
               "where": str(getattr(e, "runs_on", e.backend)),
               "net": latency_stats(n), "e2e": latency_stats(t)}
        if threads == 1 and str(row["where"]).lower().startswith("cpu"):
            row["net_cpu"] = latency_stats(c)
        rows.append(row)
    return rows


def _make(b: str, precision: str, ckpt: Optional[Path],
          onnx_for: Callable[[Tuple[int, int]], Path],
          int8_for: Callable[[Tuple[int, int]], Path], size: Tuple[int, int],
          threads: Optional[int], device: str, calib_dir: Optional[str]) -> Any:
    if b == "torch":
        from dasp_core.runtime.torch_backend import TorchEstimator

        torch_precision = "fp16" if precision == "fp16" and device != "cpu" else "fp32"
        return TorchEstimator(ckpt, device, torch_precision, threads, size)
    if b == "onnxruntime":
        from dasp_core.runtime.onnx_backend import OnnxEstimator

        path = int8_for(size) if precision == "int8" else onnx_for(size)
        return OnnxEstimator(path, device, threads, size)
    if b == "openvino":
        from dasp_core.runtime.openvino_backend import OpenVinoEstimator

        path = int8_for(size) if precision == "int8" else onnx_for(size)
        return OpenVinoEstimator(path, "cpu", threads, precision, size)
    from dasp_core.runtime.tensorrt_backend import TensorRTEstimator

    return TensorRTEstimator(onnx_for(size), 0, precision, size, calib_dir=calib_dir)


def _ratios(rows: List[Dict[str, Any]]) -> None:
    """Each non-torch row's p50 (and p99) over eager torch's at the same size and threads:
    ``vs_torch`` / ``vs_torch_p99`` (network), ``e2e_vs_torch`` (predict), ``vs_torch_cpu``
    (one thread's CPU time)."""
    ref = {(tuple(r["size"]), r["threads"]): r for r in rows if r["backend"] == "torch"}
    for r in rows:
        t = ref.get((tuple(r["size"]), r["threads"]))
        if r["backend"] == "torch" or t is None or not t["net"]["p50_ms"]:
            continue
        r["vs_torch"] = r["net"]["p50_ms"] / t["net"]["p50_ms"]
        if t["net"]["p99_ms"]:
            r["vs_torch_p99"] = r["net"]["p99_ms"] / t["net"]["p99_ms"]
        if t["e2e"]["p50_ms"]:
            r["e2e_vs_torch"] = r["e2e"]["p50_ms"] / t["e2e"]["p50_ms"]
        if "net_cpu" in t and "net_cpu" in r and t["net_cpu"]["p50_ms"]:
            r["vs_torch_cpu"] = r["net_cpu"]["p50_ms"] / t["net_cpu"]["p50_ms"]


def _goal_row(report: Dict[str, Any], backend: str, precision: str) -> Optional[Dict[str, Any]]:
    return next((r for r in report["rows"] if r["backend"] == backend
                 and r.get("precision", "fp32") == precision and tuple(r["size"]) == GOAL_SIZE
                 and r["threads"] == GOAL_THREADS and "vs_torch" in r), None)


def _goals(report: Dict[str, Any]) -> List[Dict[str, Any]]:
    goals = []
    idle = report.get("idle_before")
    busy = idle is not None and idle < QUIET_IDLE
    busy_note = ({"why_not": f"busy machine: {idle:.0%} of the CPUs idle before the run "
                             f"(< {QUIET_IDLE:.0%})"} if busy else {})
    row = _goal_row(report, "onnxruntime", "fp32")
    goals.append({"goal": f"onnxruntime ≤ {GOAL_ORT_RATIO}× eager torch latency at "
                          f"{GOAL_SIZE[0]}x{GOAL_SIZE[1]}, {GOAL_THREADS} threads",
                  "measured": None if row is None else round(row["vs_torch"], 3),
                  "met": None if row is None or busy else row["vs_torch"] <= GOAL_ORT_RATIO,
                  **(busy_note if row is not None else {})})
    default = report.get("default_config")
    row = _goal_row(report, default["backend"], default["precision"]) if default else None
    if row is not None and "e2e_vs_torch" in row:
        ratio = row["e2e_vs_torch"]
        goals.append({"goal": f"default configuration ({default['backend']} "
                              f"{default['precision']}) predict() ≤ {GOAL_DEFAULT_RATIO}× eager "
                              f"torch at {GOAL_SIZE[0]}x{GOAL_SIZE[1]}, {GOAL_THREADS} threads",
                      "measured": round(ratio, 3),
                      "met": None if busy else ratio <= GOAL_DEFAULT_RATIO, **busy_note})
    acc = (report.get("accuracy") or {}).get("rows", [])
    for r in acc:
        if r["precision"] != "fp32" and "absrel_median_scaled_vs_fp32" in r:
            d = r["absrel_median_scaled_vs_fp32"]
            goals.append({"goal": f"{r['backend']} {r['precision']} AbsRel within "
                                  f"{GOAL_ABSREL_REL:.0%} (relative) of fp32, synthetic night",
                          "measured": f"{d:+.2%}", "met": abs(d) <= GOAL_ABSREL_REL})
    proc = default or report.get("ort_only_process")
    peak = proc.get("peak_rss_mb") if proc else None
    goals.append({"goal": f"{'default configuration' if default else 'onnxruntime-only'} "
                          f"process ≤ {GOAL_RSS_MB:.0f} MB RSS (peak), no torch",
                  "measured": None if peak is None else round(peak, 1),
                  "met": None if peak is None else (peak <= GOAL_RSS_MB
                                                    and not proc.get("torch_loaded"))})
    return goals


def render_markdown(report: Dict[str, Any]) -> str:
    m = report["machine"]
    lines = ["# dasp inference benchmark", "",
             f"- command: `{report['command']}`", f"- date: {report['date']}",
             f"- model: `{report.get('model')}`"
             + (f" ({report['architecture']})" if report.get("architecture") else ""),
             f"- machine: {m.get('cpu')}, {m.get('usable_cores')} usable / "
             f"{m.get('logical_cores')} logical cores, {m.get('memory_gb')} GB, {m.get('platform')}",
             f"- GPU: {m.get('gpu', 'none')}",
             "- versions: " + ", ".join(f"{k[:-8]} {v}" for k, v in m.items()
                                        if k.endswith("_version") and v),
             f"- settings: {report['settings']}",
             f"- load average (1/5/15 min) before: {report.get('load_before')}, after: "
             f"{report.get('load_after')}; idle CPU share before: {report.get('idle_before')}, "
             f"after: {report.get('idle_after')} ({m.get('usable_cores')} cores; backends of "
             f"one size and thread count are timed interleaved, {BLOCK} calls at a time)", ""]
    for note in report.get("notes", []):
        lines.append(f"- note: {note}")
    lines += ["", "| backend | input | threads | precision | runs on | net p50 ms | net p99 ms |"
                  " net fps | e2e p50 ms | e2e p99 ms | e2e fps | net vs torch | e2e vs torch |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        n, e = r["net"], r["e2e"]
        ratio = f"{r['vs_torch']:.2f}×" if "vs_torch" in r else "—"
        if "vs_torch_p99" in r:
            ratio += f" (p99 {r['vs_torch_p99']:.2f}×)"
        e2e = f"{r['e2e_vs_torch']:.2f}×" if "e2e_vs_torch" in r else "—"
        lines.append(f"| {r['backend']} | {r['size'][0]}x{r['size'][1]} | {r['threads'] or '—'} | "
                     f"{r['precision']} | {r['where']} | {n['p50_ms']:.2f} | {n['p99_ms']:.2f} | "
                     f"{n['fps']:.1f} | {e['p50_ms']:.2f} | {e['p99_ms']:.2f} | {e['fps']:.1f} | "
                     f"{ratio} | {e2e} |")
    cpu_rows = [r for r in report["rows"] if "net_cpu" in r]
    if cpu_rows:
        lines += ["", "Network CPU time, one thread (the work done; barely changed by other "
                      "processes on the machine, unlike wall time):", "",
                  "| backend | precision | input | cpu p50 ms | cpu p99 ms | vs torch |",
                  "|---|---|---|---|---|---|"]
        for r in cpu_rows:
            c = r["net_cpu"]
            ratio = f"{r['vs_torch_cpu']:.2f}×" if "vs_torch_cpu" in r else "—"
            lines.append(f"| {r['backend']} | {r['precision']} | {r['size'][0]}x{r['size'][1]} | "
                         f"{c['p50_ms']:.2f} | "
                         f"{c['p99_ms']:.2f} | {ratio} |")
    acc = report.get("accuracy")
    if acc:
        lines += ["", f"Accuracy on {acc['data']} at {acc['size'][0]}x{acc['size'][1]} "
                      "(AbsRel: per-image median scaling, the protocol's primary; metric: no "
                      "scaling; Δ relative to onnxruntime fp32; depth vs fp32: |d - d_fp32| / "
                      "d_fp32 over all pixels):", "",
                  "| backend | precision | images | AbsRel | Δ vs fp32 | AbsRel metric | "
                  "Δ metric | depth vs fp32 median | p99 |", "|---|---|---|---|---|---|---|---|---|"]
        for r in acc["rows"]:
            def pc(key: str) -> str:
                return f"{r[key]:+.2%}" if key in r else "—"
            lines.append(f"| {r['backend']} | {r['precision']} | {r['n_images']} | "
                         f"{r['absrel_median_scaled']:.4f} | {pc('absrel_median_scaled_vs_fp32')}"
                         f" | {r.get('absrel_metric', float('nan')):.4f} | "
                         f"{pc('absrel_metric_vs_fp32')} | "
                         f"{r.get('depth_vs_fp32_median', float('nan')):.2e} | "
                         f"{r.get('depth_vs_fp32_p99', float('nan')):.2e} |")
    procs = report.get("runtime_processes") or ([report["ort_only_process"]]
                                                if report.get("ort_only_process") else [])
    if procs:
        p0 = procs[0]
        lines += ["", f"Memory of a process that loads one runtime as the node does "
                      f"(`create_estimator`, {p0['size'][0]}x{p0['size'][1]}, {p0['threads']} "
                      f"threads, {p0['frames']} frames of {report['settings']['image_size'][0]}x"
                      f"{report['settings']['image_size'][1]}):", "",
                  "| asked | runs | RSS MB | peak MB | startup MB | torch loaded | why |",
                  "|---|---|---|---|---|---|---|"]
        for p in procs:
            lines.append(f"| {p.get('variant', 'onnxruntime fp32')} | {p.get('backend', '')} "
                         f"{p.get('precision', '')} | {p.get('rss_mb') or 0:.0f} | "
                         f"{p.get('peak_rss_mb') or 0:.0f} | "
                         f"{((p.get('startup') or {}).get('rss_mb') or 0):.0f} | "
                         f"{p.get('torch_loaded')} | {p.get('selection') or '—'} |")
    lines += ["", "| goal | measured | met |", "|---|---|---|"]
    for g in report["goals"]:
        met = {True: "yes", False: "**no**", None: "not measured"}[g["met"]]
        if g.get("why_not"):
            met = f"not established ({g['why_not']})"
        lines.append(f"| {g['goal']} | {g['measured'] if g['measured'] is not None else '—'} | "
                     f"{met} |")
    if report.get("skipped"):
        lines += ["", "Skipped:"] + [f"- {s['backend']} {s.get('precision', '')}: {s['reason']}"
                                     for s in report["skipped"]]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (DaspError, ImportError) as e:
        log.error("%s", e)
        return 2


def _command_line(args: argparse.Namespace) -> str:
    """The full, reproducible ``dasp bench`` command (every option, defaults resolved)."""
    parts = ["dasp", "bench"]
    # the random-network options only matter when there is no model to measure
    random_net = args.model == "random" or (args.model is None and _default_model() is None)
    for key, value in vars(args).items():
        if value is None or value is False or key == "command":
            continue
        if not random_net and key in ("encoder", "decoder_padding", "decoder_activation"):
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, list) and key == "size":
            for v in value:
                parts += [flag, str(v)]
        elif isinstance(value, list):
            parts += [flag] + [str(v) for v in value]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


def _run(args: argparse.Namespace) -> int:
    from dasp_core.export.onnx import parse_size

    q = args.quick
    args.backends = args.backends or ("torch,onnxruntime" if q else ",".join(BACKEND_NAMES))
    args.size = args.size or (["64x192"] if q else [f"{GOAL_SIZE[0]}x{GOAL_SIZE[1]}"])
    args.threads = args.threads or ([1] if q else [1, 2, 4])
    args.iters = args.iters if args.iters is not None else (5 if q else 100)
    args.warmup = args.warmup if args.warmup is not None else (1 if q else 10)
    args.image_size = args.image_size or ("128x384" if q else "480x640")
    args.precisions = args.precisions or ("fp32" if q else "fp32,bf16,int8")
    if args.accuracy_sequences is None:
        args.accuracy_sequences = 0 if q else 12
    if q and args.rss_frames == 50:
        args.rss_frames = 5
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in backends:
        if b not in BACKEND_NAMES:
            raise ConfigError("--backends", b, BACKEND_NAMES)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    for p in precisions:
        if p not in ("fp32", "bf16", "int8"):
            raise ConfigError("--precisions", p, ("fp32", "bf16", "int8"))
    if args.accuracy_sequences < 0 or args.accuracy_frames < 1 or args.calib_frames < 1:
        raise ConfigError("--accuracy-sequences/--accuracy-frames/--calib-frames",
                          (args.accuracy_sequences, args.accuracy_frames, args.calib_frames),
                          "sequences >= 0, frames >= 1")
    sizes = [parse_size(s) for s in args.size]
    threads, iters, warmup = list(args.threads), args.iters, args.warmup
    image_size = _parse_hw(args.image_size, "--image-size")
    if any(t < 1 for t in threads):
        raise ConfigError("--threads", threads, "integers >= 1")
    if iters < 1 or warmup < 0:
        raise ConfigError("--iters/--warmup", (iters, warmup), "iters >= 1, warmup >= 0")
    command = _command_line(args)
    report = run_benchmark(args.model, backends, sizes, threads, iters, warmup, image_size,
                           args.precision, args.device, args.calib_dir, args.encoder,
                           decoder=(args.decoder_padding, args.decoder_activation),
                           rss=not args.no_rss, rss_frames=args.rss_frames, command=command,
                           precisions=precisions, calib_bag=args.calib_bag,
                           calib_topic=args.calib_topic, calib_frames=args.calib_frames,
                           accuracy_sequences=args.accuracy_sequences,
                           accuracy_frames=args.accuracy_frames)
    text = render_markdown(report)
    print(text)
    if args.out:
        base = Path(args.out)
        if base.suffix in (".md", ".json"):
            base = base.with_suffix("")
        base.parent.mkdir(parents=True, exist_ok=True)
        base.with_suffix(".md").write_text(text)
        base.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str))
        log.info("wrote %s and %s", base.with_suffix(".md"), base.with_suffix(".json"))
    return 0
