"""The result of an evaluation: :class:`ScoreSet` per scaling mode and :class:`EvalResult`,
with a JSON round trip (NaN written as null). Kept apart from :mod:`.evaluate` (which runs the
loop) and :mod:`.report` (which renders results) so that neither imports the other's module
for the types alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping

import numpy as np

from dasp_core import __version__
from dasp_core.eval.metrics import EvalProtocol

__all__ = ["ScoreSet", "EvalResult"]


@dataclass
class ScoreSet:
    """Scores of one mode (``"median"`` or ``"metric"``).

    Attributes:
        median_scaling: whether per-image median scaling was applied.
        metrics: mean per-image metrics plus ``n_images`` and ``n_pixels``.
        per_bin: ``{"0-10 m": {metric: mean, n_images, n_pixels}}`` by GT distance.
        per_region: the same for named masks (``dark``, ``lit``, ``moving``, ...).
        per_domain: the same per clip domain (``day``/``night``).
        scale: statistics (``mean``, ``median``, ``std``, ``cv``) of the per-image ratios
            ``median(gt) / median(pred)``: the factors median scaling applies, and for
            ``"metric"`` how far the model's metres are off (1.0 = right scale).
        spread: pooled depth spread of the scored pixels (prediction as scored in this
            mode): ``pred_p2/p50/p98``, ``gt_p2/p50/p98`` (metres), ``pred_ratio``,
            ``gt_ratio`` (p98/p2), ``ratio_rel`` and ``log_corr``; see
            :mod:`dasp_core.eval.spread`. Empty in results written before it existed.
    """

    median_scaling: bool
    metrics: Dict[str, float]
    per_bin: Dict[str, Dict[str, float]] = field(default_factory=dict)
    per_region: Dict[str, Dict[str, float]] = field(default_factory=dict)
    per_domain: Dict[str, Dict[str, float]] = field(default_factory=dict)
    scale: Dict[str, float] = field(default_factory=dict)
    spread: Dict[str, float] = field(default_factory=dict)


@dataclass
class EvalResult:
    """Everything an evaluation produced; JSON round-trips with :meth:`to_dict`/:meth:`from_dict`.

    Attributes:
        protocol: the protocol used (stated in every report).
        label: row name in tables (model file stem unless given).
        primary: the mode reported first: ``"median"`` or ``"metric"``.
        scores: ``{"median": ScoreSet, "metric": ScoreSet}`` (only the modes computed).
        n_images: images scored (the means are over these).
        n_skipped: samples not scored (load error, no GT, bad prediction, ...); reported
            beside the means (see :data:`~dasp_core.eval.metrics.SKIP_RULE`).
        skip_reasons: ``{reason: count}``.
        skipped: the first skipped samples ``{"index", "source", "reason", "detail"}``.
        per_image: ``{"index", "source", "domain", "latency_ms", "scores": {mode: metrics}}``.
        timing: ``total_s``, ``images_per_s``, ``predict_ms_mean/median/p95``.
        model: ``{"path", "backend", "info"}``.
        dataset: description of the data.
        warnings: comparability warnings (e.g. GT size differs from the protocol's).
        gt_sizes: ``{"HxW": images}``: the resolutions the ground truth was scored at.
        gt_source: ``"depth"`` (``clip.depth``) or ``"depth_full"`` (``clip.meta
            ['depth_full']``, the reader's ground truth before its resize; see
            ``keep_full_depth``), or both joined by ``+`` when a dataset mixed them.
        created: ISO time; version: dasp version.
    """

    protocol: EvalProtocol
    label: str
    primary: str
    scores: Dict[str, ScoreSet]
    n_images: int
    n_skipped: int = 0
    skip_reasons: Dict[str, int] = field(default_factory=dict)
    skipped: List[Dict[str, Any]] = field(default_factory=list)
    per_image: List[Dict[str, Any]] = field(default_factory=list)
    timing: Dict[str, float] = field(default_factory=dict)
    model: Dict[str, Any] = field(default_factory=dict)
    dataset: str = ""
    warnings: List[str] = field(default_factory=list)
    gt_sizes: Dict[str, int] = field(default_factory=dict)
    gt_source: str = ""
    created: str = ""
    version: str = __version__

    @property
    def metrics(self) -> Dict[str, float]:
        """Metrics of the primary mode."""
        return self.scores[self.primary].metrics

    @property
    def per_bin(self) -> Dict[str, Dict[str, float]]:
        return self.scores[self.primary].per_bin

    @property
    def per_region(self) -> Dict[str, Dict[str, float]]:
        return self.scores[self.primary].per_region

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["protocol"] = self.protocol.to_dict()
        return _json_safe(d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EvalResult":
        d = dict(d)
        d["protocol"] = EvalProtocol.from_dict(d["protocol"])
        d["scores"] = {k: ScoreSet(**v) for k, v in d["scores"].items()}
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def _json_safe(x: Any) -> Any:
    """NaN/inf → None and numpy scalars → Python, so the JSON is standard."""
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
