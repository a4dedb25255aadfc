"""``dasp report``: one table and one set of plots from earlier ``dasp eval`` results.

Examples::

    dasp report runs/eval/*/eval.json --out docs/night_models
    dasp report a/eval.json b/eval.json --out runs/cmp --title "Night test, seed 0"

Every file must hold results of one protocol (``dasp eval`` never mixes them either). Writes
``<name>.md`` and the plots (``error_vs_distance.png``, ``comparison.png``, ``spread.png``,
``regions.png`` where there is something to show) into ``--out`` and prints the table. The
results are not copied: the ``eval.json`` files stay the record. Results that carry the same
label (the same variant evaluated for several seeds, say) get the first folder name that
tells their paths apart: ``supervised (seed0)``, ``supervised (seed1)``.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

HELP = "one table and plots from earlier `dasp eval` results (eval.json files)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", nargs="+", metavar="EVAL_JSON",
                   help="eval.json files written by `dasp eval` (same protocol)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--name", default="report", help="file stem of the Markdown (default: report)")
    p.add_argument("--title", default="Depth evaluation", help="heading of the Markdown")


def distinct_labels(labelled: Sequence[Tuple[str, str]]) -> List[str]:
    """Row names for ``(label, path)`` pairs: a label that occurs once stays as it is; each
    repeated one gets the first path component in which its paths differ, e.g.
    ``runs/b/seed0/x/eval.json`` and ``runs/b/seed1/x/eval.json`` → ``x (seed0)``,
    ``x (seed1)``. Results from one file keep a shared label (nothing tells them apart)."""
    groups: Dict[str, List[int]] = defaultdict(list)
    for i, (label, _) in enumerate(labelled):
        groups[label].append(i)
    names = [label for label, _ in labelled]
    for label, idx in groups.items():
        parts = [Path(labelled[i][1]).parts for i in idx]
        if len(idx) < 2 or len(set(parts)) < 2:
            continue
        depth = next(d for d in range(max(map(len, parts)))
                     if len({p[d] if d < len(p) else "" for p in parts}) > 1)
        for i, p in zip(idx, parts):
            names[i] = f"{label} ({p[depth] if depth < len(p) else Path(labelled[i][1]).name})"
    return names


def run(args: argparse.Namespace) -> int:
    from dasp_core.errors import DaspError
    from dasp_core.eval.report import load_result, markdown_report, write_tables_and_plots

    try:
        loaded = [(r, path) for path in args.results for r in load_result(path)]
        results = [r for r, _ in loaded]
        for r, name in zip(results, distinct_labels([(r.label, p) for r, p in loaded])):
            r.label = name
        files = write_tables_and_plots(results, args.out, args.name, args.title)
    except DaspError as e:
        print(f"dasp report: error: {e}", file=sys.stderr)
        return 2
    print(markdown_report(results, args.title))
    for kind, path in files.items():
        print(f"{kind}: {path}")
    return 0
