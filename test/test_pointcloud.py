"""dasp_ros.pointcloud and dasp_ros.camera_info: bytes back to points, against geometry."""

from __future__ import annotations

import types

import cv2
import numpy as np
import pytest

from dasp_ros import pointcloud as pc
from dasp_ros.camera_info import (CameraInfoError, Intrinsics, RayCache, camera_info_fields,
                                  intrinsics_from_camera_info, intrinsics_from_fov, pixel_rays,
                                  scale_K, scale_P, to_camera_info)

K0 = np.array([[100.0, 0.0, 50.0], [0.0, 110.0, 30.0], [0.0, 0.0, 1.0]])


def _info(K=K0, w=96, h=64, D=(), model="plumb_bob", P=None, binning=(0, 0), roi=None):
    P = np.concatenate([K, np.zeros((3, 1))], 1) if P is None else P
    roi = roi or dict(x_offset=0, y_offset=0, width=0, height=0, do_rectify=False)
    return types.SimpleNamespace(k=np.asarray(K, float).ravel(), p=np.asarray(P, float).ravel(),
                                 r=np.eye(3).ravel(), d=list(D), distortion_model=model,
                                 width=w, height=h, binning_x=binning[0], binning_y=binning[1],
                                 roi=types.SimpleNamespace(**roi))


def _cloud_points(xyz, rgb=None, organized=True):
    msg = pc.cloud_to_msg(pc.build_cloud(xyz, rgb, organized))
    return msg, pc.read_points(msg)


# ----------------------------------------------------------------------------- pointcloud

def test_pack_rgb_known_bits_and_roundtrip():
    rgb = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [1, 2, 3]], np.uint8)
    bits = pc.pack_rgb(rgb).view(np.uint32)
    np.testing.assert_array_equal(bits, [0xFF0000, 0x00FF00, 0x0000FF, 0x010203])
    assert np.all(np.isfinite(pc.pack_rgb(np.full((1, 3), 255, np.uint8))))  # alpha 0: no NaN
    np.testing.assert_array_equal(pc.unpack_rgb(pc.pack_rgb(rgb)), rgb)


def test_pack_rgb_image_path_matches_the_bit_arithmetic():
    # [h, w, 3] images take the one-pass OpenCV route (strided views included)
    img = np.random.default_rng(3).integers(0, 256, (10, 14, 3), dtype=np.uint8)
    view = img[::2, ::2]
    expect = ((view[..., 0].astype(np.uint32) << 16) | (view[..., 1].astype(np.uint32) << 8)
              | view[..., 2].astype(np.uint32))
    got = pc.pack_rgb(view)
    assert got.shape == (5, 7) and got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), expect)
    assert np.isfinite(pc.pack_rgb(np.full((2, 2, 3), 255, np.uint8))).all()


@pytest.mark.parametrize("organized", [True, False])
def test_points_buffer_gives_the_same_cloud_bytes(organized):
    rng = np.random.default_rng(4)
    depth = rng.uniform(1, 20, (6, 8)).astype(np.float32)
    depth[0, 0], depth[1, 2], depth[2, 3] = np.nan, np.inf, -np.inf
    rays = rng.uniform(-1, 1, (6, 8, 2)).astype(np.float32)
    rgb = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    plain = pc.build_cloud(pc.depth_to_xyz(depth, rays), rgb, organized)
    fast = pc.build_cloud(pc.points_buffer(depth, rays, True), rgb, organized)
    assert plain.width == fast.width and plain.is_dense == fast.is_dense
    np.testing.assert_array_equal(plain.data, fast.data)
    pts = pc.read_points(pc.cloud_to_msg(fast))
    if organized:  # invalid depth (NaN, ±Inf) → NaN point, colour kept
        assert np.isnan(pts["z"][0, 0]) and np.isnan(pts["x"][1, 2]) and np.isnan(pts["y"][2, 3])
        np.testing.assert_allclose(pts["x"][3, 4], rays[3, 4, 0] * depth[3, 4], rtol=1e-6)
        np.testing.assert_array_equal(pc.unpack_rgb(pts["rgb"][3, 4]), rgb[3, 4])
    else:
        assert fast.width == 6 * 8 - 3
    with pytest.raises(ValueError, match="out must be"):
        pc.depth_to_xyz(depth, rays, out=np.empty((6, 8, 2), np.float32))


def test_known_pixel_gives_known_point():
    intr = Intrinsics(K0, 96, 64)
    depth = np.full((64, 96), np.nan, np.float32)
    depth[40, 60] = 2.0  # u=60, v=40
    xyz = pc.depth_to_xyz(depth, pixel_rays(intr))
    np.testing.assert_allclose(xyz[40, 60], [(60 - 50) / 100 * 2, (40 - 30) / 110 * 2, 2.0],
                               rtol=1e-6)
    msg, pts = _cloud_points(xyz, organized=False)
    assert (msg.height, msg.width, msg.is_dense) == (1, 1, True)
    np.testing.assert_allclose([pts["x"][0, 0], pts["y"][0, 0], pts["z"][0, 0]],
                               [0.2, 10 / 110 * 2, 2.0], rtol=1e-6)


def test_organized_cloud_matches_geometry_backproject():
    torch = pytest.importorskip("torch")
    from dasp_core.geometry import backproject

    rng = np.random.default_rng(0)
    h, w = 64, 96
    depth = rng.uniform(0.5, 40, (h, w)).astype(np.float32)
    depth[rng.random((h, w)) < 0.1] = np.nan
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    xyz = pc.depth_to_xyz(depth, pixel_rays(Intrinsics(K0, w, h)))
    msg, pts = _cloud_points(xyz, rgb, organized=True)
    assert (msg.height, msg.width, msg.point_step, msg.is_dense) == (h, w, 16, False)
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb"]
    assert [f.offset for f in msg.fields] == [0, 4, 8, 12]
    ref = backproject(torch.from_numpy(np.nan_to_num(depth))[None, None].double(),
                      torch.from_numpy(K0)[None]).numpy()[0]  # [3, H, W]
    valid = np.isfinite(depth)
    for i, c in enumerate("xyz"):
        np.testing.assert_allclose(pts[c][valid], ref[i][valid], rtol=1e-5, atol=1e-5)
        assert np.all(np.isnan(pts[c][~valid]))
    np.testing.assert_array_equal(pc.unpack_rgb(pts["rgb"]), rgb)


def test_dense_cloud_keeps_only_valid_points_in_order():
    depth = np.array([[1.0, np.nan, np.inf], [-np.inf, 2.0, 3.0]], np.float32)
    rays = np.zeros((2, 3, 2), np.float32)
    xyz = pc.depth_to_xyz(depth, rays)
    msg, pts = _cloud_points(xyz, organized=False)
    assert msg.is_dense and msg.width == 3 and msg.row_step == 3 * 12
    np.testing.assert_array_equal(pts["z"][0], [1.0, 2.0, 3.0])
    msg, pts = _cloud_points(xyz[:1, :1], organized=True)
    assert msg.is_dense  # organised with no invalid point


def test_read_points_honours_padding_and_big_endian():
    # hand-made cloud: point_step 16 (x, y, z + 4 pad bytes), row padding 8 bytes, big-endian
    h, w = 2, 3
    vals = np.arange(h * w * 3, dtype=np.float32).reshape(h, w, 3)
    dt = np.dtype({"names": ["x", "y", "z"], "formats": [">f4"] * 3, "offsets": [0, 4, 8],
                   "itemsize": 16})
    rows = []
    for i in range(h):
        r = np.zeros(w, dt)
        r["x"], r["y"], r["z"] = vals[i, :, 0], vals[i, :, 1], vals[i, :, 2]
        rows.append(np.concatenate([r.view(np.uint8), np.full(8, 7, np.uint8)]))
    F = types.SimpleNamespace
    msg = F(height=h, width=w, point_step=16, row_step=w * 16 + 8, is_bigendian=True,
            fields=[F(name=n, offset=4 * i, datatype=pc.FLOAT32, count=1)
                    for i, n in enumerate("xyz")],
            data=np.concatenate(rows))
    pts = pc.read_points(msg)
    for i, c in enumerate("xyz"):
        np.testing.assert_array_equal(pts[c], vals[..., i])


def test_decimated_rays_equal_slices_of_full_rays():
    intr = Intrinsics(K0, 97, 63)
    full = pixel_rays(intr, 1)
    for d in (2, 3, 5):
        np.testing.assert_array_equal(pixel_rays(intr, d), full[::d, ::d])
    cache = RayCache(size=2)
    assert cache.get(intr, 1) is cache.get(intr, 1)


# ----------------------------------------------------------------------------- camera_info

def test_scale_K_and_P_match_torch_geometry():
    torch = pytest.importorskip("torch")
    from dasp_core.geometry import scale_intrinsics

    K = np.array([[500.0, 1.5, 319.5], [0.0, 505.0, 239.5], [0.0, 0.0, 1.0]])
    ref = scale_intrinsics(torch.from_numpy(K), 0.3, 0.4).numpy()
    np.testing.assert_allclose(scale_K(K, 0.3, 0.4), ref)
    P = np.concatenate([K, np.array([[-50.0], [0.0], [0.0]])], 1)
    Ps = scale_P(P, 0.3, 0.4)
    np.testing.assert_allclose(Ps[:, :3], ref)
    assert Ps[0, 3] == pytest.approx(-15.0)  # Tx = -fx B scales with fx


def test_camera_info_validation_reasons():
    with pytest.raises(CameraInfoError) as e:
        intrinsics_from_camera_info(_info(K=np.zeros((3, 3))))
    assert e.value.reason == "zero_focal"
    bad = K0.copy()
    bad[0, 2] = np.nan
    with pytest.raises(CameraInfoError) as e:
        intrinsics_from_camera_info(_info(K=bad))
    assert e.value.reason == "non_finite"
    with pytest.raises(CameraInfoError) as e:
        intrinsics_from_camera_info(_info(D=[0.1, 0, 0, 0, 0], model="kannala_brandt_99"))
    assert e.value.reason == "distortion"
    with pytest.raises(CameraInfoError) as e:
        intrinsics_from_camera_info(_info(w=0, h=0))
    assert e.value.reason == "size"
    # size 0 (some drivers) is fine when the image size is known
    assert intrinsics_from_camera_info(_info(w=0, h=0), (96, 64)).width == 96


def test_camera_info_resized_roi_and_binning():
    # image of half size: K rescaled with the pixel-centre convention
    intr = intrinsics_from_camera_info(_info(), (48, 32))
    np.testing.assert_allclose(intr.K, scale_K(K0, 0.5, 0.5))
    # ROI (full-res pixels) then 2x binning
    info = _info(w=96, h=64, binning=(2, 2),
                 roi=dict(x_offset=10, y_offset=4, width=40, height=20, do_rectify=False))
    intr = intrinsics_from_camera_info(info, (20, 10))
    assert (intr.width, intr.height) == (20, 10)
    assert intr.K[0, 0] == pytest.approx(50.0) and intr.K[1, 1] == pytest.approx(55.0)
    assert intr.K[0, 2] == pytest.approx((50 - 10 + 0.5) / 2 - 0.5)
    assert intr.K[1, 2] == pytest.approx((30 - 4 + 0.5) / 2 - 0.5)


def test_rectified_uses_P_and_no_distortion():
    P = np.array([[90.0, 0, 45, -9.0], [0, 90.0, 31, 0], [0, 0, 1, 0]])
    intr = intrinsics_from_camera_info(_info(D=[0.2, 0.1, 0, 0, 0], P=P), rectified=True)
    np.testing.assert_allclose(intr.K, P[:, :3])
    assert not intr.has_distortion


@pytest.mark.parametrize("model,D", [("plumb_bob", [-0.25, 0.08, 0.001, -0.002, 0.0]),
                                     ("rational_polynomial", [-0.2, 0.05, 0, 0, 0, 0.01, 0, 0]),
                                     ("equidistant", [0.05, -0.01, 0.002, 0.0])])
def test_distorted_rays_reproject_to_their_pixels(model, D):
    intr = intrinsics_from_camera_info(_info(D=D, model=model))
    rays = pixel_rays(intr, 4).astype(np.float64)
    obj = np.concatenate([rays, np.ones(rays.shape[:2] + (1,))], -1).reshape(-1, 1, 3)
    if model == "equidistant":
        proj, _ = cv2.fisheye.projectPoints(obj, np.zeros(3), np.zeros(3), intr.K, intr.D[:4])
    else:
        proj, _ = cv2.projectPoints(obj, np.zeros(3), np.zeros(3), intr.K, intr.D)
    u, v = np.meshgrid(np.arange(0, 96, 4), np.arange(0, 64, 4))
    np.testing.assert_allclose(proj.reshape(rays.shape), np.stack([u, v], -1), atol=2e-3)


def test_fov_fallback_intrinsics():
    intr = intrinsics_from_fov(640, 480, 90.0)
    assert intr.K[0, 0] == pytest.approx(320.0) and intr.K[1, 1] == pytest.approx(320.0)
    assert intr.K[0, 2] == pytest.approx(319.5) and intr.K[1, 2] == pytest.approx(239.5)
    rays = pixel_rays(intr)
    assert rays[240, 0, 0] == pytest.approx(-319.5 / 320)  # left edge ~ -tan(45 deg)
    with pytest.raises(ValueError):
        intrinsics_from_fov(640, 480, 180.0)


def test_output_camera_info_roundtrip_through_message():
    intr = intrinsics_from_camera_info(_info(D=[0.1, 0.01, 0, 0, 0])).resized(48, 32)
    msg = to_camera_info(intr)
    assert (msg.width, msg.height, msg.distortion_model) == (48, 32, "plumb_bob")
    back = intrinsics_from_camera_info(msg)
    np.testing.assert_allclose(back.K, intr.K)
    np.testing.assert_allclose(back.D, intr.D)
    np.testing.assert_allclose(back.projection(), intr.projection())
    assert camera_info_fields(intr)["p"].shape == (12,)
