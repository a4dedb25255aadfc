"""Render frames of one synthetic drive: ray cast → surfaces → lighting → camera.

:class:`SequenceRenderer` holds one world (seed) in one domain and renders any frame index on
demand. Each frame is a pure function of ``(seed, domain, index, config)`` — including the noise,
drawn from a generator keyed by the frame index, and the sun shadow map, whose tiles are pure
functions of the world — so frames can be rendered in any order, in parallel processes, and
always come out identical.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from dasp_core.data.synthetic.config import SyntheticConfig, check_domain
from dasp_core.data.synthetic.lighting import (
    LUMA, SunShadowMap, add_point_lights, day_irradiance, day_light, dynamic_ground_shadows,
    light_rects_by_tiles, night_light, sky_radiance, wet_reflections)
from dasp_core.data.synthetic.materials import GroundTables, shade_surfaces
from dasp_core.data.synthetic.primitives import MAT_GROUND, Lights, Prims
from dasp_core.data.synthetic.raycast import RayCaster
from dasp_core.data.synthetic.scene import World
from dasp_core.data.synthetic.sensor import bloom, expose, motion_blur
from dasp_core.data.synthetic.textures import NoiseBank, smoothstep

log = logging.getLogger(__name__)

DARK_IRRADIANCE = 0.02   # "dark": a white surface there would show < 2 % of full scale
LIT_IRRADIANCE = 0.15    # "lit": ≥ 15 % (or the pixel is a light source itself)
MOVING_SPEED = 0.1       # m/s, objects faster than this count as moving
# light intensity (exposure units · m²) → radiance of its reflection streak (ours, tuned by eye)
LAMP_EMISSION_SCALE = 3.0
HEADLIGHT_EMISSION_SCALE = 9.0

_BANK: Optional[NoiseBank] = None


def noise_bank() -> NoiseBank:
    """The process-wide noise texture bank (fixed seed: identical in every process)."""
    global _BANK
    if _BANK is None:
        _BANK = NoiseBank()
    return _BANK


@dataclass
class Frame:
    """One rendered frame.

    Attributes:
        image: uint8 ``[H, W, 3]`` RGB.
        depth: float32 ``[H, W]`` z-depth in metres, 0 = sky / beyond ``max_depth``.
        pose: float64 ``[4, 4]`` camera→world (REP 103 optical frame).
        speed: camera speed in m/s.
        time: seconds since the start of the drive.
        masks: bool ``[H, W]``: ``moving`` (pixels of moving cars), ``dark`` (irradiance below
            :data:`DARK_IRRADIANCE`), ``lit`` (irradiance above :data:`LIT_IRRADIANCE` or
            emissive); sky is in neither.
        timings: seconds per stage (diagnostics).
    """

    image: np.ndarray
    depth: np.ndarray
    pose: np.ndarray
    speed: float
    time: float
    masks: Dict[str, np.ndarray]
    timings: Dict[str, float] = field(default_factory=dict)


class SequenceRenderer:
    """Renders frames of one drive.

    Args:
        seed: world seed (layout, route, traffic). Use different seeds for day and night
            training data: real day/night recordings are unpaired.
        domain: ``"day"`` or ``"night"``.
        n_frames: number of frames of the drive (sets its length).
        cfg: configuration (default :class:`SyntheticConfig`).
    """

    T_START = 0.5  # s, first frame time (the drive has history before it)

    def __init__(self, seed: int, domain: str, n_frames: int,
                 cfg: Optional[SyntheticConfig] = None):
        self.cfg = cfg if cfg is not None else SyntheticConfig()
        self.seed = int(seed)
        self.domain = check_domain(domain)
        if n_frames < 1:
            from dasp_core.errors import ConfigError
            raise ConfigError("synthetic.frames", n_frames, "an integer >= 1")
        self.n_frames = int(n_frames)
        cfg = self.cfg
        self.K = cfg.intrinsics()
        self.world = World(self.seed, self.T_START + n_frames / cfg.fps + 0.5, cfg)
        self.caster = RayCaster(self.K, cfg.height, cfg.width)
        xs = [b[0] for b in self.world.blocks] or [0]
        ys = [b[1] for b in self.world.blocks] or [0]
        g = self.world.grid
        self.bounds = (min(xs) * g.bx - 20, min(ys) * g.by - 20,
                       (max(xs) + 1) * g.bx + 20, (max(ys) + 1) * g.by + 20)
        self.tabs = GroundTables(g, self.bounds[0], self.bounds[2], self.bounds[1],
                                 self.bounds[3])
        self.bank = noise_bank()
        lrng = np.random.default_rng([self.seed, 601 if domain == "day" else 602])
        self.night = domain == "night"
        if self.night:
            self.light = night_light(lrng, cfg.wet_road_probability)
            self.exposure = float(lrng.uniform(1.0, 1.6))
        else:
            self.light = day_light(lrng)
            self.exposure = float(lrng.uniform(0.85, 1.15))
        self._shadow: Optional[SunShadowMap] = None
        st = self.world.static
        lo, hi = st.world_aabb()
        self._static_centre = (lo + hi) / 2
        self._static_radius = np.linalg.norm(hi - lo, axis=1) / 2

    # ------------------------------------------------------------------ helpers
    def frame_time(self, index: int) -> float:
        """Seconds since the start of the drive of frame ``index``."""
        return self.T_START + index / self.cfg.fps

    def pose(self, index: int) -> np.ndarray:
        """Camera→world ``[4, 4]`` of frame ``index`` (cheap: no rendering)."""
        return self.world.ego.camera_pose(self.frame_time(index))

    def speed(self, index: int) -> float:
        """Camera speed (m/s) at frame ``index`` (cheap: no rendering)."""
        return self.world.ego.camera_speed(self.frame_time(index))

    @property
    def shadow_map(self) -> SunShadowMap:
        if self._shadow is None:
            self._shadow = SunShadowMap(self.world.static, self.light.sun_dir, self.bounds)
        return self._shadow

    # ------------------------------------------------------------------ render
    def render(self, index: int, noise: Optional[bool] = None) -> Frame:
        """Render frame ``index`` (0-based).

        Args:
            index: frame index in ``[0, n_frames)``.
            noise: override ``cfg.noise`` (False gives the clean image).
        """
        if not 0 <= index < self.n_frames:
            from dasp_core.errors import ConfigError
            raise ConfigError("frame index", index, f"an integer in [0, {self.n_frames})")
        cfg = self.cfg
        tm: Dict[str, float] = {}
        t0 = time.perf_counter()
        t = self.frame_time(index)
        T = self.world.ego.camera_pose(t)
        cam = T[:3, 3]
        dyn, headlights, obj_speed, obj_vel = self.world.dynamic(t, cam[:2], cfg.max_depth + 10)
        keep = self.caster.frustum_cull(self._static_centre, self._static_radius, T,
                                        cfg.max_depth)
        prims = Prims.concat([self.world.static.take(np.flatnonzero(keep)), dyn])
        tm["scene"] = time.perf_counter() - t0

        t1 = time.perf_counter()
        hits, rays = self.caster.cast(T, prims, cfg.max_depth)
        tm["raycast"] = time.perf_counter() - t1

        t1 = time.perf_counter()
        surf = shade_surfaces(hits, rays, prims, self.tabs, self.bank, self.night,
                              cfg.max_depth, float(self.K[0, 0]))
        tm["surfaces"] = time.perf_counter() - t1

        t1 = time.perf_counter()
        H, W = cfg.height, cfg.width
        valid = surf.valid
        if self.night:
            E, spec = self._night_lighting(surf, rays, T, headlights)
        else:
            E, spec = self._day_lighting(surf, T, dyn), None
        rad = surf.albedo * E + surf.emissive
        if spec is not None:
            rad += spec
        irr = np.tensordot(LUMA, E, axes=1) * np.float32(self.exposure)
        emis = np.tensordot(LUMA, surf.emissive, axes=1) * np.float32(self.exposure)
        tm["lighting"] = time.perf_counter() - t1

        t1 = time.perf_counter()
        rad = self._sky_and_fog(rad, rays, surf)
        tm["sky"] = time.perf_counter() - t1

        t1 = time.perf_counter()
        moving_ids = np.flatnonzero(obj_speed > MOVING_SPEED)
        moving = np.isin(surf.obj, moving_ids) & valid if moving_ids.size else \
            np.zeros((H, W), bool)
        exp_s = cfg.night_exposure_s if self.night else cfg.day_exposure_s
        if cfg.motion_blur and exp_s > 0 and moving.any():
            rad = motion_blur(rad, surf.obj, self._image_motions(t, exp_s, dyn, obj_vel,
                                                                 moving_ids, surf.obj))
        if cfg.bloom:
            if self.night:
                rad = bloom(rad, 0.9 / self.exposure, (0.10, 0.05, 0.02), streak=0.02)
            else:
                rad = bloom(rad, 1.2 / self.exposure, (0.03, 0.015, 0.0))
        use_noise = cfg.noise if noise is None else noise
        rng = np.random.default_rng([self.seed, 1 if self.night else 0, 901, index]) \
            if use_noise else None
        if self.night:
            image = expose(rad, self.exposure, rng, cfg.night_full_well, cfg.night_read_noise,
                           row_noise=0.25 * cfg.night_read_noise)
        else:
            image = expose(rad, self.exposure, rng, cfg.day_full_well, cfg.day_read_noise)
        tm["camera"] = time.perf_counter() - t1

        masks = {
            "moving": moving,
            "dark": valid & (irr < DARK_IRRADIANCE) & (emis < LIT_IRRADIANCE),
            "lit": valid & ((irr > LIT_IRRADIANCE) | (emis > LIT_IRRADIANCE)),
        }
        tm["total"] = time.perf_counter() - t0
        return Frame(image=image, depth=surf.depth, pose=T, speed=self.world.ego.camera_speed(t),
                     time=t, masks=masks, timings=tm)

    # ------------------------------------------------------------------ stages
    def _day_lighting(self, surf, T: np.ndarray, dyn: Prims) -> np.ndarray:
        cfg, light = self.cfg, self.light
        H, W = surf.valid.shape
        vis = np.ones((H, W), np.float32)
        s = light.sun_dir
        ndots = surf.nx * np.float32(s[0]) + surf.ny * np.float32(s[1]) + surf.nz * np.float32(s[2])
        if cfg.shadows:
            idx = np.flatnonzero((surf.valid & (ndots > 0)).reshape(-1))
            if idx.size:
                v = self.shadow_map.visibility(surf.px.reshape(-1)[idx], surf.py.reshape(-1)[idx],
                                               surf.pz.reshape(-1)[idx], ndots.reshape(-1)[idx])
                vis.reshape(-1)[idx] = v
            if len(dyn):
                m = dynamic_ground_shadows(dyn, s, T, self.K, H, W)
                ground = surf.mat == MAT_GROUND
                vis = np.where(ground, vis * (1.0 - m), vis)
        return day_irradiance(surf.nx, surf.ny, surf.nz, vis, light)

    def _night_lighting(self, surf, rays, T: np.ndarray, headlights: Lights
                        ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        light = self.light
        H, W = surf.valid.shape
        amb = 0.6 + 0.4 * surf.nz
        E = np.empty((3, H, W), np.float32)
        for c in range(3):
            E[c] = light.ambient_rgb[c] * amb
        lights = [self.world.lamps, headlights]
        if light.ego_headlights:
            fwd = T[:3, 2].copy()
            fwd[2] = 0.0
            fwd /= np.linalg.norm(fwd) + 1e-12
            pos = T[:3, 3] + 1.7 * fwd
            pos[2] = 0.7
            d = fwd + np.array([0.0, 0.0, -0.035])
            # dipped beam of the camera car: lights the road ahead, cut off above ~1.3 m
            lights.append(Lights.from_rows([(pos, d, np.cos(np.radians(12.0)),
                                             np.cos(np.radians(30.0)),
                                             np.array([1.0, 0.97, 0.9]) * 90.0, 90.0,
                                             1.3)]))
        allL = Lights.concat(lights)
        lo, hi = allL.aabb()
        rects, vis = light_rects_by_tiles(lo, hi, surf.px, surf.py, surf.pz, surf.valid)
        spec = None
        gloss = None
        vx = vy = vz = None
        if light.wet:
            spec = np.zeros((3, H, W), np.float32)
            gloss = surf.gloss * (surf.mat == MAT_GROUND)
            inv = -1.0 / np.sqrt(rays.dx * rays.dx + rays.dy * rays.dy + rays.dz * rays.dz)
            vx, vy, vz = rays.dx * inv, rays.dy * inv, rays.dz * inv
        valid = surf.valid
        px = np.where(valid, surf.px, np.float32(1e6))  # sky pixels: far away, unlit
        add_point_lights(E, spec, allL, rects, vis, px, surf.py, surf.pz, surf.nx, surf.ny,
                         surf.nz, vx, vy, vz, gloss)
        if light.wet:
            src, col = self._reflection_sources(T, headlights)
            wet_reflections(spec, src, col, T, self.K, gloss)
        return E, spec

    def _reflection_sources(self, T: np.ndarray, headlights: Lights
                            ) -> Tuple[np.ndarray, np.ndarray]:
        """Bright sources that mirror in a wet road: lamp heads, and headlights facing the
        camera, within 80 m."""
        cam = T[:3, 3]
        lamps = self.world.lamps
        pos = [lamps.pos + np.array([0.0, 0.0, 0.15])]
        col = [lamps.intensity / LAMP_EMISSION_SCALE]
        if len(headlights):
            facing = np.einsum("ij,ij->i", headlights.dir, cam - headlights.pos) > 0
            pos.append(headlights.pos[facing])
            col.append(headlights.intensity[facing] / HEADLIGHT_EMISSION_SCALE)
        pos = np.concatenate(pos)
        col = np.concatenate(col).astype(np.float32)
        near = np.linalg.norm(pos[:, :2] - cam[:2], axis=1) < 80.0
        return pos[near], col[near]

    def _sky_and_fog(self, rad: np.ndarray, rays, surf) -> np.ndarray:
        light = self.light
        valid = surf.valid
        sky_idx = np.flatnonzero(~valid.reshape(-1))
        sun = None if self.night else light.sun_dir
        clouds = 0.0 if self.night else light.clouds
        if sky_idx.size:
            d = [a.reshape(-1)[sky_idx] for a in (rays.dx, rays.dy, rays.dz)]
            rad.reshape(3, -1)[:, sky_idx] = sky_radiance(d[0], d[1], d[2], light.zenith,
                                                          light.horizon, sun, clouds, self.bank,
                                                          1.0 / float(self.K[0, 0]))
        # haze: exponential in distance plus a fade to the horizon colour near max_depth
        dist = surf.depth * np.sqrt(rays.dx * rays.dx + rays.dy * rays.dy + 1.0)
        f = 1.0 - np.exp(-dist / np.float32(light.haze_m))
        md = self.cfg.max_depth
        f = 1.0 - (1.0 - f) * (1.0 - smoothstep(0.6 * md, md, surf.depth))
        f = np.where(valid, f, 0.0).astype(np.float32)
        for c in range(3):
            rad[c] = rad[c] * (1.0 - f) + light.horizon[c] * f
        return rad

    def _image_motions(self, t: float, exp_s: float, dyn: Prims, obj_vel: np.ndarray,
                       ids: np.ndarray, obj_map: np.ndarray) -> List[Tuple[int, float, float]]:
        """Image motion (pixels over the exposure) of each moving object's centre, relative
        to the moving camera."""
        T0 = self.world.ego.camera_pose(t - exp_s / 2)
        T1 = self.world.ego.camera_pose(t + exp_s / 2)
        out = []
        present = np.unique(obj_map[obj_map >= 0])
        for oid in np.intersect1d(ids, present):
            rows = np.flatnonzero(dyn.obj == oid)
            c = dyn.center[rows].mean(0)
            v = obj_vel[oid]
            p = []
            for Tk, sgn in ((T0, -0.5), (T1, 0.5)):
                X = c + sgn * exp_s * v
                pc = Tk[:3, :3].T @ (X - Tk[:3, 3])
                if pc[2] < 0.5:
                    break
                p.append((self.K[0, 0] * pc[0] / pc[2], self.K[1, 1] * pc[1] / pc[2]))
            if len(p) == 2:
                out.append((int(oid), p[1][0] - p[0][0], p[1][1] - p[0][1]))
        return out
