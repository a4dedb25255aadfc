"""In-memory clip dataset over synthetic drives (torch-free).

Frames are rendered on first use and kept in a bounded LRU cache, so an epoch over the
dataset renders every frame once and later epochs are free; with DataLoader worker
processes each worker renders its own share (frames are deterministic, so it does not matter
which process renders which).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from dasp_core.data.sample import Clip
from dasp_core.data.synthetic.config import SyntheticConfig, check_domain
from dasp_core.data.synthetic.render import Frame, SequenceRenderer
from dasp_core.errors import ConfigError

log = logging.getLogger(__name__)

_DISK_FORMAT = 1  # bump when Frame's fields change


class SyntheticClipDataset:
    """Clips of ``len(offsets)`` consecutive frames from synthetic drives.

    Args:
        domain: ``"day"`` or ``"night"``.
        seeds: one drive per seed. Use disjoint seed sets for day and night (unpaired data).
        frames_per_sequence: length of each drive in frames.
        cfg: configuration (default :class:`SyntheticConfig`).
        offsets: frame offsets of a clip relative to its target (must contain 0).
        stride: distance between consecutive targets (1 = every frame).
        max_cached_frames: bound of the frame cache (None = keep everything; a 192x640 frame
            with depth and masks takes about 0.9 MB).
        cache_dir: optional folder of rendered frames on disk (one ``.npz`` per frame under a
            digest of the renderer settings): a frame is rendered once per machine, so
            restarts, resumed runs and every run of a benchmark read instead of rendering
            (docs/synthetic.md: 50-75 ms of one core per 192x640 frame, CPU training needs).

    Item ``i`` is the clip whose target is the ``i``-th valid target frame, sequences in the
    order of ``seeds``. Clips carry depth, poses, speed, ``dt`` and the masks of the target.
    """

    def __init__(self, domain: str, seeds: Sequence[int], frames_per_sequence: int,
                 cfg: Optional[SyntheticConfig] = None, offsets: Sequence[int] = (-1, 0, 1),
                 stride: int = 1, max_cached_frames: Optional[int] = None,
                 cache_dir: Optional[str] = None):
        self.domain = check_domain(domain)
        self.seeds = [int(s) for s in seeds]
        if not self.seeds:
            raise ConfigError("synthetic.seeds", list(seeds), "a non-empty list of integers")
        self.cfg = cfg if cfg is not None else SyntheticConfig()
        self.offsets = tuple(int(o) for o in offsets)
        if 0 not in self.offsets:
            raise ConfigError("synthetic.offsets", self.offsets, "offsets containing 0")
        span = max(self.offsets) - min(self.offsets)
        if frames_per_sequence <= span:
            raise ConfigError("synthetic.frames_per_sequence", frames_per_sequence,
                              f"an integer > {span} (the clip span)")
        if stride < 1:
            raise ConfigError("synthetic.stride", stride, "an integer >= 1")
        self.frames_per_sequence = int(frames_per_sequence)
        first = -min(self.offsets)
        last = self.frames_per_sequence - 1 - max(self.offsets)
        self.targets = list(range(first, last + 1, stride))
        self.max_cached_frames = max_cached_frames
        self.cache_dir = None
        if cache_dir:
            digest = hashlib.sha1(json.dumps(self.cfg.to_dict(), sort_keys=True, default=str)
                                  .encode()).hexdigest()[:12]
            self.cache_dir = Path(cache_dir) / f"v{_DISK_FORMAT}_{digest}"
        self._renderers: Dict[int, SequenceRenderer] = {}
        self._cache: "OrderedDict[Tuple[int, int], Frame]" = OrderedDict()

    def __len__(self) -> int:
        return len(self.seeds) * len(self.targets)

    def locate(self, index: int) -> Tuple[int, int]:
        """``(sequence number, target frame)`` of item ``index``."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"SyntheticClipDataset index {index} out of range [0, {len(self)})")
        index %= len(self)
        return index // len(self.targets), self.targets[index % len(self.targets)]

    def renderer(self, seq: int) -> SequenceRenderer:
        """The (lazily created) renderer of sequence number ``seq``."""
        r = self._renderers.get(seq)
        if r is None:
            r = SequenceRenderer(self.seeds[seq], self.domain, self.frames_per_sequence, self.cfg)
            self._renderers[seq] = r
        return r

    def frame(self, seq: int, index: int) -> Frame:
        """Rendered frame ``index`` of sequence number ``seq`` (cached)."""
        key = (seq, index)
        f = self._cache.get(key)
        if f is not None:
            self._cache.move_to_end(key)
            return f
        f = self._read_disk(seq, index)
        if f is None:
            f = self.renderer(seq).render(index)
            f.timings = {}
            self._write_disk(seq, index, f)
        self._cache[key] = f
        if self.max_cached_frames is not None:
            while len(self._cache) > self.max_cached_frames:
                self._cache.popitem(last=False)
        return f

    def _disk_path(self, seq: int, index: int) -> Path:
        return self.cache_dir / f"{self.domain}_{self.seeds[seq]:06d}" / f"{index:06d}.npz"

    def _read_disk(self, seq: int, index: int) -> Optional[Frame]:
        if self.cache_dir is None:
            return None
        path = self._disk_path(seq, index)
        try:
            with np.load(path) as z:
                masks = {k[5:]: z[k] for k in z.files if k.startswith("mask_")}
                return Frame(image=z["image"], depth=z["depth"], pose=z["pose"],
                             speed=float(z["speed"]), time=float(z["time"]), masks=masks)
        except FileNotFoundError:
            return None
        except Exception as e:  # a torn or foreign file: render again and replace it
            log.warning("synthetic frame cache: cannot read %s (%s); rendering again", path, e)
            return None

    def _write_disk(self, seq: int, index: int, f: Frame) -> None:
        if self.cache_dir is None:
            return
        path = self._disk_path(seq, index)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.stem}.{os.getpid()}.npz")
            np.savez(tmp, image=f.image, depth=f.depth, pose=f.pose, speed=f.speed,
                     time=f.time, **{f"mask_{k}": v for k, v in f.masks.items()})
            os.replace(tmp, path)  # atomic: parallel workers and runs never see half a file
        except OSError as e:
            log.warning("synthetic frame cache: cannot write %s (%s); continuing without it",
                        path, e)

    def __getitem__(self, index: int) -> Clip:
        seq, target = self.locate(int(index))
        frames: List[Frame] = [self.frame(seq, target + o) for o in self.offsets]
        tgt = frames[self.offsets.index(0)]
        r = self.renderer(seq)
        return Clip(frames=np.stack([f.image for f in frames]), K=r.K, domain=self.domain,
                    offsets=self.offsets, depth=tgt.depth,
                    poses=np.stack([f.pose for f in frames]), speed=float(tgt.speed),
                    dt=1.0 / self.cfg.fps, masks=dict(tgt.masks),
                    source=f"synthetic:{self.domain}_seed{self.seeds[seq]:06d}/{target:06d}",
                    meta={"seed": self.seeds[seq], "frame": target})
