"""Camera effects on the linear radiance image (ours): motion blur of moving cars, bloom and
glare, exposure, signal-dependent noise, sRGB encoding, 8-bit quantisation.

Noise model (per channel, linear signal ``x`` in [0, 1] after exposure):
``y = x + sqrt(x / full_well + read²) * N(0, 1) + row``, where ``full_well`` is the number of
electrons at the white level (shot noise, Poisson in the Gaussian limit), ``read`` the read
noise as a fraction of white, and ``row`` a per-row offset (banding of CMOS sensors at high
gain, night only). Values are clipped to [0, 1], encoded with the sRGB curve and rounded.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import cv2
import numpy as np


def srgb_encode(x: np.ndarray) -> np.ndarray:
    """Linear [0, 1] → sRGB-encoded [0, 1] (IEC 61966-2-1 curve), float32."""
    x = np.clip(x, 0.0, 1.0)
    lo = x * np.float32(12.92)
    hi = np.float32(1.055) * np.power(np.maximum(x, 0.0031308), np.float32(1 / 2.4)) - \
        np.float32(0.055)
    return np.where(x <= 0.0031308, lo, hi).astype(np.float32)


def srgb_decode(y: np.ndarray) -> np.ndarray:
    """sRGB-encoded [0, 1] → linear [0, 1], float32."""
    y = np.asarray(y, np.float32)
    return np.where(y <= 0.04045, y / 12.92, ((y + 0.055) / 1.055) ** 2.4).astype(np.float32)


def _line_kernel(du: float, dv: float) -> np.ndarray:
    """Normalised anti-aliased line kernel of the motion ``(du, dv)`` pixels, centred."""
    L = float(np.hypot(du, dv))
    r = int(np.ceil(L / 2)) + 1
    size = 2 * r + 1
    k = np.zeros((size, size), np.float32)
    n = max(2, int(np.ceil(L * 2)) + 1)
    for s in np.linspace(-0.5, 0.5, n):
        x, y = r + s * du, r + s * dv
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        fx, fy = x - x0, y - y0
        for (xx, yy, w) in ((x0, y0, (1 - fx) * (1 - fy)), (x0 + 1, y0, fx * (1 - fy)),
                            (x0, y0 + 1, (1 - fx) * fy), (x0 + 1, y0 + 1, fx * fy)):
            if 0 <= xx < size and 0 <= yy < size:
                k[yy, xx] += w
    return k / k.sum()


def motion_blur(rad: np.ndarray, obj_map: np.ndarray, motions: Sequence[Tuple[int, float, float]]
                ) -> np.ndarray:
    """Blur the pixels of moving objects along their image motion during the exposure.

    Each object is a layer (its radiance times its mask); layer and mask are convolved with a
    line kernel along the object's image motion and composited over the image
    (``out = blurred_layer + (1 - blurred_mask) * image``), so the car smears over the
    background like in a real exposure while the static background stays sharp.

    Args:
        rad: ``[3, H, W]`` linear radiance.
        obj_map: ``[H, W]`` int32 object id per pixel (-1 none).
        motions: ``(object id, du, dv)``: image motion in pixels over the exposure.
    Returns:
        New ``[3, H, W]`` radiance.
    """
    out = rad
    H, W = obj_map.shape
    for oid, du, dv in motions:
        if np.hypot(du, dv) < 0.5:
            continue
        m = obj_map == oid
        rows = np.flatnonzero(m.any(1))
        if rows.size == 0:
            continue
        cols = np.flatnonzero(m.any(0))
        pad = int(np.ceil(np.hypot(du, dv) / 2)) + 2
        v0, v1 = max(0, rows[0] - pad), min(H, rows[-1] + pad + 1)
        u0, u1 = max(0, cols[0] - pad), min(W, cols[-1] + pad + 1)
        k = _line_kernel(du, dv)
        mask = m[v0:v1, u0:u1].astype(np.float32)
        if out is rad:
            out = rad.copy()
        patch = out[:, v0:v1, u0:u1]
        layer = np.concatenate([patch * mask, mask[None]], 0).transpose(1, 2, 0)
        blurred = cv2.filter2D(np.ascontiguousarray(layer), -1, k, borderType=cv2.BORDER_CONSTANT)
        alpha = blurred[..., 3]
        for c in range(3):
            patch[c] = blurred[..., c] + (1.0 - alpha) * patch[c]
    return out


def bloom(rad: np.ndarray, threshold: float, weights: Tuple[float, float, float],
          streak: float = 0.0) -> np.ndarray:
    """Add glare around bright pixels: three Gaussian halos (narrow, wide, veil) of the
    energy above ``threshold``, computed at quarter resolution, plus an optional horizontal
    streak (windscreen glare at night). ``rad``: ``[3, H, W]`` linear; returns a new array."""
    _, H, W = rad.shape
    bright = np.maximum(rad - np.float32(threshold), 0.0)
    if not bright.any():
        return rad
    small = cv2.resize(np.ascontiguousarray(bright.transpose(1, 2, 0)),
                       (max(1, W // 4), max(1, H // 4)), interpolation=cv2.INTER_AREA)
    glare = np.zeros_like(small)
    for sigma, w in zip((1.2, 5.0, 16.0), weights):
        if w > 0:
            glare += np.float32(w) * cv2.GaussianBlur(small, (0, 0), sigma)
    if streak > 0:
        glare += np.float32(streak) * cv2.blur(small, (max(3, W // 24) | 1, 1))
    up = cv2.resize(glare, (W, H), interpolation=cv2.INTER_LINEAR)
    return rad + up.transpose(2, 0, 1)


_LUT_N = 16384
_SRGB_LUT: np.ndarray | None = None
_NORMALS: np.ndarray | None = None
_NORMALS_N = 1 << 22


def _srgb_lut() -> np.ndarray:
    # 8-bit sRGB of linear values on a 14-bit grid (finer than one 8-bit step everywhere)
    global _SRGB_LUT
    if _SRGB_LUT is None:
        x = np.arange(_LUT_N, dtype=np.float64) / (_LUT_N - 1)
        _SRGB_LUT = np.round(srgb_encode(x.astype(np.float32)) * 255.0).astype(np.uint8)
    return _SRGB_LUT


def standard_normals(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` standard normal float32 values: a slice of a fixed per-process bank of 4M values
    at an offset drawn from ``rng`` (10x cheaper than drawing them; deterministic)."""
    global _NORMALS
    if _NORMALS is None:
        _NORMALS = np.random.default_rng(20240917).standard_normal(_NORMALS_N, dtype=np.float32)
    if n > _NORMALS_N // 2:
        return rng.standard_normal(n, dtype=np.float32)
    start = int(rng.integers(0, _NORMALS_N - n))
    sign = np.float32(1.0 if rng.random() < 0.5 else -1.0)
    return _NORMALS[start:start + n] * sign


def expose(rad: np.ndarray, exposure: float, rng: np.random.Generator | None,
           full_well: float, read_noise: float, row_noise: float = 0.0) -> np.ndarray:
    """Linear radiance ``[3, H, W]`` → ``uint8 [H, W, 3]`` sRGB image.

    ``rng`` None disables noise (clean images for tests/diagnostics).
    """
    x = rad * np.float32(exposure)
    if rng is not None:
        sigma = np.sqrt(np.clip(x, 0.0, 1.0) * np.float32(1.0 / full_well) +
                        np.float32(read_noise ** 2))
        x = x + sigma * standard_normals(rng, x.size).reshape(x.shape)
        if row_noise > 0:
            x = x + np.float32(row_noise) * rng.standard_normal((1, x.shape[1], 1),
                                                                 dtype=np.float32)
    q = np.clip(x * np.float32(_LUT_N - 1) + np.float32(0.5), 0, _LUT_N - 1).astype(np.int32)
    return np.take(_srgb_lut(), q.transpose(1, 2, 0))
