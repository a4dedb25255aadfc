"""``dasp synth``: render synthetic day/night drives to image folders or rosbag2 bags.

Examples::

    dasp synth --out data/synth --domain both --sequences 4 --frames 200 --seed 0
    dasp synth --out data/bags --domain night --sequences 2 --frames 300 --format mcap --compressed

Seeds: day drive ``k`` uses seed ``S + k``; night drive ``k`` uses ``S + 1_000_000 + k`` so day
and night data are unpaired (as real recordings are); ``--paired`` gives night the day seeds
(same city and route, for paired diagnostics).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import List

from dasp_core.errors import ConfigError

log = logging.getLogger(__name__)

HELP = "render synthetic day/night drives (folder, rosbag2)"
NIGHT_SEED_OFFSET = 1_000_000
FORMATS = ("folder", "mcap", "sqlite3")


def parse_size(text: str) -> tuple[int, int]:
    """``"HxW"`` → ``(H, W)``."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError("--size", text, "HEIGHTxWIDTH, e.g. 192x640") from None
    return h, w


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--domain", default="both", choices=["day", "night", "both"])
    p.add_argument("--sequences", type=int, default=1, help="drives per domain")
    p.add_argument("--frames", type=int, default=200, help="frames per drive")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--size", default="192x640", help="HEIGHTxWIDTH (default 192x640)")
    p.add_argument("--fps", type=float, default=10.0, help="frame rate (Hz)")
    p.add_argument("--format", default="folder", choices=FORMATS,
                   help="image folders, or one rosbag2 bag per domain (mcap or sqlite3)")
    p.add_argument("--compressed", action="store_true",
                   help="bags: JPEG CompressedImage instead of raw rgb8")
    p.add_argument("--depth-format", default="both", choices=["both", "npy", "png"],
                   help="folders: depth as float .npy (metres), 16-bit PNG (mm) or both")
    p.add_argument("--paired", action="store_true",
                   help="night drives use the day seeds (same city and route)")
    p.add_argument("--workers", type=int, default=1,
                   help="render processes per drive (0 = one per CPU)")
    p.add_argument("--no-noise", action="store_true", help="disable sensor noise")


def run(args: argparse.Namespace) -> int:
    from dasp_core.errors import DaspError

    try:
        return _run(args)
    except DaspError as exc:
        log.error("%s", exc)
        return 2


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from dasp_core.data.synthetic import (SyntheticConfig, render_sequence, write_folder,
                                          write_synthetic_bag)

    h, w = parse_size(args.size)
    if args.sequences < 1:
        raise ConfigError("--sequences", args.sequences, "an integer >= 1")
    if args.frames < 1:
        raise ConfigError("--frames", args.frames, "an integer >= 1")
    cfg = SyntheticConfig(height=h, width=w, fps=args.fps, noise=not args.no_noise)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    domains: List[str] = ["day", "night"] if args.domain == "both" else [args.domain]
    for domain in domains:
        offset = NIGHT_SEED_OFFSET if domain == "night" and not args.paired else 0
        seeds = [args.seed + offset + k for k in range(args.sequences)]
        drives = (render_sequence(seed, domain, args.frames, cfg, progress=True,
                                  workers=args.workers)
                  for seed in tqdm(seeds, desc=f"{domain} drives", unit="drive"))
        if args.format == "folder":
            for seq in drives:
                write_folder(seq, out / seq.name, depth_format=args.depth_format)
        else:
            bag = out / f"synthetic_{domain}"
            # a generator: one drive in memory at a time
            write_synthetic_bag(drives, bag, storage=args.format, compressed=args.compressed)
            log.info("bag %s: %d drives x %d frames", bag, len(seeds), args.frames)
    log.info("done: %s", out)
    return 0
