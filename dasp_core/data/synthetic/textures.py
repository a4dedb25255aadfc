"""Procedural, anti-aliased textures defined on surface coordinates in metres.

Every pattern is a function of coordinates fixed to the surface (world x/y on the road, object-
local coordinates on boxes), so it stays glued to the surface when the camera moves — the
property that makes photometric warping with the true depth and pose consistent.

Aliasing would break that property (a pattern finer than a pixel flickers from frame to frame),
so every pattern is band-limited by the pixel footprint ``w`` (metres of surface covered by one
pixel, estimated per pixel from screen-space derivatives of the hit position):

* noise: a bank of tileable band-pass textures sampled with ``cv2.remap``; each octave fades
  out before its frequency reaches the Nyquist limit of the footprint (frequency clamping);
* stripes/grids (lane marks, tiles, windows): the exact box-filtered coverage of a pulse train,
  computed in closed form (:func:`pulse_coverage`).
"""

from __future__ import annotations

from typing import Sequence, Tuple

import cv2
import numpy as np

__all__ = ["hash_u32", "hash_bytes", "hash_uniform", "smoothstep", "pulse_coverage", "band_coverage", "NoiseBank", "footprints", "remap_any"]


def _mix32(h: np.ndarray) -> np.ndarray:
    """A fast integer hash (lowbias32 by C. Wellons) on uint32 arrays."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x7FEB352D)
    h = h ^ (h >> np.uint32(15))
    h = h * np.uint32(0x846CA68B)
    h = h ^ (h >> np.uint32(16))
    return h


def hash_u32(*keys: np.ndarray | int) -> np.ndarray:
    """Deterministic uint32 hash of integer keys (broadcastable shapes)."""
    with np.errstate(over="ignore"):
        h = np.uint32(0x9E3779B9)
        for k in keys:
            k = np.asarray(k).astype(np.int64).astype(np.uint32)
            h = _mix32(h ^ (k + np.uint32(0x632BE5AB)))
    return h


def hash_bytes(h: np.ndarray, byte: int) -> np.ndarray:
    """Uniform [0, 1) from byte ``byte`` (0..3) of a :func:`hash_u32` value (float32)."""
    return ((h >> np.uint32(8 * byte)) & np.uint32(255)).astype(np.float32) * \
        np.float32(1.0 / 256.0) + np.float32(1.0 / 512.0)


def hash_uniform(*keys: np.ndarray | int) -> np.ndarray:
    """Deterministic uniform values in [0, 1) from integer keys (any broadcastable shapes).

    Used for per-window / per-object random choices that must be identical in every frame and
    independent of the order in which frames are rendered.
    """
    with np.errstate(over="ignore"):
        h = np.uint32(0x9E3779B9)
        for k in keys:
            k = np.asarray(k).astype(np.int64).astype(np.uint32)
            h = _mix32(h ^ (k + np.uint32(0x632BE5AB)))
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def smoothstep(e0: float | np.ndarray, e1: float | np.ndarray, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at ``e0`` to 1 at ``e1`` (float32)."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32, copy=False)


def _pulse_integral(x: np.ndarray, period: float | np.ndarray, width: float | np.ndarray
                    ) -> np.ndarray:
    # integral of a pulse train that is 1 on [k*period, k*period + width)
    q = np.floor(x / period)
    return q * width + np.minimum(x - q * period, width)


def pulse_coverage(x: np.ndarray, period: float | np.ndarray, width: float | np.ndarray,
                   filt: np.ndarray, offset: float | np.ndarray = 0.0) -> np.ndarray:
    """Box-filtered coverage of a periodic pulse train (exact, closed form).

    The pattern is 1 on ``[offset + k*period, offset + k*period + width)`` and 0 elsewhere; the
    result is its mean over ``[x - filt/2, x + filt/2]``, i.e. what a pixel covering ``filt``
    metres of surface sees. When ``filt`` spans many periods it tends to ``width / period``.

    Args:
        x: surface coordinate (metres), any shape.
        period, width, offset: pattern (metres); scalars or arrays broadcastable to ``x``.
        filt: footprint (metres), same shape as ``x``.
    Returns:
        float32 coverage in [0, 1].
    """
    f = np.maximum(filt, 1e-4)
    xs = x - offset
    cov = (_pulse_integral(xs + 0.5 * f, period, width)
           - _pulse_integral(xs - 0.5 * f, period, width)) / f
    return np.clip(cov, 0.0, 1.0).astype(np.float32, copy=False)


def band_coverage(x: np.ndarray, lo: float | np.ndarray, width: float | np.ndarray,
                  filt: np.ndarray) -> np.ndarray:
    """Box-filtered coverage of a single band ``[lo, lo + width)`` (cheaper than a pulse train
    with a huge period): overlap of ``[x - filt/2, x + filt/2]`` with the band, over ``filt``."""
    h = 0.5 * np.maximum(filt, 1e-4)
    ov = np.minimum(x + h, lo + width) - np.maximum(x - h, lo)
    return np.clip(ov / (2 * h), 0.0, 1.0).astype(np.float32, copy=False)


def footprints(px: np.ndarray, py: np.ndarray, pz: np.ndarray
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel footprint along each world axis from screen-space derivatives.

    Like a GPU's ddx/ddy: ``w_x = |dx/du| + |dx/dv|`` with each derivative the smaller of the
    forward and backward difference, so one-sided depth edges do not inflate it.

    Args:
        px, py, pz: ``[H, W]`` world coordinates of the hit points (metres).
    Returns:
        ``(wx, wy, wz)`` ``[H, W]`` float32 metres.
    """
    out = []
    for p in (px, py, pz):
        du = np.abs(np.diff(p, axis=1))
        dv = np.abs(np.diff(p, axis=0))
        gu = np.empty_like(p)
        gu[:, 1:-1] = np.minimum(du[:, 1:], du[:, :-1])
        gu[:, 0] = du[:, 0]
        gu[:, -1] = du[:, -1]
        gv = np.empty_like(p)
        gv[1:-1] = np.minimum(dv[1:], dv[:-1])
        gv[0] = dv[0]
        gv[-1] = dv[-1]
        out.append(gu + gv)
    return out[0], out[1], out[2]


def _wrap(x: np.ndarray, size: float) -> np.ndarray:
    # x mod size; np.mod on floats is ~30x slower than floor
    x = np.asarray(x, np.float32)
    return x - np.floor(x * np.float32(1.0 / size)) * np.float32(size)


def remap_any(tex: np.ndarray, u: np.ndarray, v: np.ndarray, wrap: bool = False,
              nearest: bool = False) -> np.ndarray:
    """``cv2.remap`` for maps of any shape, including long 1-D index lists.

    OpenCV limits map sides to < 32767, so 1-D maps are folded into rows of 1024.
    Returns float32 samples with the shape of ``u`` (plus channels of ``tex``).
    """
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    border = cv2.BORDER_WRAP if wrap else cv2.BORDER_REPLICATE
    u = np.asarray(u, np.float32)
    v = np.asarray(v, np.float32)
    if u.ndim == 2 and u.shape[0] < 32767 and u.shape[1] < 32767:
        return cv2.remap(tex, u, v, interpolation=interp, borderMode=border)
    flat_u, flat_v = u.reshape(-1), v.reshape(-1)
    n = flat_u.size
    cols = 1024
    rows = max(1, -(-n // cols))
    pad = rows * cols - n
    if pad:
        flat_u = np.concatenate([flat_u, np.zeros(pad, np.float32)])
        flat_v = np.concatenate([flat_v, np.zeros(pad, np.float32)])
    out = cv2.remap(tex, flat_u.reshape(rows, cols), flat_v.reshape(rows, cols),
                    interpolation=interp, borderMode=border)
    extra = out.shape[2:] if out.ndim == 3 else ()
    return out.reshape((rows * cols,) + extra)[:n].reshape(u.shape + extra)


def _bandpass_texture(size: int, cycles: float, rng: np.random.Generator) -> np.ndarray:
    """Tileable band-pass noise (one octave around ``cycles`` per tile), zero mean, unit std."""
    white = rng.standard_normal((size, size))
    fy = np.fft.fftfreq(size)[:, None] * size
    fx = np.fft.rfftfreq(size)[None, :] * size
    r = np.sqrt(fx * fx + fy * fy)
    # smooth one-octave band (log-Gaussian), tileable because it is built in Fourier space
    with np.errstate(divide="ignore"):
        band = np.exp(-0.5 * (np.log2(np.maximum(r, 1e-6) / cycles) / 0.5) ** 2)
    band[0, 0] = 0.0
    tex = np.fft.irfft2(np.fft.rfft2(white) * band, s=(size, size))
    tex = (tex - tex.mean()) / (tex.std() + 1e-12)
    return tex.astype(np.float32)


class NoiseBank:
    """Band-pass noise octaves sampled on 2D surface coordinates (metres).

    Octave ``k`` has spatial frequency ``freqs[k]`` cycles per metre. Each octave uses its own
    tileable texture, rotated and offset so that repetition and axis alignment do not show.

    Args:
        freqs: cycles per metre of each octave.
        seed: texture seed (the bank is shared by every sequence: fixed seed, fixed look).
        size: texture tile size in texels.
    """

    CYCLES_PER_TILE = 16.0

    def __init__(self, freqs: Sequence[float] = (0.08, 0.6, 2.5, 10.0, 40.0), seed: int = 1234,
                 size: int = 256):
        rng = np.random.default_rng(seed)
        self.freqs = tuple(float(f) for f in freqs)
        self.size = size
        self.textures = [_bandpass_texture(size, self.CYCLES_PER_TILE, rng) for _ in self.freqs]
        ang = rng.uniform(0, np.pi, len(self.freqs))
        self.rot = [(float(np.cos(a)), float(np.sin(a))) for a in ang]
        self.offset = rng.uniform(0, size, (len(self.freqs), 2)).astype(np.float32)

    def octave(self, k: int, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
        """Sample octave ``k`` at surface coordinates (metres); returns zero-mean unit-std
        float32 noise of the same shape (any 1-D or 2-D shape)."""
        texels_per_m = self.freqs[k] * self.size / self.CYCLES_PER_TILE
        c, s = self.rot[k]
        shape = s1.shape
        a = s1.reshape(-1) if s1.ndim == 1 else s1
        b = s2.reshape(-1) if s2.ndim == 1 else s2
        # rotate, scale, offset; wrap into the tile before float32 maps lose precision
        u = _wrap((c * a - s * b) * texels_per_m + self.offset[k, 0], self.size)
        v = _wrap((s * a + c * b) * texels_per_m + self.offset[k, 1], self.size)
        return remap_any(self.textures[k], u, v, wrap=True).reshape(shape)

    def fade(self, k: int, footprint: np.ndarray) -> np.ndarray:
        """Weight of octave ``k``: 1 while the footprint resolves it (≤ 1/4 period per pixel),
        0 from the Nyquist limit (1/2 period per pixel) on."""
        return np.clip(2.0 - 4.0 * footprint * self.freqs[k], 0.0, 1.0).astype(np.float32)
