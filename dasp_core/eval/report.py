"""Evaluation reports: JSON (everything), Markdown tables, plots, sample strips.

Every table states its protocol, and a table never mixes protocols: :func:`markdown_report`
refuses results scored under different protocols. Plots use matplotlib's Agg canvas through
``matplotlib.figure.Figure`` (no pyplot global state, no display needed).
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from dasp_core.errors import ConfigError
from dasp_core.eval.metrics import LOWER_IS_BETTER, METRIC_LABELS, METRIC_NAMES
from dasp_core.eval.result import EvalResult

__all__ = [
    "write_json", "load_result", "check_same_protocol", "markdown_report", "write_markdown",
    "plot_error_vs_distance", "plot_region_bars", "plot_comparison", "save_sample_strip",
    "write_report",
]

log = logging.getLogger(__name__)

_MODE_TEXT = {"median": "median-scaled", "metric": "metric (no scaling)"}


# ----------------------------------------------------------------------------- JSON

def write_json(results: EvalResult | Sequence[EvalResult], path: str | os.PathLike) -> Path:
    """Write one result (a JSON object) or several (a JSON list), NaN written as null."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = results.to_dict() if isinstance(results, EvalResult) else [r.to_dict() for r in results]
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_result(path: str | os.PathLike) -> List[EvalResult]:
    """Read results written by :func:`write_json` (always returns a list)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError("compare", str(p), f"a readable dasp eval JSON file ({e})") from None
    items = data if isinstance(data, list) else [data]
    try:
        return [EvalResult.from_dict(_nan_back(d)) for d in items]
    except (KeyError, TypeError) as e:
        raise ConfigError("compare", str(p), f"a JSON file written by `dasp eval` ({e})") from None
    except ConfigError as e:  # a protocol definition this version no longer has
        raise ConfigError("compare", str(p), f"a result of this dasp version's protocols "
                                             f"({e}); evaluate again") from None


def _nan_back(x):
    """JSON null in metric fields → NaN (the inverse of the writer's NaN → null)."""
    if isinstance(x, dict):
        return {k: (float("nan") if v is None and k in METRIC_NAMES else _nan_back(v))
                for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_back(v) for v in x]
    return x


# ----------------------------------------------------------------------------- Markdown

def check_same_protocol(results: Sequence[EvalResult]) -> str:
    """Return the common protocol name; raise :class:`ConfigError` if results mix protocols."""
    if not results:
        raise ValueError("no results to report")
    names = sorted({r.protocol.name for r in results})
    if len(names) > 1:
        raise ConfigError("protocol", names, "one protocol per table (never mix protocols: "
                                             "report each protocol in its own table)")
    first = results[0].protocol.scoring_key()
    for r in results[1:]:
        if r.protocol.scoring_key() != first:
            raise ConfigError("protocol", r.protocol.name,
                              f"the same definition in every result ({r.label} uses a changed "
                              f"{r.protocol.name}: cap/min depth/resize/GT size/median rule/"
                              f"bins differ)")
    return names[0]


def _fmt(v: float, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}"


def _head(name: str) -> str:
    return f"{METRIC_LABELS[name]} {'↓' if LOWER_IS_BETTER[name] else '↑'}"


def _rows(results: Sequence[EvalResult]) -> List[Tuple[str, str, EvalResult]]:
    """(label, mode, result) rows: each result's primary mode first."""
    rows = []
    for r in results:
        for mode in [r.primary] + [m for m in r.scores if m != r.primary]:
            rows.append((r.label, mode, r))
    return rows


def _best(values: List[float], name: str) -> Optional[float]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if len(finite) < 2:
        return None
    return min(finite) if LOWER_IS_BETTER[name] else max(finite)


def markdown_report(results: Sequence[EvalResult], title: str = "Depth evaluation") -> str:
    """Markdown: protocol line, main table (one row per model and scaling mode; best value
    per scaling mode in bold; the images scored and skipped beside the means), per-distance,
    per-region and per-domain tables, skips, timing.

    Raises:
        ConfigError: results scored under different protocols.
    """
    check_same_protocol(results)
    proto = results[0].protocol
    out: List[str] = [f"# {title}", "", f"**Protocol: `{proto.name}`** — {proto.details()}", ""]
    rows = _rows(results)
    # main table: the skipped count sits beside the means because the peers' scripts would
    # have printed NaN (or stopped) where dasp skipped
    out.append("| Model | Scaling | Images | Skipped | "
               + " | ".join(_head(k) for k in METRIC_NAMES) + " |")
    out.append("|---|---|---:|---:|" + "---:|" * len(METRIC_NAMES))
    best: Dict[Tuple[str, str], Optional[float]] = {}
    for mode in {m for _, m, _ in rows}:
        for k in METRIC_NAMES:
            best[(mode, k)] = _best([r.scores[m].metrics[k] for _, m, r in rows if m == mode], k)
    for label, mode, r in rows:
        m = r.scores[mode].metrics
        cells = []
        for k in METRIC_NAMES:
            text = _fmt(m[k])
            b = best[(mode, k)]
            cells.append(f"**{text}**" if b is not None and m[k] == b else text)
        out.append(f"| {label} | {_MODE_TEXT[mode]} | {int(m['n_images'])} | {r.n_skipped} | "
                   + " | ".join(cells) + " |")
    out.append("")
    if any(r.n_skipped for r in results):
        out += ["Means are over the scored images only; skipped images and why are listed "
                "under Runs.", ""]
    # per distance
    bin_labels = _ordered_keys([r.scores[m].per_bin for _, m, r in rows])
    if bin_labels:
        out += ["## Error by ground-truth distance", "",
                "AbsRel ↓ / δ<1.25 ↑ (images with GT in the range) per distance bin; "
                "each image keeps its whole-image scale.", ""]
        out.append("| Model | Scaling | " + " | ".join(bin_labels) + " |")
        out.append("|---|---|" + "---:|" * len(bin_labels))
        for label, mode, r in rows:
            pb = r.scores[mode].per_bin
            out.append(f"| {label} | {_MODE_TEXT[mode]} | "
                       + " | ".join(_pair(pb.get(b)) for b in bin_labels) + " |")
        out.append("")
    regions = _ordered_keys([r.scores[m].per_region for _, m, r in rows])
    if regions:
        out += ["## Error by region", "",
                "AbsRel ↓ / δ<1.25 ↑ on ground-truth pixels inside each mask.", ""]
        out.append("| Model | Scaling | " + " | ".join(regions) + " |")
        out.append("|---|---|" + "---:|" * len(regions))
        for label, mode, r in rows:
            pr = r.scores[mode].per_region
            out.append(f"| {label} | {_MODE_TEXT[mode]} | "
                       + " | ".join(_pair(pr.get(g)) for g in regions) + " |")
        out.append("")
    domains = _ordered_keys([r.scores[m].per_domain for _, m, r in rows])
    if len(domains) > 1:
        out += ["## Error by domain", ""]
        out.append("| Model | Scaling | " + " | ".join(domains) + " |")
        out.append("|---|---|" + "---:|" * len(domains))
        for label, mode, r in rows:
            pd = r.scores[mode].per_domain
            out.append(f"| {label} | {_MODE_TEXT[mode]} | "
                       + " | ".join(_pair(pd.get(d)) for d in domains) + " |")
        out.append("")
    if any(r.scores[m].spread for _, m, r in rows):
        out += ["## Depth spread", "",
                "All scored pixels pooled: percentiles of the depth as scored (scaled in "
                "that mode, clipped to the protocol's range) and of the ground truth, metres; "
                "spread = p98 / p2; relative = predicted spread / GT spread (1 = the scene's "
                "range of distances); log corr = Pearson correlation of log depth with log GT.",
                "",
                "| Model | Scaling | p2 / p50 / p98 (GT) | spread (GT) | relative | log corr |",
                "|---|---|---|---:|---:|---:|"]
        for label, mode, r in rows:
            sp = r.scores[mode].spread
            if not sp:
                out.append(f"| {label} | {_MODE_TEXT[mode]} | – | – | – | – |")
                continue
            out.append(
                f"| {label} | {_MODE_TEXT[mode]} | "
                f"{_fmt(sp['pred_p2'], 2)} / {_fmt(sp['pred_p50'], 2)} / "
                f"{_fmt(sp['pred_p98'], 1)} ({_fmt(sp['gt_p2'], 2)} / {_fmt(sp['gt_p50'], 2)} / "
                f"{_fmt(sp['gt_p98'], 1)}) | {_fmt(sp['pred_ratio'], 1)} "
                f"({_fmt(sp['gt_ratio'], 1)}) | {_fmt(sp['ratio_rel'], 2)} | "
                f"{_fmt(sp['log_corr'])} |")
        out.append("")
    out += ["## Runs", "", "| Model | Backend | Data | GT scored at | Images | Skipped | "
            "Scale (median ratio) mean ± std | Predict ms (median) |",
            "|---|---|---|---|---:|---:|---:|---:|"]
    for r in results:
        s = r.scores[r.primary].scale
        out.append(f"| {r.label} | {r.model.get('backend', '')} | {r.dataset} | "
                   f"{_gt_text(r)} | {r.n_images} | "
                   f"{r.n_skipped} | {_fmt(s.get('mean'))} ± {_fmt(s.get('std'))} | "
                   f"{_fmt(r.timing.get('predict_ms_median'), 1)} |")
    out.append("")
    for r in results:
        if r.skip_reasons:
            out.append(f"- {r.label}: skipped " + ", ".join(f"{v} × {k}"
                                                           for k, v in r.skip_reasons.items()))
        for w in r.warnings:
            out.append(f"- {r.label}: warning: {w}")
    return "\n".join(out).rstrip() + "\n"


def _gt_text(r: EvalResult) -> str:
    """``"640x1152 (meta depth_full)"``: the GT resolutions and where the GT came from."""
    sizes = ", ".join(f"{k}" if len(r.gt_sizes) == 1 else f"{k} ({v})"
                      for k, v in r.gt_sizes.items()) or "?"
    src = {"depth_full": "meta depth_full", "depth": "clip depth"}.get(r.gt_source,
                                                                       r.gt_source)
    return f"{sizes} ({src})" if src else sizes


def _ordered_keys(dicts: Sequence[Dict[str, Dict[str, float]]]) -> List[str]:
    keys: List[str] = []
    for d in dicts:
        for k, v in d.items():
            if k not in keys and v.get("n_images", 0):
                keys.append(k)
    return keys


def _pair(d: Optional[Dict[str, float]]) -> str:
    if not d or not d.get("n_images"):
        return "–"
    return f"{_fmt(d['abs_rel'])} / {_fmt(d['a1'])} ({int(d['n_images'])})"


def write_markdown(results: Sequence[EvalResult], path: str | os.PathLike,
                   title: str = "Depth evaluation") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown_report(results, title), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- plots

def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def _title(results: Sequence[EvalResult], what: str) -> str:
    return f"{what} — protocol {results[0].protocol.name} (cap {results[0].protocol.max_depth:g} m)"


def plot_error_vs_distance(results: Sequence[EvalResult], path: str | os.PathLike,
                           metric: str = "abs_rel") -> Path:
    """Line plot of ``metric`` per GT distance bin, one line per model (primary mode)."""
    check_same_protocol(results)
    _check_metric(metric)
    labels = _ordered_keys([r.per_bin for r in results])
    fig = _figure(7, 4)
    ax = fig.subplots()
    x = np.arange(len(labels))
    for r in results:
        y = [r.per_bin.get(b, {}).get(metric, float("nan")) if r.per_bin.get(b, {}).get(
            "n_images") else float("nan") for b in labels]
        ax.plot(x, y, marker="o", label=f"{r.label} ({_MODE_TEXT[r.primary]})")
    ax.set_xticks(x, labels)
    ax.set_xlabel("ground-truth distance")
    ax.set_ylabel(_head(metric))
    ax.set_title(_title(results, f"{METRIC_LABELS[metric]} by distance"), fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_region_bars(results: Sequence[EvalResult], path: str | os.PathLike,
                     metric: str = "abs_rel") -> Path:
    """Grouped bars of ``metric`` per region mask, one bar per model (primary mode)."""
    check_same_protocol(results)
    _check_metric(metric)
    regions = ["all"] + _ordered_keys([r.per_region for r in results])
    fig = _figure(7, 4)
    ax = fig.subplots()
    width = 0.8 / max(1, len(results))
    x = np.arange(len(regions))
    for i, r in enumerate(results):
        vals = [r.metrics[metric]] + [r.per_region.get(g, {}).get(metric, float("nan"))
                                      for g in regions[1:]]
        ax.bar(x + (i - (len(results) - 1) / 2) * width, vals, width, label=r.label)
    ax.set_xticks(x, regions)
    ax.set_ylabel(_head(metric))
    ax.set_title(_title(results, f"{METRIC_LABELS[metric]} by region"), fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_comparison(results: Sequence[EvalResult], path: str | os.PathLike,
                    metrics: Sequence[str] = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1")
                    ) -> Path:
    """One bar panel per metric, one bar per model and scaling mode."""
    check_same_protocol(results)
    for m in metrics:
        _check_metric(m)
    rows = _rows(results)
    names = [f"{label}\n{_MODE_TEXT[mode]}" for label, mode, _ in rows]
    fig = _figure(max(6.0, 2.6 * len(metrics)), 3.6)
    axes = np.atleast_1d(fig.subplots(1, len(metrics)))
    colors = [f"C{i % 10}" for i in range(len(rows))]
    for ax, m in zip(axes, metrics):
        vals = [r.scores[mode].metrics[m] for _, mode, r in rows]
        ax.bar(np.arange(len(rows)), vals, color=colors)
        ax.set_title(_head(m), fontsize=10)
        ax.set_xticks(np.arange(len(rows)), names, rotation=45, ha="right", fontsize=7)
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(_title(results, "comparison"), fontsize=10)
    return _save(fig, path)


def plot_spread(results: Sequence[EvalResult], path: str | os.PathLike) -> Path:
    """The range of distances each model predicts against the ground truth's: one
    horizontal bar per model and scaling mode from p2 to p98 (log metres, tick at p50), the
    ground truth's bar drawn under each. Results without spread statistics are left out.

    Raises:
        ValueError: no result has spread statistics.
    """
    from matplotlib.ticker import NullFormatter

    check_same_protocol(results)
    rows = [(label, mode, r) for label, mode, r in _rows(results) if r.scores[mode].spread]
    if not rows:
        raise ValueError("no result has depth spread statistics (evaluate again)")
    fig = _figure(7, 0.9 + 0.42 * len(rows))
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1].astype(float)
    for yi, (label, mode, r) in zip(y, rows):
        sp = r.scores[mode].spread
        ax.plot([sp["gt_p2"], sp["gt_p98"]], [yi - 0.16] * 2, color="0.6", lw=5,
                solid_capstyle="butt", label="ground truth" if yi == y[0] else None)
        ax.plot([sp["gt_p50"]], [yi - 0.16], "|", color="0.3", ms=9)
        ax.plot([sp["pred_p2"], sp["pred_p98"]], [yi + 0.16] * 2, color="C0", lw=5,
                solid_capstyle="butt", label="prediction" if yi == y[0] else None)
        ax.plot([sp["pred_p50"]], [yi + 0.16], "|", color="k", ms=9)
        ax.text(sp["pred_p98"], yi + 0.16, f"  {sp['pred_ratio']:.1f} ({sp['ratio_rel']:.2f})",
                va="center", fontsize=7)
    ax.set_xscale("log")
    lo = min(min(r.scores[m].spread["pred_p2"], r.scores[m].spread["gt_p2"]) for _, m, r in rows)
    hi = max(max(r.scores[m].spread["pred_p98"], r.scores[m].spread["gt_p98"])
             for _, m, r in rows)
    ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500)
             if lo / 1.5 <= t <= hi * 1.5]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yticks(y, [f"{label} ({_MODE_TEXT[mode]})" for label, mode, _ in rows], fontsize=7)
    ax.set_xlabel("depth, m (p2 to p98 of all scored pixels; tick: p50; "
                  "label: p98/p2 (relative to GT))", fontsize=8)
    ax.set_title(_title(results, "depth spread"), fontsize=10)
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


def _check_metric(metric: str) -> None:
    if metric not in METRIC_NAMES:
        raise ConfigError("metric", metric, METRIC_NAMES)


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


# ----------------------------------------------------------------------------- samples

def save_sample_strip(image: np.ndarray, pred: np.ndarray, gt: np.ndarray,
                      path: str | os.PathLike, min_depth: float, max_depth: float,
                      scale: float = 1.0, title: str = "", error_vmax: float = 0.5) -> Path:
    """Write ``image | prediction | ground truth | error map`` as a PNG.

    Args:
        image: ``uint8 [H, W, 3]`` RGB.
        pred: ``[h, w]`` predicted depth at GT resolution; multiplied by ``scale`` (the
            per-image median ratio when median scaling) before drawing.
        gt: ``[h, w]`` GT depth metres (0/NaN invalid); sparse (lidar) GT is dilated for
            display only.
        min_depth, max_depth: the protocol's range (colour range and error validity).
        title: drawn on the image tile (e.g. the sample's source).
        error_vmax: relative error drawn brightest.
    """
    import cv2

    from dasp_core.viz import colorize_depth, error_map, make_strip

    pred = np.asarray(pred, np.float32) * float(scale)
    gt = np.asarray(gt, np.float32)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(gt) & (gt > min_depth) & (gt < max_depth)
    sparse = valid.mean() < 0.3
    dil = max(1, gt.shape[0] // 160) if sparse else 0
    # one colour range for prediction and GT so their colours can be compared
    lo = float(np.percentile(gt[valid], 2)) if valid.any() else min_depth
    hi = float(np.percentile(gt[valid], 98)) if valid.any() else max_depth
    pred_c = np.clip(pred, min_depth, max_depth)
    tiles = [image,
             colorize_depth(pred_c, lo, hi),
             colorize_depth(np.where(valid, gt, 0.0), lo, hi, dilate=dil),
             error_map(pred, gt, min_depth, max_depth, vmax=error_vmax, dilate=dil)]
    labels = [title[:60] or "image", f"prediction (x{scale:.3g})" if scale != 1.0
              else "prediction", "ground truth", f"|err|/gt, bright={error_vmax:g}"]
    strip = make_strip(tiles, labels, height=gt.shape[0])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), strip[..., ::-1]):
        raise OSError(f"could not write {path}")
    return path


# ----------------------------------------------------------------------------- all at once

def write_report(results: Sequence[EvalResult], out_dir: str | os.PathLike,
                 name: str = "eval", title: str = "Depth evaluation",
                 json_results: Optional[Sequence[EvalResult]] = None) -> Dict[str, Path]:
    """Write ``<name>.json`` and, by :func:`write_tables_and_plots`, ``<name>.md`` and the
    plots into ``out_dir``. Returns ``{kind: path}``.

    Args:
        results: rows of the tables and plots (one protocol).
        json_results: what goes into the JSON (default: ``results``; ``dasp eval --compare``
            stores only its own run so compared runs are not copied again and again).
    """
    check_same_protocol(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    js = list(results if json_results is None else json_results)
    files = {"json": write_json(js[0] if len(js) == 1 else js, out / f"{name}.json")}
    files.update(write_tables_and_plots(results, out, name, title))
    return files


def write_tables_and_plots(results: Sequence[EvalResult], out_dir: str | os.PathLike,
                           name: str = "eval", title: str = "Depth evaluation"
                           ) -> Dict[str, Path]:
    """Write ``<name>.md`` and the plots into ``out_dir``.

    Plots: ``error_vs_distance.png`` (always), ``regions.png`` (when masks were scored),
    ``comparison.png`` (when there is more than one row), ``spread.png`` (when the results
    hold depth spread statistics). Returns ``{kind: path}``.

    Raises:
        ConfigError: results scored under different protocols.
    """
    check_same_protocol(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: Dict[str, Path] = {"markdown": write_markdown(results, out / f"{name}.md", title)}
    try:
        files["distance_plot"] = plot_error_vs_distance(results, out / "error_vs_distance.png")
        if any(r.per_region for r in results):
            files["region_plot"] = plot_region_bars(results, out / "regions.png")
        if len(_rows(results)) > 1:
            files["comparison_plot"] = plot_comparison(results, out / "comparison.png")
        if any(r.scores[m].spread for _, m, r in _rows(results)):
            files["spread_plot"] = plot_spread(results, out / "spread.png")
    except ImportError as e:  # matplotlib is optional on a robot; numbers matter more
        log.warning("plots skipped: %s", e)
    return files
