"""A rendered synthetic drive (:class:`SyntheticSequence`) and :func:`render_sequence`."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from dasp_core.data.sample import Clip
from dasp_core.data.synthetic.config import SyntheticConfig, check_domain
from dasp_core.data.synthetic.render import Frame, SequenceRenderer
from dasp_core.errors import ConfigError

log = logging.getLogger(__name__)

MASK_NAMES = ("moving", "dark", "lit")


@dataclass
class SyntheticSequence:
    """A rendered drive.

    Attributes:
        frames: uint8 ``[N, H, W, 3]`` RGB.
        depth: float32 ``[N, H, W]`` z-depth in metres, 0 = invalid (sky, beyond max_depth).
        K: float64 ``[3, 3]`` pixel intrinsics.
        poses: float64 ``[N, 4, 4]`` camera→world (REP 103 optical frame; world is ENU).
        speeds: float64 ``[N]`` camera speed in m/s.
        timestamps: float64 ``[N]`` seconds since the start of the drive.
        masks: name → bool ``[N, H, W]`` (``moving``, ``dark``, ``lit``).
        domain: ``"day"`` or ``"night"``.
        seed: world seed.
        fps: frame rate (Hz).
        meta: free-form (config, world summary).
    """

    frames: np.ndarray
    depth: np.ndarray
    K: np.ndarray
    poses: np.ndarray
    speeds: np.ndarray
    timestamps: np.ndarray
    masks: Dict[str, np.ndarray]
    domain: str
    seed: int
    fps: float
    meta: Dict[str, Any] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def dt(self) -> float:
        return 1.0 / self.fps

    @property
    def name(self) -> str:
        return f"{self.domain}_seed{self.seed:06d}"

    def clip(self, target: int, offsets: Sequence[int] = (-1, 0, 1)) -> Clip:
        """The :class:`~dasp_core.data.sample.Clip` around frame ``target``."""
        idx = [target + o for o in offsets]
        if min(idx) < 0 or max(idx) >= self.n_frames:
            raise ConfigError("clip target", target,
                              f"an index with {tuple(offsets)} inside [0, {self.n_frames})")
        return Clip(frames=self.frames[idx], K=self.K, domain=self.domain,
                    offsets=tuple(int(o) for o in offsets), depth=self.depth[target],
                    poses=self.poses[idx], speed=float(self.speeds[target]), dt=self.dt,
                    masks={k: v[target] for k, v in self.masks.items()},
                    source=f"synthetic:{self.name}/{target:06d}",
                    meta={"seed": self.seed, "frame": target})

    @staticmethod
    def from_frames(frames: List[Frame], K: np.ndarray, domain: str, seed: int, fps: float,
                    meta: Optional[Dict[str, Any]] = None) -> "SyntheticSequence":
        return SyntheticSequence(
            frames=np.stack([f.image for f in frames]),
            depth=np.stack([f.depth for f in frames]).astype(np.float32),
            K=np.asarray(K, np.float64),
            poses=np.stack([f.pose for f in frames]).astype(np.float64),
            speeds=np.array([f.speed for f in frames], np.float64),
            timestamps=np.array([f.time for f in frames], np.float64),
            masks={n: np.stack([f.masks[n] for f in frames]) for n in MASK_NAMES},
            domain=domain, seed=int(seed), fps=float(fps), meta=dict(meta or {}))


_WORKER_RENDERERS: Dict[Tuple[int, str, int, str], SequenceRenderer] = {}


def _render_chunk(args: Tuple[int, str, int, Dict[str, Any], List[int]]
                  ) -> Tuple[List[Frame], Any]:
    """Worker: render some frames; the renderer (world, shadow-map tiles) stays alive in the
    worker process between chunks of the same drive."""
    seed, domain, n_frames, cfg_dict, indices = args
    import cv2
    import json
    cv2.setNumThreads(1)  # the worker processes are the parallelism
    key = (seed, domain, n_frames, json.dumps(cfg_dict, sort_keys=True))
    r = _WORKER_RENDERERS.get(key)
    if r is None:
        _WORKER_RENDERERS.clear()
        r = SequenceRenderer(seed, domain, n_frames, SyntheticConfig.from_dict(cfg_dict))
        _WORKER_RENDERERS[key] = r
    out = []
    for i in indices:
        f = r.render(i)
        f.timings = {}
        out.append(f)
    return out, r.world.info


def render_sequence(seed: int, domain: str, n_frames: int,
                    cfg: Optional[SyntheticConfig] = None, progress: bool = False,
                    workers: int = 1) -> SyntheticSequence:
    """Render a whole drive.

    Args:
        seed: world seed. Day and night sequences with the same seed drive the same route
            through the same city (paired); for training use disjoint seeds (unpaired, as real
            day/night recordings are).
        domain: ``"day"`` or ``"night"``.
        n_frames: number of frames (at ``cfg.fps``).
        cfg: configuration (default :class:`SyntheticConfig`).
        progress: show a tqdm progress bar.
        workers: processes to render with (frames are independent and deterministic, so the
            result does not depend on it). ``0`` = one per CPU.
    Returns:
        :class:`SyntheticSequence`.
    """
    cfg = cfg if cfg is not None else SyntheticConfig()
    check_domain(domain)
    if n_frames < 1:
        raise ConfigError("synthetic.frames", n_frames, "an integer >= 1")
    workers = (os.cpu_count() or 1) if workers == 0 else int(workers)
    workers = max(1, min(workers, n_frames // 4 or 1))
    from tqdm import tqdm
    frames: List[Frame] = []
    desc = f"render {domain} seed {seed}"
    if workers == 1:
        r = SequenceRenderer(seed, domain, n_frames, cfg)
        for i in tqdm(range(n_frames), desc=desc, disable=not progress, unit="frame"):
            f = r.render(i)
            f.timings = {}
            frames.append(f)
        world = r.world.info
    else:
        # interleaved chunks: every worker sees the whole drive, so shadow-map tiles built
        # for one chunk serve its next ones
        n_chunks = min(n_frames, workers * 4)
        chunks = [list(range(c, n_frames, n_chunks)) for c in range(n_chunks)]
        import multiprocessing as mp
        # spawn, not fork: forking a process that already runs threads (ROS/DDS executors,
        # OpenMP pools of torch or OpenCV) can deadlock the child on a lock held at fork
        # time — seen in the full test suite. Start-up costs ~1 s per worker.
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
            jobs = [(seed, domain, n_frames, cfg.to_dict(), [int(i) for i in c]) for c in chunks]
            by_index: Dict[int, Frame] = {}
            with tqdm(total=n_frames, desc=desc, disable=not progress, unit="frame") as bar:
                for job, (part, world) in zip(jobs, ex.map(_render_chunk, jobs)):
                    by_index.update(zip(job[4], part))
                    bar.update(len(part))
            frames = [by_index[i] for i in range(n_frames)]
    from dasp_core.data.synthetic.trajectory import camera_mount
    meta = {"config": cfg.to_dict(), "T_base_cam": camera_mount(cfg).tolist()}
    if world is not None:  # always set; kept for type checkers
        meta["world"] = {"static_primitives": world.n_static, "lamps": world.n_lamps,
                         "moving_cars": world.n_moving_cars, "lead_car": world.has_lead_car}
    log.debug("rendered %s seed %d: %d frames", domain, seed, n_frames)
    return SyntheticSequence.from_frames(frames, cfg.intrinsics(), domain, seed, cfg.fps, meta)
