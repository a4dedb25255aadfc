"""sensor_msgs/Image and CompressedImage ↔ numpy, without ROS and without cv_bridge.

The one decoder/encoder of image messages in dasp: the ROS node (through
:mod:`dasp_ros.image_codec`, which adds the rclpy message classes) and the rosbag tools (through
:mod:`dasp_core.bagio`, which adds topic/index error messages) both use it. Messages are
duck-typed: anything with the message's fields works.

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
* JPEGs are decoded strictly (:func:`decode_jpeg_strict`): a JPEG on which libjpeg reports
  corrupt data (``Corrupt JPEG data: ...``, ``Premature end of JPEG file``) is an error, not a
  picture. OpenCV only prints those warnings to stderr and returns the damaged image; the
  ``simplejpeg`` decoder (libjpeg-turbo) turns them into exceptions. Bit-flips that leave a
  valid Huffman stream are invisible to any decoder (JPEG has no checksum): measured on 50
  JPEGs with 5 flipped scan bits each, libjpeg noticed 25.

Both message flavours work: rclpy messages (``data`` is ``array.array('B')`` → read zero-copy
with ``np.frombuffer``) and ``rosbags`` messages (``data`` is a ``uint8`` numpy array). Encoding
returns plain field dicts (:func:`image_fields`, :func:`rgb8_to_compressed_fields`) usable for
any message class.

Every decode failure raises :class:`ImageDecodeError` with a ``reason`` from
:data:`DECODE_ERROR_REASONS`, so callers (the node) can count failures by kind.
"""

from __future__ import annotations

import struct
import sys
from typing import Any, Dict, Optional, Tuple

import cv2
import numpy as np

from dasp_core.errors import ConfigError

__all__ = [
    "ENCODINGS", "RGB_ENCODINGS", "COMPRESSED_FORMATS", "DECODE_ERROR_REASONS",
    "ImageDecodeError", "buffer_of", "image_to_array", "image_to_rgb8", "compressed_to_rgb8",
    "msg_to_rgb8", "compressed_image_size", "decode_jpeg_strict", "image_fields", "rgb8_to_compressed_fields",
    "depth_to_mm",
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

#: Formats :func:`rgb8_to_compressed_fields` writes.
COMPRESSED_FORMATS = ("jpeg", "png")

DECODE_ERROR_REASONS = ("empty", "encoding", "size", "too_large", "corrupt")


class ImageDecodeError(ValueError):
    """An image message cannot be decoded; ``reason`` is one of :data:`DECODE_ERROR_REASONS`."""

    def __init__(self, reason: str, message: str):
        assert reason in DECODE_ERROR_REASONS, reason
        self.reason = reason
        super().__init__(f"{reason}: {message}")


# ----------------------------------------------------------------------------- decoding

def buffer_of(data: Any) -> np.ndarray:
    """The message's ``data`` as a flat ``uint8`` array, without copying where possible.

    Accepts ``array.array('B')`` (rclpy), ``bytes``/``bytearray``/``memoryview``, numpy arrays
    (rosbags) and lists of ints (copied).
    """
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else \
            np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    if isinstance(data, (list, tuple)):
        return np.asarray(data, dtype=np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def image_to_array(msg: Any, max_pixels: Optional[int] = None) -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` into its native layout.

    Args:
        msg: an Image (rclpy or rosbags): ``height``, ``width``, ``encoding``, ``is_bigendian``,
            ``step``, ``data``.
        max_pixels: reject images with more than this many pixels (reason ``too_large``).
    Returns:
        ``[H, W]`` for one channel, else ``[H, W, C]``; dtype per :data:`ENCODINGS` in native
        byte order. A view of ``msg.data`` when the byte order is native (rows are strided and
        the view read-only when ``step`` has padding), else a byte-swapped copy.
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
    if step == row_bytes:  # unpadded: a plain view (writeable exactly when the data is)
        rows = buf[:height * row_bytes].reshape(height, row_bytes)
    else:
        rows = np.lib.stride_tricks.as_strided(buf, shape=(height, row_bytes),
                                               strides=(step, 1), writeable=False)
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


def decode_jpeg_strict(buf: np.ndarray) -> Optional[np.ndarray]:
    """JPEG bytes → ``uint8 [H, W, 3]`` RGB, refusing data libjpeg reports as corrupt.

    Returns ``None`` for JPEGs this decoder does not handle but OpenCV may (CMYK, 12-bit,
    arithmetic coding; or ``simplejpeg`` not installed), so the caller falls back to OpenCV.

    Raises:
        ImageDecodeError: ``corrupt``, with libjpeg's message, when the data decodes only
            with warnings (damaged scan data, truncation, extraneous bytes).
    """
    try:
        import simplejpeg
    except ImportError:  # optional in a ROS install without the pip extras: OpenCV decodes
        return None
    data = buf.tobytes()
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except ValueError as strict_error:
        try:
            simplejpeg.decode_jpeg(data, colorspace="RGB", strict=False)
        except ValueError:
            return None  # not decodable here at all (unsupported or broken): OpenCV decides
        # decodes, but only by ignoring libjpeg's warnings: the picture is damaged
        raise ImageDecodeError("corrupt", f"JPEG: {strict_error}") from None


def compressed_to_rgb8(msg: Any, max_pixels: Optional[int] = None) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG, PNG, ...) into ``uint8 [H, W, 3]`` RGB.

    Grey images are replicated, alpha is dropped, 16-bit PNGs are divided by 256.

    Raises:
        ImageDecodeError: ``empty`` (no bytes), ``encoding`` (``compressedDepth``), ``too_large``
            (header or decoded size over ``max_pixels``), ``corrupt`` (cannot be decoded, or a JPEG
            libjpeg reports as damaged: :func:`decode_jpeg_strict`).
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
    if buf[:3].tobytes() == b"\xff\xd8\xff":
        rgb = decode_jpeg_strict(buf)
        if rgb is not None:
            if max_pixels is not None and rgb.shape[0] * rgb.shape[1] > max_pixels:
                raise ImageDecodeError("too_large", f"{rgb.shape[1]}x{rgb.shape[0]} > limit "
                                                    f"{max_pixels}")
            return rgb
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

def image_fields(arr: np.ndarray, encoding: str, big_endian: Optional[bool] = None,
                 step: Optional[int] = None) -> Dict[str, Any]:
    """Fields of a ``sensor_msgs/Image`` holding ``arr`` (any message class).

    Args:
        arr: ``[H, W]`` (or ``[H, W, 1]``) or ``[H, W, C]`` with the dtype and channel count
            the encoding needs (e.g. ``float32 [H, W]`` for ``32FC1``, ``uint16`` for
            ``16UC1``/``mono16``).
        encoding: a key of :data:`ENCODINGS`.
        big_endian: byte order of multi-byte pixels; None = this machine's (no conversion).
        step: row length in bytes, ``>= width * channels * bytes``; the extra bytes are zero
            padding. None = no padding.
    Returns:
        dict with ``height, width, encoding, is_bigendian, step, data`` (``data``: C-contiguous
        ``uint8`` numpy array; a view of ``arr`` when no conversion or padding is needed).
    Raises:
        ValueError: unknown encoding; :class:`~dasp_core.errors.ConfigError` (a ValueError):
            wrong dtype/shape, ``step`` too small.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding {encoding!r} not supported; supported: {', '.join(ENCODINGS)}")
    code, channels = ENCODINGS[encoding]
    expected = np.dtype(code)
    arr = np.asarray(arr)
    got_channels = arr.shape[2] if arr.ndim == 3 else 1
    if arr.ndim not in (2, 3) or got_channels != channels or arr.dtype != expected:
        shape = "[H, W]" if channels == 1 else f"[H, W, {channels}]"
        raise ConfigError("image", f"{arr.dtype} {arr.shape}",
                          f"a {expected} {shape} array for {encoding}")
    h, w = arr.shape[:2]
    if big_endian is None:
        big_endian = sys.byteorder == "big"
    elif expected.itemsize > 1:
        arr = arr.astype(expected.newbyteorder(">" if big_endian else "<"), copy=False)
    row = w * channels * expected.itemsize
    step = row if step is None else int(step)
    if step < row:
        raise ConfigError("image.step", step, f"an integer >= {row} for {encoding} width {w}")
    raw = np.ascontiguousarray(arr).reshape(h, -1).view(np.uint8).reshape(h, row)
    if step > row:
        raw = np.concatenate([raw, np.zeros((h, step - row), np.uint8)], axis=1)
    return {"height": h, "width": w, "encoding": encoding,
            "is_bigendian": int(bool(big_endian) and expected.itemsize > 1),
            "step": step, "data": raw.reshape(-1)}


def rgb8_to_compressed_fields(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90
                              ) -> Dict[str, Any]:
    """``uint8 [H, W, 3]`` RGB → ``{"format", "data"}`` of a CompressedImage (jpeg or png).

    The format string follows compressed_image_transport: ``"rgb8; jpeg compressed bgr8"``.
    ``quality`` is the JPEG quality (0-100); PNG uses zlib level 3 (ours: small files at little
    CPU cost).

    Raises:
        ConfigError: ``fmt`` not in :data:`COMPRESSED_FORMATS`, ``rgb`` not ``uint8 [H, W, 3]``.
    """
    if fmt not in COMPRESSED_FORMATS:
        raise ConfigError("image.format", fmt, COMPRESSED_FORMATS)
    a = np.asarray(rgb)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ConfigError("image", f"{a.dtype} {a.shape}", "uint8 [H, W, 3] RGB")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else \
        [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, enc = cv2.imencode(".jpg" if fmt == "jpeg" else ".png",
                           cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {a.shape} image as {fmt}")
    return {"format": f"rgb8; {fmt} compressed bgr8", "data": enc.reshape(-1)}


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
