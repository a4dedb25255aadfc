"""Bring a network-resolution depth map to ground-truth resolution exactly as a protocol's
peer does (torch-free).

* ``"nearest"``: ``cv2.resize(..., interpolation=cv2.INTER_NEAREST)`` — the very call of RNW's
  evaluation/eval_robotcar.py:76 and eval_nuscenes.py:59.
* ``"bilinear_align_corners"``: what md4all's utils/depth.py:214 does with
  ``torch.nn.functional.interpolate(mode="bilinear", align_corners=True)``
  (utils/image.py:131-136: unchanged when the size already matches). With align_corners the
  corner pixel *centres* of input and output coincide: output row ``y`` samples input row
  ``y * (h - 1) / (H - 1)`` (0 when ``H == 1``), and likewise for columns, then blends the
  two neighbouring rows and columns linearly. OpenCV's ``INTER_LINEAR`` instead maps pixel
  centres ``(y + 0.5) * h / H - 0.5``; on steep depth near the horizon the two differ by
  several percent in sq_rel.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from dasp_core.errors import check_choice

__all__ = ["RESIZE_MODES", "resize_prediction", "bilinear_align_corners"]

#: The peer resizes (``"estimator"`` of :data:`~dasp_core.eval.metrics.PRED_RESIZE_MODES` is
#: not a resize of a finished map, so it is not here).
RESIZE_MODES = ("nearest", "bilinear_align_corners")


def _align_corners_taps(n_in: int, n_out: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower tap, upper tap and upper weight of each output index along one axis.

    The source coordinate and the weight are computed in float32 step by step as torch's CPU
    kernel computes them for float32 tensors (``scale = float(n_in - 1) / (n_out - 1)``,
    ``src = scale * i``, ``lambda = src - floor(src)``): with ~1000 output pixels float32
    rounds the weights by up to ~1e-4, which moves a value on a steep depth edge by ~3e-5
    relative, so float64 weights would not give md4all's numbers.
    """
    if n_out > 1:
        scale = np.float32(n_in - 1) / np.float32(n_out - 1)
        src = np.float32(scale) * np.arange(n_out, dtype=np.float32)
    else:
        src = np.zeros(1, np.float32)
    lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    lam = np.clip(src - lo.astype(np.float32), np.float32(0), np.float32(1))
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, lam.astype(np.float64)


def bilinear_align_corners(depth: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``depth [h, w]`` to ``size_hw = (H, W)`` with aligned corners.

    Weights as torch computes them for float32 tensors (md4all's), the blend in float64,
    returned as ``float32 [H, W]``; torch's float32 output agrees to ~1e-7 relative.
    ``+inf`` inputs stay ``+inf`` where their weight is non-zero (a 0 weight times inf would
    be NaN, so exact taps are taken without blending).
    """
    d = np.asarray(depth, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] < 1 or d.shape[1] < 1:
        raise ValueError(f"depth must be a non-empty [H, W] map, got shape {d.shape}")
    H, W = int(size_hw[0]), int(size_hw[1])
    if H < 1 or W < 1:
        raise ValueError(f"output size must be positive, got {size_hw}")
    if (H, W) == d.shape:
        return d.astype(np.float32)
    y0, y1, wy = _align_corners_taps(d.shape[0], H)
    x0, x1, wx = _align_corners_taps(d.shape[1], W)
    wy = wy[:, None]
    with np.errstate(invalid="ignore"):
        rows = _blend(d[y0], d[y1], wy)                  # [H, w]
        out = _blend(rows[:, x0], rows[:, x1], wx[None, :])
    return out.astype(np.float32)


def _blend(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``(1 - t) a + t b`` that returns ``a`` where ``t == 0`` and ``b`` where ``t == 1``
    (so an inf neighbour with zero weight does not turn the sample into NaN)."""
    t = np.broadcast_to(t, a.shape)
    out = (1.0 - t) * a + t * b
    out = np.where(t == 0.0, a, out)
    return np.where(t == 1.0, b, out)


def resize_prediction(depth: np.ndarray, size_hw: Tuple[int, int], mode: str) -> np.ndarray:
    """Resize a depth map ``[h, w]`` to ``size_hw = (H, W)`` by one of :data:`RESIZE_MODES`.

    Returns:
        ``float32 [H, W]`` (metres or relative units, as given).
    """
    check_choice("pred_resize", mode, RESIZE_MODES)
    d = np.asarray(depth, dtype=np.float32)
    if d.ndim == 3 and 1 in (d.shape[0], d.shape[-1]):
        d = d.reshape(d.shape[1:] if d.shape[0] == 1 else d.shape[:2])
    if mode == "bilinear_align_corners":
        return bilinear_align_corners(d, size_hw)
    import cv2

    H, W = int(size_hw[0]), int(size_hw[1])
    return cv2.resize(d, (W, H), interpolation=cv2.INTER_NEAREST)
