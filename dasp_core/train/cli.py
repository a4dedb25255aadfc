"""``dasp train CONFIG.yaml [--out DIR] [--resume] [key=value ...]``: run one training stage.

Examples::

    dasp train config/train_synthetic_small.yaml                       # day stage
    dasp train config/train_synthetic_small.yaml train.stage=night \\
        train.day_checkpoint=runs/synth_small_day/final.pt --out runs/synth_small_night
    dasp train config/train_robotcar.yaml --resume                     # continue after a kill
    torchrun --nproc_per_node=4 -m dasp_core.cli train config/train_robotcar.yaml

Overrides (anywhere after CONFIG) use dotted keys (``loss.lambda_3d=0.1``,
``data.offsets=[0,-1,1]``); ``--describe`` lists every key with its default and meaning.
Exit codes: 0 done, 1 training error (e.g. divergence), 2 invalid configuration or data.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

HELP = "train the day or night stage from a YAML config"

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = __doc__.split("\n", 2)[2]  # the examples above
    p.add_argument("config", nargs="?", help="training YAML (see config/train_*.yaml)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides with dotted keys, e.g. loss.lambda_3d=0.1")
    p.add_argument("--out", default=None,
                   help="run folder (default: experiment.out_dir, else runs/<name>_<stage>)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/last.pt (a fresh start when it does not exist)")
    p.add_argument("--describe", action="store_true",
                   help="print every config key with default, origin and meaning, then exit")
    p.add_argument("--check", action="store_true",
                   help="validate the config, build the datasets, print the resolved config "
                        "and exit without training")
    # Overrides may follow options (`CONFIG --out DIR a.b=c`): plain parse_args stops taking
    # positionals after the first option, parse_intermixed_args does not.
    p.parse_args = p.parse_intermixed_args  # type: ignore[method-assign]


def resolve_out_dir(cfg, out: str | None) -> Path:
    """``--out`` > ``experiment.out_dir`` > ``runs/<experiment.name>_<train.stage>``."""
    if out:
        return Path(out)
    if cfg.experiment.out_dir:
        return Path(cfg.experiment.out_dir)
    return Path("runs") / f"{cfg.experiment.name}_{cfg.train.stage}"


def run(args: argparse.Namespace) -> int:
    from dasp_core.errors import ConfigError, DaspError
    from dasp_core.train.config import describe_config, load_config

    if args.describe:
        print(describe_config())
        return 0
    if not args.config:
        print("dasp train: a CONFIG.yaml is required (see config/train_*.yaml)", file=sys.stderr)
        return 2
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"dasp train: invalid configuration: {e}", file=sys.stderr)
        return 2
    out = resolve_out_dir(cfg, args.out)
    if not args.resume and (out / "last.pt").exists() and not args.check:
        print(f"dasp train: {out} already holds a run (last.pt); pass --resume to continue it "
              f"or --out to start a new one", file=sys.stderr)
        return 2

    from dasp_core.train.distributed import cleanup_distributed
    from dasp_core.train.trainer import Trainer, TrainingDivergedError

    try:
        if args.check:
            return _check(cfg, out)
        trainer = Trainer(cfg, out, resume=args.resume)
        summary = trainer.fit()
    except TrainingDivergedError as e:
        print(f"dasp train: {e}", file=sys.stderr)
        return 1
    except ConfigError as e:
        print(f"dasp train: invalid configuration: {e}", file=sys.stderr)
        return 2
    except DaspError as e:
        print(f"dasp train: {e}", file=sys.stderr)
        return 2
    finally:
        cleanup_distributed()
    if summary.final_checkpoint is not None:
        print(f"final model: {summary.final_checkpoint} (scale_source={summary.scale_source})")
        if summary.best_checkpoint is not None:
            print(f"best model:  {summary.best_checkpoint}")
    return 0


def _check(cfg, out: Path) -> int:
    """Build the datasets of the configured stage and report their sizes."""
    from dasp_core.train.loader import build_dataset

    print(cfg.to_yaml())
    keys = ["day_train", "day_val"] if cfg.train.stage == "day" else \
        ["night_train", "night_val"] + (["day_train"] if cfg.loss.adversarial != "none" else [])
    for key in keys:
        spec = getattr(cfg.data, key)
        if spec is None:
            print(f"data.{key}: not set")
            continue
        ds = build_dataset(spec, f"data.{key}", cfg, train=key.endswith("train"))
        kinds = ", ".join(s["kind"] for s in (spec if isinstance(spec, list) else [spec]))
        print(f"data.{key}: {kinds}, {len(ds)} clips")
    print(f"output folder: {out}")
    return 0
