"""Geometric and photometric transforms of :class:`~dasp_core.data.sample.Clip` (numpy, no torch).

Everything here keeps the intrinsics exact under the pixel-centre convention of
:mod:`dasp_core.geometry` (centre of the top-left pixel is (0, 0)):

* resize by ``sx, sy``:  ``fx' = fx sx``, ``cx' = (cx + 0.5) sx - 0.5`` (same for y);
* crop at ``(x0, y0)``:  ``cx' = cx - x0``, ``cy' = cy - y0``;
* horizontal flip of a ``W``-wide image: ``u' = W - 1 - u``, so ``cx' = W - 1 - cx`` and the
  skew changes sign. Poses are mirrored with ``F = diag(-1, 1, 1, 1)`` (``T' = F T F``): a
  mirrored image is what a mirrored world seen by a mirrored camera would produce.

:mod:`dasp_core.geometry` has the torch versions of the K formulas; this module repeats them in
numpy because readers must not import torch (tests check both agree).

Depth maps from lidar are sparse. Resizing them with interpolation would mix valid depths
with the zeros that mark "no return"; :func:`resize_sparse_depth` moves each valid sample to
the pixel that contains its centre and keeps the nearest one (a z-buffer), like projecting the
lidar points again at the new size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

from dasp_core.data.sample import Clip
from dasp_core.errors import ConfigError, check_choice, check_range

__all__ = [
    "scale_K", "crop_K", "flip_K", "center_crop_box", "resize_sparse_depth", "resize_dense_depth",
    "scatter_nearest_depth",
    "crop_clip", "resize_clip", "center_crop_clip", "fit_clip", "flip_clip",
    "ColorJitterParams", "AugmentConfig", "sample_color_jitter", "apply_color_jitter",
    "augment_clip", "RESIZE_MODES",
]

RESIZE_MODES = ("center_crop", "stretch")


# ----------------------------------------------------------------------------- intrinsics

def scale_K(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Pixel intrinsics ``[3, 3]`` of an image resized by ``sx`` (width) and ``sy`` (height).

    Same formula as :func:`dasp_core.geometry.scale_intrinsics` (pixel-centre convention,
    exact for ``cv2.resize``).
    """
    K = np.array(K, dtype=np.float64, copy=True).reshape(3, 3)
    K[0, 0] *= sx
    K[0, 1] *= sx
    K[1, 1] *= sy
    K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return K


def crop_K(K: np.ndarray, x0: float, y0: float) -> np.ndarray:
    """Pixel intrinsics after a crop whose top-left pixel is ``(x0, y0)`` of the original."""
    K = np.array(K, dtype=np.float64, copy=True).reshape(3, 3)
    K[0, 2] -= x0
    K[1, 2] -= y0
    return K


def flip_K(K: np.ndarray, width: int) -> np.ndarray:
    """Pixel intrinsics after a horizontal flip of a ``width``-pixel-wide image.

    ``u' = width - 1 - u``; with ``u = fx x/z + s y/z + cx`` and the mirrored point
    ``x' = -x`` this gives ``cx' = width - 1 - cx``, ``s' = -s``, ``fx`` unchanged.
    """
    K = np.array(K, dtype=np.float64, copy=True).reshape(3, 3)
    K[0, 2] = (width - 1) - K[0, 2]
    K[0, 1] = -K[0, 1]
    return K


def center_crop_box(height: int, width: int, crop_h: int, crop_w: int) -> Tuple[int, int]:
    """Top-left corner ``(x0, y0)`` of a centred ``crop_h x crop_w`` crop (integer pixels).

    Raises ``ValueError`` when the crop is larger than the image.
    """
    if crop_h > height or crop_w > width:
        raise ValueError(f"centre crop {crop_w}x{crop_h} (WxH) is larger than the image "
                         f"{width}x{height}")
    return (width - crop_w) // 2, (height - crop_h) // 2


# ----------------------------------------------------------------------------- depth maps

def resize_sparse_depth(depth: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """Resize a sparse depth map (0 = invalid) without mixing valid and invalid samples.

    Each valid pixel's centre ``(u, v)`` is mapped to ``((u + 0.5) sx - 0.5, (v + 0.5) sy - 0.5)``
    and rounded to the nearest target pixel; where several land on one pixel the smallest depth
    wins (the nearest surface, as in a z-buffer). Upsampling leaves holes, as it should for
    sparse data.

    Args:
        depth: ``float [H, W]`` metres, 0 (or NaN) invalid.
        size_hw: ``(h, w)`` of the output.
    Returns:
        ``float32 [h, w]`` metres, 0 invalid.
    """
    H, W = depth.shape
    h, w = int(size_hw[0]), int(size_hw[1])
    out = np.zeros((h, w), np.float32)
    d = np.nan_to_num(np.asarray(depth, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    v, u = np.nonzero(d > 0)
    if v.size == 0:
        return out
    z = d[v, u]
    tu = np.rint((u + 0.5) * (w / W) - 0.5).astype(np.int64)
    tv = np.rint((v + 0.5) * (h / H) - 0.5).astype(np.int64)
    keep = (tu >= 0) & (tu < w) & (tv >= 0) & (tv < h)
    return scatter_nearest_depth(tu[keep], tv[keep], z[keep], out)


def scatter_nearest_depth(u: np.ndarray, v: np.ndarray, z: np.ndarray, out: np.ndarray
                          ) -> np.ndarray:
    """Write depths ``z`` at integer pixels ``(u, v)`` of ``out`` (in place, returned); where
    several land on one pixel the smallest (nearest surface) wins."""
    if z.size == 0:
        return out
    order = np.argsort(-z, kind="stable")  # far first, so the nearest is written last and wins
    out[v[order], u[order]] = z[order]
    return out


def resize_dense_depth(depth: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """Resize a dense depth map with nearest-neighbour sampling (never invents depths)."""
    h, w = int(size_hw[0]), int(size_hw[1])
    d = np.asarray(depth, np.float32)
    return cv2.resize(d, (w, h), interpolation=cv2.INTER_NEAREST)


# ----------------------------------------------------------------------------- clip geometry

def _resize_frames(frames: np.ndarray, h: int, w: int) -> np.ndarray:
    T, H, W, _ = frames.shape
    if (H, W) == (h, w):
        return frames
    # INTER_AREA averages when shrinking (no aliasing); INTER_LINEAR when enlarging.
    interp = cv2.INTER_AREA if (h <= H and w <= W) else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (w, h), interpolation=interp) for f in frames])


def crop_clip(clip: Clip, x0: int, y0: int, crop_h: int, crop_w: int) -> Clip:
    """Crop the frames, depth and masks of a clip (``meta`` is copied unchanged).

    ``K`` is moved by ``(x0, y0)``. Raises ``ValueError`` when the box leaves the image.
    """
    H, W = clip.height, clip.width
    if x0 < 0 or y0 < 0 or x0 + crop_w > W or y0 + crop_h > H:
        raise ValueError(f"crop box x0={x0} y0={y0} {crop_w}x{crop_h} leaves the "
                         f"{W}x{H} image ({clip.source})")
    sl = (slice(y0, y0 + crop_h), slice(x0, x0 + crop_w))
    return dataclasses.replace(
        clip,
        frames=np.ascontiguousarray(clip.frames[:, sl[0], sl[1]]),
        K=crop_K(clip.K, x0, y0),
        depth=None if clip.depth is None else np.ascontiguousarray(clip.depth[sl]),
        masks={k: np.ascontiguousarray(m[sl]) for k, m in clip.masks.items()},
        meta=dict(clip.meta),
    )


def resize_clip(clip: Clip, size_hw: Tuple[int, int]) -> Clip:
    """Resize a clip to ``size_hw = (h, w)``; K follows :func:`scale_K`.

    Depth uses :func:`resize_sparse_depth` when ``clip.meta.get('depth_sparse')`` is true
    (lidar), else nearest neighbour. Masks use nearest neighbour.
    """
    h, w = int(size_hw[0]), int(size_hw[1])
    H, W = clip.height, clip.width
    if (H, W) == (h, w):
        return clip
    depth = None
    if clip.depth is not None:
        depth = (resize_sparse_depth(clip.depth, (h, w)) if clip.meta.get("depth_sparse")
                 else resize_dense_depth(clip.depth, (h, w)))
    masks = {k: cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
             .astype(bool) for k, m in clip.masks.items()}
    return dataclasses.replace(clip, frames=_resize_frames(clip.frames, h, w),
                               K=scale_K(clip.K, w / W, h / H), depth=depth, masks=masks,
                               meta=dict(clip.meta))


def center_crop_clip(clip: Clip, crop_hw: Tuple[int, int]) -> Clip:
    """Centred crop to ``crop_hw = (h, w)`` (see :func:`center_crop_box`)."""
    ch, cw = int(crop_hw[0]), int(crop_hw[1])
    x0, y0 = center_crop_box(clip.height, clip.width, ch, cw)
    return crop_clip(clip, x0, y0, ch, cw)


def fit_clip(clip: Clip, size_hw: Tuple[int, int], mode: str = "center_crop") -> Clip:
    """Bring a clip to ``size_hw = (h, w)``.

    ``mode="center_crop"`` (ours, default) first crops the largest centred region with the
    target aspect ratio, then resizes, so pixels stay square; ``"stretch"`` resizes directly
    (``fx/fy`` changes; this is what RNW does for nuScenes, 1600x900 → 768x384).
    """
    check_choice("resize_mode", mode, RESIZE_MODES)
    h, w = int(size_hw[0]), int(size_hw[1])
    if (clip.height, clip.width) == (h, w):
        return clip
    if mode == "center_crop":
        H, W = clip.height, clip.width
        if W * h > H * w:      # too wide: keep full height
            ch, cw = H, int(round(H * w / h))
        else:                  # too tall: keep full width
            ch, cw = int(round(W * h / w)), W
        ch, cw = min(ch, H), min(cw, W)
        if (ch, cw) != (H, W):
            clip = center_crop_clip(clip, (ch, cw))
    return resize_clip(clip, (h, w))


def flip_clip(clip: Clip) -> Clip:
    """Mirror a clip left-right: frames, depth, masks, K (:func:`flip_K`) and poses."""
    poses = None
    if clip.poses is not None:
        F = np.diag([-1.0, 1.0, 1.0, 1.0])
        poses = F @ np.asarray(clip.poses, np.float64) @ F
    return dataclasses.replace(
        clip,
        frames=np.ascontiguousarray(clip.frames[:, :, ::-1]),
        K=flip_K(clip.K, clip.width),
        depth=None if clip.depth is None else np.ascontiguousarray(clip.depth[:, ::-1]),
        masks={k: np.ascontiguousarray(m[:, ::-1]) for k, m in clip.masks.items()},
        poses=poses,
        meta={**clip.meta, "flipped": not clip.meta.get("flipped", False)},
    )


# ----------------------------------------------------------------------------- photometric

@dataclass(frozen=True)
class ColorJitterParams:
    """One draw of colour jitter, shared by every frame of a clip.

    Factors are multiplicative (1 = unchanged); ``hue`` is a shift in turns (fraction of the
    hue circle, [-0.5, 0.5]); ``order`` is the order of the four operations (0 brightness,
    1 contrast, 2 saturation, 3 hue), random as in torchvision's ``ColorJitter``.
    """

    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0
    order: Tuple[int, ...] = (0, 1, 2, 3)


@dataclass
class AugmentConfig:
    """Training augmentation (monodepth2/RNW defaults).

    Attributes:
        flip_prob: probability of a horizontal flip of the whole clip (K and poses follow).
        jitter_prob: probability of colour jitter (the same draw for every frame of the clip,
            so the photometric loss still compares like with like).
        brightness, contrast, saturation: jitter ranges; factors drawn in ``[1-x, 1+x]``.
        hue: hue shift drawn in ``[-hue, hue]`` turns (at most 0.5).
    """

    flip_prob: float = 0.5
    jitter_prob: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.1

    def __post_init__(self) -> None:
        check_range("augment.flip_prob", self.flip_prob, 0.0, 1.0)
        check_range("augment.jitter_prob", self.jitter_prob, 0.0, 1.0)
        for name in ("brightness", "contrast", "saturation"):
            check_range(f"augment.{name}", getattr(self, name), 0.0, 1.0)
        check_range("augment.hue", self.hue, 0.0, 0.5)

    @classmethod
    def from_dict(cls, d: Optional[dict], key_prefix: str = "augment") -> "AugmentConfig":
        """Build from a config dict; unknown keys raise :class:`ConfigError`."""
        d = dict(d or {})
        names = [f.name for f in dataclasses.fields(cls)]
        for k in d:
            if k not in names:
                raise ConfigError(f"{key_prefix}.{k}", d[k], names)
        return cls(**d)


def sample_color_jitter(rng: np.random.Generator, cfg: AugmentConfig) -> ColorJitterParams:
    """Draw one :class:`ColorJitterParams` from ``cfg`` ranges."""
    def factor(x: float) -> float:
        return float(rng.uniform(max(0.0, 1.0 - x), 1.0 + x)) if x > 0 else 1.0

    return ColorJitterParams(brightness=factor(cfg.brightness), contrast=factor(cfg.contrast),
                             saturation=factor(cfg.saturation),
                             hue=float(rng.uniform(-cfg.hue, cfg.hue)) if cfg.hue > 0 else 0.0,
                             order=tuple(int(i) for i in rng.permutation(4)))


def _grey(img: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of float RGB ``[..., 3]`` (what torchvision's rgb_to_grayscale uses)."""
    return img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114


def apply_color_jitter(frames: np.ndarray, p: ColorJitterParams) -> np.ndarray:
    """Apply one jitter draw to ``uint8 [T, H, W, 3]`` RGB frames; returns ``uint8``.

    Brightness scales the image; contrast blends with the mean grey level of each frame;
    saturation blends with the per-pixel grey image; hue rotates the hue channel (HSV).
    Same operations and blend targets as torchvision's functional colour adjustments.
    """
    x = frames.astype(np.float32) / 255.0
    for op in p.order:
        if op == 0 and p.brightness != 1.0:
            x = np.clip(x * p.brightness, 0.0, 1.0)
        elif op == 1 and p.contrast != 1.0:
            mean = _grey(x).mean(axis=(1, 2), keepdims=True)[..., None]
            x = np.clip(p.contrast * x + (1.0 - p.contrast) * mean, 0.0, 1.0)
        elif op == 2 and p.saturation != 1.0:
            g = _grey(x)[..., None]
            x = np.clip(p.saturation * x + (1.0 - p.saturation) * g, 0.0, 1.0)
        elif op == 3 and p.hue != 0.0:
            out = np.empty_like(x)
            for i, f in enumerate(x):
                hsv = cv2.cvtColor(f, cv2.COLOR_RGB2HSV)  # float: H in [0, 360)
                hsv[..., 0] = np.mod(hsv[..., 0] + p.hue * 360.0, 360.0)
                out[i] = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
            x = np.clip(out, 0.0, 1.0)
    return np.rint(x * 255.0).astype(np.uint8)


def augment_clip(clip: Clip, rng: np.random.Generator, cfg: AugmentConfig
                 ) -> Tuple[Clip, np.ndarray]:
    """Random training augmentation of a clip.

    Returns ``(clip, frames_aug)``: ``clip`` is possibly flipped (geometry follows) and is what
    the photometric loss should compare; ``frames_aug`` ``uint8 [T, H, W, 3]`` are the same
    frames after colour jitter, the network input (monodepth2's ``color_aug`` convention:
    jitter the input, never the loss targets).
    """
    if rng.random() < cfg.flip_prob:
        clip = flip_clip(clip)
    frames_aug = clip.frames
    if rng.random() < cfg.jitter_prob:
        frames_aug = apply_color_jitter(clip.frames, sample_color_jitter(rng, cfg))
    return clip, frames_aug
