"""Build a clip dataset from a config dict, concatenate datasets, iterate skipping bad samples.

A dataset entry of a training/evaluation config looks like::

    data:
      train:
        kind: robotcar            # synthetic | robotcar | nuscenes | rosbag | folder
        root: /data/robotcar
        split: train
        domain: night

Every other key is a keyword argument of the reader's constructor
(:class:`~dasp_core.data.robotcar.RobotCarDataset`,
:class:`~dasp_core.data.nuscenes.NuScenesDataset`,
:class:`~dasp_core.data.rosbag.RosbagClipDataset`,
:class:`~dasp_core.data.folder.FolderClipDataset`, or for ``synthetic``
:class:`~dasp_core.data.synthetic.SyntheticClipDataset` with the renderer's settings under
``render:``). Unknown kinds and keys raise :class:`~dasp_core.errors.ConfigError` naming the
dotted key and the allowed values. A list of entries is concatenated.

Nothing here imports torch; readers are imported only when used.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import importlib
import inspect
import logging
from typing import Any, Callable, Deque, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from dasp_core.data.folder import SampleError
from dasp_core.data.sample import Clip
from dasp_core.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["DATASET_KINDS", "build_dataset", "ConcatClipDataset", "BadSampleStats", "iter_clips"]

#: kind → (module, class)
_READERS: Dict[str, Tuple[str, str]] = {
    "synthetic": ("dasp_core.data.synthetic", "SyntheticClipDataset"),
    "robotcar": ("dasp_core.data.robotcar", "RobotCarDataset"),
    "nuscenes": ("dasp_core.data.nuscenes", "NuScenesDataset"),
    "rosbag": ("dasp_core.data.rosbag", "RosbagClipDataset"),
    "folder": ("dasp_core.data.folder", "FolderClipDataset"),
}
DATASET_KINDS = tuple(_READERS)

# Keys given as YAML lists that the readers expect as tuples.
_TUPLE_KEYS = ("offsets", "crop_hw", "size_hw")


def _reader_class(kind: str) -> Callable[..., Any]:
    module, name = _READERS[kind]
    return getattr(importlib.import_module(module), name)


def _constructor_params(cls: Callable[..., Any]) -> Dict[str, inspect.Parameter]:
    sig = inspect.signature(cls)
    return {n: p for n, p in sig.parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _synthetic_kwargs(cfg: Dict[str, Any], prefix: str) -> Dict[str, Any]:
    """Turn the ``render:`` sub-dict into a SyntheticConfig and ``seeds: N`` into ``range(N)``."""
    from dasp_core.data import synthetic

    if "cfg" in cfg:
        raise ConfigError(f"{prefix}.cfg", cfg["cfg"], "use 'render:' for SyntheticConfig fields")
    render = cfg.pop("render", None) or {}
    if not isinstance(render, Mapping):
        raise ConfigError(f"{prefix}.render", render, "a mapping of SyntheticConfig fields")
    config_cls = synthetic.SyntheticConfig
    fields = [f.name for f in dataclasses.fields(config_cls)]
    for k in render:
        if k not in fields:
            raise ConfigError(f"{prefix}.render.{k}", render[k], fields)
    cfg["cfg"] = config_cls(**render)
    seeds = cfg.get("seeds")
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds <= 0:
            raise ConfigError(f"{prefix}.seeds", seeds, "a positive count or a list of seeds")
        cfg["seeds"] = list(range(seeds))
    elif isinstance(seeds, Mapping):
        if set(seeds) != {"start", "count"}:
            raise ConfigError(f"{prefix}.seeds", seeds, "{start: int, count: int}")
        cfg["seeds"] = list(range(int(seeds["start"]), int(seeds["start"]) + int(seeds["count"])))
    return cfg


def build_dataset(cfg: Any, key_prefix: str = "data.train") -> Any:
    """Construct a dataset from a config dict (or a list of them → :class:`ConcatClipDataset`).

    Args:
        cfg: ``{"kind": ..., **reader keyword arguments}`` or a list of such dicts.
        key_prefix: dotted path of ``cfg`` in the whole config, used in error messages.
    Returns:
        A torch-free dataset: ``len(ds)`` and ``ds[i] -> Clip``.
    Raises:
        ConfigError: unknown kind, unknown key, missing required key.
        DatasetError: the data on disk is not what the config says (from the reader).
    """
    if isinstance(cfg, (list, tuple)):
        if not cfg:
            raise ConfigError(key_prefix, cfg, "a dataset mapping or a non-empty list of them")
        return ConcatClipDataset([build_dataset(c, f"{key_prefix}[{i}]")
                                  for i, c in enumerate(cfg)])
    if not isinstance(cfg, Mapping):
        raise ConfigError(key_prefix, cfg, f"a mapping with 'kind' in {', '.join(DATASET_KINDS)}")
    if "kind" not in cfg:
        raise ConfigError(f"{key_prefix}.kind", None, DATASET_KINDS)
    kind = cfg["kind"]
    if kind not in _READERS:
        raise ConfigError(f"{key_prefix}.kind", kind, DATASET_KINDS)
    kwargs = {k: v for k, v in cfg.items() if k != "kind"}
    for k in _TUPLE_KEYS:
        if isinstance(kwargs.get(k), list):
            kwargs[k] = tuple(kwargs[k])
    if kind == "synthetic":
        kwargs = _synthetic_kwargs(kwargs, key_prefix)
    cls = _reader_class(kind)
    params = _constructor_params(cls)
    for k in kwargs:
        if k not in params:
            allowed = [p for p in params if not (kind == "synthetic" and p == "cfg")]
            if kind == "synthetic":
                allowed.append("render")
            raise ConfigError(f"{key_prefix}.{k}", kwargs[k], allowed)
    for name, p in params.items():
        if p.default is inspect.Parameter.empty and name not in kwargs:
            raise ConfigError(f"{key_prefix}.{name}", None, f"a value (required for kind {kind!r})")
    log.info("building %s dataset for %s", kind, key_prefix)
    return cls(**kwargs)


class ConcatClipDataset:
    """Several clip datasets seen as one (torch-free)."""

    def __init__(self, datasets: Sequence[Any]):
        if not datasets:
            raise ValueError("ConcatClipDataset needs at least one dataset")
        self.datasets = list(datasets)
        self.cumulative: List[int] = []
        total = 0
        for d in self.datasets:
            total += len(d)
            self.cumulative.append(total)

    def __len__(self) -> int:
        return self.cumulative[-1]

    def locate(self, index: int) -> Tuple[int, int]:
        """``(dataset number, index inside it)`` of a global index."""
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        d = bisect.bisect_right(self.cumulative, index)
        start = self.cumulative[d - 1] if d else 0
        return d, index - start

    def __getitem__(self, index: int) -> Clip:
        d, i = self.locate(index)
        return self.datasets[d][i]


class BadSampleStats:
    """Counts and remembers samples that could not be read (for logs and reports).

    Attributes:
        count: number of failed reads.
        bad_indices: dataset indices that failed (each is skipped without re-reading).
        recent: the last ``keep`` ``(index, message)`` pairs.
    """

    def __init__(self, keep: int = 100):
        self.count = 0
        self.bad_indices: set = set()
        self.recent: Deque[Tuple[int, str]] = collections.deque(maxlen=keep)

    def record(self, index: int, exc: BaseException) -> None:
        self.count += 1
        self.bad_indices.add(index)
        self.recent.append((index, str(exc)))
        log.warning("skipping bad sample %d: %s (%d bad so far)", index, exc, self.count)

    def as_dict(self) -> Dict[str, Any]:
        return {"bad_samples": self.count, "bad_indices": sorted(self.bad_indices),
                "recent": list(self.recent)}


def iter_clips(dataset: Any, stats: Optional[BadSampleStats] = None,
               indices: Optional[Sequence[int]] = None) -> Iterator[Tuple[int, Clip]]:
    """Yield ``(index, clip)`` for every readable sample; bad ones are logged, counted, skipped.

    Only :class:`~dasp_core.data.folder.SampleError` is skipped: anything else is a bug or a
    broken dataset and propagates.
    """
    stats = stats if stats is not None else BadSampleStats()
    for i in (range(len(dataset)) if indices is None else indices):
        try:
            clip = dataset[i]
        except SampleError as exc:
            stats.record(i, exc)
            continue
        yield i, clip
    if stats.count:
        log.warning("%d of %d samples could not be read and were skipped", stats.count,
                    len(dataset) if indices is None else len(indices))

