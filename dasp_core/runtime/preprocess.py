"""Image ↔ network tensors, identical for every backend (torch, onnxruntime, TensorRT).

``preprocess``: RGB ``uint8 [H, W, 3]`` → ``float32 [1, 3, h, w]`` in [0, 1] (the graph input;
ImageNet normalisation lives inside the network). Plain resize, no crop: the network sees the
whole field of view and intrinsics scale per axis (:func:`dasp_core.geometry.scale_intrinsics`).

``postprocess``: sigmoid disparity ``[h, w]`` → metric depth ``float32 [H_out, W_out]`` in
metres, the numpy twin of :func:`dasp_core.geometry.disp_to_depth` times
``ModelInfo.scale_factor``.

:class:`ImagePipelineMixin` builds ``predict``/``predict_batch`` of the
:class:`~dasp_core.runtime.base.DepthEstimator` protocol on top of a backend's
``infer_disparity``, so the three backends cannot drift apart.

No torch import here (deployment path).
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from dasp_core.runtime.base import ModelInfo

INTERPOLATIONS = ("linear", "nearest")

SizeHW = Tuple[int, int]


def _check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be a numpy array (uint8 [H, W, 3] RGB), got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must have shape [H, W, 3] (RGB), got {list(image.shape)}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 (0..255 RGB), got {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{name} is empty: shape {list(image.shape)}")
    return image


def _check_size(size: Sequence[int], name: str) -> SizeHW:
    if len(size) != 2:
        raise ValueError(f"{name} must be (height, width), got {size!r}")
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise ValueError(f"{name} must be positive (height, width), got {size!r}")
    return h, w


def resize_interpolation(src_hw: SizeHW, dst_hw: SizeHW) -> int:
    """OpenCV flag for resizing an image from ``src_hw`` to ``dst_hw``.

    ``INTER_AREA`` when shrinking in both axes (it averages the covered pixels, so no aliasing
    of fine texture such as lane markings or lamp glare), ``INTER_LINEAR`` otherwise (for
    zooming, INTER_AREA degenerates to nearest-neighbour blocks).
    """
    shrink = dst_hw[0] <= src_hw[0] and dst_hw[1] <= src_hw[1]
    return cv2.INTER_AREA if shrink else cv2.INTER_LINEAR


def preprocess(image: np.ndarray, size: Sequence[int],
               out: Optional[np.ndarray] = None) -> np.ndarray:
    """RGB image → network input.

    Args:
        image: ``uint8 [H, W, 3]`` RGB, any size.
        size: network input ``(h, w)`` in pixels.
        out: optional ``float32 [1, 3, h, w]`` (or ``[3, h, w]``) buffer to write into, e.g. a
            pinned host buffer of the TensorRT backend; avoids an allocation per frame.

    Returns:
        ``float32 [1, 3, h, w]`` RGB in [0, 1] (``out`` itself when given).
    """
    image = _check_image(image)
    h, w = _check_size(size, "size")
    src_hw = (image.shape[0], image.shape[1])
    if src_hw != (h, w):
        # resize the uint8 image (4x less memory traffic than resizing floats)
        image = cv2.resize(np.ascontiguousarray(image), (w, h),
                           interpolation=resize_interpolation(src_hw, (h, w)))
    if out is None:
        out = np.empty((1, 3, h, w), dtype=np.float32)
    elif out.dtype != np.float32 or out.size != 3 * h * w:
        raise ValueError(f"out buffer must be float32 with {3 * h * w} elements "
                         f"([1, 3, {h}, {w}]), got {out.dtype} {list(out.shape)}")
    chw = out.reshape(3, h, w)
    # HWC → CHW with the scaling fused into the copy; split into contiguous planes first
    # (one OpenCV pass): the plane-wise multiply then reads memory in order, 2x faster than
    # numpy's strided transpose
    for c, plane in enumerate(cv2.split(np.ascontiguousarray(image))):
        np.multiply(plane, np.float32(1.0 / 255.0), out=chw[c], casting="unsafe")
    return out


def preprocess_batch(images: Union[np.ndarray, Sequence[np.ndarray]], size: Sequence[int]
                     ) -> np.ndarray:
    """``[B, H, W, 3]`` uint8 (or a list of images of any sizes) → ``float32 [B, 3, h, w]``."""
    h, w = _check_size(size, "size")
    if isinstance(images, np.ndarray) and images.ndim == 3:
        raise ValueError("images must be a batch [B, H, W, 3] or a list of [H, W, 3]; "
                         "use predict() for one image")
    n = len(images)
    if n == 0:
        raise ValueError("images is an empty batch")
    batch = np.empty((n, 3, h, w), dtype=np.float32)
    for i in range(n):
        preprocess(_check_image(images[i], f"images[{i}]"), (h, w), out=batch[i])
    return batch


def disparity_to_depth(disp: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """Sigmoid disparity in [0, 1] → depth in metres in [min_depth, max_depth].

    Numpy twin of :func:`dasp_core.geometry.disp_to_depth`:
    ``scaled = 1/max + (1/min - 1/max) * disp``; ``depth = 1 / scaled``.
    """
    min_disp, max_disp = 1.0 / max_depth, 1.0 / min_depth
    scaled = np.float32(min_disp) + np.float32(max_disp - min_disp) * disp.astype(np.float32)
    return (np.float32(1.0) / scaled).astype(np.float32, copy=False)


def postprocess(disp: np.ndarray, info: ModelInfo, output_size: Optional[Sequence[int]] = None,
                interpolation: str = "linear") -> np.ndarray:
    """Network disparity → metric depth at the requested size.

    Resizing happens in disparity (inverse-depth) space, before the conversion (ours): a plane
    (road, wall) has inverse depth that is an affine function of the pixel coordinates, so
    bilinear interpolation of disparity reproduces planes exactly, while bilinear interpolation
    of depth bends them and invents depths between foreground and background. ``"linear"``
    (cv2 INTER_LINEAR up, INTER_AREA down) is the default because the network output is
    already smooth and nearest-neighbour upsampling turns it into 2x2..4x4 terraces that show
    as stair-steps in point clouds. ``"nearest"`` never mixes neighbouring values, for users
    whose downstream relies on exact network values (e.g. per-pixel uncertainty lookups).

    Args:
        disp: ``[h, w]`` (or ``[1, h, w]`` / ``[1, 1, h, w]``) sigmoid disparity in [0, 1].
        info: the model's depth range and scale factor.
        output_size: ``(H, W)`` of the result; ``None`` keeps ``[h, w]``.
        interpolation: ``"linear"`` or ``"nearest"``.

    Returns:
        ``float32 [H, W]`` depth in metres (times ``info.scale_factor``; relative depth when
        ``info.scale_source == "none"``), every value in
        ``[min_depth, max_depth] * scale_factor``.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation = {interpolation!r} is not allowed; allowed: "
                         + ", ".join(INTERPOLATIONS))
    disp = np.asarray(disp)
    while disp.ndim > 2 and disp.shape[0] == 1:
        disp = disp[0]
    if disp.ndim != 2:
        raise ValueError(f"disp must be [h, w] (or with leading 1-dims), got {list(disp.shape)}")
    # clip guards against fp16/int8 engines stepping out of [0, 1]; the affine map to scaled
    # disparity commutes with the (linear, convex) resize, so it runs at network resolution
    # and only the reciprocal runs at the output size (ours: 2 full-size passes instead of 6)
    min_disp, max_disp = 1.0 / info.max_depth, 1.0 / info.min_depth
    scaled = np.clip(disp.astype(np.float32, copy=False), 0.0, 1.0)
    scaled *= np.float32(max_disp - min_disp)
    scaled += np.float32(min_disp)
    if output_size is not None:
        H, W = _check_size(output_size, "output_size")
        if (H, W) != scaled.shape:
            if interpolation == "nearest":
                flag = cv2.INTER_NEAREST
            else:
                flag = resize_interpolation(scaled.shape, (H, W))
            scaled = cv2.resize(scaled, (W, H), interpolation=flag)
            # float rounding of the interpolation weights may step 1 ulp outside the range
            np.clip(scaled, np.float32(min_disp), np.float32(max_disp), out=scaled)
    return np.divide(np.float32(info.scale_factor), scaled, out=scaled)


class ImagePipelineMixin:
    """``predict``/``predict_batch`` of :class:`~dasp_core.runtime.base.DepthEstimator`.

    A backend defines ``info`` (:class:`ModelInfo`), ``backend`` (name) and
    ``infer_disparity(float32 [B, 3, h, w]) -> float32 [B, 1, h, w]``; everything else (resize,
    normalisation to [0, 1], depth conversion, resize back) is shared.
    """

    info: ModelInfo
    backend: str
    interpolation: str = "linear"

    @property
    def runs_on(self) -> str:
        """Where the network runs, for logs and reports (``cpu``, a provider, a GPU name)."""
        return str(getattr(self, "device", "cpu"))

    @property
    def input_size(self) -> SizeHW:
        """Network input ``(h, w)`` in pixels."""
        return int(self.info.input_height), int(self.info.input_width)

    def infer_disparity(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_batch(self, batch: np.ndarray) -> np.ndarray:
        h, w = self.input_size
        if (not isinstance(batch, np.ndarray) or batch.ndim != 4 or batch.shape[1] != 3
                or batch.shape[2:] != (h, w)):
            shape = list(batch.shape) if isinstance(batch, np.ndarray) else type(batch).__name__
            raise ValueError(f"{self.backend}: batch must be float32 [B, 3, {h}, {w}], got {shape}")
        if batch.dtype != np.float32:
            batch = batch.astype(np.float32)
        return np.ascontiguousarray(batch)

    def predict(self, image: np.ndarray, output_size: Optional[Tuple[int, int]] = None
                ) -> np.ndarray:
        """RGB ``uint8 [H, W, 3]`` → depth ``float32 [H, W]`` metres (or ``output_size``)."""
        image = _check_image(image)
        disp = self.infer_disparity(preprocess(image, self.input_size))
        size = output_size if output_size is not None else image.shape[:2]
        return postprocess(disp[0, 0], self.info, size, self.interpolation)

    def predict_batch(self, images: Union[np.ndarray, Sequence[np.ndarray]],
                      output_size: Optional[Tuple[int, int]] = None) -> np.ndarray:
        """``uint8 [B, H, W, 3]`` → ``float32 [B, H, W]`` (or ``[B, *output_size]``).

        A list of differently sized images needs ``output_size`` (the results are stacked).
        """
        batch = preprocess_batch(images, self.input_size)
        disp = self.infer_disparity(batch)
        if output_size is None:
            sizes = {tuple(im.shape[:2]) for im in images}
            if len(sizes) != 1:
                raise ValueError("images of different sizes need output_size to be stacked")
            output_size = sizes.pop()
        return np.stack([postprocess(disp[i, 0], self.info, output_size, self.interpolation)
                         for i in range(disp.shape[0])])
