"""Is model a better than model b on the same test images? A paired table with intervals.

    python scripts/compare_evals.py runs/bench/seed0/dasp_ref/eval_night/eval.json \
        runs/bench/seed0/no_3d/eval_night/eval.json --metrics abs_rel rmse a1

Per image ``a − b``, averaged over the images; the interval is a bootstrap over drives
(:mod:`dasp_core.eval.paired`). Negative means a has the lower value (better for errors,
worse for the δ accuracies ``a1``-``a3``). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dasp_core.eval.paired import paired_difference  # noqa: E402
from dasp_core.eval.report import load_result  # noqa: E402


def _per_image(path: Path) -> List[Dict[str, Any]]:
    result = load_result(path)[0]   # a file with several models: the first
    if not result.per_image:
        raise SystemExit(f"{path}: no per_image scores (evaluate with `dasp eval`)")
    return result.per_image


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("eval_a", type=Path, help="eval.json of model a")
    p.add_argument("eval_b", type=Path, help="eval.json of model b")
    p.add_argument("--metrics", nargs="+", default=["abs_rel", "rmse", "a1"])
    p.add_argument("--modes", nargs="+", default=["median", "metric"],
                   choices=["median", "metric"])
    p.add_argument("--level", type=float, default=0.95)
    p.add_argument("--n-boot", type=int, default=10000)
    args = p.parse_args(argv)
    a, b = _per_image(args.eval_a), _per_image(args.eval_b)
    print(f"a = `{args.eval_a}`, b = `{args.eval_b}`\n")
    print(f"| metric | scaling | a − b | {args.level:.0%} interval (bootstrap over drives) "
          "| drives where a is lower |")
    print("|---|---|---:|---|---:|")
    for mode in args.modes:
        for metric in args.metrics:
            d = paired_difference(a, b, metric, mode, n_boot=args.n_boot, level=args.level)
            print(f"| {metric} | {mode} | {d.mean:+.4f} | [{d.low:+.4f}, {d.high:+.4f}] "
                  f"| {d.groups_a_lower}/{d.n_groups} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
