"""Lighting: sun, sky and shadows by day; street lamps, headlights and glow by night (ours).

Units: irradiance ``E`` in exposure units — a Lambertian surface of albedo ``a`` has linear
radiance ``a * E`` (1.0 = sensor white before exposure scaling).

Day: ``E = E_sun * max(0, n·s) * visibility + E_sky(n)``; visibility from a sun shadow map of
the static world (built lazily, tile by tile, by orthographic ray casting along the sun
direction, 4-tap percentage-closer filtering) and ground shadows of moving cars (their shadow
polygons rasterised in the image with anti-aliasing).

Night: low moon/sky ambient plus real light sources — lamps (downward spot cones), headlights
of every car and of the camera car (forward cones) — each ``I * spot(angle) * max(0, n·l) / d²``
with a smooth range window; optional wet road with a Phong highlight of every light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

from dasp_core.data.synthetic.primitives import KIND_BOX, KIND_ELLIPSOID, Lights, Prims
from dasp_core.data.synthetic.textures import NoiseBank, smoothstep

LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


# ============================================================================ parameters
@dataclass
class DayLight:
    """Sun and sky of one day sequence."""

    sun_dir: np.ndarray      # unit vector towards the sun (world)
    sun_rgb: np.ndarray      # irradiance of a surface facing the sun
    sky_rgb: np.ndarray      # irradiance of an up-facing surface from the sky
    zenith: np.ndarray       # sky radiance at the zenith
    horizon: np.ndarray      # sky radiance at the horizon
    clouds: float            # cloud cover 0..1
    haze_m: float            # exponential haze distance


@dataclass
class NightLight:
    """Ambient and sky of one night sequence (light sources live in the world)."""

    ambient_rgb: np.ndarray
    zenith: np.ndarray
    horizon: np.ndarray
    wet: bool
    haze_m: float
    ego_headlights: bool


def day_light(rng: np.random.Generator) -> DayLight:
    elev = np.radians(rng.uniform(18.0, 62.0))
    az = rng.uniform(0.0, 2 * np.pi)
    sun = np.array([np.cos(elev) * np.cos(az), np.cos(elev) * np.sin(az), np.sin(elev)])
    overcast = rng.random() < 0.2
    warm = rng.uniform(0.0, 1.0)
    sun_col = np.array([1.0, 0.95 - 0.06 * warm, 0.88 - 0.12 * warm])
    if overcast:
        sun_rgb = sun_col * rng.uniform(0.2, 0.5)
        sky_rgb = np.array([0.95, 0.97, 1.0]) * rng.uniform(1.0, 1.3)
        zenith = np.array([0.62, 0.64, 0.68])
        horizon = np.array([0.80, 0.81, 0.83])
        clouds = 1.0
    else:
        sun_rgb = sun_col * rng.uniform(2.3, 2.9)
        sky_rgb = np.array([0.45, 0.52, 0.68]) * rng.uniform(0.85, 1.15)
        zenith = np.array([0.16, 0.30, 0.72]) * rng.uniform(0.85, 1.1)
        horizon = np.array([0.70, 0.78, 0.90])
        clouds = float(rng.uniform(0.0, 0.6))
    return DayLight(sun, sun_rgb.astype(np.float32), sky_rgb.astype(np.float32),
                    zenith.astype(np.float32), horizon.astype(np.float32), clouds,
                    float(rng.uniform(600.0, 1500.0)))


def night_light(rng: np.random.Generator, wet_probability: float) -> NightLight:
    amb = np.array([0.55, 0.65, 1.0]) * rng.uniform(0.004, 0.012)
    glow = np.array([1.0, 0.62, 0.35]) * rng.uniform(0.01, 0.03)
    return NightLight(amb.astype(np.float32), np.array([0.001, 0.0015, 0.003], np.float32),
                      glow.astype(np.float32), bool(rng.random() < wet_probability),
                      float(rng.uniform(250.0, 700.0)), True)


# ============================================================================ sky
def sky_radiance(dx: np.ndarray, dy: np.ndarray, dz: np.ndarray, zenith: np.ndarray,
                 horizon: np.ndarray, sun_dir: Optional[np.ndarray], clouds: float,
                 bank: Optional[NoiseBank], pixel_angle: float = 1.0 / 400.0) -> np.ndarray:
    """Radiance ``[3, n]`` of the sky in directions ``(dx, dy, dz)`` (any length, 1-D).

    A horizon-to-zenith gradient, a sun glow, and clouds on a plane 1 km up (a function of the
    direction only, so the sky stays fixed when the camera moves). ``pixel_angle``: radians
    per pixel, to band-limit the clouds.
    """
    inv = 1.0 / np.sqrt(dx * dx + dy * dy + dz * dz)
    ux, uy, uz = dx * inv, dy * inv, dz * inv
    el = np.clip(uz, 0.0, 1.0)
    g = np.exp(-el / 0.22).astype(np.float32)
    out = np.empty((3,) + dx.shape, np.float32)
    for c in range(3):
        out[c] = zenith[c] * (1 - g) + horizon[c] * g
    if sun_dir is not None:
        cs = ux * sun_dir[0] + uy * sun_dir[1] + uz * sun_dir[2]
        glow = 0.6 * np.exp((cs - 1.0) / 0.02) + 0.15 * np.exp((cs - 1.0) / 0.25)
        for c, w in enumerate((1.0, 0.92, 0.8)):
            out[c] += w * glow
    if clouds > 0 and bank is not None:
        # clouds on a plane 1 km up; octaves fade where one pixel spans too much of the plane
        zc = np.maximum(uz, 0.03)
        cx = ux / zc * 1000.0
        cy = uy / zc * 1000.0
        fp = 1000.0 / (zc * zc) * pixel_angle
        n = np.zeros_like(cx)
        for w, scale in ((0.7, 0.03), (0.35, 0.1), (0.18, 0.3)):
            f = bank.freqs[0] * scale
            n += w * bank.octave(0, cx * scale, cy * scale) * \
                np.clip(2.0 - 4.0 * fp * f, 0.0, 1.0)
        cover = smoothstep(1.0 - 2.0 * clouds, 1.3 - 1.4 * clouds, n) * \
            smoothstep(0.02, 0.15, uz)
        shade = 0.8 + 0.2 * np.clip(n, -1, 1)
        for c in range(3):
            cloud_col = (horizon[c] * 1.05 + 0.08) * shade
            out[c] = out[c] * (1 - cover) + cloud_col * cover
    return out


# ============================================================================ day shadows
class SunShadowMap:
    """Lazily built orthographic shadow map of static primitives along the sun direction.

    The map stores, per texel of the plane perpendicular to the sun, the highest "sun height"
    ``c = P·s`` of any static surface; a point is lit when its own ``c`` is not below it.
    Tiles of ``TILE x TILE`` texels are cast on first use and kept, so the map only grows
    around the route and rendering any frame gives the same result whatever was rendered
    before (each tile is a pure function of the world).

    Args:
        prims: static primitives (boxes and ellipsoids).
        sun_dir: unit vector towards the sun.
        bounds: ``(x0, y0, x1, y1)`` world region that receivers lie in.
        res: texel size in metres.
    """

    TILE = 128

    def __init__(self, prims: Prims, sun_dir: np.ndarray, bounds: Tuple[float, float, float, float],
                 res: float = 0.2):
        s = np.asarray(sun_dir, float)
        s = s / np.linalg.norm(s)
        e1 = np.array([-s[1], s[0], 0.0])
        if np.linalg.norm(e1) < 1e-6:
            e1 = np.array([1.0, 0.0, 0.0])
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(s, e1)
        self.basis = np.stack([e1, e2, s])            # rows: a, b, c axes
        self.s = s
        self.res = float(res)
        self.prims = prims
        lo, hi = prims.world_aabb()
        from dasp_core.data.synthetic.raycast import _CORNER_BITS
        corners = lo[:, None, :] + _CORNER_BITS[None] * (hi - lo)[:, None, :]
        abc = corners @ self.basis.T                  # [P, 8, 3]
        self.p_amin, self.p_amax = abc[..., 0].min(1), abc[..., 0].max(1)
        self.p_bmin, self.p_bmax = abc[..., 1].min(1), abc[..., 1].max(1)
        self.c_top = float(abc[..., 2].max()) + 1.0 if len(prims) else 1.0
        x0, y0, x1, y1 = bounds
        zmax = float(hi[:, 2].max()) if len(prims) else 1.0
        rc = np.array([[x, y, z] for x in (x0, x1) for y in (y0, y1) for z in (0.0, zmax)])
        rabc = rc @ self.basis.T
        self.a0 = float(rabc[:, 0].min()) - 1.0
        self.b0 = float(rabc[:, 1].min()) - 1.0
        span = self.TILE * self.res
        self.na = int(np.ceil((rabc[:, 0].max() + 1.0 - self.a0) / span))
        self.nb = int(np.ceil((rabc[:, 1].max() + 1.0 - self.b0) / span))
        self.table = np.full((self.na, self.nb), -1, np.int64)
        self.buf = np.empty((16, self.TILE, self.TILE), np.float32)
        self.n_tiles = 0

    # ------------------------------------------------------------------ tiles
    def _ensure(self, ta: np.ndarray, tb: np.ndarray) -> None:
        need = np.zeros((self.na, self.nb), bool)
        need[ta, tb] = True
        need &= self.table < 0
        for i, j in zip(*np.nonzero(need)):
            self._build(int(i), int(j))

    def _build(self, i: int, j: int) -> None:
        T, res = self.TILE, self.res
        a = self.a0 + (i * T + np.arange(T) + 0.5) * res
        b = self.b0 + (j * T + np.arange(T) + 0.5) * res
        A, B = np.meshgrid(a, b, indexing="ij")
        e1, e2, s = self.basis
        ox = (A * e1[0] + B * e2[0] + self.c_top * s[0]).astype(np.float32)
        oy = (A * e1[1] + B * e2[1] + self.c_top * s[1]).astype(np.float32)
        oz = (A * e1[2] + B * e2[2] + self.c_top * s[2]).astype(np.float32)
        cmap = np.full((T, T), -np.inf, np.float32)
        a_lo, a_hi = a[0] - res, a[-1] + res
        b_lo, b_hi = b[0] - res, b[-1] + res
        cand = np.flatnonzero((self.p_amax >= a_lo) & (self.p_amin <= a_hi) &
                              (self.p_bmax >= b_lo) & (self.p_bmin <= b_hi))
        d = -s
        with np.errstate(divide="ignore"):
            inv = 1.0 / d
        pr = self.prims
        lo_all, hi_all = pr.world_aabb()
        for k in cand:
            r0 = int(np.clip(np.floor((self.p_amin[k] - a[0]) / res), 0, T))
            r1 = int(np.clip(np.ceil((self.p_amax[k] - a[0]) / res) + 1, 0, T))
            c0 = int(np.clip(np.floor((self.p_bmin[k] - b[0]) / res), 0, T))
            c1 = int(np.clip(np.ceil((self.p_bmax[k] - b[0]) / res) + 1, 0, T))
            if r1 <= r0 or c1 <= c0:
                continue
            sl = (slice(r0, r1), slice(c0, c1))
            X, Y, Z = ox[sl], oy[sl], oz[sl]
            if pr.kind[k] == KIND_ELLIPSOID:
                cy, sy = np.cos(pr.yaw[k]), np.sin(pr.yaw[k])
                ctr, rad = pr.center[k], pr.half[k]
                gx, gy, gz = X - ctr[0], Y - ctr[1], Z - ctr[2]
                olx = (cy * gx + sy * gy) / rad[0]
                oly = (-sy * gx + cy * gy) / rad[1]
                olz = gz / rad[2]
                dl = np.array([(cy * d[0] + sy * d[1]) / rad[0], (-sy * d[0] + cy * d[1]) / rad[1],
                               d[2] / rad[2]])
                aa = float(dl @ dl)
                bb = olx * dl[0] + oly * dl[1] + olz * dl[2]
                cc = olx * olx + oly * oly + olz * olz - 1.0
                disc = bb * bb - aa * cc
                tn = (-bb - np.sqrt(np.maximum(disc, 0))) / aa
                hit = disc > 0
            else:
                lo, hi = lo_all[k], hi_all[k]
                t0 = [(lo[q] - O) * inv[q] for q, O in enumerate((X, Y, Z))]
                t1 = [(hi[q] - O) * inv[q] for q, O in enumerate((X, Y, Z))]
                tn = np.maximum(np.maximum(np.minimum(t0[0], t1[0]), np.minimum(t0[1], t1[1])),
                                np.minimum(t0[2], t1[2]))
                tf = np.minimum(np.minimum(np.maximum(t0[0], t1[0]), np.maximum(t0[1], t1[1])),
                                np.maximum(t0[2], t1[2]))
                hit = tn <= tf
            cview = cmap[sl]
            np.maximum(cview, np.where(hit, self.c_top - tn, -np.inf).astype(np.float32),
                       out=cview)
        if self.n_tiles == self.buf.shape[0]:
            self.buf = np.concatenate([self.buf, np.empty_like(self.buf)])
        self.buf[self.n_tiles] = cmap
        self.table[i, j] = self.n_tiles
        self.n_tiles += 1

    # ------------------------------------------------------------------ lookup
    def visibility(self, px: np.ndarray, py: np.ndarray, pz: np.ndarray, ndots: np.ndarray
                   ) -> np.ndarray:
        """Sun visibility in [0, 1] of points (1-D arrays, metres) with ``ndots = n·s``."""
        e1, e2, s = self.basis
        a = e1[0] * px + e1[1] * py + e1[2] * pz
        b = e2[0] * px + e2[1] * py + e2[2] * pz
        c = s[0] * px + s[1] * py + s[2] * pz
        fa = (a - np.float32(self.a0)) / np.float32(self.res) - 0.5
        fb = (b - np.float32(self.b0)) / np.float32(self.res) - 0.5
        ia = np.floor(fa).astype(np.int64)
        ib = np.floor(fb).astype(np.int64)
        wa = (fa - ia).astype(np.float32)
        wb = (fb - ib).astype(np.float32)
        T = self.TILE
        inside = (ia >= 0) & (ib >= 0) & (ia + 1 < self.na * T) & (ib + 1 < self.nb * T)
        ia = np.where(inside, ia, 0)
        ib = np.where(inside, ib, 0)
        # slope-scaled bias against self-shadowing acne (ours)
        sin_t = np.sqrt(np.clip(1.0 - ndots * ndots, 0.0, 1.0))
        bias = 0.06 + 1.5 * self.res * sin_t / np.maximum(ndots, 0.15)
        taps = [(0, 0), (1, 0), (0, 1), (1, 1)]
        self._ensure(np.concatenate([(ia + da) // T for da, _ in taps]),
                     np.concatenate([(ib + db) // T for _, db in taps]))
        flat = self.buf.reshape(-1)
        vis = np.zeros(px.shape, np.float32)
        for da, db in taps:
            ja, jb = ia + da, ib + db
            slot = self.table[ja // T, jb // T]
            occ = flat[slot * (T * T) + (ja % T) * T + (jb % T)]
            lit = (c + bias >= occ).astype(np.float32)
            w = (wa if da else 1 - wa) * (wb if db else 1 - wb)
            vis += w * lit
        return np.where(inside, vis, np.float32(1.0))


def dynamic_ground_shadows(prims: Prims, sun_dir: np.ndarray, T_wc: np.ndarray,
                           K: np.ndarray, height: int, width: int, max_dist: float = 80.0
                           ) -> np.ndarray:
    """Anti-aliased image mask ``[H, W]`` (1 = in shadow) of the road-plane shadows of moving
    primitives (their 8 corners projected along the sun onto z = 0, convex hull, clipped to
    the near plane, rasterised with ``cv2.fillConvexPoly``)."""
    mask = np.zeros((height, width), np.float32)
    if len(prims) == 0 or sun_dir[2] <= 0.05:
        return mask
    lo, hi = prims.world_aabb()
    cam = T_wc[:3, 3]
    R_cw = T_wc[:3, :3].T
    from dasp_core.data.synthetic.raycast import _CORNER_BITS, NEAR
    for k in range(len(prims)):
        if np.hypot(*(prims.center[k, :2] - cam[:2])) > max_dist:
            continue
        if prims.kind[k] == KIND_BOX:  # exact corners, also for yawed boxes (lead car)
            c, s = np.cos(prims.yaw[k]), np.sin(prims.yaw[k])
            h = prims.half[k]
            loc = (_CORNER_BITS * 2 - 1) * h
            corners = np.stack([c * loc[:, 0] - s * loc[:, 1], s * loc[:, 0] + c * loc[:, 1],
                                loc[:, 2]], 1) + prims.center[k]
        else:
            corners = lo[k] + _CORNER_BITS * (hi[k] - lo[k])
        g = corners[:, :2] - corners[:, 2:3] / sun_dir[2] * sun_dir[:2]
        hull = cv2.convexHull(g.astype(np.float32)).reshape(-1, 2).astype(np.float64)
        pts = np.concatenate([hull, np.zeros((len(hull), 1))], 1)
        pc = (pts - cam) @ R_cw.T
        poly = _clip_near(pc, NEAR)
        if len(poly) < 3:
            continue
        u = K[0, 0] * poly[:, 0] / poly[:, 2] + K[0, 2]
        v = K[1, 1] * poly[:, 1] / poly[:, 2] + K[1, 2]
        uv = np.clip(np.stack([u, v], 1), -4 * width, 4 * width)
        cv2.fillConvexPoly(mask, np.round(uv * 16).astype(np.int32), 1.0, cv2.LINE_AA, 4)
    return np.clip(mask, 0.0, 1.0)


def _clip_near(pc: np.ndarray, near: float) -> np.ndarray:
    """Sutherland–Hodgman clip of a camera-frame polygon against ``z >= near``."""
    out = []
    n = len(pc)
    for i in range(n):
        a, b = pc[i], pc[(i + 1) % n]
        ina, inb = a[2] >= near, b[2] >= near
        if ina:
            out.append(a)
        if ina != inb:
            t = (near - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.asarray(out).reshape(-1, 3)


# ============================================================================ irradiance
def day_irradiance(nx: np.ndarray, ny: np.ndarray, nz: np.ndarray, vis: np.ndarray,
                   light: DayLight) -> np.ndarray:
    """``[3, ...]`` irradiance from sun (with visibility ``vis``) and sky."""
    s = light.sun_dir
    ndots = np.maximum(nx * s[0] + ny * s[1] + nz * s[2], 0.0)
    sky = 0.62 + 0.38 * nz
    bounce = (0.5 - 0.5 * nz) * np.float32(0.12 * s[2])
    out = np.empty((3,) + nx.shape, np.float32)
    for c in range(3):
        out[c] = light.sun_rgb[c] * ndots * vis + light.sky_rgb[c] * sky + \
            light.sun_rgb[c] * bounce
    return out


def add_point_lights(E: np.ndarray, spec: Optional[np.ndarray], lights: Lights,
                     rects: np.ndarray, visible: np.ndarray, px, py, pz, nx, ny, nz,
                     vx, vy, vz, gloss: Optional[np.ndarray], ks: float = 0.35) -> None:
    """Accumulate point/spot lights into irradiance ``E [3, H, W]`` (and wet-road specular
    radiance ``spec [3, H, W]``) on each light's pixel rectangle.

    ``(vx, vy, vz)``: unit vectors from the surface towards the camera (for the highlight).
    """
    f32 = np.float32
    for k in np.flatnonzero(visible):
        u0, u1, v0, v1 = (int(x) for x in rects[k])
        sl = (slice(v0, v1), slice(u0, u1))
        p = lights.pos[k].astype(np.float32)
        dr = lights.dir[k].astype(np.float32)
        # unnormalised vector to the light; in-place arithmetic keeps temporaries few
        lx = p[0] - px[sl]
        ly = p[1] - py[sl]
        lz = p[2] - pz[sl]
        d2 = lx * lx
        d2 += ly * ly
        d2 += lz * lz
        d2 += f32(1e-4)
        inv = np.sqrt(d2)
        np.divide(f32(1.0), inv, out=inv)                   # 1 / distance
        ndl = nx[sl] * lx
        ndl += ny[sl] * ly
        ndl += nz[sl] * lz
        ndl *= inv                                          # cos(incidence)
        cs = dr[0] * lx
        cs += dr[1] * ly
        cs += dr[2] * lz
        cs *= -inv                                          # cos(angle to the spot axis)
        co, ci = f32(lights.cos_outer[k]), f32(lights.cos_inner[k])
        cs -= co
        cs *= f32(1.0) / (ci - co)
        np.clip(cs, 0.0, 1.0, out=cs)
        spot = cs * cs * (f32(3.0) - f32(2.0) * cs)          # smoothstep
        # smooth range window (1 - (d/r)^4)^2 and inverse-square fall-off
        win = d2 * f32(1.0 / lights.range[k] ** 2)
        win *= win
        np.subtract(f32(1.0), win, out=win)
        np.clip(win, 0.0, 1.0, out=win)
        win *= win
        e = spot
        e *= win
        e *= inv
        e *= inv
        if np.isfinite(lights.zmax[k]):
            e *= smoothstep(f32(lights.zmax[k] + 1.0), f32(lights.zmax[k]), pz[sl])
        lam = np.maximum(ndl, f32(0.0))
        lam *= e
        inten = lights.intensity[k]
        for c in range(3):
            E[c][sl] += inten[c] * lam
        if spec is not None and gloss is not None:
            g = gloss[sl]
            if not g.any():
                continue
            # Blinn-Phong highlight (n·h)^32 by repeated squaring (np.power is slow)
            lx *= inv
            ly *= inv
            lz *= inv
            lx += vx[sl]
            ly += vy[sl]
            lz += vz[sl]
            hn = lx * lx
            hn += ly * ly
            hn += lz * lz
            ndh = nx[sl] * lx
            ndh += ny[sl] * ly
            ndh += nz[sl] * lz
            np.maximum(ndh, 0.0, out=ndh)
            ndh *= ndh
            ndh /= hn + f32(1e-12)                          # (n·h)^2 with h normalised
            for _ in range(4):
                ndh *= ndh                                  # → (n·h)^32
            ndh *= e
            ndh *= g
            ndh *= f32(ks)
            ndh *= ndl > 0
            for c in range(3):
                spec[c][sl] += inten[c] * ndh


def wet_reflections(out: np.ndarray, sources: np.ndarray, colours: np.ndarray, T_wc: np.ndarray,
                    K: np.ndarray, gloss: np.ndarray, fresnel: float = 0.3) -> None:
    """Reflections of bright light sources in a wet road, added to radiance ``out [3, H, W]``.

    A wet road is a rough mirror: each source at ``X`` shows a reflection where the ray to its
    mirror image ``(x, y, -z)`` meets the road, stretched vertically into a streak (glossy
    anisotropic reflection seen at grazing angles). Streaks are weighted by ``gloss`` (the
    wet-road mask), so they only appear on the carriageway. View-dependent, as in real rain.

    Args:
        sources: ``[S, 3]`` world positions of light sources (lamp heads, headlights, tails).
        colours: ``[S, 3]`` emitted radiance (exposure units) of each source.
        gloss: ``[H, W]`` wetness/specular weight.
    """
    if len(sources) == 0 or not gloss.any():
        return
    _, H, W = out.shape
    R_cw = T_wc[:3, :3].T
    o = T_wc[:3, 3]
    mirror = sources * np.array([1.0, 1.0, -1.0])
    pc = (mirror - o) @ R_cw.T
    ok = pc[:, 2] > 1.0
    for k in np.flatnonzero(ok):
        x, y, z = pc[k]
        u = K[0, 0] * x / z + K[0, 2]
        v = K[1, 1] * y / z + K[1, 2]
        su = max(0.8, 0.25 * K[0, 0] / z)
        sv = min(6.0 * su + 3.0, 0.25 * H)
        u0, u1 = int(max(0, np.floor(u - 3 * su))), int(min(W, np.ceil(u + 3 * su) + 1))
        v0, v1 = int(max(0, np.floor(v - 3 * sv))), int(min(H, np.ceil(v + 3 * sv) + 1))
        if u1 <= u0 or v1 <= v0:
            continue
        gu = np.exp(-0.5 * ((np.arange(u0, u1) - u) / su) ** 2).astype(np.float32)
        gv = np.exp(-0.5 * ((np.arange(v0, v1) - v) / sv) ** 2).astype(np.float32)
        w = np.float32(fresnel) * gv[:, None] * gu[None, :] * gloss[v0:v1, u0:u1]
        for c in range(3):
            out[c, v0:v1, u0:u1] += np.float32(colours[k, c]) * w


def light_rects_by_tiles(lo: np.ndarray, hi: np.ndarray, px: np.ndarray, py: np.ndarray,
                         pz: np.ndarray, valid: np.ndarray, tile: int = 16
                         ) -> Tuple[np.ndarray, np.ndarray]:
    """Pixel rectangles of the lights' influence, from the surfaces actually visible.

    The image is cut into ``tile x tile`` tiles; each tile gets the world bounding box of its
    visible surface points, and a light (world box ``lo, hi`` ``[L, 3]``) touches the tiles
    whose boxes overlap its own. The rectangle is the bounding box of those tiles — much
    tighter than projecting the light's box, because walls and cars in front hide most of it.

    Returns:
        ``(rects int64 [L, 4] as (u0, u1, v0, v1), visible bool [L])``.
    """
    H, W = valid.shape
    Ht, Wt = -(-H // tile), -(-W // tile)
    mins, maxs = [], []
    for p in (px, py, pz):
        a = np.full((Ht * tile, Wt * tile), np.inf, np.float32)
        b = np.full((Ht * tile, Wt * tile), -np.inf, np.float32)
        a[:H, :W] = np.where(valid, p, np.inf)
        b[:H, :W] = np.where(valid, p, -np.inf)
        mins.append(a.reshape(Ht, tile, Wt, tile).min(axis=(1, 3)))
        maxs.append(b.reshape(Ht, tile, Wt, tile).max(axis=(1, 3)))
    L = lo.shape[0]
    hit = np.ones((L, Ht, Wt), bool)
    for ax in range(3):
        hit &= (lo[:, ax, None, None] <= maxs[ax][None]) & (hi[:, ax, None, None] >= mins[ax][None])
    visible = hit.any(axis=(1, 2))
    rows = hit.any(axis=2)
    cols = hit.any(axis=1)
    rects = np.zeros((L, 4), np.int64)
    for k in np.flatnonzero(visible):
        r = np.flatnonzero(rows[k])
        c = np.flatnonzero(cols[k])
        rects[k] = (c[0] * tile, min(W, (c[-1] + 1) * tile), r[0] * tile, min(H, (r[-1] + 1) * tile))
    return rects, visible
