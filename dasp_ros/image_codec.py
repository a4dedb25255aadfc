"""sensor_msgs/Image and CompressedImage for the node: rclpy messages ↔ numpy, without cv_bridge.

The decoding and encoding logic is ROS-free and lives in :mod:`dasp_core.image_msgs` (shared
with the rosbag tools); it is re-exported here so the node and its tools import one module.
This module adds only what needs the rclpy message classes: building ``sensor_msgs.msg.Image``
and ``CompressedImage`` (``data`` as ``array.array('B')``, one copy), and the ``depth/color``
picture (:func:`dasp_core.viz.colorize_inverse_depth` in BGR for ``bgr8`` messages).
"""

from __future__ import annotations

import array
from typing import Any

import numpy as np

from dasp_core.image_msgs import (COMPRESSED_FORMATS, DECODE_ERROR_REASONS, ENCODINGS,
                                  RGB_ENCODINGS, ImageDecodeError, buffer_of,
                                  compressed_image_size, compressed_to_rgb8, depth_to_mm,
                                  image_fields, image_to_array, image_to_rgb8, msg_to_rgb8,
                                  rgb8_to_compressed_fields)
from dasp_core.viz import colorize_inverse_depth

__all__ = [
    "ENCODINGS", "RGB_ENCODINGS", "COMPRESSED_FORMATS", "DECODE_ERROR_REASONS",
    "ImageDecodeError", "buffer_of", "image_to_array", "image_to_rgb8", "compressed_to_rgb8",
    "msg_to_rgb8", "compressed_image_size", "image_fields", "array_to_image",
    "rgb8_to_compressed_fields", "rgb8_to_compressed", "depth_to_mm", "colorize_depth",
]


def _bytes_array(arr: np.ndarray) -> array.array:
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))  # one copy
    return out


def array_to_image(arr: np.ndarray, encoding: str, header: Any = None) -> Any:
    """``arr`` → rclpy ``sensor_msgs.msg.Image`` (see :func:`image_fields`); header is shared."""
    from sensor_msgs.msg import Image

    f = image_fields(arr, encoding)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width, msg.encoding = f["height"], f["width"], f["encoding"]
    msg.is_bigendian, msg.step = f["is_bigendian"], f["step"]
    msg.data = _bytes_array(f["data"])
    return msg


def rgb8_to_compressed(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90,
                       header: Any = None) -> Any:
    """``uint8 [H, W, 3]`` RGB → rclpy ``sensor_msgs.msg.CompressedImage``."""
    from sensor_msgs.msg import CompressedImage

    f = rgb8_to_compressed_fields(rgb, fmt, quality)
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = f["format"]
    msg.data = _bytes_array(f["data"])
    return msg


def colorize_depth(depth: np.ndarray, near: float, far: float, cmap: str = "turbo"
                   ) -> np.ndarray:
    """Depth (metres) ``[H, W]`` → ``uint8 [H, W, 3]`` **BGR** picture for ``depth/color``.

    :func:`dasp_core.viz.colorize_inverse_depth` with ``channel_order="bgr"`` (colour linear
    in inverse depth between ``1/far`` and ``1/near``, invalid pixels black).
    """
    return colorize_inverse_depth(depth, near, far, cmap, channel_order="bgr")
