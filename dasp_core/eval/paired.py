"""Paired comparison of two evaluations of the same test images.

Two models scored on the same frames differ by less than their scores' spread over frames,
and frames of one drive are not independent (the same street, lights and cars eight times).
So the difference of two models is taken per image, averaged per *group* (the drive: the
part of the image's ``source`` before the last ``/``), and its uncertainty is a bootstrap
over groups, not over images (ours; a cluster bootstrap). Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

__all__ = ["PairedDifference", "paired_difference"]


@dataclass(frozen=True)
class PairedDifference:
    """``a − b`` of one per-image metric over the images both evaluations scored.

    ``mean`` is the mean over images (what a per-image-averaged report prints for a minus
    what it prints for b, when both scored the same images); ``low``/``high`` the bootstrap
    interval over groups at ``level``; ``groups_a_lower`` how many groups' mean is lower for
    a (for an error metric: a better) out of ``n_groups``.
    """

    metric: str
    mode: str
    mean: float
    low: float
    high: float
    level: float
    n_images: int
    n_groups: int
    groups_a_lower: int


def _by_source(per_image: Sequence[Mapping[str, Any]], mode: str, metric: str
               ) -> Dict[str, float]:
    out: Dict[str, float] = {}
    for item in per_image:
        try:
            out[str(item["source"])] = float(item["scores"][mode][metric])
        except KeyError as exc:
            raise ValueError(f"per-image entry {item.get('index')} has no "
                             f"scores[{mode!r}][{metric!r}] (missing {exc})") from None
    return out


def paired_difference(per_image_a: Sequence[Mapping[str, Any]],
                      per_image_b: Sequence[Mapping[str, Any]], metric: str = "abs_rel",
                      mode: str = "median", n_boot: int = 10000, level: float = 0.95,
                      seed: int = 0) -> PairedDifference:
    """Per-image difference ``a − b`` of ``metric`` with a bootstrap interval over drives.

    Args:
        per_image_a, per_image_b: ``EvalResult.per_image`` lists (``eval.json``'s
            ``per_image``): dicts with ``source`` (``"<group>/<frame>"``) and
            ``scores[mode][metric]``.
        metric: a per-image metric name (``abs_rel``, ``rmse``, ``a1``, ...).
        mode: score set, ``median`` (median-scaled) or ``metric``.
        n_boot: bootstrap resamples of the groups.
        level: two-sided coverage of the interval.
        seed: the bootstrap's random seed (the result is a pure function of the inputs).
    Returns:
        :class:`PairedDifference`.
    Raises:
        ValueError: the two evaluations did not score the same images, or a score is missing.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    a = _by_source(per_image_a, mode, metric)
    b = _by_source(per_image_b, mode, metric)
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise ValueError(f"the evaluations scored different images: {len(only_a)} only in a "
                         f"(e.g. {only_a[:2]}), {len(only_b)} only in b (e.g. {only_b[:2]})")
    if not a:
        raise ValueError("no images to compare")
    groups: Dict[str, List[float]] = {}
    for source in sorted(a):
        groups.setdefault(source.rsplit("/", 1)[0], []).append(a[source] - b[source])
    sums = np.array([sum(d) for d in groups.values()])
    counts = np.array([len(d) for d in groups.values()], dtype=float)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(sums), size=(n_boot, len(sums)))
    # ratio of sums: a resample weighs groups by their image count, like the plain mean
    boot = sums[pick].sum(axis=1) / counts[pick].sum(axis=1)
    tail = 50.0 * (1.0 - level)
    low, high = np.percentile(boot, [tail, 100.0 - tail])
    return PairedDifference(metric=metric, mode=mode, mean=float(sums.sum() / counts.sum()),
                            low=float(low), high=float(high), level=level,
                            n_images=int(counts.sum()), n_groups=len(sums),
                            groups_a_lower=int((sums < 0).sum()))
