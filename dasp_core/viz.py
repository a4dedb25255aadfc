"""Pictures of depth: colour maps, error maps, labelled side-by-side strips, GIF/MP4 writers.

Torch-free (numpy + OpenCV, Pillow for GIF) so the ROS node and the demo can use it on a
deployment image.

Conventions:

* Every function that returns a colour image returns ``uint8 [H, W, 3]`` in **RGB** order by
  default; pass ``channel_order="bgr"`` for OpenCV windows/``cv2.imwrite`` and for ROS
  ``bgr8`` messages.
* Invalid pixels are **black** (0, 0, 0): depth that is 0, negative, NaN or inf; ground
  truth outside ``(min_depth, max_depth)`` in error maps.
* Colour maps are OpenCV's (``cv2.applyColorMap`` look-up tables). With the perceptually
  uniform maps (magma, inferno, plasma, viridis, cividis, gray) lightness rises
  monotonically with the map index; depth and disparity are mapped so that **near is
  bright**. (With ``gray`` and ``bone`` the dark end is pure black, like invalid pixels; the
  default ``magma`` ends at (0, 0, 4), so valid far pixels stay distinguishable.)
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

import cv2
import numpy as np

from dasp_core.errors import ConfigError, check_choice

__all__ = [
    "CMAPS", "CHANNEL_ORDERS", "colormap_lut", "apply_colormap", "colorize_depth",
    "colorize_inverse_depth", "colorize_disparity", "relative_error", "error_map", "make_strip",
    "write_gif", "write_mp4",
]

_CV_CMAPS = {
    "magma": cv2.COLORMAP_MAGMA, "inferno": cv2.COLORMAP_INFERNO, "plasma": cv2.COLORMAP_PLASMA,
    "viridis": cv2.COLORMAP_VIRIDIS, "cividis": cv2.COLORMAP_CIVIDIS, "turbo": cv2.COLORMAP_TURBO,
    "jet": cv2.COLORMAP_JET, "bone": cv2.COLORMAP_BONE,
}
#: Colour map names accepted everywhere (``"gray"`` is a plain ramp).
CMAPS = tuple(_CV_CMAPS) + ("gray",)
CHANNEL_ORDERS = ("rgb", "bgr")


@functools.lru_cache(maxsize=None)
def colormap_lut(cmap: str) -> np.ndarray:
    """``uint8 [256, 3]`` RGB look-up table of a colour map (index 0 = low end)."""
    check_choice("cmap", cmap, CMAPS)
    ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
    if cmap == "gray":
        lut = np.repeat(ramp, 3, axis=1)
    else:
        lut = cv2.applyColorMap(ramp, _CV_CMAPS[cmap]).reshape(256, 3)[:, ::-1]  # BGR → RGB
    lut = np.ascontiguousarray(lut)
    lut.setflags(write=False)
    return lut


def apply_colormap(values: np.ndarray, cmap: str = "magma", channel_order: str = "rgb"
                   ) -> np.ndarray:
    """Colour ``float [H, W]`` values in [0, 1] (clipped); NaN → black.

    Returns:
        ``uint8 [H, W, 3]`` in ``channel_order``.
    """
    check_choice("channel_order", channel_order, CHANNEL_ORDERS)
    v = np.asarray(values, dtype=np.float32)
    if v.ndim != 2:
        raise ValueError(f"apply_colormap expects [H, W] values, got shape {v.shape}")
    valid = np.isfinite(v)
    idx = np.zeros(v.shape, dtype=np.uint8)
    idx[valid] = np.rint(np.clip(v[valid], 0.0, 1.0) * 255.0).astype(np.uint8)
    out = colormap_lut(cmap)[idx]
    out[~valid] = 0
    if channel_order == "bgr":
        out = out[..., ::-1]
    return np.ascontiguousarray(out)


def _as_map(name: str, a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 3 and 1 in (a.shape[0], a.shape[-1]):
        a = a.reshape(a.shape[1:] if a.shape[0] == 1 else a.shape[:2])
    if a.ndim != 2:
        raise ValueError(f"{name} must be [H, W], got shape {a.shape}")
    return a.astype(np.float32, copy=False)


def _densify_depth(depth: np.ndarray, radius: int) -> np.ndarray:
    """Spread sparse (lidar) depth over ``radius`` pixels; the nearest depth wins, as it
    would occlude. Dense maps are unchanged where they are valid."""
    if radius <= 0:
        return depth
    valid = np.isfinite(depth) & (depth > 0)
    inv = np.zeros_like(depth, dtype=np.float32)
    inv[valid] = 1.0 / depth[valid]
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    inv = cv2.dilate(inv, kernel)
    out = np.where(valid, depth, np.where(inv > 0, 1.0 / np.maximum(inv, 1e-12), 0.0))
    return out.astype(np.float32)


def colorize_depth(depth: np.ndarray, min_depth: Optional[float] = None,
                   max_depth: Optional[float] = None, cmap: str = "magma",
                   channel_order: str = "rgb", dilate: int = 0) -> np.ndarray:
    """Colour a depth map; near = bright end of the map, far = dark end.

    Args:
        depth: ``[H, W]`` metres; 0, negative, NaN and inf are invalid → black.
        min_depth, max_depth: colour range in metres (values outside are clipped to the
            ends). None: the 2nd / 98th percentile of the valid depths (robust to outliers).
        cmap: one of :data:`CMAPS`.
        channel_order: ``"rgb"`` (default) or ``"bgr"``.
        dilate: radius in pixels to spread sparse ground truth for display (0 = off).

    Returns:
        ``uint8 [H, W, 3]``.
    """
    d = _densify_depth(_as_map("depth", depth), int(dilate))
    valid = np.isfinite(d) & (d > 0)
    lo, hi = _value_range(d[valid], min_depth, max_depth, (2.0, 98.0))
    t = np.full(d.shape, np.nan, dtype=np.float32)
    t[valid] = (hi - d[valid]) / (hi - lo)
    return apply_colormap(t, cmap, channel_order)


@functools.lru_cache(maxsize=None)
def _inverse_depth_lut(cmap: str, channel_order: str) -> np.ndarray:
    """``uint8 [256, 1, 3]`` table in ``channel_order``: entry 0 black (invalid), 1..255 the
    colour map's 255 levels evenly spread over its 0..255 entries."""
    table = colormap_lut(cmap)
    idx = np.rint(np.arange(255) * (255.0 / 254.0)).astype(np.intp)
    lut = np.zeros((256, 1, 3), np.uint8)
    lut[1:, 0] = table[idx] if channel_order == "rgb" else table[idx, ::-1]
    lut.setflags(write=False)
    return lut


def colorize_inverse_depth(depth: np.ndarray, near: float, far: float, cmap: str = "turbo",
                           channel_order: str = "bgr") -> np.ndarray:
    """Colour a depth map linearly in **inverse** depth (the ROS node's ``depth/color``).

    Colour encodes ``1/depth`` linearly between ``1/far`` and ``1/near`` (ours; like the
    disparity pictures of monodepth-style papers, it spends the colour range on the near field
    that matters for driving). Depths closer than ``near`` saturate at the near end (the top
    of the map: red with ``turbo``), farther than ``far`` (+Inf included) at the far end (dark
    blue with ``turbo``); invalid pixels (NaN, <= 0, -Inf) are black. 255 colour levels; one
    table look-up per pixel, cheap enough for every frame of a live stream.

    Args:
        depth: ``[H, W]`` metres.
        near, far: colour range in metres, ``0 < near < far``.
        cmap: one of :data:`CMAPS`.
        channel_order: ``"bgr"`` (default: ROS ``bgr8`` messages, OpenCV) or ``"rgb"``.

    Returns:
        ``uint8 [H, W, 3]`` in ``channel_order``.
    """
    check_choice("cmap", cmap, CMAPS)
    check_choice("channel_order", channel_order, CHANNEL_ORDERS)
    if not 0 < near < far:
        raise ConfigError("near, far", (near, far), "0 < near < far (metres)")
    d = np.asarray(depth, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.reciprocal(d)  # +Inf -> 0 (far end)
        t -= np.float32(1.0 / far)
        t *= np.float32(254.0 / (1.0 / near - 1.0 / far))
        np.clip(t, 0.0, 254.0, out=t)
        t += np.float32(1.5)  # 1..255, rounded by the truncation below
        invalid = ~(d > 0)
    np.copyto(t, np.float32(0.0), where=invalid)
    return cv2.applyColorMap(t.astype(np.uint8), _inverse_depth_lut(cmap, channel_order))


def colorize_disparity(disp: np.ndarray, max_value: Optional[float] = None,
                       cmap: str = "magma", channel_order: str = "rgb",
                       percentile: float = 95.0) -> np.ndarray:
    """Colour a disparity / inverse-depth map as monodepth2 does: ``disp / vmax``, clipped.

    Args:
        disp: ``[H, W]`` disparity or inverse depth (any units, larger = nearer); 0 is a
            valid "infinitely far" value (dark end); negative, NaN and inf are invalid →
            black.
        max_value: value drawn at the bright end; None: ``percentile`` of the valid values
            (95th, monodepth2's ``vmax``).
        cmap, channel_order: see :func:`colorize_depth`.

    Returns:
        ``uint8 [H, W, 3]``.
    """
    d = _as_map("disparity", disp)
    valid = np.isfinite(d) & (d >= 0)
    if max_value is None:
        max_value = float(np.percentile(d[valid], percentile)) if valid.any() else 1.0
    if not max_value > 0:
        max_value = 1.0
    t = np.full(d.shape, np.nan, dtype=np.float32)
    t[valid] = d[valid] / float(max_value)
    return apply_colormap(t, cmap, channel_order)


def _value_range(vals: np.ndarray, lo: Optional[float], hi: Optional[float],
                 pct: Sequence[float]) -> tuple:
    if lo is None:
        lo = float(np.percentile(vals, pct[0])) if vals.size else 0.0
    if hi is None:
        hi = float(np.percentile(vals, pct[1])) if vals.size else 1.0
    lo, hi = float(lo), float(hi)
    if not hi > lo:
        hi = lo + max(abs(lo), 1.0) * 1e-6
    return lo, hi


def relative_error(pred: np.ndarray, gt: np.ndarray, min_depth: float = 1e-3,
                   max_depth: float = 80.0) -> np.ndarray:
    """Per-pixel ``|pred - gt| / gt`` (AbsRel before averaging) as ``float32 [H, W]``.

    ``pred`` is clipped to ``[min_depth, max_depth]`` as the metrics do; pixels whose GT is
    outside ``(min_depth, max_depth)`` (0, NaN, inf included) or whose prediction is NaN are
    NaN.
    """
    p = _as_map("pred", pred)
    g = _as_map("gt", gt)
    if p.shape != g.shape:
        raise ValueError(f"prediction shape {p.shape} differs from GT shape {g.shape}")
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(g) & (g > min_depth) & (g < max_depth) & ~np.isnan(p)
    err = np.full(g.shape, np.nan, dtype=np.float32)
    pv = np.clip(p[valid], min_depth, max_depth)
    err[valid] = np.abs(pv - g[valid]) / g[valid]
    return err


def error_map(pred: np.ndarray, gt: np.ndarray, min_depth: float = 1e-3,
              max_depth: float = 80.0, vmax: float = 0.5, cmap: str = "inferno",
              channel_order: str = "rgb", dilate: int = 0) -> np.ndarray:
    """Colour the per-pixel relative error ``|pred - gt| / gt``.

    Args:
        pred, gt: ``[H, W]`` metres (scale ``pred`` first, e.g. by the median ratio, when it
            is relative).
        min_depth, max_depth: GT validity and prediction clip range (as the metrics).
        vmax: relative error drawn at the bright end (0.5 = 50 %).
        cmap, channel_order: see :func:`colorize_depth`.
        dilate: radius in pixels to spread sparse errors for display (largest error wins).

    Returns:
        ``uint8 [H, W, 3]``; black where there is no valid GT.
    """
    if not vmax > 0:
        raise ConfigError("vmax", vmax, "a positive relative error, e.g. 0.5")
    err = relative_error(pred, gt, min_depth, max_depth)
    if dilate > 0:
        filled = np.where(np.isnan(err), -1.0, err).astype(np.float32)
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1))
        filled = cv2.dilate(filled, k)
        err = np.where(filled >= 0, filled, np.nan).astype(np.float32)
    return apply_colormap(err / float(vmax), cmap, channel_order)


# ----------------------------------------------------------------------------- strips

def _to_uint8_rgb(img: np.ndarray, i: int) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise ValueError(f"image {i} must be [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], got "
                         f"shape {a.shape}")
    a = a[..., :3]
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating):
            a = np.clip(np.nan_to_num(a, nan=0.0), 0.0, 1.0) * 255.0
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    return a


def draw_label(img: np.ndarray, text: str, corner: str = "top-left") -> None:
    """Write ``text`` in white on a darkened box in one corner of ``img``, in place.

    Args:
        img: ``uint8 [H, W, 3]`` image; the text size follows ``H``.
        text: ASCII text (other characters are drawn as ``?``).
        corner: ``"top-left"`` or ``"bottom-left"``.
    """
    check_choice("corner", corner, ("top-left", "bottom-left"))
    # Hershey fonts only draw ASCII; other characters become '?' instead of garbage.
    text = text.encode("ascii", "replace").decode("ascii")
    h = img.shape[0]
    scale = max(0.35, min(1.2, h / 420.0))
    thick = 1 if scale < 0.8 else 2
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    pad = max(2, int(round(4 * scale)))
    x1 = min(img.shape[1], tw + 2 * pad)
    box_h = min(h, th + base + 2 * pad)
    y0 = 0 if corner == "top-left" else h - box_h
    # darken a box behind the text so it reads on any background
    img[y0:y0 + box_h, :x1] = (img[y0:y0 + box_h, :x1].astype(np.uint16) * 3 // 10
                               ).astype(np.uint8)
    cv2.putText(img, text, (pad, y0 + pad + th), font, scale, (255, 255, 255), thick,
                cv2.LINE_AA)


def make_strip(images: Sequence[np.ndarray], labels: Optional[Sequence[str]] = None,
               height: Optional[int] = None, gap: int = 4, vertical: bool = False
               ) -> np.ndarray:
    """Place images side by side (or stacked), each scaled to one size, with text labels.

    Args:
        images: ``[H, W, 3]``/``[H, W, 4]`` uint8 (or float in [0, 1]) colour images, or
            ``[H, W]`` grey images. All colour images must share one channel order; the strip
            keeps it.
        labels: one ASCII label per image drawn in its top-left corner (None or "" = none).
        height: common height in pixels for a horizontal strip (width for ``vertical``);
            default the first image's.
        gap: black pixels between images.
        vertical: stack top to bottom instead of left to right.

    Returns:
        ``uint8 [H, W_total, 3]`` (or ``[H_total, W, 3]``).
    """
    if len(images) == 0:
        raise ValueError("make_strip needs at least one image")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{len(labels)} labels for {len(images)} images")
    if gap < 0:
        raise ConfigError("gap", gap, "a non-negative number of pixels")
    imgs = [_to_uint8_rgb(im, i) for i, im in enumerate(images)]
    axis_len = 1 if vertical else 0  # the dimension made equal
    target = int(height) if height else imgs[0].shape[axis_len]
    if target <= 0:
        raise ConfigError("height", height, "a positive number of pixels")
    tiles: List[np.ndarray] = []
    for i, im in enumerate(imgs):
        h, w = im.shape[:2]
        if vertical:
            size = (target, max(1, int(round(h * target / w))))
        else:
            size = (max(1, int(round(w * target / h))), target)
        if (size[1], size[0]) != (h, w):
            shrink = size[0] * size[1] < w * h
            im = cv2.resize(im, size, interpolation=cv2.INTER_AREA if shrink
                            else cv2.INTER_NEAREST)
        else:
            im = im.copy()
        if labels is not None and labels[i]:
            draw_label(im, str(labels[i]))
        tiles.append(im)
        if gap and i < len(imgs) - 1:
            gshape = (gap, target, 3) if vertical else (target, gap, 3)
            tiles.append(np.zeros(gshape, dtype=np.uint8))
    return np.ascontiguousarray(np.concatenate(tiles, axis=0 if vertical else 1))


# ----------------------------------------------------------------------------- animation

def _check_frames(frames: Iterable[np.ndarray]) -> List[np.ndarray]:
    out = [_to_uint8_rgb(f, i) for i, f in enumerate(frames)]
    if not out:
        raise ValueError("no frames to write")
    shape = out[0].shape
    for i, f in enumerate(out):
        if f.shape != shape:
            raise ValueError(f"frame {i} has shape {f.shape}, frame 0 has {shape}; "
                             f"all frames must have one size")
    return out


def write_gif(frames: Iterable[np.ndarray], path: str | os.PathLike, fps: float = 10.0,
              loop: int = 0) -> Path:
    """Write an animated GIF with Pillow.

    Args:
        frames: ``uint8 [H, W, 3]`` **RGB** frames of one size (grey ``[H, W]`` allowed).
        path: destination ``.gif``; parent folders are created.
        fps: frames per second (GIF stores per-frame durations in 10 ms units).
        loop: 0 = loop forever, n = repeat n times (Pillow's ``loop``).

    Returns:
        the path written.
    """
    from PIL import Image

    if not fps > 0:
        raise ConfigError("fps", fps, "a positive frame rate")
    imgs = [Image.fromarray(f) for f in _check_frames(frames)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    duration = max(10, int(round(1000.0 / fps)))
    imgs[0].save(path, format="GIF", save_all=True, append_images=imgs[1:], duration=duration,
                 loop=loop, optimize=False)
    return path


def write_mp4(frames: Iterable[np.ndarray], path: str | os.PathLike, fps: float = 10.0,
              channel_order: str = "rgb", fourcc: str = "mp4v") -> Path:
    """Write an MP4 video with OpenCV (``mp4v`` codec; no external encoder needed).

    Frames are streamed, so long videos need no memory for all frames.

    Args:
        frames: ``uint8 [H, W, 3]`` frames of one size in ``channel_order``.
        path: destination ``.mp4``; parent folders are created.
        fps: frames per second.
        channel_order: ``"rgb"`` (default) or ``"bgr"``.
        fourcc: four-character codec code known to the OpenCV build.

    Raises:
        RuntimeError: the OpenCV build cannot write this codec/container.
    """
    check_choice("channel_order", channel_order, CHANNEL_ORDERS)
    if not fps > 0:
        raise ConfigError("fps", fps, "a positive frame rate")
    if len(fourcc) != 4:
        raise ConfigError("fourcc", fourcc, "a four-character codec code such as 'mp4v'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    shape = None
    n = 0
    try:
        for i, f in enumerate(frames):
            f = _to_uint8_rgb(f, i)
            if writer is None:
                shape = f.shape
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps),
                                         (shape[1], shape[0]))
                if not writer.isOpened():
                    raise RuntimeError(f"OpenCV cannot write {path} with codec {fourcc!r}; "
                                       f"write a GIF instead (write_gif)")
            elif f.shape != shape:
                raise ValueError(f"frame {i} has shape {f.shape}, frame 0 has {shape}")
            writer.write(np.ascontiguousarray(f[..., ::-1] if channel_order == "rgb" else f))
            n += 1
    finally:
        if writer is not None:
            writer.release()
    if n == 0:
        raise ValueError("no frames to write")
    return path
