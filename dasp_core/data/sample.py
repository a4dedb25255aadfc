"""The unit of training data: a short clip of consecutive frames around a target frame.

Every reader (synthetic world, RobotCar, nuScenes, rosbag2, image folder) yields :class:`Clip`
objects in numpy; :func:`clip_to_tensors` turns one into the dict of torch tensors the trainer
uses, and :func:`collate_clips` batches them. Keeping readers in numpy keeps them usable
without torch (bag tools, the ROS side) and easy to test.

Conventions: frames are RGB ``uint8 [T, H, W, 3]`` ordered by ``offsets`` (e.g. ``(-1, 0, 1)``;
the target is the frame with offset 0). ``K`` is ``[3, 3]`` in pixels for H x W. Depth is
metres, ``float32 [H, W]``, 0 where invalid (sky, no lidar return). Poses are camera-to-world
``[T, 4, 4]`` in the REP 103 optical frame (``T_world_cam``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

DOMAINS = ("day", "night")


@dataclass
class Clip:
    """A clip of ``T`` frames.

    Attributes:
        frames: ``uint8 [T, H, W, 3]`` RGB.
        K: ``float64 [3, 3]`` pixel intrinsics for H x W.
        domain: ``"day"`` or ``"night"``.
        offsets: frame offsets relative to the target, same length as ``frames``.
        depth: target-frame ground-truth depth ``float32 [H, W]`` metres, 0 invalid; or None.
        poses: camera-to-world ``float64 [T, 4, 4]`` or None.
        speed: camera speed at the target frame in m/s, or None (weak scale supervision).
        dt: seconds between consecutive frames, or None.
        masks: optional target-frame boolean masks ``[H, W]`` (e.g. ``"moving"``, ``"dark"``,
            ``"lit"``) used by region-wise evaluation.
        source: human-readable origin ("robotcar:2014-12-16-18-44-24/1418756721422679").
        meta: anything else a reader wants to carry.
    """

    frames: np.ndarray
    K: np.ndarray
    domain: str
    offsets: Tuple[int, ...] = (-1, 0, 1)
    depth: Optional[np.ndarray] = None
    poses: Optional[np.ndarray] = None
    speed: Optional[float] = None
    dt: Optional[float] = None
    masks: Dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""
    meta: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise ValueError(f"Clip.frames must be uint8 [T,H,W,3], got {self.frames.dtype} "
                             f"{self.frames.shape} ({self.source})")
        if len(self.offsets) != self.frames.shape[0]:
            raise ValueError(f"Clip.offsets {self.offsets} does not match {self.frames.shape[0]} "
                             f"frames ({self.source})")
        if 0 not in self.offsets:
            raise ValueError(f"Clip.offsets {self.offsets} has no target frame 0 ({self.source})")
        if self.domain not in DOMAINS:
            raise ValueError(f"Clip.domain = {self.domain!r}; allowed: {DOMAINS}")
        self.K = np.asarray(self.K, dtype=np.float64).reshape(3, 3)

    @property
    def target_index(self) -> int:
        return self.offsets.index(0)

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])


def clip_to_tensors(clip: Clip) -> Dict[str, Any]:
    """One clip → dict of torch tensors.

    Keys: ``frames`` float32 ``[T, 3, H, W]`` in [0, 1]; ``K`` float32 ``[3, 3]``;
    ``domain`` int64 (0 day, 1 night); ``depth`` float32 ``[1, H, W]`` (zeros and
    ``has_depth`` False when absent); ``has_depth`` bool; ``speed`` float32 (NaN when absent);
    ``dt`` float32 (NaN when absent); ``poses`` float32 ``[T, 4, 4]`` (identity when absent,
    ``has_poses`` False); ``mask_<name>`` bool ``[1, H, W]`` for each mask.
    """
    import torch

    T, H, W, _ = clip.frames.shape
    out: Dict[str, Any] = {
        "frames": torch.from_numpy(np.ascontiguousarray(clip.frames)).permute(0, 3, 1, 2)
        .float().div_(255.0),
        "K": torch.from_numpy(clip.K.astype(np.float32)),
        "domain": torch.tensor(DOMAINS.index(clip.domain), dtype=torch.int64),
        "has_depth": torch.tensor(clip.depth is not None),
        "depth": torch.from_numpy(np.asarray(clip.depth, np.float32)[None]) if clip.depth is not None
        else torch.zeros(1, H, W),
        "speed": torch.tensor(float("nan") if clip.speed is None else clip.speed, dtype=torch.float32),
        "dt": torch.tensor(float("nan") if clip.dt is None else clip.dt, dtype=torch.float32),
        "has_poses": torch.tensor(clip.poses is not None),
        "poses": torch.from_numpy(np.asarray(clip.poses, np.float32)) if clip.poses is not None
        else torch.eye(4).expand(T, 4, 4).clone(),
    }
    for name, m in clip.masks.items():
        out[f"mask_{name}"] = torch.from_numpy(np.asarray(m, bool)[None])
    return out


def collate_clips(items: Sequence[Any]) -> Dict[str, Any]:
    """Batch clips (or already-converted dicts) for a DataLoader: stacks every tensor key.

    Mask keys present in only some items are dropped from the batch (they are optional).
    """
    import torch

    dicts: List[Dict[str, Any]] = [clip_to_tensors(x) if isinstance(x, Clip) else x for x in items]
    keys = set(dicts[0])
    for d in dicts[1:]:
        keys &= set(d)
    return {k: torch.stack([d[k] for d in dicts]) for k in sorted(keys)}
