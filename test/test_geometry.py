"""Property tests of dasp_core.geometry: round trips, conventions and analytic cases."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from dasp_core import geometry as g

SETTINGS = settings(max_examples=40, deadline=None)
D = torch.float64


def make_K(fx, fy, cx, cy, skew=0.0, batch=1, dtype=D):
    K = torch.tensor([[fx, skew, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=dtype)
    return K.expand(batch, 3, 3).clone()


def random_rotation_vectors(n, seed, angle=None):
    gen = torch.Generator().manual_seed(seed)
    axis = torch.randn(n, 3, generator=gen, dtype=D)
    axis = axis / axis.norm(dim=-1, keepdim=True)
    if angle is None:
        angle = torch.rand(n, 1, generator=gen, dtype=D) * math.pi
    return axis * angle


intrinsics = st.tuples(st.floats(20.0, 800.0), st.floats(20.0, 800.0),
                       st.floats(-5.0, 40.0), st.floats(-5.0, 30.0), st.floats(-2.0, 2.0))


# ----------------------------------------------------------------------------- projection

@SETTINGS
@given(k=intrinsics, seed=st.integers(0, 2 ** 31 - 1),
       dmin=st.floats(0.05, 5.0), dspan=st.floats(0.0, 200.0))
def test_project_backproject_round_trip(k, seed, dmin, dspan):
    fx, fy, cx, cy, skew = k
    H, W = 5, 7
    K = make_K(fx, fy, cx, cy, skew, batch=2)
    gen = torch.Generator().manual_seed(seed)
    depth = dmin + dspan * torch.rand(2, 1, H, W, generator=gen, dtype=D)
    pts = g.backproject(depth, K)
    torch.testing.assert_close(pts[:, 2:3], depth)  # z-depth, not ray length
    pix, z = g.project(pts, K)
    grid = g.pixel_grid(H, W, dtype=D)[:, :2].expand(2, 2, H, W)
    torch.testing.assert_close(pix, grid, atol=1e-7, rtol=0)
    torch.testing.assert_close(z, depth)


def test_project_keeps_float32_and_shape():
    K = make_K(50.0, 50.0, 3.0, 2.0, dtype=torch.float32)
    pts = torch.tensor([[[1.0, -2.0], [0.5, 0.0], [2.0, 4.0]]])  # [1, 3, 2] points
    pix, z = g.project(pts, K)
    assert pix.dtype == torch.float32 and pix.shape == (1, 2, 2) and z.shape == (1, 1, 2)
    torch.testing.assert_close(pix[0, :, 0], torch.tensor([50 * 0.5 + 3.0, 50 * 0.25 + 2.0]))


# ----------------------------------------------------------------------------- rotations

angles = st.one_of(st.floats(0.0, 1e-6), st.floats(1e-6, 1e-3), st.floats(1e-3, math.pi - 1e-3),
                   st.floats(math.pi - 1e-3, math.pi))


@SETTINGS
@given(angle=angles, seed=st.integers(0, 2 ** 31 - 1))
def test_axis_angle_matrix_round_trip(angle, seed):
    aa = random_rotation_vectors(4, seed, angle=torch.full((4, 1), angle, dtype=D))
    R = g.axis_angle_to_matrix(aa)
    eye = torch.eye(3, dtype=D).expand(4, 3, 3)
    torch.testing.assert_close(R @ R.transpose(-1, -2), eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(4, dtype=D))
    aa2 = g.matrix_to_axis_angle(R)
    torch.testing.assert_close(g.axis_angle_to_matrix(aa2), R, atol=1e-10, rtol=0)
    assert torch.all(aa2.norm(dim=-1) <= math.pi + 1e-9)
    if angle < math.pi - 1e-3:  # at pi, aa and -aa are the same rotation
        torch.testing.assert_close(aa2, aa, atol=1e-9, rtol=0)


@SETTINGS
@given(angle=angles, seed=st.integers(0, 2 ** 31 - 1))
def test_axis_angle_float32_accuracy(angle, seed):
    aa64 = random_rotation_vectors(4, seed, angle=torch.full((4, 1), angle, dtype=D))
    R32 = g.axis_angle_to_matrix(aa64.float())
    torch.testing.assert_close(R32.double(), g.axis_angle_to_matrix(aa64), atol=2e-6, rtol=0)
    R_back = g.axis_angle_to_matrix(g.matrix_to_axis_angle(R32))
    torch.testing.assert_close(R_back, R32, atol=2e-6, rtol=0)


def test_axis_angle_known_value_and_finite_gradient_at_zero():
    R = g.axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2], dtype=D))
    # +90 deg about z maps x to y
    torch.testing.assert_close(R @ torch.tensor([1.0, 0, 0], dtype=D),
                               torch.tensor([0.0, 1.0, 0.0], dtype=D), atol=1e-12, rtol=0)
    aa = torch.zeros(2, 3, requires_grad=True)
    g.axis_angle_to_matrix(aa).sum().backward()
    assert torch.isfinite(aa.grad).all()
    # dR/dw at the identity is the skew matrix: sum of entries of [w]x is zero -> check one
    aa = torch.zeros(3, dtype=D, requires_grad=True)
    g.axis_angle_to_matrix(aa)[1, 0].backward()  # R[1,0] = w_z to first order
    torch.testing.assert_close(aa.grad, torch.tensor([0.0, 0.0, 1.0], dtype=D))


@SETTINGS
@given(seed=st.integers(0, 2 ** 31 - 1), tscale=st.floats(0.0, 50.0))
def test_pose_vec_matrix_round_trip_and_inverse(seed, tscale):
    gen = torch.Generator().manual_seed(seed)
    aa = random_rotation_vectors(3, seed)
    t = tscale * torch.randn(3, 3, generator=gen, dtype=D)
    T = g.pose_vec_to_matrix(aa, t)
    eye4 = torch.eye(4, dtype=D).expand(3, 4, 4)
    torch.testing.assert_close(T[:, 3], eye4[:, 3])
    aa2, t2 = g.matrix_to_pose_vec(T)
    torch.testing.assert_close(g.pose_vec_to_matrix(aa2, t2), T, atol=1e-9, rtol=1e-12)
    torch.testing.assert_close(t2, t)
    Tinv = g.invert_pose(T)
    torch.testing.assert_close(Tinv @ T, eye4, atol=1e-9, rtol=0)
    torch.testing.assert_close(T @ Tinv, eye4, atol=1e-9, rtol=0)
    torch.testing.assert_close(g.pose_vec_to_matrix(aa, t, invert=True), Tinv)
    # transform then inverse-transform returns the points
    pts = 10 * torch.randn(3, 3, 4, 5, generator=gen, dtype=D)
    back = g.transform_points(Tinv, g.transform_points(T, pts))
    torch.testing.assert_close(back, pts, atol=1e-9, rtol=0)
    # transform_points agrees with homogeneous matrix multiplication
    flat = pts.reshape(3, 3, -1)
    hom = torch.cat([flat, torch.ones_like(flat[:, :1])], 1)
    torch.testing.assert_close(g.transform_points(T, flat), (T @ hom)[:, :3])


# ----------------------------------------------------------------------------- intrinsics

@SETTINGS
@given(k=intrinsics, size_a=st.tuples(st.integers(4, 64), st.integers(4, 64)),
       size_b=st.tuples(st.integers(4, 64), st.integers(4, 64)),
       seed=st.integers(0, 2 ** 31 - 1))
def test_scale_intrinsics_matches_pixel_centre_resizing(k, size_a, size_b, seed):
    (Wa, Ha), (Wb, Hb) = size_a, size_b
    sx, sy = Wb / Wa, Hb / Ha
    Ka = make_K(*k)
    Kb = g.scale_intrinsics(Ka, sx, sy)
    gen = torch.Generator().manual_seed(seed)
    pts = torch.randn(1, 3, 10, generator=gen, dtype=D)
    pts[:, 2] = pts[:, 2].abs() + 0.5
    pa, _ = g.project(pts, Ka)
    pb, _ = g.project(pts, Kb)
    # pixel-centre convention: continuous coordinate (u + 0.5) scales with the image
    torch.testing.assert_close(pb[:, 0], (pa[:, 0] + 0.5) * sx - 0.5)
    torch.testing.assert_close(pb[:, 1], (pa[:, 1] + 0.5) * sy - 0.5)
    # normalised intrinsics are size independent
    Kn = g.normalize_intrinsics(Ka, Wa, Ha)
    torch.testing.assert_close(g.denormalize_intrinsics(Kn, Wa, Ha), Ka)
    torch.testing.assert_close(g.denormalize_intrinsics(Kn, Wb, Hb), Kb)
    torch.testing.assert_close(g.normalize_intrinsics(Kb, Wb, Hb), Kn)


def test_normalized_intrinsics_known_values():
    K = make_K(100.0, 80.0, 31.5, 23.5)  # centred principal point of a 64 x 48 image
    Kn = g.normalize_intrinsics(K, 64, 48)
    torch.testing.assert_close(Kn[0, :2, :], torch.tensor(
        [[100 / 64, 0.0, 0.5], [0.0, 80 / 48, 0.5]], dtype=D))


@pytest.mark.parametrize("size_b", [(32, 24), (96, 72), (40, 30)])
def test_scale_intrinsics_agrees_with_interpolate(size_b):
    """An image linear in the viewing-ray slope, rendered at size A and resized with
    F.interpolate(align_corners=False), equals the same image rendered with scaled K."""
    Wa, Ha = 64, 48
    Wb, Hb = size_b
    Ka = make_K(55.0, 50.0, 30.0, 25.0)
    Kb = g.scale_intrinsics(Ka, Wb / Wa, Hb / Ha)

    def render(K, H, W):
        rays = g.backproject(torch.ones(1, 1, H, W, dtype=D), K)  # (x/z, y/z, 1)
        return 0.3 * rays[:, :1] - 0.7 * rays[:, 1:2] + 0.5

    resized = F.interpolate(render(Ka, Ha, Wa), size=(Hb, Wb), mode="bilinear",
                            align_corners=False)
    expected = render(Kb, Hb, Wb)
    # bilinear reproduces linear functions exactly away from the clamped border
    torch.testing.assert_close(resized[..., 2:-2, 2:-2], expected[..., 2:-2, 2:-2],
                               atol=1e-9, rtol=0)


def test_crop_intrinsics_shifts_pixels():
    K = make_K(50.0, 50.0, 20.0, 10.0)
    pts = torch.tensor([[[0.3], [-0.2], [2.0]]], dtype=D)
    p, _ = g.project(pts, K)
    pc, _ = g.project(pts, g.crop_intrinsics(K, 5.0, 3.0))
    torch.testing.assert_close(pc, p - torch.tensor([5.0, 3.0], dtype=D).view(1, 2, 1))


# ----------------------------------------------------------------------------- depth

@SETTINGS
@given(min_depth=st.floats(0.01, 1.0), ratio=st.floats(2.0, 1000.0),
       seed=st.integers(0, 2 ** 31 - 1))
def test_disp_depth_round_trip_and_range(min_depth, ratio, seed):
    max_depth = min_depth * ratio
    gen = torch.Generator().manual_seed(seed)
    disp = torch.rand(1, 1, 4, 6, generator=gen, dtype=D)
    disp[0, 0, 0, :2] = torch.tensor([0.0, 1.0], dtype=D)
    scaled, depth = g.disp_to_depth(disp, min_depth, max_depth)
    torch.testing.assert_close(scaled * depth, torch.ones_like(depth))
    assert depth.min() >= min_depth * (1 - 1e-12) and depth.max() <= max_depth * (1 + 1e-12)
    torch.testing.assert_close(depth[0, 0, 0, :2], torch.tensor([max_depth, min_depth], dtype=D))
    torch.testing.assert_close(g.depth_to_disp(depth, min_depth, max_depth), disp,
                               atol=1e-10, rtol=0)
    # monotone: larger disparity means nearer
    order = torch.argsort(disp.flatten())
    assert torch.all(depth.flatten()[order].diff() <= 1e-12)
    # out-of-range depths clamp to the ends of the disparity range
    far = g.depth_to_disp(torch.tensor([max_depth * 10, min_depth / 10], dtype=D),
                          min_depth, max_depth)
    torch.testing.assert_close(far, torch.tensor([0.0, 1.0], dtype=D), atol=1e-10, rtol=0)


# ----------------------------------------------------------------------------- warping

def test_warp_identity_pose_reproduces_image():
    gen = torch.Generator().manual_seed(3)
    img = torch.rand(2, 3, 12, 16, generator=gen)
    depth = 1.0 + 20 * torch.rand(2, 1, 12, 16, generator=gen)
    K = make_K(20.0, 22.0, 7.5, 5.5, batch=2, dtype=torch.float32)
    T = torch.eye(4).expand(2, 4, 4)
    warped, valid = g.warp_image(img, depth, T, K)
    torch.testing.assert_close(warped, img, atol=1e-5, rtol=0)
    assert valid.shape == (2, 1, 12, 16) and valid.all()


def test_warp_marks_out_of_view_and_behind_as_invalid():
    img = torch.rand(1, 1, 8, 10)
    depth = torch.full((1, 1, 8, 10), 2.0)
    K = make_K(10.0, 10.0, 4.5, 3.5, dtype=torch.float32)
    # source camera 2 m to the right of the target (X_s = X_t - 2 m in x): left part leaves
    T = g.pose_vec_to_matrix(torch.zeros(1, 3), torch.tensor([[-2.0, 0.0, 0.0]]))
    _, valid = g.warp_image(img, depth, T, K)
    u_s = torch.arange(10.0) - 10.0 * 2.0 / 2.0  # u_t + fx * tx / Z with tx = -2
    assert torch.equal(valid[0, 0, 0], u_s >= -0.5)
    # source camera 3 m ahead: every point is behind it
    T = g.pose_vec_to_matrix(torch.zeros(1, 3), torch.tensor([[0.0, 0.0, -3.0]]))
    _, valid = g.warp_image(img, depth, T, K)
    assert not valid.any()


@SETTINGS
@given(Z=st.floats(0.5, 80.0), tx=st.floats(-2.0, 2.0), fx=st.floats(20.0, 600.0))
def test_reproject_fronto_parallel_plane_x_translation(Z, tx, fx):
    H, W = 6, 9
    K = make_K(fx, 0.8 * fx, 4.0, 2.5)
    depth = torch.full((1, 1, H, W), Z, dtype=D)
    T = g.pose_vec_to_matrix(torch.zeros(1, 3, dtype=D), torch.tensor([[tx, 0.0, 0.0]], dtype=D))
    pix, z = g.reproject_pixels(depth, T, K)
    grid = g.pixel_grid(H, W, dtype=D)
    torch.testing.assert_close(pix[:, 0], grid[:, 0] + fx * tx / Z)  # disparity fx*tx/Z
    torch.testing.assert_close(pix[:, 1], grid[:, 1])
    torch.testing.assert_close(z, depth)


def test_pixels_to_grid_align_corners_false():
    grid = g.pixels_to_grid(torch.tensor([[[[-0.5, 0.0, 9.5]], [[-0.5, 0.0, 4.5]]]]), 5, 10)
    torch.testing.assert_close(grid[0, 0, :, 0], torch.tensor([-1.0, -0.9, 1.0]))
    torch.testing.assert_close(grid[0, 0, :, 1], torch.tensor([-1.0, -0.8, 1.0]))
