"""sensor_msgs/Image and CompressedImage ↔ numpy, without cv_bridge.

Follows the conventions of ``cv_bridge`` and ``sensor_msgs/image_encodings.hpp``:

* ``step`` is the row length in bytes and may include padding (``step >= width * bpp``); rows
  are read at ``step`` strides, the padding is ignored.
* ``is_bigendian`` applies to multi-byte channels (16-bit, 32-bit float); 8-bit data ignores it.
* Channel orders are those the encoding names (``bgr8`` is blue first). 16-bit colour and
  ``mono16`` become 8-bit by dividing by 256 (full-range 16-bit, as image_encodings defines
  them); Bayer patterns are demosaiced with the OpenCV codes cv_bridge uses; ``yuv422`` is UYVY
  and ``yuv422_yuy2`` is YUYV.
* Compressed images are whatever OpenCV's ``imdecode`` reads (JPEG, PNG, ...); OpenCV returns
  BGR whatever the ``format`` string says about the original encoding, exactly what the
  ``compressed_image_transport`` plugin expects. ``compressedDepth`` is rejected.

Both message flavours work: rclpy messages (``data`` is ``array.array('B')`` → read zero-copy
with ``np.frombuffer``) and ``rosbags`` messages (``data`` is a ``uint8`` numpy array). Encoding
returns an rclpy message (``array.array`` data, one copy) or, with ``*_fields``, a plain dict
usable for any message class.

Every decode failure raises :class:`ImageDecodeError` with a ``reason`` from
:data:`DECODE_ERROR_REASONS`, so callers (the node) can count failures by kind.
"""

from __future__ import annotations

import array
import struct
import sys
from typing import Any, Dict, Optional, Tuple

import cv2
import numpy as np

__all__ = [
    "ENCODINGS", "RGB_ENCODINGS", "DECODE_ERROR_REASONS", "COLOR_MAPS", "ImageDecodeError",
    "buffer_of", "image_to_array", "image_to_rgb8", "compressed_to_rgb8", "msg_to_rgb8",
    "compressed_image_size", "image_fields", "array_to_image", "rgb8_to_compressed_fields",
    "rgb8_to_compressed", "depth_to_mm", "colorize_depth",
]

# encoding -> (numpy dtype code, channels). Names exactly as sensor_msgs/image_encodings.hpp.
ENCODINGS: Dict[str, Tuple[str, int]] = {
    "rgb8": ("u1", 3), "bgr8": ("u1", 3), "rgba8": ("u1", 4), "bgra8": ("u1", 4),
    "rgb16": ("u2", 3), "bgr16": ("u2", 3), "rgba16": ("u2", 4), "bgra16": ("u2", 4),
    "mono8": ("u1", 1), "mono16": ("u2", 1),
    "8UC1": ("u1", 1), "8UC3": ("u1", 3), "8UC4": ("u1", 4),
    "16UC1": ("u2", 1), "16SC1": ("i2", 1), "32FC1": ("f4", 1), "64FC1": ("f8", 1),
    "bayer_rggb8": ("u1", 1), "bayer_bggr8": ("u1", 1), "bayer_gbrg8": ("u1", 1),
    "bayer_grbg8": ("u1", 1),
    "yuv422": ("u1", 2), "yuv422_yuy2": ("u1", 2),
}

# cv_bridge's mapping (OpenCV names Bayer patterns by the second row, hence the shift).
_BAYER_TO_RGB = {
    "bayer_rggb8": cv2.COLOR_BayerBG2RGB, "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg8": cv2.COLOR_BayerGR2RGB, "bayer_grbg8": cv2.COLOR_BayerGB2RGB,
}
_TO_RGB = {
    "rgb8": None, "bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB, "mono8": cv2.COLOR_GRAY2RGB,
    "rgb16": None, "bgr16": cv2.COLOR_BGR2RGB, "rgba16": cv2.COLOR_RGBA2RGB,
    "bgra16": cv2.COLOR_BGRA2RGB, "mono16": cv2.COLOR_GRAY2RGB,
    "yuv422": cv2.COLOR_YUV2RGB_UYVY, "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2,
    **_BAYER_TO_RGB,
}
#: Encodings :func:`image_to_rgb8` turns into an RGB picture (depth/float encodings are not images).
RGB_ENCODINGS = tuple(_TO_RGB)

DECODE_ERROR_REASONS = ("empty", "encoding", "size", "too_large", "corrupt")

#: Colour maps for :func:`colorize_depth` (OpenCV's look-up tables).
COLOR_MAPS = {
    "turbo": cv2.COLORMAP_TURBO, "magma": cv2.COLORMAP_MAGMA, "inferno": cv2.COLORMAP_INFERNO,
    "plasma": cv2.COLORMAP_PLASMA, "viridis": cv2.COLORMAP_VIRIDIS, "jet": cv2.COLORMAP_JET,
}


class ImageDecodeError(ValueError):
    """An image message cannot be decoded; ``reason`` is one of :data:`DECODE_ERROR_REASONS`."""

    def __init__(self, reason: str, message: str):
        assert reason in DECODE_ERROR_REASONS, reason
        self.reason = reason
        super().__init__(f"{reason}: {message}")


# ----------------------------------------------------------------------------- decoding

def buffer_of(data: Any) -> np.ndarray:
    """The message's ``data`` as a flat ``uint8`` array, without copying.

    Accepts ``array.array('B')`` (rclpy), ``bytes``/``bytearray``/``memoryview`` and numpy
    arrays (rosbags).
    """
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else \
            np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def image_to_array(msg: Any, max_pixels: Optional[int] = None) -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` into its native layout.

    Args:
        msg: an Image (rclpy or rosbags): ``height``, ``width``, ``encoding``, ``is_bigendian``,
            ``step``, ``data``.
        max_pixels: reject images with more than this many pixels (reason ``too_large``).
    Returns:
        ``[H, W]`` for one channel, else ``[H, W, C]``; dtype per :data:`ENCODINGS` in native
        byte order. A view of ``msg.data`` when the byte order is native (rows may be strided
        when ``step`` has padding), else a byte-swapped copy.
    Raises:
        ImageDecodeError: reasons ``empty``, ``encoding``, ``size``, ``too_large``.
    """
    encoding = str(msg.encoding).strip()
    spec = ENCODINGS.get(encoding) or ENCODINGS.get(encoding.lower())
    if spec is None:
        raise ImageDecodeError("encoding", f"unsupported encoding {encoding!r}; supported: "
                                           f"{', '.join(ENCODINGS)}")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    buf = buffer_of(msg.data)
    if height <= 0 or width <= 0 or buf.size == 0:
        raise ImageDecodeError("empty", f"{width}x{height} image with {buf.size} data bytes")
    if max_pixels is not None and height * width > max_pixels:
        raise ImageDecodeError("too_large", f"{width}x{height} = {width * height} pixels > "
                                            f"limit {max_pixels} (parameter max_input_pixels)")
    code, channels = spec
    dtype = np.dtype(code)
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageDecodeError("size", f"step {step} < width {width} x {channels} channels x "
                                       f"{dtype.itemsize} bytes = {row_bytes}")
    needed = step * (height - 1) + row_bytes  # the last row's padding may be missing
    if buf.size < needed:
        raise ImageDecodeError("size", f"{buf.size} data bytes < {needed} needed for "
                                       f"{width}x{height} {encoding} with step {step}")
    rows = np.lib.stride_tricks.as_strided(buf, shape=(height, row_bytes), strides=(step, 1),
                                           writeable=False)
    arr = rows.view(dtype)
    arr = arr.reshape(height, width, channels) if channels > 1 else arr.reshape(height, width)
    if not dtype.isnative:
        arr = arr.astype(dtype.newbyteorder("="))
    return arr


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    return (arr >> 8).astype(np.uint8)  # full-range 16 bit -> 8 bit


def image_to_rgb8(msg: Any, max_pixels: Optional[int] = None) -> np.ndarray:
    """Decode an Image into the network's input: ``uint8 [H, W, 3]`` RGB, C-contiguous.

    Raises:
        ImageDecodeError: as :func:`image_to_array`; depth/float encodings (``32FC1``,
            ``16UC1``, ...) are reason ``encoding``.
    """
    encoding = str(msg.encoding).strip()
    enc = encoding if encoding in _TO_RGB else encoding.lower()
    if enc not in _TO_RGB:
        raise ImageDecodeError("encoding", f"encoding {encoding!r} is not a camera image; "
                                           f"supported: {', '.join(RGB_ENCODINGS)}")
    arr = image_to_array(msg, max_pixels)
    if enc in ("yuv422", "yuv422_yuy2") and arr.shape[1] % 2:
        raise ImageDecodeError("size", f"{enc} needs an even width, got {arr.shape[1]}")
    arr = _to_uint8(arr)
    code = _TO_RGB[enc]
    if code is None:
        return np.ascontiguousarray(arr)
    return cv2.cvtColor(np.ascontiguousarray(arr), code)


def compressed_image_size(data: np.ndarray) -> Optional[Tuple[int, int]]:
    """``(width, height)`` from a PNG or JPEG header without decoding, else ``None``.

    Lets the node reject a huge image before allocating it (decompression bombs).
    """
    b = data[:64 * 1024].tobytes() if data.size > 64 * 1024 else data.tobytes()
    if b[:8] == b"\x89PNG\r\n\x1a\n" and len(b) >= 24 and b[12:16] == b"IHDR":
        w, h = struct.unpack(">II", b[16:24])
        return int(w), int(h)
    if b[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(b):
            if b[i] != 0xFF:
                return None
            marker = b[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            seg_len = struct.unpack(">H", b[i + 2:i + 4])[0]
            # SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack(">HH", b[i + 5:i + 9])
                return int(w), int(h)
            i += 2 + seg_len
    return None


def compressed_to_rgb8(msg: Any, max_pixels: Optional[int] = None) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG, PNG, ...) into ``uint8 [H, W, 3]`` RGB.

    Raises:
        ImageDecodeError: ``empty`` (no bytes), ``encoding`` (``compressedDepth``), ``too_large``
            (header or decoded size over ``max_pixels``), ``corrupt`` (OpenCV cannot decode).
    """
    fmt = str(getattr(msg, "format", "")).lower()
    if "compresseddepth" in fmt:
        raise ImageDecodeError("encoding", f"format {msg.format!r}: compressedDepth is a depth "
                                           "map, not a camera image; use jpeg or png")
    buf = buffer_of(msg.data)
    if buf.size == 0:
        raise ImageDecodeError("empty", "compressed image with no data")
    if max_pixels is not None:
        size = compressed_image_size(buf)
        if size is not None and size[0] * size[1] > max_pixels:
            raise ImageDecodeError("too_large", f"{size[0]}x{size[1]} compressed image > limit "
                                                f"{max_pixels} pixels (parameter max_input_pixels)")
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as e:  # OpenCV raises on some malformed headers instead of returning None
        raise ImageDecodeError("corrupt", f"format {msg.format!r}: {e}") from None
    if img is None or img.size == 0:
        raise ImageDecodeError("corrupt", f"format {msg.format!r}: {buf.size} bytes OpenCV "
                                          "cannot decode")
    if max_pixels is not None and img.shape[0] * img.shape[1] > max_pixels:
        raise ImageDecodeError("too_large", f"{img.shape[1]}x{img.shape[0]} > limit {max_pixels}")
    img = _to_uint8(img) if img.dtype == np.uint16 else img
    if img.dtype != np.uint8:
        raise ImageDecodeError("encoding", f"decoded dtype {img.dtype} is not an 8/16-bit image")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def msg_to_rgb8(msg: Any, max_pixels: Optional[int] = None) -> np.ndarray:
    """Image or CompressedImage (told apart by the ``format`` field) → ``uint8 [H, W, 3]`` RGB."""
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        return compressed_to_rgb8(msg, max_pixels)
    return image_to_rgb8(msg, max_pixels)


# ----------------------------------------------------------------------------- encoding

def _bytes_array(arr: np.ndarray) -> array.array:
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))  # one copy
    return out


def image_fields(arr: np.ndarray, encoding: str) -> Dict[str, Any]:
    """Fields of a ``sensor_msgs/Image`` holding ``arr`` (any message class).

    Args:
        arr: ``[H, W]`` or ``[H, W, C]`` with the dtype and channel count the encoding needs
            (e.g. ``float32 [H, W]`` for ``32FC1``, ``uint16`` for ``16UC1``/``mono16``).
        encoding: a key of :data:`ENCODINGS`.
    Returns:
        dict with ``height, width, encoding, is_bigendian, step, data`` (``data``: C-contiguous
        ``uint8`` numpy array in native byte order; ``is_bigendian`` says which).
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding {encoding!r} not supported; supported: {', '.join(ENCODINGS)}")
    code, channels = ENCODINGS[encoding]
    expected = np.dtype(code)
    got_channels = 1 if arr.ndim == 2 else arr.shape[2]
    if arr.ndim not in (2, 3) or got_channels != channels or arr.dtype != expected:
        raise ValueError(f"{encoding} needs a {expected} array with {channels} channel(s); got "
                         f"{arr.dtype} {arr.shape}")
    arr = np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    return {"height": h, "width": w, "encoding": encoding,
            "is_bigendian": int(sys.byteorder == "big" and expected.itemsize > 1),
            "step": w * channels * expected.itemsize, "data": arr.reshape(-1).view(np.uint8)}


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


def rgb8_to_compressed_fields(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90
                              ) -> Dict[str, Any]:
    """``uint8 [H, W, 3]`` RGB → ``{"format", "data"}`` of a CompressedImage (jpeg or png).

    The format string follows compressed_image_transport: ``"rgb8; jpeg compressed bgr8"``.
    """
    if fmt not in ("jpeg", "png"):
        raise ValueError(f"fmt {fmt!r} not supported; allowed: 'jpeg', 'png'")
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else []
    ok, enc = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", bgr, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {rgb.shape} image as {fmt}")
    return {"format": f"rgb8; {fmt} compressed bgr8", "data": enc.reshape(-1)}


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


# ----------------------------------------------------------------------------- depth outputs

def depth_to_mm(depth: np.ndarray) -> np.ndarray:
    """``float32 [H, W]`` metres → ``uint16 [H, W]`` millimetres (REP 118 16UC1).

    0 means invalid: NaN, ±Inf, <= 0 and anything beyond 65.535 m (the largest representable).
    Rounded to the nearest millimetre.
    """
    d = np.asarray(depth, dtype=np.float32)
    mm = np.multiply(d, np.float32(1000.0), dtype=np.float32)
    mm += np.float32(0.5)  # + truncation below = round half up (values are positive)
    with np.errstate(invalid="ignore"):
        bad = ~((d > 0) & (d <= np.float32(65.535)))  # NaN compares False -> bad
    np.copyto(mm, np.float32(0.0), where=bad)
    return mm.astype(np.uint16)


_LUTS: Dict[str, np.ndarray] = {}


def _color_lut(cmap: str) -> np.ndarray:
    """``[256, 1, 3]`` BGR table: entry 0 black (invalid), 1..255 the colour map's 0..255."""
    lut = _LUTS.get(cmap)
    if lut is None:
        ramp = np.rint(np.arange(255) * (255.0 / 254.0)).astype(np.uint8).reshape(-1, 1)
        colours = cv2.applyColorMap(ramp, COLOR_MAPS[cmap]).reshape(255, 3)
        lut = np.zeros((256, 1, 3), np.uint8)
        lut[1:, 0] = colours
        _LUTS[cmap] = lut
    return lut


def colorize_depth(depth: np.ndarray, near: float, far: float, cmap: str = "turbo"
                   ) -> np.ndarray:
    """Depth (metres) → ``uint8 [H, W, 3]`` **BGR** picture for people (``depth/color``).

    Colour encodes inverse depth linearly between ``1/far`` and ``1/near`` (ours; like the
    disparity pictures of monodepth-style papers, it spends the colour range on the near field
    that matters for driving). With ``turbo``: near = red, far = dark blue. Depths closer than
    ``near`` saturate at the near colour, farther than ``far`` (+Inf included) at the far
    colour; invalid pixels (NaN, <= 0, -Inf) are black. 255 colour levels.
    """
    if cmap not in COLOR_MAPS:
        raise ValueError(f"color map {cmap!r} not supported; allowed: {', '.join(COLOR_MAPS)}")
    if not 0 < near < far:
        raise ValueError(f"need 0 < near < far, got near={near}, far={far}")
    d = np.asarray(depth, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.reciprocal(d)  # +Inf -> 0 (far end)
        t -= np.float32(1.0 / far)
        t *= np.float32(254.0 / (1.0 / near - 1.0 / far))
        np.clip(t, 0.0, 254.0, out=t)
        t += np.float32(1.5)  # 1..255, rounded by the truncation below
        invalid = ~(d > 0)
    np.copyto(t, np.float32(0.0), where=invalid)
    return cv2.applyColorMap(t.astype(np.uint8), _color_lut(cmap))
