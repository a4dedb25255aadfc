"""``dasp eval``: score a checkpoint / ONNX model / TensorRT engine under a named protocol.

Examples::

    dasp eval runs/night/best.pt --data synthetic-night-test --out runs/eval/night
    dasp eval model.onnx --data configs/robotcar.yaml --protocol rnw_robotcar --backend onnxruntime
    dasp eval model.onnx --data eval_robotcar.yaml --protocol rnw_robotcar \\
        --compare runs/eval/rnw/eval.json          # one table, one protocol

``--data`` is a preset (``synthetic-night-test``, ``synthetic-day-test``: the reserved test
seeds 10 000 … 10 099, never used in training; ``synthetic-night-val`` / ``synthetic-day-val``:
validation seeds 9500 … / 9000 …, to choose a model on without touching the test set) or a YAML file holding one dataset entry of
``dasp_core.data.registry`` (``kind: robotcar`` plus the reader's arguments, beside ``kind`` or
under ``kwargs:``), a list of entries (concatenated), or a whole training config, whose
``data.<split>`` (``--split``, default ``night_val``) is used.

For the ``rnw_*`` and ``md4all_*`` protocols the dataset entry must keep the full-resolution
ground truth (``keep_full_depth: true``) and use the peer's crop; docs/datasets.md gives both
RobotCar entries. Then the printed number is the one the peer's own script prints for the same
predictions; images the peers would turn into NaN are skipped and counted in the table.

Writes ``eval.json``, ``eval.md``, plots and sample strips into ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

HELP = "evaluate a checkpoint/ONNX model: metrics, tables, plots"

log = logging.getLogger(__name__)

# kept in sync with dasp_core.eval.evaluate.PRESETS / metrics.PROTOCOLS (tested); repeated
# here so that `dasp eval --help` imports nothing heavy
_PRESETS = ("synthetic-night-test", "synthetic-day-test", "synthetic-night-val",
            "synthetic-day-val")
_PROTOCOLS = ("rnw_robotcar", "rnw_nuscenes", "md4all_robotcar", "md4all_nuscenes", "synthetic")
_SPLITS = ("night_val", "day_val", "night_train", "day_train")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model file: dasp checkpoint (.pt), ONNX (.onnx) or TensorRT "
                                 "engine (.engine)")
    p.add_argument("--data", required=True,
                   help=f"dataset: a preset ({', '.join(_PRESETS)}) or a YAML file: one data "
                        f"registry entry ('kind' + reader arguments), a list of entries, or a "
                        f"training config (see --split)")
    p.add_argument("--split", default="night_val", choices=_SPLITS,
                   help="which data.<split> of a training-config YAML to evaluate "
                        "(default: night_val)")
    p.add_argument("--protocol", default=None, choices=_PROTOCOLS,
                   help="evaluation protocol (cap, min depth, resize, median rule, GT size; "
                        "see docs/datasets.md); default 'synthetic' for synthetic presets, "
                        "required otherwise")
    p.add_argument("--no-median-scaling", action="store_true",
                   help="score the model's metres as they are (no per-image median scaling)")
    p.add_argument("--max-images", type=int, default=None,
                   help="score at most N images, evenly spread over the dataset")
    p.add_argument("--sequences", type=int, default=None,
                   help="synthetic presets: use the first N of the 100 test sequences")
    p.add_argument("--out", default=None,
                   help="output folder (default: runs/eval/<model>-<protocol>)")
    p.add_argument("--label", default=None, help="row name in the table (default: model file stem)")
    p.add_argument("--compare", nargs="*", default=[], metavar="EVAL_JSON",
                   help="earlier eval.json files to put in the same table/plots (same protocol)")
    p.add_argument("--save-samples", type=int, default=8,
                   help="write N image|prediction|GT|error strips (default 8; 0 = none)")
    p.add_argument("--backend", default="auto",
                   choices=("auto", "torch", "onnxruntime", "openvino", "tensorrt"),
                   help="inference backend (default: from the model file)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | gpu | gpu:N")
    p.add_argument("--threads", type=int, default=None, help="CPU threads of the backend")
    p.add_argument("--precision", default="fp32",
                   choices=("fp32", "fp16", "bf16", "int8", "auto"),
                   help="inference precision, honoured exactly or refused (default fp32: the "
                        "reference; bf16/int8 measure what a reduced precision costs)")
    p.add_argument("--input-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="override the network input size (default: from the model)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def eval_argv(model: str | os.PathLike, data: str, out: str | os.PathLike, *,
              label: str | None = None, sequences: int | None = None, samples: int = 0,
              backend: str = "onnxruntime", threads: int | None = None,
              extra: Sequence[str] = ()) -> List[str]:
    """The arguments after ``dasp eval`` with which scripts score a model in a subprocess.

    Scripts (benchmark, demo-model build) run ``dasp eval`` as a child process so each run's
    memory and threads end with it; building the argument list here keeps their flags the
    ones ``add_arguments`` accepts. No progress bar: the caller logs to a file.

    Args:
        model: checkpoint (.pt), ONNX or TensorRT engine path.
        data: a preset name or a YAML file (see ``--data``).
        out: folder for ``eval.json``, ``eval.md``, plots and sample strips.
        label: row name in the table.
        sequences: score only the first N sequences (drives) of ``data``.
        samples: sample strips to save.
        backend: inference backend; ``onnxruntime`` by default so scores do not depend on
            which accelerated runtime a machine happens to have.
        threads: CPU threads of the backend (None: the backend's default).
        extra: further ``dasp eval`` flags, appended as given.
    """
    argv = ["eval", str(model), "--data", data, "--out", str(out),
            "--save-samples", str(samples), "--no-progress", "--backend", backend]
    if label is not None:
        argv += ["--label", label]
    if sequences is not None:
        argv += ["--sequences", str(sequences)]
    if threads is not None:
        argv += ["--threads", str(threads)]
    return argv + list(extra)


def _read_yaml(path: Path) -> Any:
    import yaml

    from dasp_core.errors import ConfigError

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError("data", str(path), f"a readable YAML data config ({e})") from None


def _flatten(spec: Mapping[str, Any]) -> Dict[str, Any]:
    """``{kind, kwargs: {...}}`` (training-config style) → ``{kind, ...}`` (registry style)."""
    spec = dict(spec)
    if isinstance(spec.get("kwargs"), Mapping) and set(spec) == {"kind", "kwargs"}:
        spec = {"kind": spec["kind"], **spec["kwargs"]}
    return spec


def _is_entry(x: Any) -> bool:
    return (isinstance(x, Mapping) and "kind" in x) or (
        isinstance(x, list) and bool(x) and all(isinstance(e, Mapping) and "kind" in e for e in x))


def data_spec_from_yaml(path: str | os.PathLike, split: str = "night_val") -> Any:
    """The dataset entry of a YAML file, in the form ``dasp_core.data.registry.build_dataset``
    takes (``{kind, **reader arguments}`` or a list of them).

    Accepted layouts: one entry at the top level (``kind: ...`` with the reader's arguments
    beside it or under ``kwargs:``), a top-level list of entries (concatenated), or a training
    config whose ``data.<split>`` holds the entry.

    Raises:
        ConfigError: naming the file and what it must contain.
    """
    from dasp_core.errors import ConfigError

    p = Path(path)
    doc = _read_yaml(p)
    entry = None
    if _is_entry(doc):
        entry = doc
    elif isinstance(doc, Mapping) and isinstance(doc.get("data"), Mapping):
        entry = doc["data"].get(split)
        if not _is_entry(entry):
            raise ConfigError(f"{p}: data.{split}", entry,
                              "a dataset entry with 'kind' (or choose another --split)")
    if entry is None:
        raise ConfigError(f"data ({p})", type(doc).__name__,
                          "a mapping with 'kind' and the reader's arguments, a list of them, "
                          f"or a training config with data.{split}")
    return [_flatten(e) for e in entry] if isinstance(entry, list) else _flatten(entry)


def build_data(data: str, split: str = "night_val", n_sequences: int | None = None) -> Any:
    """``--data`` → dataset: a preset name or a YAML file (see module doc)."""
    from dasp_core.errors import ConfigError
    from dasp_core.eval.evaluate import PRESETS, build_preset

    if data in PRESETS:
        return build_preset(data, n_sequences=n_sequences)
    p = Path(data)
    if p.suffix.lower() not in (".yaml", ".yml") or not p.is_file():
        raise ConfigError("data", data, [*sorted(PRESETS), "an existing .yaml/.yml file"])
    if n_sequences is not None:
        log.warning("--sequences applies to synthetic presets only; ignored for %s", p)
    spec = data_spec_from_yaml(p, split)
    from dasp_core.data.registry import build_dataset

    return build_dataset(spec, key_prefix=f"{p.name}")


def run(args: argparse.Namespace) -> int:
    from dasp_core.errors import ConfigError, DaspError
    from dasp_core.eval.evaluate import PRESETS, evaluate
    from dasp_core.eval.metrics import PROTOCOLS
    from dasp_core.eval.report import (check_same_protocol, load_result, markdown_report,
                                       write_report)

    try:
        protocol = args.protocol
        if protocol is None:
            if args.data in PRESETS:
                protocol = "synthetic"
            else:
                raise ConfigError("--protocol", None, sorted(PROTOCOLS))
        if args.max_images is not None and args.max_images < 1:
            raise ConfigError("--max-images", args.max_images, "a positive number")
        if args.save_samples < 0:
            raise ConfigError("--save-samples", args.save_samples, "0 or more")
        # read earlier runs first: a protocol mismatch should fail before a long evaluation
        previous: List = []
        for path in args.compare:
            previous += load_result(path)
        if previous:
            check_same_protocol(previous)
            if previous[0].protocol.name != protocol:
                raise ConfigError("--compare", previous[0].protocol.name,
                                  f"results of protocol {protocol!r} (never mix protocols)")
        stem = Path(args.model).stem
        out = Path(args.out) if args.out else Path("runs") / "eval" / f"{stem}-{protocol}"
        dataset = build_data(args.data, args.split, args.sequences)

        from dasp_core.runtime.factory import create_estimator

        kwargs: Dict[str, Any] = dict(backend=args.backend, device=args.device,
                                      threads=args.threads, precision=args.precision)
        if args.input_size:
            kwargs["input_size"] = tuple(args.input_size)
        estimator = create_estimator(args.model, **kwargs)
        log.info("model %s: backend %s, input %dx%d, scale_source %s", args.model,
                 estimator.backend, estimator.info.input_height, estimator.info.input_width,
                 estimator.info.scale_source)
        result = evaluate(estimator, dataset, protocol,
                          median_scaling=False if args.no_median_scaling else None,
                          max_images=args.max_images, progress=not args.no_progress,
                          save_samples=args.save_samples, out_dir=out, label=args.label or stem,
                          model_path=str(args.model), dataset_name=args.data)
        results = [result] + previous
        check_same_protocol(results)
        files = write_report(results, out, json_results=[result])
    except DaspError as e:
        print(f"dasp eval: error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"dasp eval: error: {e}", file=sys.stderr)
        return 2
    print(markdown_report(results))
    for kind, path in files.items():
        print(f"{kind}: {path}")
    return 0
