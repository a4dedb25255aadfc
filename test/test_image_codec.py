"""dasp_ros.image_codec: every encoding both ways, padded rows, byte order, bad input."""

from __future__ import annotations

import array

import cv2
import numpy as np
import pytest

from dasp_ros import image_codec as ic


class Msg:
    """Duck-typed Image / CompressedImage (what rosbags and rclpy messages look like)."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def _rgb(h=6, w=10, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _native(enc, h=5, w=7, seed=1):
    code, c = ic.ENCODINGS[enc]
    rng = np.random.default_rng(seed)
    shape = (h, w) if c == 1 else (h, w, c)
    dt = np.dtype(code)
    if dt.kind == "f":
        return rng.normal(size=shape).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, shape, dtype=dt, endpoint=True)


def _msg_from(arr, enc, pad=0, bigendian=False):
    """Image with ``pad`` bytes of garbage after every row, in the requested byte order."""
    h, w = arr.shape[:2]
    dt = arr.dtype.newbyteorder(">" if bigendian else "<") if arr.dtype.itemsize > 1 \
        else arr.dtype
    row = np.ascontiguousarray(arr.astype(dt)).reshape(h, -1).view(np.uint8)
    data = np.concatenate([row, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    return Msg(height=h, width=w, encoding=enc, is_bigendian=int(bigendian),
               step=row.shape[1] + pad, data=array.array("B", data.tobytes()))


@pytest.mark.parametrize("enc", list(ic.ENCODINGS))
@pytest.mark.parametrize("pad", [0, 5])
def test_array_roundtrip_every_encoding_with_padding(enc, pad):
    arr = _native(enc)
    out = ic.image_to_array(_msg_from(arr, enc, pad=pad))
    assert out.dtype == arr.dtype.newbyteorder("=") and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("enc", ["mono16", "16UC1", "32FC1", "rgb16", "bgra16", "64FC1"])
def test_big_endian_decodes_to_native_values(enc):
    arr = _native(enc, seed=3)
    big = ic.image_to_array(_msg_from(arr, enc, pad=3, bigendian=True))
    little = ic.image_to_array(_msg_from(arr, enc, bigendian=False))
    np.testing.assert_array_equal(big, arr)
    np.testing.assert_array_equal(little, arr)
    assert big.dtype.isnative


def test_big_endian_flag_actually_matters():
    arr = np.array([[1, 256]], np.uint16)
    m = _msg_from(arr, "mono16", bigendian=False)
    m.is_bigendian = 1  # lie about the order: values must come out byte-swapped
    np.testing.assert_array_equal(ic.image_to_array(m), [[256, 1]])


def test_zero_copy_view_of_rclpy_data():
    pytest.importorskip("sensor_msgs.msg")
    rgb = _rgb(8, 12)
    msg = ic.array_to_image(rgb, "rgb8")
    assert isinstance(msg.data, array.array)
    view = ic.image_to_array(msg)
    assert np.shares_memory(view, np.frombuffer(msg.data, np.uint8))
    np.testing.assert_array_equal(view, rgb)


def test_rclpy_image_fields_and_header():
    from std_msgs.msg import Header

    depth = np.linspace(0.5, 9.0, 12, dtype=np.float32).reshape(3, 4)
    h = Header(frame_id="cam_optical")
    h.stamp.sec, h.stamp.nanosec = 12, 345
    msg = ic.array_to_image(depth, "32FC1", h)
    assert (msg.height, msg.width, msg.step, msg.encoding) == (3, 4, 16, "32FC1")
    assert msg.header.frame_id == "cam_optical" and msg.header.stamp.nanosec == 345
    np.testing.assert_array_equal(ic.image_to_array(msg), depth)


def test_rosbags_message_with_numpy_data():
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    Image, Header, Time = (ts.types["sensor_msgs/msg/Image"], ts.types["std_msgs/msg/Header"],
                           ts.types["builtin_interfaces/msg/Time"])
    rgb = _rgb(4, 6)
    f = ic.image_fields(rgb[..., ::-1].copy(), "bgr8")
    msg = Image(header=Header(stamp=Time(sec=0, nanosec=0), frame_id="c"), **f)
    np.testing.assert_array_equal(ic.image_to_rgb8(msg), rgb)


@pytest.mark.parametrize("enc", ["rgb8", "bgr8", "rgba8", "bgra8", "rgb16", "bgr16", "rgba16",
                                 "bgra16"])
def test_colour_encodings_to_rgb8(enc):
    rgb = _rgb(5, 9)
    arr = rgb[..., ::-1] if enc.startswith("bgr") else rgb
    if "a" in enc[:4]:
        arr = np.concatenate([arr, np.full(rgb.shape[:2] + (1,), 77, np.uint8)], axis=2)
    if enc.endswith("16"):
        arr = arr.astype(np.uint16) * 257 + 3  # low byte noise must vanish (>> 8)
    out = ic.image_to_rgb8(_msg_from(np.ascontiguousarray(arr), enc, pad=2, bigendian=True))
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("enc,scale", [("mono8", 1), ("mono16", 257)])
def test_mono_to_rgb8(enc, scale):
    g = np.arange(30, dtype=np.uint8).reshape(5, 6) * 8
    arr = (g.astype(np.uint16) * scale) if scale > 1 else g
    out = ic.image_to_rgb8(_msg_from(arr, enc, pad=1))
    np.testing.assert_array_equal(out, np.repeat(g[..., None], 3, axis=2))


@pytest.mark.parametrize("enc,code", [("yuv422", cv2.COLOR_RGB2YUV_UYVY),
                                      ("yuv422_yuy2", cv2.COLOR_RGB2YUV_YUY2)])
def test_yuv422_to_rgb8(enc, code):
    # smooth image: 4:2:2 chroma subsampling is lossless enough on constant 2-pixel pairs
    rgb = np.repeat(_rgb(6, 5), 2, axis=1)
    yuv = cv2.cvtColor(rgb, code)  # [H, W, 2]
    out = ic.image_to_rgb8(_msg_from(yuv, enc, pad=4))
    assert np.abs(out.astype(int) - rgb.astype(int)).max() <= 4


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_demosaic_constant_colour(pattern):
    colour = np.array([200, 120, 40], np.uint8)  # R, G, B
    h, w = 8, 8
    idx = {"r": 0, "g": 1, "b": 2}
    mosaic = np.empty((h, w), np.uint8)
    for dy in range(2):
        for dx in range(2):
            mosaic[dy::2, dx::2] = colour[idx[pattern[2 * dy + dx]]]
    out = ic.image_to_rgb8(_msg_from(mosaic, f"bayer_{pattern}8"))
    np.testing.assert_array_equal(out[2:-2, 2:-2], np.broadcast_to(colour, (h - 4, w - 4, 3)))


def test_compressed_png_roundtrip_exact_and_jpeg_close():
    rgb = _rgb(16, 24)
    png = Msg(format="", data=array.array("B"))
    f = ic.rgb8_to_compressed_fields(rgb, "png")
    png.format, png.data = f["format"], f["data"]  # numpy data, like rosbags
    np.testing.assert_array_equal(ic.compressed_to_rgb8(png), rgb)
    assert ic.compressed_image_size(ic.buffer_of(png.data)) == (24, 16)

    smooth = cv2.GaussianBlur(np.kron(_rgb(4, 6, 5), np.ones((8, 8, 1), np.uint8)), (9, 9), 3)
    jpg = ic.rgb8_to_compressed(smooth, "jpeg", quality=95)
    assert jpg.format == "rgb8; jpeg compressed bgr8"
    out = ic.msg_to_rgb8(jpg)
    assert out.shape == smooth.shape
    assert np.abs(out.astype(int) - smooth.astype(int)).mean() < 3.0
    assert ic.compressed_image_size(ic.buffer_of(jpg.data)) == (48, 32)


def test_compressed_mono16_png_and_alpha():
    g = (np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000)
    ok, enc = cv2.imencode(".png", g)
    out = ic.compressed_to_rgb8(Msg(format="mono16; png compressed", data=enc.reshape(-1)))
    np.testing.assert_array_equal(out[..., 0], (g >> 8).astype(np.uint8))
    bgra = np.dstack([_rgb(3, 4)[..., ::-1], np.full((3, 4), 9, np.uint8)])
    ok, enc = cv2.imencode(".png", bgra)
    out = ic.compressed_to_rgb8(Msg(format="bgra8; png compressed", data=enc.reshape(-1)))
    np.testing.assert_array_equal(out, bgra[..., 2::-1])


@pytest.mark.parametrize("case,reason", [
    (dict(encoding="weird8"), "encoding"),
    (dict(encoding="32FC1"), "encoding"),  # depth is not a camera image
    (dict(step=5), "size"),  # < width * 3
    (dict(height=100), "size"),  # data too short
    (dict(height=0), "empty"),
    (dict(data=array.array("B")), "empty"),
])
def test_image_errors_have_reasons(case, reason):
    rgb = _rgb(4, 6)
    msg = _msg_from(rgb, "rgb8")
    msg.__dict__.update(case)
    with pytest.raises(ic.ImageDecodeError) as e:
        ic.image_to_rgb8(msg)
    assert e.value.reason == reason


def test_too_large_rejected_before_decoding():
    msg = _msg_from(_rgb(4, 6), "rgb8")
    with pytest.raises(ic.ImageDecodeError) as e:
        ic.image_to_rgb8(msg, max_pixels=23)
    assert e.value.reason == "too_large"
    assert ic.image_to_rgb8(msg, max_pixels=24).shape == (4, 6, 3)
    # compressed: the header says 24x16 -> rejected without decoding
    f = ic.rgb8_to_compressed_fields(_rgb(16, 24), "jpeg")
    with pytest.raises(ic.ImageDecodeError) as e:
        ic.compressed_to_rgb8(Msg(format="jpeg", data=f["data"]), max_pixels=100)
    assert e.value.reason == "too_large"


@pytest.mark.parametrize("data,fmt,reason", [
    (b"\xff\xd8\xff\xe0garbage-not-a-jpeg" * 3, "jpeg", "corrupt"),
    (bytes(range(256)), "png", "corrupt"),
    (b"", "jpeg", "empty"),
    (b"\x00\x01", "16UC1; compressedDepth png", "encoding"),
])
def test_compressed_errors(data, fmt, reason):
    with pytest.raises(ic.ImageDecodeError) as e:
        ic.compressed_to_rgb8(Msg(format=fmt, data=array.array("B", data)))
    assert e.value.reason == reason


def test_truncated_jpeg_never_raises_anything_but_decode_error():
    f = ic.rgb8_to_compressed_fields(_rgb(32, 32), "jpeg")
    for cut in (2, 20, 100, 300):
        try:
            ic.compressed_to_rgb8(Msg(format="jpeg", data=f["data"][:cut]))
        except ic.ImageDecodeError as e:
            assert e.reason in ("corrupt", "empty")


def test_jpeg_libjpeg_reports_as_damaged_is_corrupt_not_a_picture():
    """OpenCV returns a picture for these (and only prints libjpeg's warning); we refuse it."""
    pytest.importorskip("simplejpeg")
    smooth = cv2.GaussianBlur(np.kron(_rgb(6, 8, 7), np.ones((16, 16, 1), np.uint8)), (9, 9), 3)
    good = bytes(ic.rgb8_to_compressed_fields(smooth, "jpeg", quality=90)["data"])
    out = ic.compressed_to_rgb8(Msg(format="jpeg", data=array.array("B", good)))
    np.testing.assert_array_equal(out, cv2.imdecode(np.frombuffer(good, np.uint8),
                                                    cv2.IMREAD_COLOR)[..., ::-1])
    grey = cv2.imencode(".jpg", smooth[..., 0])[1].tobytes()
    out = ic.compressed_to_rgb8(Msg(format="mono8; jpeg", data=array.array("B", grey)))
    assert out.shape == smooth.shape and np.array_equal(out[..., 0], out[..., 2])

    scan = good.index(b"\xff\xda")
    truncated = good[:scan + (len(good) - scan) // 2] + b"\xff\xd9"
    extraneous = good[:-2] + b"\x12\x34\x56" + good[-2:]  # bytes before the EOI marker
    for damaged in (truncated, extraneous):
        assert cv2.imdecode(np.frombuffer(damaged, np.uint8), cv2.IMREAD_COLOR) is not None
        with pytest.raises(ic.ImageDecodeError, match="Corrupt JPEG data|Premature end") as e:
            ic.compressed_to_rgb8(Msg(format="jpeg", data=array.array("B", damaged)))
        assert e.value.reason == "corrupt"


def test_image_fields_rejects_wrong_dtype():
    with pytest.raises(ValueError, match="32FC1"):
        ic.image_fields(np.zeros((2, 2), np.float64), "32FC1")
    with pytest.raises(ValueError, match="not supported"):
        ic.image_fields(np.zeros((2, 2), np.uint8), "nope")


def test_depth_to_mm_known_values():
    d = np.array([[0.0015, 1.2344, 65.535, 65.6], [np.nan, np.inf, -np.inf, -1.0]], np.float32)
    mm = ic.depth_to_mm(d)
    assert mm.dtype == np.uint16
    np.testing.assert_array_equal(mm, [[2, 1234, 65535, 0], [0, 0, 0, 0]])


def test_colorize_depth_ends_and_invalid_black():
    d = np.array([[0.5, 1.0, 50.0, 100.0, np.inf, np.nan, -np.inf, 0.0, -2.0]], np.float32)
    bgr = ic.colorize_depth(d, 1.0, 50.0, "turbo")
    lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(1, -1), cv2.COLORMAP_TURBO)[0]
    np.testing.assert_array_equal(bgr[0, 0], lut[255])  # closer than near saturates
    np.testing.assert_array_equal(bgr[0, 1], lut[255])
    np.testing.assert_array_equal(bgr[0, 2], lut[0])
    np.testing.assert_array_equal(bgr[0, 3], lut[0])
    np.testing.assert_array_equal(bgr[0, 4], lut[0])  # +Inf = beyond range: far colour
    np.testing.assert_array_equal(bgr[0, 5:], 0)  # NaN, -Inf, 0, negative: black
    # linear in inverse depth: the midpoint of 1/d sits mid-map
    mid = 1.0 / (0.5 * (1.0 + 1.0 / 50.0))
    got = ic.colorize_depth(np.array([[mid]], np.float32), 1, 50)[0, 0]
    assert any(np.array_equal(got, lut[i]) for i in (127, 128))
    with pytest.raises(ValueError, match="allowed"):
        ic.colorize_depth(d, 1.0, 50.0, "rainbow")
