"""``dasp report``: one table and one set of plots from earlier ``dasp eval`` results.

Examples::

    dasp report runs/eval/*/eval.json --out docs/night_models
    dasp report a/eval.json b/eval.json --out runs/cmp --title "Night test, seed 0"

Every file must hold results of one protocol (``dasp eval`` never mixes them either). Writes
``<name>.md`` and the plots (``error_vs_distance.png``, ``comparison.png``, ``spread.png``,
``regions.png`` where there is something to show) into ``--out`` and prints the table. The
results are not copied: the ``eval.json`` files stay the record.
"""

from __future__ import annotations

import argparse
import sys

HELP = "one table and plots from earlier `dasp eval` results (eval.json files)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", nargs="+", metavar="EVAL_JSON",
                   help="eval.json files written by `dasp eval` (same protocol)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--name", default="report", help="file stem of the Markdown (default: report)")
    p.add_argument("--title", default="Depth evaluation", help="heading of the Markdown")


def run(args: argparse.Namespace) -> int:
    from dasp_core.errors import DaspError
    from dasp_core.eval.report import load_result, markdown_report, write_tables_and_plots

    try:
        results = [r for path in args.results for r in load_result(path)]
        files = write_tables_and_plots(results, args.out, args.name, args.title)
    except DaspError as e:
        print(f"dasp report: error: {e}", file=sys.stderr)
        return 2
    print(markdown_report(results, args.title))
    for kind, path in files.items():
        print(f"{kind}: {path}")
    return 0
