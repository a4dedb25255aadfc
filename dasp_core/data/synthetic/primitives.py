"""Primitive tables: the boxes and ellipsoids the world is made of (struct of arrays).

World frame: x east, y north, z up (REP 103 ENU), metres; the road is the plane z = 0.
Every primitive has a centre, half extents in its own local frame, and a yaw (rotation about z,
radians). Local frame x is the object's "forward" (cars: driving direction). Boxes whose yaw is
a multiple of 90° are intersected as world axis-aligned boxes (fast path).

Material ids are small integers; per-primitive ``params`` carry material parameters (window grid
of a building, whether a car's lights are on, ...), see the ``P_*`` column names below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

# ----------------------------------------------------------------------------- materials
MAT_SKY = -1
MAT_GROUND = 0
MAT_BUILDING = 1   # facade with a window grid
MAT_WALL = 2       # plain wall (block cores, sheds)
MAT_CAR = 3        # car/van body
MAT_CABIN = 4      # car greenhouse (mostly glass)
MAT_POLE = 5       # metal poles and arms
MAT_LAMP = 6       # street-lamp head (emissive at night)
MAT_TRUNK = 7
MAT_FOLIAGE = 8
MAT_PROP = 9       # bins, cabinets, bollards, crates
N_MATERIALS = 10

KIND_GROUND = 0
KIND_BOX = 1
KIND_ELLIPSOID = 2

# params columns (meaning depends on material)
N_PARAMS = 8
# building: floor height, ground-floor height, window spacing, window width, window height,
#           shop front (0/1), lit fraction at night, window-grid offset
P_FLOOR_H, P_GF_H, P_WIN_SP, P_WIN_W, P_WIN_H, P_SHOP, P_LIT, P_WIN_OFF = range(8)
# car body / cabin: lights on (0/1), braking (0/1), wheel centre z (local), vehicle kind
P_LIGHTS, P_BRAKE, P_WHEEL_Z, P_VKIND = range(4)
# lamp head: on (0/1), light colour index
P_LAMP_ON, P_LAMP_COLOR = range(2)


@dataclass
class Prims:
    """A table of primitives (boxes and ellipsoids).

    Attributes (P rows):
        kind: int8 ``KIND_BOX`` or ``KIND_ELLIPSOID``.
        center: float64 ``[P, 3]`` world position of the local origin (metres).
        half: float64 ``[P, 3]`` half extents (box) or radii (ellipsoid) in the local frame.
        yaw: float64 ``[P]`` rotation about world z (radians).
        material: int16 ``[P]`` material id.
        albedo: float32 ``[P, 3]`` base linear RGB albedo.
        params: float32 ``[P, N_PARAMS]`` material parameters.
        obj: int32 ``[P]`` dynamic-object id (moving cars, lead car), -1 for static.
        key: int32 ``[P]`` random key for per-primitive hashing (window states, noise offsets).
    """

    kind: np.ndarray
    center: np.ndarray
    half: np.ndarray
    yaw: np.ndarray
    material: np.ndarray
    albedo: np.ndarray
    params: np.ndarray
    obj: np.ndarray
    key: np.ndarray

    def __len__(self) -> int:
        return int(self.kind.shape[0])

    @staticmethod
    def empty() -> "Prims":
        return Prims(np.zeros(0, np.int8), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0),
                     np.zeros(0, np.int16), np.zeros((0, 3), np.float32),
                     np.zeros((0, N_PARAMS), np.float32), np.zeros(0, np.int32),
                     np.zeros(0, np.int32))

    @staticmethod
    def concat(parts: Sequence["Prims"]) -> "Prims":
        parts = [p for p in parts if len(p)]
        if not parts:
            return Prims.empty()
        return Prims(*[np.concatenate([getattr(p, f) for p in parts])
                       for f in ("kind", "center", "half", "yaw", "material", "albedo",
                                 "params", "obj", "key")])

    def take(self, idx: np.ndarray) -> "Prims":
        return Prims(*[getattr(self, f)[idx] for f in ("kind", "center", "half", "yaw",
                                                         "material", "albedo", "params", "obj",
                                                         "key")])

    def world_aabb(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned world bounds ``(lo [P,3], hi [P,3])`` (exact for boxes, conservative
        for rotated ellipsoids)."""
        c, s = np.abs(np.cos(self.yaw)), np.abs(np.sin(self.yaw))
        hx = c * self.half[:, 0] + s * self.half[:, 1]
        hy = s * self.half[:, 0] + c * self.half[:, 1]
        ext = np.stack([hx, hy, self.half[:, 2]], axis=1)
        return self.center - ext, self.center + ext

    def axis_aligned(self) -> np.ndarray:
        """bool ``[P]``: yaw is a multiple of 90° (box can use the world-AABB slab test)."""
        q = self.yaw / (np.pi / 2)
        return np.abs(q - np.round(q)) < 1e-9


class PrimBuilder:
    """Collects primitives row by row, then freezes them into :class:`Prims`."""

    def __init__(self) -> None:
        self.rows: Dict[str, List] = {f: [] for f in ("kind", "center", "half", "yaw",
                                                      "material", "albedo", "params", "obj",
                                                      "key")}

    def add(self, kind: int, center: Sequence[float], half: Sequence[float], yaw: float,
            material: int, albedo: Sequence[float], params: Optional[Sequence[float]] = None,
            obj: int = -1, key: int = 0) -> None:
        p = np.zeros(N_PARAMS, np.float32)
        if params is not None:
            p[:len(params)] = params
        r = self.rows
        r["kind"].append(kind)
        r["center"].append(center)
        r["half"].append(half)
        r["yaw"].append(yaw)
        r["material"].append(material)
        r["albedo"].append(albedo)
        r["params"].append(p)
        r["obj"].append(obj)
        r["key"].append(key)

    def box(self, lo: Sequence[float], hi: Sequence[float], material: int,
            albedo: Sequence[float], params=None, key: int = 0) -> None:
        """An axis-aligned box from world bounds."""
        lo = np.asarray(lo, float)
        hi = np.asarray(hi, float)
        self.add(KIND_BOX, (lo + hi) / 2, (hi - lo) / 2, 0.0, material, albedo, params, -1, key)

    def build(self) -> Prims:
        if not self.rows["kind"]:
            return Prims.empty()
        r = self.rows
        return Prims(np.asarray(r["kind"], np.int8), np.asarray(r["center"], np.float64),
                     np.asarray(r["half"], np.float64), np.asarray(r["yaw"], np.float64),
                     np.asarray(r["material"], np.int16), np.asarray(r["albedo"], np.float32),
                     np.stack(r["params"]).astype(np.float32), np.asarray(r["obj"], np.int32),
                     np.asarray(r["key"], np.int32))


@dataclass
class Lights:
    """Point / spot lights (night).

    Attributes (L rows):
        pos: float64 ``[L, 3]`` world position (metres).
        dir: float64 ``[L, 3]`` unit spot axis.
        cos_inner, cos_outer: float64 ``[L]`` cone: full intensity inside ``inner``, zero
            outside ``outer`` (cosines of the half-angles; ``cos_outer = -1`` = omni).
        intensity: float32 ``[L, 3]`` linear RGB intensity (exposure units · m²).
        range: float64 ``[L]`` distance where the light is faded to zero (metres).
        zmax: float64 ``[L]`` height above which the light fades out within 1 m (the sharp
            cut-off of dipped headlights; ``inf`` for none).
    """

    pos: np.ndarray
    dir: np.ndarray
    cos_inner: np.ndarray
    cos_outer: np.ndarray
    intensity: np.ndarray
    range: np.ndarray
    zmax: np.ndarray

    FIELDS = ("pos", "dir", "cos_inner", "cos_outer", "intensity", "range", "zmax")

    def __len__(self) -> int:
        return int(self.pos.shape[0])

    @staticmethod
    def empty() -> "Lights":
        return Lights(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), np.zeros(0),
                      np.zeros((0, 3), np.float32), np.zeros(0), np.zeros(0))

    @staticmethod
    def concat(parts: Sequence["Lights"]) -> "Lights":
        parts = [p for p in parts if len(p)]
        if not parts:
            return Lights.empty()
        return Lights(*[np.concatenate([getattr(p, f) for p in parts]) for f in Lights.FIELDS])

    @staticmethod
    def from_rows(rows: List[tuple]) -> "Lights":
        """Rows ``(pos, dir, cos_inner, cos_outer, intensity_rgb, range[, zmax])``."""
        if not rows:
            return Lights.empty()
        rows = [tuple(r) + ((np.inf,) if len(r) == 6 else ()) for r in rows]
        pos, d, ci, co, inten, rng, zmax = zip(*rows)
        dirs = np.asarray(d, float)
        dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
        return Lights(np.asarray(pos, float), dirs, np.asarray(ci, float), np.asarray(co, float),
                      np.asarray(inten, np.float32), np.asarray(rng, float),
                      np.asarray(zmax, float))

    def aabb(self) -> tuple[np.ndarray, np.ndarray]:
        """Conservative world bounds ``(lo, hi)`` of each light's lit region (above the road,
        below ``zmax + 1``)."""
        r = self.range
        lo = self.pos - r[:, None]
        hi = self.pos + r[:, None]
        # spot cone (< 90°): apex plus the disc at full range
        spot = self.cos_outer > 0.0
        sin_o = np.sqrt(np.maximum(0.0, 1.0 - self.cos_outer ** 2))
        tip = self.pos + self.dir * r[:, None]
        half = (r * sin_o)[:, None]
        lo = np.where(spot[:, None], np.maximum(lo, np.minimum(self.pos, tip - half)), lo)
        hi = np.where(spot[:, None], np.minimum(hi, np.maximum(self.pos, tip + half)), hi)
        # downward spots reach the road within pos_z * tan(outer) horizontally
        down = spot & (self.dir[:, 2] < -0.7)
        tan_o = sin_o / np.maximum(self.cos_outer, 1e-6)
        # widest reach: the cone axis may be tilted a little from the vertical
        tilt = np.arccos(np.clip(-self.dir[:, 2], -1.0, 1.0))
        reach = self.pos[:, 2] * np.tan(np.minimum(np.arctan(tan_o) + tilt, 1.5)) + 0.5
        for a in (0, 1):
            lo[:, a] = np.where(down, np.maximum(lo[:, a], self.pos[:, a] - reach), lo[:, a])
            hi[:, a] = np.where(down, np.minimum(hi[:, a], self.pos[:, a] + reach), hi[:, a])
        lo[:, 2] = np.maximum(lo[:, 2], -0.1)  # nothing to light below the road
        hi[:, 2] = np.minimum(hi[:, 2], self.zmax + 1.0)
        hi[:, 2] = np.maximum(hi[:, 2], lo[:, 2] + 0.1)
        return lo, hi


@dataclass
class Bounds:
    """Axis-aligned 2D rectangle."""

    x0: float
    y0: float
    x1: float
    y1: float

    def expand(self, m: float) -> "Bounds":
        return Bounds(self.x0 - m, self.y0 - m, self.x1 + m, self.y1 + m)


@dataclass
class WorldInfo:
    """Free-form description of a generated world (for logs and the folder writer)."""

    n_static: int = 0
    n_lamps: int = 0
    n_moving_cars: int = 0
    has_lead_car: bool = False
    extra: Dict[str, float] = field(default_factory=dict)
