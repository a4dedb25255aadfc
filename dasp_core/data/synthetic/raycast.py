"""Analytic ray casting of the road plane, boxes and ellipsoids (numpy, float32).

Camera rays are ``d = R_wc K^-1 (u, v, 1)``: their camera-frame z component is 1, so the ray
parameter ``t`` of a hit *is* its z-depth (what the depth maps store).

Speed comes from never testing a primitive against pixels it cannot cover:

* every primitive's world box is projected (with near-plane clipping) to a pixel rectangle;
* large rectangles are tested one by one, nearest first, on the rectangle's slice of the ray
  arrays, and skipped when everything already hit inside the rectangle is nearer than the
  primitive's nearest corner (occlusion culling);
* small rectangles (far or thin objects) are tested all at once on the flat list of
  (pixel, primitive) pairs, and merged with ``np.minimum.at``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from dasp_core.data.synthetic.primitives import KIND_BOX, KIND_ELLIPSOID, Prims

NEAR = 0.05          # m, near plane for rectangles and hits
BATCH_AREA = 300

# the 12 edges of a box, as pairs of corner indices (corner bits: x=1, y=2, z=4)
_EDGES = np.array([(a, a | b) for b in (1, 2, 4) for a in range(8) if not a & b])
_CORNER_BITS = np.array([[(c >> k) & 1 for k in range(3)] for c in range(8)], np.float64)

AXIS_ELLIPSOID = 3


def _face_axis(tn: np.ndarray, txn: np.ndarray, tyn: np.ndarray) -> np.ndarray:
    """Entry-face axis of slab hits: 0 if the x slab was entered last, else 1 for y, else 2."""
    not_x = (tn != txn).astype(np.int8)
    return not_x * (np.int8(2) - (tn == tyn).astype(np.int8))


@dataclass
class Rays:
    """World-space rays of one frame, planar ``[H, W]`` float32 arrays.

    ``o``: camera centre (world, float64 ``[3]``); ``dx, dy, dz``: directions (z_cam = 1);
    ``ix, iy, iz``: their reciprocals (zeros replaced by ±1e-12 first).
    """

    o: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    dz: np.ndarray
    ix: np.ndarray
    iy: np.ndarray
    iz: np.ndarray


@dataclass
class Hits:
    """Nearest hits of one frame.

    Attributes:
        t: float32 ``[H, W]`` z-depth of the hit (metres); ``inf`` where nothing was hit.
        pid: int32 ``[H, W]``: -1 nothing, 0 road plane, ``k + 1`` primitive ``k`` of the
            frame's primitive table.
        axis: int8 ``[H, W]``: hit face axis in the primitive's local frame (0 x, 1 y, 2 z),
            3 for ellipsoids; 2 for the road.
    """

    t: np.ndarray
    pid: np.ndarray
    axis: np.ndarray


class RayCaster:
    """Casts the camera rays of one image size against a primitive table.

    Args:
        K: ``[3, 3]`` pixel intrinsics.
        height, width: image size.
    """

    def __init__(self, K: np.ndarray, height: int, width: int):
        self.K = np.asarray(K, np.float64)
        self.H, self.W = int(height), int(width)
        v, u = np.mgrid[0:self.H, 0:self.W].astype(np.float64)
        Kinv = np.linalg.inv(self.K)
        self.d_cam = np.stack([Kinv[0, 0] * u + Kinv[0, 1] * v + Kinv[0, 2],
                               Kinv[1, 1] * v + Kinv[1, 2],
                               np.ones_like(u)]).astype(np.float32)  # [3, H, W]
        self._d_cam_flat = self.d_cam.reshape(3, -1)

    # ------------------------------------------------------------------ rays
    def rays(self, T_wc: np.ndarray) -> Rays:
        """World rays for camera pose ``T_wc`` (camera→world ``[4, 4]``)."""
        R = T_wc[:3, :3].astype(np.float32)
        dc = self.d_cam
        # explicit 3x3 product: np.matmul on [3, N] float32 is slow on some BLAS builds
        d = [R[i, 0] * dc[0] + R[i, 1] * dc[1] + R[i, 2] * dc[2] for i in range(3)]
        with np.errstate(divide="ignore"):
            # an exact zero gives ±inf, which the slab tests handle (inf * nonzero = inf)
            inv = [np.float32(1.0) / c for c in d]
        return Rays(np.asarray(T_wc[:3, 3], np.float64), d[0], d[1], d[2], *inv)

    def frustum_cull(self, center: np.ndarray, radius: np.ndarray, T_wc: np.ndarray,
                     max_depth: float) -> np.ndarray:
        """bool ``[M]``: bounding spheres (world ``center [M, 3]``, ``radius [M]``) that may be
        inside the view frustum and closer than ``max_depth``."""
        pc = (center - T_wc[:3, 3]) @ T_wc[:3, :3]  # world → camera: R^T (c - o)
        x, y, z = pc[:, 0], pc[:, 1], pc[:, 2]
        keep = (z > -radius) & (z - radius < max_depth)
        for a, b, f, c0, n in ((x, z, self.K[0, 0], self.K[0, 2], self.W),
                               (y, z, self.K[1, 1], self.K[1, 2], self.H)):
            # side planes through the image borders (pixel-centre convention, 1 px margin)
            for edge in (-0.5 - 1.0 - c0, n - 0.5 + 1.0 - c0):
                tan = edge / f
                norm = np.hypot(1.0, tan)
                dist = (a - tan * b) / norm * (1.0 if edge > 0 else -1.0)
                keep &= dist < radius
        return keep

    # ------------------------------------------------------------------ rectangles
    def rectangles(self, lo: np.ndarray, hi: np.ndarray, T_wc: np.ndarray
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pixel rectangles covering world boxes.

        Args:
            lo, hi: ``[M, 3]`` world bounds.
            T_wc: camera pose.
        Returns:
            ``(rect int64 [M, 4] as (u0, u1, v0, v1) with exclusive ends, visible bool [M],
            zmin float64 [M] nearest camera-z of the box, clamped at 0)``.
        """
        M = lo.shape[0]
        if M == 0:
            return np.zeros((0, 4), np.int64), np.zeros(0, bool), np.zeros(0)
        R_cw = T_wc[:3, :3].T
        corners = lo[:, None, :] + _CORNER_BITS[None] * (hi - lo)[:, None, :]   # [M, 8, 3]
        pc = (corners - T_wc[:3, 3]) @ R_cw.T                                    # camera frame
        z = pc[..., 2]
        # near-plane crossings of the 12 edges
        za, zb = z[:, _EDGES[:, 0]], z[:, _EDGES[:, 1]]
        cross = (za - NEAR) * (zb - NEAR) < 0
        w = np.where(cross, (NEAR - za) / np.where(cross, zb - za, 1.0), 0.0)
        pe = pc[:, _EDGES[:, 0]] + w[..., None] * (pc[:, _EDGES[:, 1]] - pc[:, _EDGES[:, 0]])
        pts = np.concatenate([pc, pe], axis=1)                                   # [M, 20, 3]
        ok = np.concatenate([z >= NEAR, cross], axis=1)
        zz = np.where(ok, np.maximum(pts[..., 2], NEAR), 1.0)
        u = self.K[0, 0] * pts[..., 0] / zz + self.K[0, 1] * pts[..., 1] / zz + self.K[0, 2]
        v = self.K[1, 1] * pts[..., 1] / zz + self.K[1, 2]
        big = 1e9
        umin = np.where(ok, u, big).min(1)
        umax = np.where(ok, u, -big).max(1)
        vmin = np.where(ok, v, big).min(1)
        vmax = np.where(ok, v, -big).max(1)
        visible = ok.any(1)
        u0 = np.clip(np.floor(umin), 0, self.W).astype(np.int64)
        u1 = np.clip(np.ceil(umax) + 1, 0, self.W).astype(np.int64)
        v0 = np.clip(np.floor(vmin), 0, self.H).astype(np.int64)
        v1 = np.clip(np.ceil(vmax) + 1, 0, self.H).astype(np.int64)
        visible &= (u1 > u0) & (v1 > v0)
        zmin = np.maximum(z.min(1), 0.0)
        return np.stack([u0, u1, v0, v1], 1), visible, zmin

    # ------------------------------------------------------------------ casting
    def cast(self, T_wc: np.ndarray, prims: Prims, max_depth: float,
             rays: Rays | None = None) -> Tuple[Hits, Rays]:
        """Nearest hit of every pixel's ray with the road plane and ``prims``.

        Args:
            T_wc: camera→world pose ``[4, 4]``.
            prims: the frame's primitive table (static candidates + moving objects).
            max_depth: primitives whose nearest point is farther are ignored.
        Returns:
            ``(hits, rays)``.
        """
        r = rays if rays is not None else self.rays(T_wc)
        H, W = self.H, self.W
        t = np.full((H, W), np.inf, np.float32)
        pid = np.full((H, W), -1, np.int32)
        axis = np.full((H, W), 2, np.int8)
        # road plane z = 0
        oz = np.float32(r.o[2])
        down = r.dz < -1e-6
        tg = -oz * r.iz
        np.copyto(t, tg, where=down & (tg > NEAR))
        pid[np.isfinite(t)] = 0

        if len(prims):
            lo, hi = prims.world_aabb()
            keep = self.frustum_cull((lo + hi) / 2, np.linalg.norm(hi - lo, axis=1) / 2, T_wc,
                                     max_depth)
            if not keep.all():
                sel = np.flatnonzero(keep)
                lo, hi = lo[sel], hi[sel]
                sub = prims.take(sel)
            else:
                sel, sub = np.arange(len(prims)), prims
            self._cast_prims(r, sub, sel, lo, hi, T_wc, max_depth, t, pid, axis)
        return Hits(t, pid, axis), r

    def _cast_prims(self, r: Rays, prims: Prims, ids: np.ndarray, lo: np.ndarray,
                    hi: np.ndarray, T_wc: np.ndarray, max_depth: float, t, pid, axis) -> None:
        """Cast against ``prims`` (a subset; ``ids`` are their rows in the frame table)."""
        rect, vis, zmin = self.rectangles(lo, hi, T_wc)
        vis &= zmin < max_depth
        area = (rect[:, 1] - rect[:, 0]) * (rect[:, 3] - rect[:, 2])
        aligned = prims.axis_aligned() & (prims.kind == KIND_BOX)
        batch = vis & aligned & (area <= BATCH_AREA)
        single = np.flatnonzero(vis & ~batch)
        single = single[np.argsort(zmin[single], kind="stable")]
        for k in single:
            u0, u1, v0, v1 = (int(x) for x in rect[k])
            sl = (slice(v0, v1), slice(u0, u1))
            if float(t[sl].max()) < zmin[k]:
                continue  # fully hidden behind nearer hits
            if prims.kind[k] == KIND_ELLIPSOID:
                self._ellipsoid(r, prims, k, ids[k], sl, t, pid, axis)
            elif aligned[k]:
                self._box_aligned(r, lo[k], hi[k], ids[k], sl, t, pid, axis)
            else:
                self._box_rotated(r, prims, k, ids[k], sl, t, pid, axis)
        bidx = np.flatnonzero(batch)
        if bidx.size:
            self._boxes_batched(r, lo[bidx], hi[bidx], rect[bidx], ids[bidx], t, pid, axis)

    @staticmethod
    def _slab(o, lo, hi, ix, iy, iz):
        tx0 = (np.float32(lo[0] - o[0])) * ix
        tx1 = (np.float32(hi[0] - o[0])) * ix
        ty0 = (np.float32(lo[1] - o[1])) * iy
        ty1 = (np.float32(hi[1] - o[1])) * iy
        tz0 = (np.float32(lo[2] - o[2])) * iz
        tz1 = (np.float32(hi[2] - o[2])) * iz
        txn = np.minimum(tx0, tx1)
        tyn = np.minimum(ty0, ty1)
        tzn = np.minimum(tz0, tz1)
        tn = np.maximum(np.maximum(txn, tyn), tzn)
        tf = np.minimum(np.minimum(np.maximum(tx0, tx1), np.maximum(ty0, ty1)),
                        np.maximum(tz0, tz1))
        return tn, tf, txn, tyn

    def _box_aligned(self, r: Rays, lo, hi, k: int, sl, t, pid, axis) -> None:
        # k: row in the frame's primitive table
        tn, tf, txn, tyn = self._slab(r.o, lo, hi, r.ix[sl], r.iy[sl], r.iz[sl])
        tview = t[sl]
        hit = (tn <= tf) & (tn > NEAR) & (tn < tview)
        if not hit.any():
            return
        np.copyto(tview, tn, where=hit)
        np.copyto(pid[sl], k + 1, where=hit)
        np.copyto(axis[sl], _face_axis(tn, txn, tyn), where=hit)

    def _box_rotated(self, r: Rays, prims: Prims, j: int, k: int, sl, t, pid, axis) -> None:
        # j: row in `prims` (the culled subset); k: row in the frame's primitive table
        c, s = np.float32(np.cos(prims.yaw[j])), np.float32(np.sin(prims.yaw[j]))
        ctr = prims.center[j]
        # into the box frame: rotate by -yaw about z
        ox, oy = r.o[0] - ctr[0], r.o[1] - ctr[1]
        o_loc = np.array([c * ox + s * oy, -s * ox + c * oy, r.o[2] - ctr[2]])
        dx, dy = r.dx[sl], r.dy[sl]
        lx = c * dx + s * dy
        ly = -s * dx + c * dy
        with np.errstate(divide="ignore"):
            ix = np.float32(1.0) / lx
            iy = np.float32(1.0) / ly
        h = prims.half[j]
        tn, tf, txn, tyn = self._slab(o_loc, -h, h, ix, iy, r.iz[sl])
        tview = t[sl]
        hit = (tn <= tf) & (tn > NEAR) & (tn < tview)
        if not hit.any():
            return
        np.copyto(tview, tn, where=hit)
        np.copyto(pid[sl], k + 1, where=hit)
        np.copyto(axis[sl], _face_axis(tn, txn, tyn), where=hit)

    def _ellipsoid(self, r: Rays, prims: Prims, j: int, k: int, sl, t, pid, axis) -> None:
        c, s = np.float32(np.cos(prims.yaw[j])), np.float32(np.sin(prims.yaw[j]))
        ctr = prims.center[j]
        rad = prims.half[j].astype(np.float32)
        ox, oy = r.o[0] - ctr[0], r.o[1] - ctr[1]
        o_l = np.array([(c * ox + s * oy) / rad[0], (-s * ox + c * oy) / rad[1],
                        (r.o[2] - ctr[2]) / rad[2]], np.float32)
        dx, dy = r.dx[sl], r.dy[sl]
        lx = (c * dx + s * dy) / rad[0]
        ly = (-s * dx + c * dy) / rad[1]
        lz = r.dz[sl] / rad[2]
        a = lx * lx + ly * ly + lz * lz
        b = o_l[0] * lx + o_l[1] * ly + o_l[2] * lz
        cc = float(o_l @ o_l) - 1.0
        disc = b * b - a * np.float32(cc)
        ok = disc > 0
        tn = (-b - np.sqrt(np.maximum(disc, 0))) / a
        tview = t[sl]
        hit = ok & (tn > NEAR) & (tn < tview)
        if not hit.any():
            return
        np.copyto(tview, tn.astype(np.float32), where=hit)
        np.copyto(pid[sl], k + 1, where=hit)
        np.copyto(axis[sl], AXIS_ELLIPSOID, where=hit)

    def _boxes_batched(self, r: Rays, lo, hi, rect, ids, t, pid, axis) -> None:
        W = self.W
        w = rect[:, 1] - rect[:, 0]
        h = rect[:, 3] - rect[:, 2]
        area = w * h
        n = int(area.sum())
        if n == 0:
            return
        rep = np.repeat(np.arange(len(ids)), area)
        start = np.cumsum(area) - area
        kk = np.arange(n) - start[rep]
        wr = w[rep]
        dv = kk // wr
        du = kk - dv * wr
        pix = (rect[rep, 2] + dv) * W + rect[rep, 0] + du
        tf_flat = t.reshape(-1)
        tcur = tf_flat[pix]
        o = r.o
        lo32 = (lo - o).astype(np.float32)
        hi32 = (hi - o).astype(np.float32)
        ix = r.ix.reshape(-1)[pix]
        tx0 = lo32[rep, 0] * ix
        tx1 = hi32[rep, 0] * ix
        txn = np.minimum(tx0, tx1)
        tf = np.maximum(tx0, tx1)
        iy = r.iy.reshape(-1)[pix]
        ty0 = lo32[rep, 1] * iy
        ty1 = hi32[rep, 1] * iy
        tyn = np.minimum(ty0, ty1)
        tf = np.minimum(tf, np.maximum(ty0, ty1))
        iz = r.iz.reshape(-1)[pix]
        tz0 = lo32[rep, 2] * iz
        tz1 = hi32[rep, 2] * iz
        tzn = np.minimum(tz0, tz1)
        tf = np.minimum(tf, np.maximum(tz0, tz1))
        tn = np.maximum(np.maximum(txn, tyn), tzn)
        hit = (tn <= tf) & (tn > NEAR) & (tn < tcur)
        if not hit.any():
            return
        hp = pix[hit]
        htn = tn[hit]
        hax = _face_axis(htn, txn[hit], tyn[hit])
        hid = ids[rep[hit]] + 1
        np.minimum.at(tf_flat, hp, htn)
        win = htn == tf_flat[hp]
        pid.reshape(-1)[hp[win]] = hid[win]
        axis.reshape(-1)[hp[win]] = hax[win]
