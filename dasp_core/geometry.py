"""Camera geometry for self-supervised depth: pure, batched torch functions.

Conventions (used everywhere in dasp):

* Camera frame: OpenCV / REP 103 optical frame — x right, y down, z forward. Units: metres.
* Pixels: ``u`` (column) and ``v`` (row); the centre of the top-left pixel is (0, 0).
* Intrinsics ``K``: ``[B, 3, 3]`` in pixels for the image size it is used with. *Normalised*
  intrinsics divide the first row by the width and the second row by the height, measuring
  the principal point from the image's outer edge (fx/W, (cx+0.5)/W; fy/H, (cy+0.5)/H; a
  centred camera has 0.5), so they do not change with resizing.
* Poses: ``T_a_b`` (``[B, 4, 4]``) maps points in frame b to frame a: ``X_a = T_a_b @ X_b``.
  ``T_t→s`` of the paper — the transform from target-camera coordinates to source-camera
  coordinates — is ``T_s_t`` here.
* Pose vectors: axis-angle ``[B, 3]`` (radians; direction = axis, norm = angle) plus
  translation ``[B, 3]`` (metres).
* Depth ``[B, 1, H, W]`` in metres (z, not ray length). Disparity in the network's sense is the
  sigmoid output in [0, 1], mapped to inverse depth in ``[1/max_depth, 1/min_depth]``.

All functions accept float32/float64 tensors on any device and keep dtype and device.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F

__all__ = [
    "scale_intrinsics", "crop_intrinsics", "normalize_intrinsics", "denormalize_intrinsics",
    "pixel_grid", "backproject", "transform_points", "project", "pixels_to_grid",
    "axis_angle_to_matrix", "matrix_to_axis_angle", "pose_vec_to_matrix", "matrix_to_pose_vec",
    "invert_pose", "disp_to_depth", "depth_to_disp", "depth_to_points", "warp_image",
    "reproject_pixels",
]


# ----------------------------------------------------------------------------- intrinsics

def scale_intrinsics(K: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    """Intrinsics of an image resized by ``sx`` horizontally and ``sy`` vertically.

    Exact for pixel-centre sampling (``cv2.resize``, ``F.interpolate(align_corners=False)``):
    ``cx' = (cx + 0.5) * sx - 0.5``.

    Args:
        K: ``[..., 3, 3]`` pixel intrinsics of the original image.
        sx, sy: new_width / old_width and new_height / old_height.
    Returns:
        ``[..., 3, 3]`` pixel intrinsics of the resized image.
    """
    K = K.clone()
    K[..., 0, 0] = K[..., 0, 0] * sx
    K[..., 0, 1] = K[..., 0, 1] * sx
    K[..., 1, 1] = K[..., 1, 1] * sy
    K[..., 0, 2] = (K[..., 0, 2] + 0.5) * sx - 0.5
    K[..., 1, 2] = (K[..., 1, 2] + 0.5) * sy - 0.5
    return K


def crop_intrinsics(K: torch.Tensor, x0: float, y0: float) -> torch.Tensor:
    """Intrinsics after cropping the image so that pixel (x0, y0) becomes (0, 0).

    Args:
        K: ``[..., 3, 3]`` pixel intrinsics.
        x0, y0: left and top offset of the crop in pixels.
    """
    K = K.clone()
    K[..., 0, 2] = K[..., 0, 2] - x0
    K[..., 1, 2] = K[..., 1, 2] - y0
    return K


def normalize_intrinsics(K: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Pixel intrinsics ``[..., 3, 3]`` for a ``width x height`` image → normalised intrinsics.

    Normalised intrinsics describe the image as the unit square ``[0, 1]^2`` (its outer pixel
    *edges*, not centres): ``fx/W``, ``skew/W``, ``(cx + 0.5)/W``; ``fy/H``, ``(cy + 0.5)/H``.
    A centred principal point is 0.5, as in monodepth2's normalised KITTI matrix, and the
    values are exactly size-independent under the pixel-centre convention:
    ``denormalize_intrinsics(normalize_intrinsics(K, W, H), W2, H2)`` equals
    ``scale_intrinsics(K, W2 / W, H2 / H)``.
    """
    Kn = K.clone()
    Kn[..., 0, 0] = K[..., 0, 0] / width
    Kn[..., 0, 1] = K[..., 0, 1] / width
    Kn[..., 0, 2] = (K[..., 0, 2] + 0.5) / width
    Kn[..., 1, 1] = K[..., 1, 1] / height
    Kn[..., 1, 2] = (K[..., 1, 2] + 0.5) / height
    return Kn


def denormalize_intrinsics(Kn: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Normalised intrinsics ``[..., 3, 3]`` (see :func:`normalize_intrinsics`) → pixel
    intrinsics for a ``width x height`` image (``cx = cx_n * W - 0.5``)."""
    K = Kn.clone()
    K[..., 0, 0] = Kn[..., 0, 0] * width
    K[..., 0, 1] = Kn[..., 0, 1] * width
    K[..., 0, 2] = Kn[..., 0, 2] * width - 0.5
    K[..., 1, 1] = Kn[..., 1, 1] * height
    K[..., 1, 2] = Kn[..., 1, 2] * height - 0.5
    return K


# ----------------------------------------------------------------------------- projection

def pixel_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Homogeneous pixel coordinates ``[1, 3, H, W]``: rows are (u, v, 1)."""
    v, u = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                          torch.arange(width, device=device, dtype=dtype), indexing="ij")
    return torch.stack([u, v, torch.ones_like(u)], dim=0).unsqueeze(0)


def backproject(depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Lift every pixel to a 3D point in the camera frame.

    Args:
        depth: ``[B, 1, H, W]`` z-depth in metres.
        K: ``[B, 3, 3]`` pixel intrinsics for H x W.
    Returns:
        ``[B, 3, H, W]`` points (x right, y down, z forward) in metres.
    """
    B, _, H, W = depth.shape
    pix = pixel_grid(H, W, depth.device, depth.dtype).reshape(1, 3, H * W)
    rays = torch.linalg.solve(K, pix.expand(B, 3, H * W))  # K^-1 p, stable without explicit inv
    return (rays * depth.reshape(B, 1, H * W)).reshape(B, 3, H, W)


depth_to_points = backproject


def transform_points(T: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply a rigid transform.

    Args:
        T: ``[B, 4, 4]`` transform ``T_a_b``.
        points: ``[B, 3, H, W]`` (or ``[B, 3, N]``) points in frame b.
    Returns:
        Points in frame a, same shape as ``points``.
    """
    B = points.shape[0]
    flat = points.reshape(B, 3, -1)
    out = T[:, :3, :3] @ flat + T[:, :3, 3:4]
    return out.reshape(points.shape)


def project(points: torch.Tensor, K: torch.Tensor, eps: float = 1e-7
            ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Project camera-frame points to pixels.

    Args:
        points: ``[B, 3, H, W]`` points in metres.
        K: ``[B, 3, 3]`` pixel intrinsics.
        eps: lower clamp of z to avoid division by zero (points behind the camera get
            meaningless pixels; check the returned z).
    Returns:
        ``(pix [B, 2, H, W] as (u, v) pixels, z [B, 1, H, W] metres)``.
    """
    B = points.shape[0]
    flat = points.reshape(B, 3, -1)
    cam = K @ flat
    z = cam[:, 2:3]
    pix = cam[:, :2] / z.clamp(min=eps)
    shape = points.shape[2:]
    return pix.reshape(B, 2, *shape), z.reshape(B, 1, *shape)


def pixels_to_grid(pix: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel coordinates ``[B, 2, H, W]`` → ``grid_sample`` grid ``[B, H, W, 2]`` in [-1, 1].

    Uses ``align_corners=False`` semantics (pixel centres at ``(2u + 1) / W - 1``), which pairs
    with :func:`scale_intrinsics`; pass ``align_corners=False`` to ``grid_sample``.
    """
    u = (2.0 * pix[:, 0] + 1.0) / width - 1.0
    v = (2.0 * pix[:, 1] + 1.0) / height - 1.0
    return torch.stack([u, v], dim=-1)


def reproject_pixels(depth_t: torch.Tensor, T_s_t: torch.Tensor, K_t: torch.Tensor,
                     K_s: torch.Tensor | None = None
                     ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Where each target pixel lands in the source view: ``p_s ~ K T_t→s D_t(p_t) K^-1 p_t``.

    Args:
        depth_t: ``[B, 1, H, W]`` target depth (metres).
        T_s_t: ``[B, 4, 4]`` target-camera → source-camera transform.
        K_t: ``[B, 3, 3]`` target intrinsics; ``K_s`` source intrinsics (default: same).
    Returns:
        ``(pix_s [B, 2, H, W] pixels in the source image, z_s [B, 1, H, W] depth in source)``.
    """
    pts_s = transform_points(T_s_t, backproject(depth_t, K_t))
    return project(pts_s, K_t if K_s is None else K_s)


def warp_image(source: torch.Tensor, depth_t: torch.Tensor, T_s_t: torch.Tensor,
               K: torch.Tensor, padding_mode: str = "border"
               ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Synthesise the target view by sampling the source image (inverse warping).

    Args:
        source: ``[B, C, H, W]`` source image.
        depth_t: ``[B, 1, H, W]`` target depth in metres.
        T_s_t: ``[B, 4, 4]`` target → source transform.
        K: ``[B, 3, 3]`` pixel intrinsics of both views at H x W.
    Returns:
        ``(warped [B, C, H, W], valid [B, 1, H, W] bool)`` — valid where the projected point
        is in front of the source camera and inside the source image.
    """
    H, W = source.shape[-2:]
    pix, z = reproject_pixels(depth_t, T_s_t, K)
    grid = pixels_to_grid(pix, H, W)
    warped = F.grid_sample(source, grid, mode="bilinear", padding_mode=padding_mode,
                           align_corners=False)
    inside = ((pix[:, 0] >= -0.5) & (pix[:, 0] <= W - 0.5) &
              (pix[:, 1] >= -0.5) & (pix[:, 1] <= H - 0.5)).unsqueeze(1)
    valid = inside & (z > 1e-3)
    return warped, valid


# ----------------------------------------------------------------------------- rotations

def _skew(v: torch.Tensor) -> torch.Tensor:
    z = torch.zeros_like(v[..., 0])
    return torch.stack([
        torch.stack([z, -v[..., 2], v[..., 1]], -1),
        torch.stack([v[..., 2], z, -v[..., 0]], -1),
        torch.stack([-v[..., 1], v[..., 0], z], -1)], -2)


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula: ``[..., 3]`` axis-angle (radians) → ``[..., 3, 3]`` rotation.

    Uses Taylor expansions near zero so values and gradients stay finite at the identity.
    """
    theta2 = (axis_angle * axis_angle).sum(-1, keepdim=True)
    theta = torch.sqrt(theta2.clamp(min=1e-12))
    small = theta2 < 1e-8
    # sin(t)/t and (1 - cos t)/t^2 with series fallbacks
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    # 1 - cos t = 2 sin^2(t/2): no cancellation for small t in float32
    b = torch.where(small, 0.5 - theta2 / 24.0,
                    2.0 * torch.sin(0.5 * theta) ** 2 / theta2.clamp(min=1e-12))
    Kx = _skew(axis_angle)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device).expand(Kx.shape)
    return eye + a.unsqueeze(-1) * Kx + b.unsqueeze(-1) * (Kx @ Kx)


def matrix_to_axis_angle(R: torch.Tensor) -> torch.Tensor:
    """Rotation ``[..., 3, 3]`` → axis-angle ``[..., 3]`` (radians, angle in [0, pi]).

    Goes through a unit quaternion, which is well conditioned everywhere including near pi.
    """
    m = R
    tr = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    # Shepperd's method: choose the largest of 4 candidates for numerical stability.
    cand = torch.stack([1 + tr, 1 + 2 * m[..., 0, 0] - tr, 1 + 2 * m[..., 1, 1] - tr,
                        1 + 2 * m[..., 2, 2] - tr], -1)
    idx = cand.argmax(-1)
    q = torch.zeros(R.shape[:-2] + (4,), dtype=R.dtype, device=R.device)
    for i in range(4):
        sel = idx == i
        if not sel.any():
            continue
        mm = m[sel]
        s = torch.sqrt(cand[sel][..., i].clamp(min=1e-12)) * 2  # s = 4 * q_i
        if i == 0:
            qi = torch.stack([0.25 * s, (mm[..., 2, 1] - mm[..., 1, 2]) / s,
                              (mm[..., 0, 2] - mm[..., 2, 0]) / s,
                              (mm[..., 1, 0] - mm[..., 0, 1]) / s], -1)
        elif i == 1:
            qi = torch.stack([(mm[..., 2, 1] - mm[..., 1, 2]) / s, 0.25 * s,
                              (mm[..., 0, 1] + mm[..., 1, 0]) / s,
                              (mm[..., 0, 2] + mm[..., 2, 0]) / s], -1)
        elif i == 2:
            qi = torch.stack([(mm[..., 0, 2] - mm[..., 2, 0]) / s,
                              (mm[..., 0, 1] + mm[..., 1, 0]) / s, 0.25 * s,
                              (mm[..., 1, 2] + mm[..., 2, 1]) / s], -1)
        else:
            qi = torch.stack([(mm[..., 1, 0] - mm[..., 0, 1]) / s,
                              (mm[..., 0, 2] + mm[..., 2, 0]) / s,
                              (mm[..., 1, 2] + mm[..., 2, 1]) / s, 0.25 * s], -1)
        q[sel] = qi
    q = torch.where(q[..., :1] < 0, -q, q)  # w >= 0 → angle in [0, pi]
    w, xyz = q[..., 0].clamp(-1, 1), q[..., 1:]
    sin_half = xyz.norm(dim=-1)
    angle = 2 * torch.atan2(sin_half, w)
    scale = torch.where(sin_half < 1e-7, 2.0 / w.clamp(min=1e-7),
                        angle / sin_half.clamp(min=1e-12))
    return xyz * scale.unsqueeze(-1)


def pose_vec_to_matrix(axis_angle: torch.Tensor, translation: torch.Tensor,
                       invert: bool = False) -> torch.Tensor:
    """Axis-angle ``[B, 3]`` (radians) + translation ``[B, 3]`` (metres) → ``[B, 4, 4]``.

    ``T = [[R, t], [0, 1]]``; with ``invert=True`` returns ``T^-1 = [[R^T, -R^T t], [0, 1]]``
    (monodepth2's trick to predict one pose for a pair and use it both ways).
    """
    R = axis_angle_to_matrix(axis_angle)
    t = translation.unsqueeze(-1)
    if invert:
        R = R.transpose(-1, -2)
        t = -R @ t
    T = torch.zeros(axis_angle.shape[:-1] + (4, 4), dtype=axis_angle.dtype,
                    device=axis_angle.device)
    T[..., :3, :3] = R
    T[..., :3, 3:] = t
    T[..., 3, 3] = 1.0
    return T


def matrix_to_pose_vec(T: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``[B, 4, 4]`` rigid transform → (axis-angle ``[B, 3]`` radians, translation ``[B, 3]``)."""
    return matrix_to_axis_angle(T[..., :3, :3]), T[..., :3, 3]


def invert_pose(T: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid transforms ``[..., 4, 4]`` (exact, no general matrix inverse)."""
    R = T[..., :3, :3].transpose(-1, -2)
    out = torch.zeros_like(T)
    out[..., :3, :3] = R
    out[..., :3, 3:] = -R @ T[..., :3, 3:]
    out[..., 3, 3] = 1.0
    return out


# ----------------------------------------------------------------------------- depth

def disp_to_depth(disp: torch.Tensor, min_depth: float, max_depth: float
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Network sigmoid output in [0, 1] → (scaled inverse depth, depth in metres).

    ``scaled = 1/max + (1/min - 1/max) * disp``; ``depth = 1 / scaled`` ∈ [min_depth, max_depth].
    """
    min_disp, max_disp = 1.0 / max_depth, 1.0 / min_depth
    scaled = min_disp + (max_disp - min_disp) * disp
    return scaled, 1.0 / scaled


def depth_to_disp(depth: torch.Tensor, min_depth: float, max_depth: float) -> torch.Tensor:
    """Inverse of :func:`disp_to_depth`: depth (metres) → sigmoid-range disparity in [0, 1]."""
    min_disp, max_disp = 1.0 / max_depth, 1.0 / min_depth
    return (1.0 / depth.clamp(min=min_depth, max=max_depth) - min_disp) / (max_disp - min_disp)
