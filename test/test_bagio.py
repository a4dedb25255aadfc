"""rosbag2 I/O without ROS: message ↔ numpy converters and bag writing/reading round trips."""

from __future__ import annotations

import numpy as np
import pytest

from dasp_core import bagio
from dasp_core.bagio import (BagFormatError, BagReader, BagWriter, TransformData,
                             camera_info_to_model, compressed_to_rgb, image_to_depth,
                             image_to_numpy, image_to_rgb, make_camera_info, make_odometry,
                             make_tf_message, matrix_to_quaternion, numpy_to_image,
                             odometry_to_numpy, quaternion_to_matrix, read_messages,
                             rgb_to_compressed, tf_to_numpy)
from dasp_core.errors import ConfigError, DatasetError

RNG = np.random.default_rng(0)
H, W = 7, 11


def _random(encoding: str) -> np.ndarray:
    dtype, ch = bagio.IMAGE_ENCODINGS[encoding]
    shape = (H, W) if ch == 1 else (H, W, ch)
    if dtype == np.float32:
        return RNG.uniform(0.1, 80.0, shape).astype(np.float32)
    return RNG.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.standard_normal(4)
    return quaternion_to_matrix(*q)


@pytest.mark.parametrize("encoding", sorted(bagio.IMAGE_ENCODINGS))
@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("pad", [0, 5])
def test_image_round_trip_every_encoding(encoding, big_endian, pad):
    a = _random(encoding)
    dtype, ch = bagio.IMAGE_ENCODINGS[encoding]
    row = W * ch * dtype.itemsize
    msg = numpy_to_image(a, encoding, stamp_ns=123_000_000_456, frame_id="cam",
                         big_endian=big_endian, step=row + pad)
    assert msg.step == row + pad and msg.width == W and msg.height == H
    assert msg.is_bigendian == int(big_endian and dtype.itemsize > 1)
    b = image_to_numpy(msg)
    assert b.dtype == dtype and b.dtype.isnative
    np.testing.assert_array_equal(a, b)
    assert bagio.stamp_to_ns(msg.header.stamp) == 123_000_000_456


def test_big_endian_bytes_are_really_big_endian():
    a = np.array([[0x0102, 0x0304]], np.uint16)
    msg = numpy_to_image(a, "mono16", big_endian=True)
    assert list(np.asarray(msg.data)) == [1, 2, 3, 4]
    f = np.array([[1.0]], np.float32)
    msg = numpy_to_image(f, "32FC1", big_endian=True)
    assert bytes(np.asarray(msg.data)) == np.array([1.0], ">f4").tobytes()


def test_hand_made_padded_little_and_big_endian_messages():
    # build raw messages by hand (not with numpy_to_image) so both sides are checked
    ts = bagio.get_typestore()
    Image = ts.types["sensor_msgs/msg/Image"]
    vals = np.array([[1.5, -2.0], [3.25, 1e-3]], np.float32)
    for order, flag in (("<", 0), (">", 1)):
        rows = [vals[r].astype(order + "f4").tobytes() + b"\xAA" * 3 for r in range(2)]
        msg = Image(header=bagio.make_header(0, "c"), height=2, width=2, encoding="32FC1",
                    is_bigendian=flag, step=11, data=np.frombuffer(b"".join(rows), np.uint8))
        np.testing.assert_array_equal(image_to_numpy(msg), vals)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16"])
def test_image_to_rgb(encoding):
    rgb = RNG.integers(0, 256, (H, W, 3)).astype(np.uint8)
    if encoding == "rgb8":
        arr, want = rgb, rgb
    elif encoding == "bgr8":
        arr, want = rgb[..., ::-1], rgb
    elif encoding == "rgba8":
        arr, want = np.concatenate([rgb, np.full((H, W, 1), 7, np.uint8)], 2), rgb
    elif encoding == "bgra8":
        arr, want = np.concatenate([rgb[..., ::-1], np.full((H, W, 1), 7, np.uint8)], 2), rgb
    elif encoding == "mono8":
        arr, want = rgb[..., 0], np.repeat(rgb[..., :1], 3, 2)
    else:
        arr = rgb[..., 0].astype(np.uint16) * 257
        want = np.repeat(rgb[..., :1], 3, 2)
    out = image_to_rgb(numpy_to_image(arr, encoding, step=None))
    assert out.dtype == np.uint8 and out.shape == (H, W, 3)
    np.testing.assert_array_equal(out, want)


def test_image_to_depth_units_and_invalid():
    d = np.array([[1.25, np.nan, np.inf], [-1.0, 0.0, 70.0]], np.float32)
    out = image_to_depth(numpy_to_image(d, "32FC1"))
    np.testing.assert_array_equal(np.isnan(out), [[False, True, True], [True, True, False]])
    assert out[0, 0] == np.float32(1.25) and out[1, 2] == np.float32(70.0)
    mm = np.array([[1250, 0], [65535, 1]], np.uint16)
    for enc in ("16UC1", "mono16"):
        out = image_to_depth(numpy_to_image(mm, enc, big_endian=True, step=6))
        assert np.isnan(out[0, 1])
        np.testing.assert_allclose(out[[0, 1, 1], [0, 0, 1]], [1.25, 65.535, 0.001], rtol=1e-6)
    with pytest.raises(BagFormatError, match="not a depth image"):
        image_to_depth(numpy_to_image(np.zeros((2, 2, 3), np.uint8), "rgb8"), "/d", 4)


def test_unknown_encoding_and_wrong_size_raise_clear_errors():
    msg = numpy_to_image(np.zeros((H, W, 3), np.uint8), "rgb8")
    msg.encoding = "yuv422"
    with pytest.raises(BagFormatError) as e:
        image_to_numpy(msg, "/camera/image_raw", 17)
    text = str(e.value)
    assert "/camera/image_raw" in text and "#17" in text and "yuv422" in text and "rgb8" in text
    msg = numpy_to_image(np.zeros((H, W, 3), np.uint8), "rgb8")
    msg.data = np.asarray(msg.data)[:-W * 3 - 1]      # more than one row missing
    with pytest.raises(BagFormatError, match=r"/cam.*#3.*bytes"):
        image_to_rgb(msg, "/cam", 3)
    msg = numpy_to_image(np.zeros((H, W, 3), np.uint8), "rgb8")
    msg.step = W * 3 - 1                             # step shorter than a row
    with pytest.raises(BagFormatError, match="step"):
        image_to_numpy(msg, "/cam", 0)
    with pytest.raises(ConfigError):
        numpy_to_image(np.zeros((2, 2)), "rgb8")
    with pytest.raises(ConfigError):
        numpy_to_image(np.zeros((2, 2)), "mono8", step=1)


def test_compressed_round_trip_and_corrupt_data():
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[:, :24] = (200, 30, 10)                      # smooth blocks compress well
    rgb[16:, 24:] = (10, 180, 60)
    png = rgb_to_compressed(rgb, "png", stamp_ns=5, frame_id="cam")
    assert "png" in png.format
    np.testing.assert_array_equal(compressed_to_rgb(png), rgb)
    jpg = rgb_to_compressed(rgb, "jpeg", quality=95)
    assert jpg.format == "rgb8; jpeg compressed bgr8"
    out = compressed_to_rgb(jpg)
    assert out.shape == rgb.shape and np.abs(out.astype(int) - rgb).mean() < 3.0
    # channel order: red stays red
    assert out[5, 5, 0] > 150 and out[5, 5, 2] < 60
    bad = rgb_to_compressed(rgb, "jpeg")
    bad.data = np.asarray(bad.data)[:40]
    with pytest.raises(BagFormatError) as e:
        compressed_to_rgb(bad, "/camera/image_raw/compressed", 9)
    assert "/camera/image_raw/compressed" in str(e.value) and "#9" in str(e.value)
    bad.data = np.frombuffer(b"not an image at all", np.uint8)
    with pytest.raises(BagFormatError, match="cannot decode"):
        compressed_to_rgb(bad, "/c", 0)
    bad.format = "h264"
    with pytest.raises(BagFormatError, match="h264"):
        compressed_to_rgb(bad, "/c", 0)


def test_camera_info_round_trip():
    K = np.array([[400.5, 0.0, 319.5], [0.0, 401.0, 95.5], [0.0, 0.0, 1.0]])
    D = [0.1, -0.05, 0.001, 0.002, 0.0]
    msg = make_camera_info(K, 640, 192, D=D, stamp_ns=7, frame_id="camera_optical_frame")
    m = camera_info_to_model(msg)
    np.testing.assert_array_equal(m.K, K)
    np.testing.assert_array_equal(m.D, D)
    assert (m.width, m.height, m.distortion_model, m.frame_id) == \
        (640, 192, "plumb_bob", "camera_optical_frame")
    np.testing.assert_array_equal(m.P[:, :3], K)
    msg = make_camera_info(np.zeros((3, 3)), 10, 10)
    with pytest.raises(BagFormatError, match="uncalibrated"):
        camera_info_to_model(msg, "/camera/camera_info", 2)


def test_quaternion_round_trip():
    rng = np.random.default_rng(3)
    for _ in range(200):
        R = _rotation(rng)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        q = matrix_to_quaternion(R)
        assert q[3] >= 0 and abs(np.linalg.norm(q) - 1) < 1e-12
        np.testing.assert_allclose(quaternion_to_matrix(*q), R, atol=1e-12)
    # 180° rotations (w = 0) are the classic failure case
    for axis in np.eye(3):
        R = 2 * np.outer(axis, axis) - np.eye(3)
        np.testing.assert_allclose(quaternion_to_matrix(*matrix_to_quaternion(R)), R, atol=1e-12)


def test_odometry_and_tf_round_trip():
    rng = np.random.default_rng(5)
    T = np.eye(4)
    T[:3, :3] = _rotation(rng)
    T[:3, 3] = (12.5, -3.0, 0.25)
    od = odometry_to_numpy(make_odometry(T, [9.5, 0.1, 0.0], [0.0, 0.0, 0.3], 99, "odom",
                                         "base_link"))
    np.testing.assert_allclose(od.T, T, atol=1e-12)
    np.testing.assert_allclose(od.linear, [9.5, 0.1, 0.0])
    np.testing.assert_allclose(od.angular, [0, 0, 0.3])
    assert (od.stamp_ns, od.frame_id, od.child_frame_id) == (99, "odom", "base_link")
    assert od.speed == pytest.approx(np.hypot(9.5, 0.1))
    trs = [TransformData(5, "odom", "base_link", T), TransformData(6, "base_link", "cam", np.eye(4))]
    back = tf_to_numpy(make_tf_message(trs))
    assert [(b.stamp_ns, b.parent, b.child) for b in back] == [(5, "odom", "base_link"),
                                                              (6, "base_link", "cam")]
    np.testing.assert_allclose(back[0].T, T, atol=1e-12)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_write_read(tmp_path, storage):
    path = tmp_path / "bag"
    rgb = RNG.integers(0, 256, (H, W, 3)).astype(np.uint8)
    depth = RNG.uniform(1, 50, (H, W)).astype(np.float32)
    K = np.array([[50.0, 0, 5], [0, 50.0, 3], [0, 0, 1]])
    with BagWriter(path, storage=storage) as bag:
        for i in range(3):
            ns = 1_000_000_000 + i * 100_000_000
            bag.write("/camera/image_raw", numpy_to_image(rgb + i, "rgb8", ns, "cam"), ns)
            bag.write("/camera/depth_gt", numpy_to_image(depth, "32FC1", ns, "cam"), ns)
            bag.write("/camera/camera_info", make_camera_info(K, W, H, stamp_ns=ns), ns)
        bag.write("/tf_static", make_tf_message([TransformData(ns, "a", "b", np.eye(4))]), ns)
        bag.set_metadata("dasp.test", "hello")
        with pytest.raises(DatasetError, match="another type"):
            bag.write("/camera/image_raw", make_camera_info(K, W, H), ns)
    assert bagio.bag_topics(path)["/camera/image_raw"] == ("sensor_msgs/msg/Image", 3)
    assert bagio.bag_custom_data(path) == {"dasp.test": "hello"}
    msgs = list(read_messages(path))
    assert len(msgs) == 10
    stamps = [m[2] for m in msgs]
    assert stamps == sorted(stamps)
    imgs = [(t, image_to_rgb(m, top)) for top, _, t, m in read_messages(path, ["/camera/image_raw"])]
    assert [t for t, _ in imgs] == [1_000_000_000, 1_100_000_000, 1_200_000_000]
    for i, (_, im) in enumerate(imgs):
        np.testing.assert_array_equal(im, rgb + i)
    (_, mt, _, dmsg), = [m for m in read_messages(path, ["/camera/depth_gt"])][:1]
    assert mt == "sensor_msgs/msg/Image"
    np.testing.assert_array_equal(image_to_depth(dmsg), depth)
    assert list(read_messages(path, ["/no/such/topic"])) == []
    with pytest.raises(DatasetError, match="already exists"):
        BagWriter(path, storage=storage)


def test_writer_rejects_bad_storage(tmp_path):
    with pytest.raises(ConfigError, match="mcap"):
        BagWriter(tmp_path / "x", storage="rosbag1")
    with pytest.raises(DatasetError, match="does not exist"):
        BagReader(tmp_path / "missing")


def test_corrupt_message_is_skipped_or_raised(tmp_path):
    from rosbags.rosbag2 import StoragePlugin, Writer

    path = tmp_path / "corrupt"
    ts = bagio.get_typestore()
    good = numpy_to_image(np.zeros((2, 2), np.uint8), "mono8", 1, "c")
    with Writer(path, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP) as w:
        conn = w.add_connection("/img", "sensor_msgs/msg/Image", typestore=ts)
        w.write(conn, 1, ts.serialize_cdr(good, "sensor_msgs/msg/Image"))
        w.write(conn, 2, b"\x00\x01\x00\x00garbage")
        w.write(conn, 3, ts.serialize_cdr(good, "sensor_msgs/msg/Image"))
    with BagReader(path) as r:
        got = [t for _, _, t, _ in r.messages()]
        assert got == [1, 3] and r.n_errors == 1
    with pytest.raises(BagFormatError, match=r"'/img' message #1"):
        list(read_messages(path, errors="raise"))
