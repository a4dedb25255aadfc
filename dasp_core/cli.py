"""The ``dasp`` command: synth, train, eval, export, bench, demo, ...

Each sub-command lives in its own module exposing ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported lazily, only when their
command runs, so ``dasp --help`` is fast and deployment images without torch still get a working
``dasp export``/``dasp bench`` for the backends they have.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import List, Optional

from dasp_core import __version__

# name -> (module, one-line help). Help is kept here so --help needs no imports.
COMMANDS = {
    "synth": ("dasp_core.data.synthetic.cli", "render synthetic day/night drives (folder, rosbag2)"),
    "train": ("dasp_core.train.cli", "train the day or night stage from a YAML config"),
    "eval": ("dasp_core.eval.cli", "evaluate a checkpoint/ONNX model: metrics, tables, plots"),
    "report": ("dasp_core.eval.report_cli",
               "one table and plots from earlier `dasp eval` results (eval.json files)"),
    "export": ("dasp_core.export.cli", "export a checkpoint to ONNX or a TensorRT engine"),
    "bench": ("dasp_core.runtime.bench", "latency benchmark of the inference backends"),
    "demo": ("dasp_core.demo", "run the shipped model on a synthetic night drive, write pictures"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dasp", description="DASP nighttime monocular depth")
    p.add_argument("--version", action="version", version=f"dasp {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_mod, helptext) in COMMANDS.items():
        sub.add_parser(name, help=helptext, add_help=False)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # parse only the global part; the sub-command parses its own arguments
    idx = next((i for i, a in enumerate(argv) if a in COMMANDS), None)
    if idx is None:
        parser.parse_args(argv)
        parser.print_help()
        return 2
    gargs = parser.parse_args(argv[:idx])
    name = argv[idx]
    logging.basicConfig(level=logging.DEBUG if gargs.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(COMMANDS[name][0])
    sp = argparse.ArgumentParser(prog=f"dasp {name}", description=COMMANDS[name][1])
    module.add_arguments(sp)
    args = sp.parse_args(argv[idx + 1:])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
