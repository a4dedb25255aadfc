"""``dasp export``: checkpoint → ONNX (one file per input size) and/or TensorRT engine.

Examples::

    dasp export night.pt --onnx                         # night.onnx at the checkpoint's size
    dasp export night.pt --onnx --size 192x640 --size 320x1024   # night_192x640.onnx, ...
    dasp export night.pt --onnx --precision fp16        # + night_fp16.onnx (TensorRT 11 input)
    dasp export night.pt --onnx --precision int8 --calib-dir frames/   # + night_int8_qdq.onnx
    dasp export night.onnx --onnx --precision int8 --calib-bag drive/  # calibrated on a bag
    dasp export night.onnx --tensorrt --precision fp16  # night_fp16.engine (+ .json sidecar)

Engines are also kept in the engine cache (``~/.cache/dasp/engines``), so the node finds them.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import List, Optional, Tuple

from dasp_core.errors import ConfigError, DaspError

HELP = "export a checkpoint to ONNX or a TensorRT engine"
log = logging.getLogger("dasp.export")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="dasp checkpoint (.pt), or an fp32 .onnx for --tensorrt / "
                                 "--precision conversions")
    p.add_argument("--onnx", action="store_true", help="write ONNX (opset >= 17)")
    p.add_argument("--tensorrt", action="store_true", help="build a TensorRT engine")
    p.add_argument("--out", help="output file (one size) or base name; default next to MODEL")
    p.add_argument("--size", action="append", metavar="HxW",
                   help="network input size, multiples of 32 (repeatable); default: the "
                        "checkpoint's")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17, default 17)")
    p.add_argument("--exporter", default="auto", choices=("auto", "torchscript", "dynamo"),
                   help="torch ONNX exporter (auto: TorchScript, then dynamo)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"),
                   help="engine precision; with --onnx also writes the fp16 / Q/DQ int8 graph")
    p.add_argument("--calib-dir", help="calibration images for int8 (100-500 deployment frames)")
    p.add_argument("--calib-bag", help="calibration frames from a recording (rosbag2 / ROS 1 "
                                       "bag) instead of --calib-dir")
    p.add_argument("--calib-topic", help="image topic of --calib-bag (default: its only one)")
    p.add_argument("--calib-max", type=int, default=256, help="max calibration images")
    p.add_argument("--calib-method", default="minmax", choices=("minmax", "entropy", "percentile"))
    p.add_argument("--workspace-mib", type=int, default=1024, help="TensorRT builder workspace")
    p.add_argument("--cache-dir", help="engine cache (default ~/.cache/dasp/engines)")
    p.add_argument("--device", type=int, default=0, help="CUDA device index")
    p.add_argument("--force", action="store_true", help="rebuild the engine even if cached")


def _sizes(args: argparse.Namespace) -> Optional[List[Tuple[int, int]]]:
    from dasp_core.export.onnx import parse_size

    return [parse_size(s) for s in args.size] if args.size else None


def _engine_path(onnx_path: Path, args: argparse.Namespace, n_files: int, model: Path) -> Path:
    if args.out and not args.onnx and n_files == 1 and args.out.endswith((".engine", ".plan")):
        return Path(args.out)
    if args.out and not args.onnx:
        base = Path(args.out)
        stem = base.name.rsplit(".", 1)[0] if base.suffix else base.name
        tag = onnx_path.stem[len(model.stem):] if onnx_path.stem.startswith(model.stem) else ""
        return base.with_name(f"{stem}{tag}_{args.precision}.engine")
    return onnx_path.with_name(f"{onnx_path.stem}_{args.precision}.engine")


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (DaspError, ImportError) as e:
        log.error("%s", e)
        return 2


def _run(args: argparse.Namespace) -> int:
    from dasp_core.export import onnx as eo

    if not (args.onnx or args.tensorrt):
        raise ConfigError("dasp export", "no target", "--onnx and/or --tensorrt")
    if args.precision == "int8" and not (args.calib_dir or args.calib_bag):
        raise ConfigError("--calib-dir", None, "a folder of calibration images (or --calib-bag "
                                               "BAG) for --precision int8")
    if args.calib_dir and args.calib_bag:
        raise ConfigError("--calib-bag", args.calib_bag, "either --calib-dir or --calib-bag")
    if args.calib_bag and args.tensorrt:
        raise ConfigError("--calib-bag", args.calib_bag, "--calib-dir for a TensorRT int8 "
                                                         "engine (or build it from the Q/DQ "
                                                         "ONNX that --onnx writes)")
    if args.tensorrt:  # fail before minutes of export work, not after
        from dasp_core.export.tensorrt import import_tensorrt

        import_tensorrt()
    model = Path(args.model)
    sizes = _sizes(args)
    written: List[Path] = []
    is_onnx = model.suffix.lower() == ".onnx"
    if is_onnx and sizes:
        raise ConfigError("--size", args.size, "no --size with an .onnx input (its size is fixed)")

    fp32_files: List[Path]
    if is_onnx:
        fp32_files = [model]
    elif args.onnx:
        fp32_files = eo.export_checkpoint(model, args.out, sizes, args.opset, args.exporter)
        written += fp32_files
    else:  # engine straight from a checkpoint: ONNX goes to the cache
        from dasp_core.runtime.factory import onnx_for_checkpoint

        fp32_files = [onnx_for_checkpoint(model, s) for s in (sizes or [None])]

    if args.onnx and args.precision != "fp32":
        for f in fp32_files:
            calib = None
            if args.precision == "int8":
                size = eo.graph_input_size(eo.load_onnx(f))
                calib = (eo.load_calibration_bag(args.calib_bag, size, args.calib_max,
                                                 args.calib_topic) if args.calib_bag else
                         eo.load_calibration_images(args.calib_dir, size, args.calib_max))
            written.append(eo.precision_variant(f, args.precision, calibration=calib,
                                                calib_method=args.calib_method))

    if args.tensorrt:
        from dasp_core.export.tensorrt import build_engine, copy_engine

        for f in fp32_files:
            cached, _ = build_engine(f, args.precision, args.cache_dir, args.device,
                                     args.calib_dir, args.calib_method, args.calib_max,
                                     args.workspace_mib, args.force)
            written.append(copy_engine(cached, _engine_path(f, args, len(fp32_files), model)))

    for path in written:
        if path.suffix == ".onnx":
            d = eo.describe(eo.load_onnx(path))
            print(f"{path}  [{d['precision']}, {d['input_size'][0]}x{d['input_size'][1]}, opset "
                  f"{d['opset']}, {d['nodes']} nodes, {path.stat().st_size / 1e6:.1f} MB]")
        else:
            print(f"{path}  [TensorRT {args.precision}, {path.stat().st_size / 1e6:.1f} MB]")
    return 0
