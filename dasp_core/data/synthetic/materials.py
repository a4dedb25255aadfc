"""Surfaces: hit position, normal, albedo and emission of every pixel (ours).

Patterns are functions of surface coordinates (world x/y on the road, primitive-local
coordinates on objects) and are band-limited by the pixel footprint (see :mod:`.textures`):

* road: asphalt with stains and grain, lane lines (solid/dashed, white/yellow), crosswalks,
  curbs, paving-tile pavements, yards inside blocks;
* facades: a window grid per building (floor and ground-floor heights, spacing, width), shop
  fronts, cornices; at night a per-window random subset is lit (warm or cold light);
* cars: body colour, glass greenhouse, wheels, head and tail lights (emissive at night when the
  car is driving), number plates;
* lamps: emissive undersides at night; trunks, foliage, poles and props with their own noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

from dasp_core.data.synthetic.grid import StreetGrid
from dasp_core.data.synthetic.primitives import (
    MAT_BUILDING, MAT_CABIN, MAT_CAR, MAT_FOLIAGE, MAT_GROUND, MAT_LAMP, N_PARAMS,
    MAT_POLE, MAT_PROP, MAT_SKY, MAT_TRUNK, MAT_WALL, N_MATERIALS, P_FLOOR_H, P_GF_H,
    P_LAMP_COLOR, P_LAMP_ON, P_LIGHTS, P_LIT, P_SHOP, P_VKIND, P_WHEEL_Z, P_WIN_H, P_WIN_OFF,
    P_WIN_SP, P_WIN_W, Prims)
from dasp_core.data.synthetic.raycast import AXIS_ELLIPSOID, Hits, Rays
from dasp_core.data.synthetic.scene import CAR_WHEEL_R, LAMP_COLOURS
from dasp_core.data.synthetic.textures import (NoiseBank, band_coverage, footprints, hash_bytes,
                                                hash_u32, hash_uniform, pulse_coverage,
                                                smoothstep)

# noise amplitude per material and octave (octave freqs: 0.08, 0.6, 2.5, 10, 40 cycles/m)
NOISE_AMP = np.zeros((N_MATERIALS, 5), np.float32)
NOISE_AMP[MAT_GROUND] = (0.22, 0.12, 0.10, 0.16, 0.22)
NOISE_AMP[MAT_BUILDING] = (0.12, 0.1, 0.06, 0.03, 0.02)
NOISE_AMP[MAT_WALL] = (0.18, 0.12, 0.08, 0.04, 0.02)
NOISE_AMP[MAT_CAR] = (0.02, 0.03, 0.02, 0.01, 0.0)
NOISE_AMP[MAT_CABIN] = (0.02, 0.03, 0.02, 0.01, 0.0)
NOISE_AMP[MAT_POLE] = (0.05, 0.06, 0.06, 0.04, 0.02)
NOISE_AMP[MAT_LAMP] = (0.02, 0.02, 0.02, 0.0, 0.0)
NOISE_AMP[MAT_TRUNK] = (0.1, 0.15, 0.3, 0.3, 0.2)
NOISE_AMP[MAT_FOLIAGE] = (0.15, 0.3, 0.35, 0.5, 0.3)
NOISE_AMP[MAT_PROP] = (0.1, 0.1, 0.1, 0.06, 0.03)

GLASS = np.array([0.045, 0.055, 0.065], np.float32)
LAMP_EMISSION = 45.0      # exposure units, underside of a lamp head (saturates, blooms)
HEADLAMP_EMISSION = 60.0
TAIL_EMISSION = 2.5


@dataclass
class Surface:
    """Per-pixel surface description of one frame (all ``[H, W]`` unless noted).

    Attributes:
        valid: a surface was hit closer than ``max_depth`` (False = sky).
        depth: z-depth in metres (0 where not valid).
        px, py, pz: world position of the hit (metres).
        nx, ny, nz: world unit normal.
        mat: int16 material id (``MAT_SKY`` = -1 for sky).
        albedo: float32 ``[3, H, W]`` linear RGB.
        emissive: float32 ``[3, H, W]`` emitted radiance (night lights), exposure units.
        gloss: float32 specular weight for wet-road reflections (0 = matte).
        obj: int32 id of the dynamic object hit (index into the frame's object arrays), -1.
        footprint: float32 metres of surface per pixel (max over the surface axes).
    """

    valid: np.ndarray
    depth: np.ndarray
    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    nx: np.ndarray
    ny: np.ndarray
    nz: np.ndarray
    mat: np.ndarray
    albedo: np.ndarray
    emissive: np.ndarray
    gloss: np.ndarray
    obj: np.ndarray
    footprint: np.ndarray


class GroundTables:
    """Street specs around a region as arrays for per-pixel lookups."""

    def __init__(self, grid: StreetGrid, x0: float, x1: float, y0: float, y1: float):
        self.grid = grid
        self.i0 = int(np.floor(x0 / grid.bx)) - 2
        self.i1 = int(np.ceil(x1 / grid.bx)) + 2
        self.j0 = int(np.floor(y0 / grid.by)) - 2
        self.j1 = int(np.ceil(y1 / grid.by)) + 2
        self.v = grid.table(0, self.i0, self.i1)
        self.h = grid.table(1, self.j0, self.j1)
        ii, jj = np.meshgrid(np.arange(self.i0, self.i1 + 1), np.arange(self.j0, self.j1 + 1),
                             indexing="ij")
        # which intersections have zebra crossings (per intersection, per approach)
        self.zebra = hash_uniform(grid.seed, ii, jj, 17) < 0.6


def _ground_albedo(x: np.ndarray, y: np.ndarray, fx: np.ndarray, fy: np.ndarray,
                   tabs: GroundTables, noise: Dict[int, np.ndarray]
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """Albedo ``[3, n]`` and road weight ``[n]`` (for wet gloss) of road-plane points."""
    g = tabs.grid
    i = np.clip(np.round(x / g.bx).astype(np.int64), tabs.i0, tabs.i1)
    j = np.clip(np.round(y / g.by).astype(np.int64), tabs.j0, tabs.j1)
    dx = x - (i * g.bx).astype(np.float32)
    dy = y - (j * g.by).astype(np.float32)
    iv, jh = i - tabs.i0, j - tabs.j0
    rv, wv = tabs.v["road_hw"][iv], tabs.v["walk_w"][iv]
    rh, wh = tabs.h["road_hw"][jh], tabs.h["walk_w"][jh]
    adx, ady = np.abs(dx), np.abs(dy)
    fxx = np.maximum(fx, 1e-3)
    fyy = np.maximum(fy, 1e-3)
    # box-filtered region weights (linear ramps one footprint wide)
    road_v = np.clip((rv - adx) / fxx + 0.5, 0, 1)
    road_h = np.clip((rh - ady) / fyy + 0.5, 0, 1)
    road = np.maximum(road_v, road_h)
    pav = np.maximum(np.clip((rv + wv - adx) / fxx + 0.5, 0, 1),
                     np.clip((rh + wh - ady) / fyy + 0.5, 0, 1))
    pav = np.clip(pav - road, 0, 1)
    yard = np.clip(1.0 - road - pav, 0, 1)

    n_fine = noise[3] + noise[4]
    asphalt = np.float32(0.085) * (1.0 + 0.22 * noise[0] + 0.1 * noise[1] + 0.08 * noise[2]
                                   + 0.2 * n_fine)
    # repaired patches: darker where the large-scale noise is high
    asphalt = asphalt * (1.0 - 0.25 * smoothstep(0.9, 1.3, noise[1]))

    # markings (on the carriageway outside the crossing box)
    mark = np.zeros_like(x)
    yellow = np.zeros_like(x)
    for a_cross, a_along, f_cross, f_along, spec, idx, outside_box in (
            (adx, y, fxx, fyy, tabs.v, iv, ady > rh),
            (ady, x, fyy, fxx, tabs.h, jh, adx > rv)):
        lanes = spec["lanes"][idx]
        lane_w = spec["lane_w"][idx]
        # only pixels whose footprint can touch one of the three lines (centre, divider, edge)
        reach = f_cross + np.float32(0.25)
        near = outside_box & ((a_cross < reach) | (np.abs(a_cross - lane_w) < reach) |
                              (np.abs(a_cross - lanes * lane_w) < reach))
        sub = np.flatnonzero(near)
        if sub.size == 0:
            continue
        ac, aa, fc, fa = a_cross[sub], a_along[sub], f_cross[sub], f_along[sub]
        ln, lw = lanes[sub], lane_w[sub]
        two = ln > 1.5
        # centre line: double solid on 2-lane streets, dashed on 1-lane streets
        centre = np.where(two, band_coverage(ac, 0.06, 0.1, fc),
                          band_coverage(ac, -0.06, 0.12, fc) * pulse_coverage(aa, 8.0, 3.0, fa))
        # lane divider (dashed) and edge line (solid, next to the parking lane)
        div = band_coverage(ac, lw - 0.06, 0.12, fc) * two * \
            pulse_coverage(aa, 9.0, 3.0, fa, 1.5)
        edge = band_coverage(ac, ln * lw - 0.06, 0.12, fc) * (spec["parking"][idx[sub]] > 0.5)
        mark[sub] = np.maximum(mark[sub], np.maximum(centre, div + edge))
        yellow[sub] = np.maximum(yellow[sub], centre * spec["yellow"][idx[sub]])
    # crosswalks: stripes across each approach, just outside the crossing box
    has = tabs.zebra[i - tabs.i0, j - tabs.j0]
    for a_cross, a_other, f_cross, r_self, r_other, w_other in (
            (dx, ady, fxx, rv, rh, wh), (dy, adx, fyy, rh, rv, wv)):
        band = np.flatnonzero((a_other > r_other + 0.6) & (np.abs(a_cross) < r_self - 0.3) &
                              (a_other < r_other + np.minimum(w_other, 4.0) + 0.3) & has)
        if band.size:
            stripes = pulse_coverage(a_cross[band], 1.2, 0.6, f_cross[band], 0.3)
            mark[band] = np.maximum(mark[band], stripes)
    mark = mark * np.clip(0.85 + 0.3 * noise[2], 0.4, 1.0)  # worn paint
    white = np.float32(0.62)
    m_r = (1 - yellow) * white + yellow * 0.62
    m_g = (1 - yellow) * white + yellow * 0.45
    m_b = (1 - yellow) * white + yellow * 0.08

    # pavement: paving tiles with darker joints, a light curb stone next to the road
    tile = np.ones_like(x)
    ps = np.flatnonzero(pav > 0)
    if ps.size:
        tile[ps] -= 0.45 * np.maximum(pulse_coverage(x[ps], 0.6, 0.025, fxx[ps]),
                                      pulse_coverage(y[ps], 0.6, 0.025, fyy[ps]))
    curb = np.maximum(np.clip(1.0 - np.abs(adx - rv - 0.13) / 0.13, 0, 1) * (ady > rh),
                      np.clip(1.0 - np.abs(ady - rh - 0.13) / 0.13, 0, 1) * (adx > rv))
    pav_base = np.float32(0.30) * tile * (1.0 + 0.12 * noise[0] + 0.1 * noise[2] + 0.1 * n_fine)
    pav_base = pav_base * (1 - curb) + 0.42 * curb

    out = np.empty((3,) + x.shape, np.float32)
    grass = (np.float32(0.07), np.float32(0.1), np.float32(0.035))
    pav_tint = (1.0, 0.97, 0.93)
    for c, (mc, gc, pt) in enumerate(zip((m_r, m_g, m_b), grass, pav_tint)):
        road_c = asphalt * (1 - mark) + mc * mark
        yard_c = gc * (1.0 + 0.3 * noise[1] + 0.3 * noise[2] + 0.3 * n_fine)
        out[c] = road * road_c + pav * pav_base * pt + yard * yard_c
    return out, road * (1 - mark)


# rows of the per-frame attribute table
_A_CX, _A_CY, _A_CZ, _A_HX, _A_HY, _A_HZ, _A_COS, _A_SIN, _A_OFF, _A_ALB = range(10)
_A_PAR = 12


def _attribute_table(prims: Prims) -> np.ndarray:
    """float32 ``[A, P]``: centre, half extents, cos/sin yaw, noise offset, albedo, params."""
    off = (prims.key % 9973).astype(np.float32) * np.float32(0.731)
    return np.concatenate([prims.center.T, prims.half.T, np.cos(prims.yaw)[None],
                           np.sin(prims.yaw)[None], off[None], prims.albedo.T,
                           prims.params.T]).astype(np.float32)


def shade_surfaces(hits: Hits, rays: Rays, prims: Prims, tabs: GroundTables, bank: NoiseBank,
                   night: bool, max_depth: float, focal: float) -> Surface:
    """Build the :class:`Surface` of a frame.

    Args:
        hits, rays: output of :meth:`RayCaster.cast`.
        prims: the frame's primitive table (``hits.pid - 1`` indexes it).
        tabs: street tables for the road pattern.
        bank: noise octaves.
        night: emit lamp/window/car lights.
        max_depth: hits farther than this count as sky.
        focal: focal length in pixels (footprint of far surfaces).
    """
    H, W = hits.t.shape
    t = hits.t
    valid = (hits.pid >= 0) & (t <= max_depth)
    tt = np.where(valid, t, np.float32(0.0))
    o = rays.o
    px = np.float32(o[0]) + tt * rays.dx
    py = np.float32(o[1]) + tt * rays.dy
    pz = np.float32(o[2]) + tt * rays.dz
    wx, wy, wz = footprints(px, py, pz)
    # the derivative estimate fails on 1-pixel-wide surfaces; bound it by the ray spread
    ray_fp = tt / np.float32(focal)
    wx = np.maximum(wx, ray_fp * 0.25)
    wy = np.maximum(wy, ray_fp * 0.25)
    wz = np.maximum(wz, ray_fp * 0.25)

    nx = np.zeros((H, W), np.float32)
    ny = np.zeros((H, W), np.float32)
    nz = np.ones((H, W), np.float32)
    mat = np.full((H, W), MAT_SKY, np.int16)
    mat[valid] = MAT_GROUND
    s1 = px.copy()
    s2 = py.copy()
    fp = np.maximum(wx, wy)
    obj_map = np.full((H, W), -1, np.int32)

    flat_pid = hits.pid.reshape(-1)
    oi = np.flatnonzero((flat_pid > 0) & valid.reshape(-1))   # object pixels
    k = flat_pid[oi] - 1
    # one gather of every per-primitive attribute (np.take is much faster than fancy indexing)
    g = np.take(_attribute_table(prims), k, axis=1)             # [A, n]
    mk = np.take(prims.material, k)
    keys = np.take(prims.key, k)
    mat.reshape(-1)[oi] = mk
    obj_map.reshape(-1)[oi] = np.take(prims.obj, k)
    # local coordinates: rotate by -yaw about z around the primitive centre
    cyaw, syaw = g[_A_COS], g[_A_SIN]
    gx = px.reshape(-1)[oi] - g[_A_CX]
    gy = py.reshape(-1)[oi] - g[_A_CY]
    lz = pz.reshape(-1)[oi] - g[_A_CZ]
    lx = cyaw * gx + syaw * gy
    ly = -syaw * gx + cyaw * gy
    half = g[_A_HX:_A_HX + 3].T                                # [n, 3]
    ax = hits.axis.reshape(-1)[oi]
    ell = ax == AXIS_ELLIPSOID
    # local normals
    nlx = np.where(ax == 0, np.sign(lx), 0).astype(np.float32)
    nly = np.where(ax == 1, np.sign(ly), 0).astype(np.float32)
    nlz = np.where(ax == 2, np.sign(lz), 0).astype(np.float32)
    if ell.any():
        e = np.flatnonzero(ell)
        gxl = lx[e] / half[e, 0] ** 2
        gyl = ly[e] / half[e, 1] ** 2
        gzl = lz[e] / half[e, 2] ** 2
        gn = np.sqrt(gxl * gxl + gyl * gyl + gzl * gzl) + 1e-9
        nlx[e], nly[e], nlz[e] = gxl / gn, gyl / gn, gzl / gn
    nx.reshape(-1)[oi] = cyaw * nlx - syaw * nly
    ny.reshape(-1)[oi] = syaw * nlx + cyaw * nly
    nz.reshape(-1)[oi] = nlz
    # surface coordinates of object faces and their footprints
    fwh = np.maximum(wx.reshape(-1)[oi], wy.reshape(-1)[oi])
    fwz = wz.reshape(-1)[oi]
    off = g[_A_OFF]
    a1 = np.where(ax == 0, ly, lx) + off
    a2 = np.where(ax == 2, ly, lz)
    if ell.any():
        # foliage: azimuth (as arc length) and height on the crown
        e = np.flatnonzero(ell)
        a1[e] = np.arctan2(ly[e], lx[e]) * half[e, 0] + off[e]
    s1.reshape(-1)[oi] = a1
    s2.reshape(-1)[oi] = a2
    fp.reshape(-1)[oi] = np.where(ax == 2, fwh, np.maximum(fwh, fwz))

    # noise octaves on the surface coordinates; fine octaves only where they are resolved
    noise = {}
    for q in range(len(bank.freqs)):
        fade = bank.fade(q, fp)
        if q >= 3:
            idx = np.flatnonzero(fade.reshape(-1) > 0)
            n_q = np.zeros((H, W), np.float32)
            if idx.size:
                n_q.reshape(-1)[idx] = bank.octave(q, s1.reshape(-1)[idx], s2.reshape(-1)[idx]) \
                    * fade.reshape(-1)[idx]
            noise[q] = n_q
        else:
            noise[q] = bank.octave(q, s1, s2) * fade

    albedo = np.zeros((3, H, W), np.float32)
    emissive = np.zeros((3, H, W), np.float32)
    gloss = np.zeros((H, W), np.float32)

    # ---------------------------------------------------------------- road plane
    gi = np.flatnonzero(mat.reshape(-1) == MAT_GROUND)
    if gi.size:
        gnoise = {q: noise[q].reshape(-1)[gi] for q in noise}
        alb, road_w = _ground_albedo(px.reshape(-1)[gi], py.reshape(-1)[gi],
                                     wx.reshape(-1)[gi], wy.reshape(-1)[gi], tabs, gnoise)
        albedo.reshape(3, -1)[:, gi] = alb
        gloss.reshape(-1)[gi] = road_w

    # ---------------------------------------------------------------- objects
    if oi.size:
        base = g[_A_ALB:_A_ALB + 3].copy()                     # [3, n]
        detail = np.ones(oi.size, np.float32)
        amp = NOISE_AMP[mk]                                    # [n, 5]
        for q in noise:
            detail += amp[:, q] * noise[q].reshape(-1)[oi]
        detail = np.clip(detail, 0.2, 2.5)
        em = np.zeros((3, oi.size), np.float32)
        par = g[_A_PAR:_A_PAR + N_PARAMS].T                    # [n, N_PARAMS]
        _facades(base, em, mk, ax, lx, ly, lz, half, par, keys, fwh, fwz, night)
        _vehicles(base, em, mk, ax, lx, ly, lz, half, par, fwh, fwz, night)
        _lamps(base, em, mk, ax, lz, par, night)
        fol = mk == MAT_FOLIAGE
        if fol.any():
            # leaf clumps: dark gaps where the fine noise is low
            detail[fol] *= np.clip(0.55 + 0.6 * (noise[2].reshape(-1)[oi][fol] +
                                                 noise[3].reshape(-1)[oi][fol]), 0.15, 1.6)
        albedo.reshape(3, -1)[:, oi] = base * detail
        emissive.reshape(3, -1)[:, oi] = em
    albedo[:, ~valid] = 0.0
    depth = np.where(valid, t, np.float32(0.0)).astype(np.float32)
    return Surface(valid, depth, px, py, pz, nx, ny, nz, mat, albedo, emissive, gloss, obj_map,
                   fp)


def _facades(base, em, mk, ax, lx, ly, lz, half, par, keys, fwh, fwz, night) -> None:
    """Window grids on building facades (in place on ``base``/``em`` columns)."""
    sel = np.flatnonzero((mk == MAT_BUILDING) & (ax < 2))
    if sel.size == 0:
        return
    p = par[sel]
    hz = half[sel, 2]
    z = lz[sel] + hz                        # height above the road
    u_axis = np.where(ax[sel] == 0, 1, 0)
    u = np.where(u_axis == 1, ly[sel] + half[sel, 1], lx[sel] + half[sel, 0])
    fu, fz = fwh[sel], fwz[sel]
    floor_h, gf_h, sp, ww, wh, shop, lit_frac, woff = (p[:, c] for c in (
        P_FLOOR_H, P_GF_H, P_WIN_SP, P_WIN_W, P_WIN_H, P_SHOP, P_LIT, P_WIN_OFF))
    top = 2 * hz
    # upper floors
    zu = z - gf_h
    cov_v = pulse_coverage(zu, floor_h, wh, fz, (floor_h - wh) * 0.55)
    cov_u = pulse_coverage(u, sp, ww, fu, woff)
    upper = smoothstep(-0.05, 0.05, zu) * smoothstep(0.9, 0.7, z - (top - 0.7))
    win = cov_u * cov_v * upper
    # ground floor: shop windows or ordinary windows with a higher sill
    gsp = sp * 2.0
    shop_u = pulse_coverage(u, gsp, gsp - 0.7, fu, woff + 0.35)
    shop_v = band_coverage(z, 0.45, gf_h - 1.1, fz)
    ord_v = band_coverage(z, 1.0, wh, fz)
    gwin = np.where(shop > 0.5, shop_u * shop_v, cov_u * ord_v) * (1.0 - upper)
    # cornice: light band above the ground floor
    cornice = band_coverage(z, gf_h - 0.35, 0.3, fz) * 0.35
    glass = np.maximum(win, gwin)
    face_key = keys[sel].astype(np.int64) * 4 + ax[sel] * 2 + (np.where(u_axis == 1, lx[sel], ly[sel]) > 0)
    for c in range(3):
        b = base[c, sel] * (1.0 + cornice)
        base[c, sel] = b * (1.0 - glass) + GLASS[c] * glass
    if night:
        # one hash per window cell; its bytes decide lit / colour / brightness
        ws = np.flatnonzero(glass > 0)
        if ws.size == 0:
            return
        fk = face_key[ws]
        col_i = np.floor((u[ws] - woff[ws]) / sp[ws]).astype(np.int64)
        row_i = np.floor(zu[ws] / floor_h[ws]).astype(np.int64)
        h = hash_u32(fk, col_i, row_i)
        lf = lit_frac[ws]
        lit = (hash_bytes(h, 0) < lf) * win[ws]
        warm = hash_bytes(h, 1)
        level = 0.1 + 0.45 * hash_bytes(h, 2)
        # ground floor: shops lit with probability 0.7 per shop window and brighter
        gcol = np.floor((u[ws] - woff[ws] - 0.35) / gsp[ws]).astype(np.int64)
        hg = hash_u32(fk, gcol, 77)
        is_shop = shop[ws] > 0.5
        gw = gwin[ws]
        shop_lit = (hash_bytes(hg, 0) < 0.55) * gw * is_shop
        ord_lit = (hash_bytes(hg, 1) < lf) * gw * ~is_shop
        # shop interiors: brighter towards the ceiling, patchy (shelves, signs)
        interior = 0.15 + 0.2 * np.clip(z[ws] / np.maximum(gf_h[ws], 1.0), 0, 1) + \
            0.35 * hash_bytes(hg, 2)
        col_sel = sel[ws]
        for c, (wc, cc) in enumerate(zip((1.0, 0.72, 0.42), (0.75, 0.85, 1.0))):
            colour = np.where(warm < 0.75, np.float32(wc), np.float32(cc))
            em[c, col_sel] = (lit + ord_lit) * level * colour + shop_lit * interior * colour


def _vehicles(base, em, mk, ax, lx, ly, lz, half, par, fwh, fwz, night) -> None:
    """Wheels, lights, plates on car bodies; glass on cabins."""
    sel = np.flatnonzero(mk == MAT_CAR)
    if sel.size:
        hx, hy, hz = half[sel, 0], half[sel, 1], half[sel, 2]
        x, y, z = lx[sel], ly[sel], lz[sel]
        a = ax[sel]
        fu, fz = fwh[sel], fwz[sel]
        wheel_z = par[sel, P_WHEEL_Z]
        van = par[sel, P_VKIND] > 0.5
        lights_on = par[sel, P_LIGHTS] > 0.5
        # wheels on the sides: dark discs with a grey hub
        wx_c = np.abs(x) - (hx - 0.85)
        dist = np.sqrt(wx_c * wx_c + (z - wheel_z) ** 2)
        f = np.maximum(np.maximum(fu, fz), 1e-3)
        tyre = np.clip((CAR_WHEEL_R - dist) / f + 0.5, 0, 1) * (a == 1)
        hub = np.clip((0.16 - dist) / f + 0.5, 0, 1) * (a == 1)
        # lower sills darker
        sill = smoothstep(-hz + 0.22, -hz + 0.12, z) * 0.5
        front = (a == 0) & (x > 0)
        rear = (a == 0) & (x < 0)
        lamp_z = band_coverage(z, hz - 0.34, 0.16, fz)
        lamp_y = band_coverage(np.abs(y), hy - 0.42, 0.32, fu)
        head = lamp_z * lamp_y * front
        tail = lamp_z * band_coverage(np.abs(y), hy - 0.34, 0.28, fu) * rear
        plate = band_coverage(z, -hz + 0.2, 0.12, fz) * \
            band_coverage(y, -0.25, 0.5, fu) * (a == 0)
        grille = band_coverage(z, hz - 0.4, 0.18, fz) * \
            band_coverage(y, -0.35, 0.7, fu) * front
        # vans: windscreen and side windows at the front top
        van_glass = van * ((front * (z > hz - 0.85)) |
                           ((a == 1) & (x > hx - 1.6) & (z > hz - 0.85) & (z < hz - 0.15)))
        tail_col = (0.35, 0.02, 0.02)
        head_col = (0.75, 0.75, 0.72)
        for c in range(3):
            b = base[c, sel] * (1.0 - sill)
            b = b * (1 - tyre) + 0.02 * tyre
            b = b * (1 - hub) + 0.25 * hub
            b = b * (1 - grille) + 0.03 * grille
            b = b * (1 - plate) + 0.6 * plate
            b = b * (1 - head) + head_col[c] * head
            b = b * (1 - tail) + tail_col[c] * tail
            b = np.where(van_glass, GLASS[c], b)
            base[c, sel] = b
        if night:
            on = lights_on.astype(np.float32)
            em[0, sel] += on * (HEADLAMP_EMISSION * head + TAIL_EMISSION * tail)
            em[1, sel] += on * (HEADLAMP_EMISSION * 0.97 * head + 0.04 * TAIL_EMISSION * tail)
            em[2, sel] += on * (HEADLAMP_EMISSION * 0.9 * head + 0.03 * TAIL_EMISSION * tail)
    sel = np.flatnonzero(mk == MAT_CABIN)
    if sel.size:
        hx, hz = half[sel, 0], half[sel, 2]
        x, z = lx[sel], lz[sel]
        a = ax[sel]
        fu = fwh[sel]
        # pillars in body colour at the ends and the middle of the side windows
        pillars = np.maximum(band_coverage(np.abs(x), hx - 0.12, 0.12, fu),
                             band_coverage(x, -0.05, 0.1, fu)) * (a == 1)
        roof = (a == 2).astype(np.float32)
        body = np.clip(np.maximum(pillars, roof), 0, 1)
        for c in range(3):
            base[c, sel] = base[c, sel] * body + GLASS[c] * (1 - body)


def _lamps(base, em, mk, ax, lz, par, night) -> None:
    """Street-lamp heads: the underside glows at night."""
    sel = np.flatnonzero(mk == MAT_LAMP)
    if sel.size == 0 or not night:
        return
    on = par[sel, P_LAMP_ON] > 0.5
    col = LAMP_COLOURS[par[sel, P_LAMP_COLOR].astype(np.int64)].T  # [3, n]
    under = ((ax[sel] == 2) & (lz[sel] < 0)).astype(np.float32)
    level = (LAMP_EMISSION * under + 1.5 * (1 - under)) * on
    em[:, sel] += col * level
