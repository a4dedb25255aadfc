"""A thin ``torch.utils.data.Dataset`` over any clip reader: size, augmentation, bad samples.

The readers stay torch-free and return :class:`~dasp_core.data.sample.Clip`; this wrapper

1. brings each clip to the network size with exact intrinsics
   (:func:`dasp_core.data.augment.fit_clip`: centre crop to the aspect ratio, then resize);
2. for training only, flips the clip (K and poses follow) and draws one colour jitter for all
   its frames (:func:`dasp_core.data.augment.augment_clip`). ``frames`` are what the loss
   compares; ``frames_aug`` are what the network sees (monodepth2's ``color``/``color_aug``);
3. turns the clip into tensors with :func:`dasp_core.data.sample.clip_to_tensors`;
4. replaces a sample that fails to read (:class:`~dasp_core.data.folder.SampleError`) by
   another, logs it with its source and counts it. Counts live in each worker process, so
   every item also carries ``n_skipped`` (how many bad samples were skipped to produce it);
   summing that over batches gives the global count in the main process.
"""

from __future__ import annotations

import logging
import random
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from dasp_core.data.augment import RESIZE_MODES, AugmentConfig, augment_clip, fit_clip
from dasp_core.data.folder import SampleError
from dasp_core.data.registry import BadSampleStats
from dasp_core.data.sample import Clip, clip_to_tensors
from dasp_core.errors import ConfigError, DatasetError, check_choice

log = logging.getLogger(__name__)

__all__ = ["ClipTorchDataset"]


class ClipTorchDataset(Dataset):
    """Torch view of a clip reader.

    Args:
        source: any object with ``__len__`` and ``__getitem__ -> Clip``.
        size_hw: network input ``(h, w)``; None keeps the reader's size (all clips of a batch
            must then share it).
        resize_mode: ``"center_crop"`` (keep square pixels) or ``"stretch"``.
        train: enables augmentation.
        augment: :class:`~dasp_core.data.augment.AugmentConfig` or a dict of its fields;
            None with ``train=True`` uses the defaults (flip 0.5, jitter 0.5 with
            brightness/contrast/saturation 0.2, hue 0.1). Ignored when ``train=False``.
        max_consecutive_failures: after this many bad reads in a row for one item, raise
            :class:`~dasp_core.errors.DatasetError` (the data is broken, not one sample).
        seed: makes the choice of replacement samples reproducible.

    Items are dicts of tensors (see :func:`~dasp_core.data.sample.clip_to_tensors`) plus
    ``frames_aug`` float32 ``[T, 3, H, W]``, ``index`` int64 (the index actually read) and
    ``n_skipped`` int64. An item may be asked for as ``(index, draw_seed)`` (a sampler with
    ``draw_seeds``): the augmentation then draws from ``draw_seed`` alone, so the same
    request gives the same item in any process, and a resumed run repeats its draws.
    """

    #: tells :class:`~dasp_core.train.loader.EpochLoader` it may pass ``(index, draw_seed)``
    accepts_draw_seed = True

    def __init__(self, source: Any, size_hw: Optional[Tuple[int, int]] = None,
                 resize_mode: str = "center_crop", train: bool = False,
                 augment: Union[AugmentConfig, Mapping[str, Any], None] = None,
                 max_consecutive_failures: int = 20, seed: int = 0):
        if len(source) == 0:
            raise DatasetError(f"{type(source).__name__}: the dataset is empty")
        check_choice("resize_mode", resize_mode, RESIZE_MODES)
        if max_consecutive_failures < 1:
            raise ConfigError("max_consecutive_failures", max_consecutive_failures, ">= 1")
        self.source = source
        self.size_hw = None if size_hw is None else (int(size_hw[0]), int(size_hw[1]))
        self.resize_mode = resize_mode
        self.train = bool(train)
        if isinstance(augment, Mapping):
            augment = AugmentConfig.from_dict(augment)
        self.augment: Optional[AugmentConfig] = (augment or AugmentConfig()) if self.train else None
        self.max_failures = int(max_consecutive_failures)
        self.seed = int(seed)
        self.stats = BadSampleStats()

    def __len__(self) -> int:
        return len(self.source)

    @property
    def bad_count(self) -> int:
        """Bad samples met in this process."""
        return self.stats.count

    def _replacement(self, index: int, attempt: int) -> int:
        n = len(self.source)
        rng = random.Random(hash((self.seed, index, attempt)))
        for _ in range(8):
            j = rng.randrange(n)
            if j not in self.stats.bad_indices:
                return j
        return rng.randrange(n)

    def _read(self, index: int) -> Tuple[Clip, int, int]:
        skipped = 0
        i = index
        last: Optional[SampleError] = None
        for attempt in range(self.max_failures):
            if i in self.stats.bad_indices:
                skipped += 1
                i = self._replacement(index, attempt)
                continue
            try:
                return self.source[i], i, skipped
            except SampleError as exc:
                self.stats.record(i, exc)
                last = exc
                skipped += 1
                i = self._replacement(index, attempt)
        raise DatasetError(f"{self.max_failures} bad samples in a row while reading item {index} "
                           f"({self.stats.count} bad so far); last: {last}")

    def __getitem__(self, index: Union[int, Tuple[int, int]]) -> Dict[str, Any]:
        draw_seed: Optional[int] = None
        if isinstance(index, tuple):
            index, draw_seed = index
        clip, used, skipped = self._read(index)
        if self.size_hw is not None:
            clip = fit_clip(clip, self.size_hw, self.resize_mode)
        frames_aug = clip.frames
        if self.augment is not None:
            # without a draw seed: torch's generator, seeded per worker by the DataLoader, so
            # draws differ across workers and epochs but follow torch.manual_seed
            rng = np.random.default_rng(draw_seed if draw_seed is not None else
                                        int(torch.randint(0, 2 ** 31 - 1, (1,)).item()))
            clip, frames_aug = augment_clip(clip, rng, self.augment)
        out = clip_to_tensors(clip)
        out["frames_aug"] = (out["frames"].clone() if frames_aug is clip.frames else
                             torch.from_numpy(np.ascontiguousarray(frames_aug))
                             .permute(0, 3, 1, 2).float().div_(255.0))
        out["index"] = torch.tensor(used, dtype=torch.int64)
        out["n_skipped"] = torch.tensor(skipped, dtype=torch.int64)
        return out
