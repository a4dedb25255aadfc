"""Procedural street world: buildings, street furniture, parked and moving cars, lamps.

:class:`World` builds, from one seed, everything that does not depend on lighting:

* the street grid (:mod:`.grid`) and the camera's drive (:mod:`.trajectory`);
* static primitives for every block within ``max_depth`` of the route: facade rows with
  varied widths, depths, heights and setbacks, block cores, street lamps, trees, bins and
  cabinets, parked cars and vans;
* street-lamp light sources;
* traffic: cars driving along the streets in both directions, each lane at its own speed, and
  an optional lead car in the camera's lane. Cars that would come close to the camera (or the
  lead car) at any time of the drive are removed, so nothing drives through the camera.

Everything is deterministic in the seed; randomness is drawn from generators keyed by the seed
and the block/street index, so nearby parts of the city do not depend on how far the drive goes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from dasp_core.data.synthetic.config import SyntheticConfig
from dasp_core.data.synthetic.grid import StreetGrid, StreetSpec
from dasp_core.data.synthetic.primitives import (
    KIND_BOX, KIND_ELLIPSOID, MAT_BUILDING, MAT_CABIN, MAT_CAR, MAT_FOLIAGE, MAT_LAMP,
    MAT_POLE, MAT_PROP, MAT_TRUNK, MAT_WALL, Lights, PrimBuilder, Prims, WorldInfo)
from dasp_core.data.synthetic.trajectory import EgoMotion, LeadCar, plan_route

log = logging.getLogger(__name__)

# linear-RGB palettes (ours, picked to look like a European/US city street)
FACADE_COLOURS = np.array([
    (0.50, 0.45, 0.38), (0.42, 0.42, 0.42), (0.60, 0.58, 0.53), (0.36, 0.18, 0.12),
    (0.52, 0.44, 0.27), (0.26, 0.27, 0.29), (0.47, 0.36, 0.31), (0.55, 0.52, 0.47),
    (0.30, 0.20, 0.16), (0.45, 0.47, 0.50)])
CAR_COLOURS = np.array([
    (0.62, 0.62, 0.62), (0.025, 0.025, 0.03), (0.30, 0.31, 0.33), (0.12, 0.12, 0.13),
    (0.45, 0.04, 0.03), (0.03, 0.08, 0.28), (0.06, 0.06, 0.14), (0.08, 0.16, 0.08),
    (0.45, 0.40, 0.30), (0.55, 0.35, 0.03)])
CAR_COLOUR_P = np.array([0.2, 0.17, 0.17, 0.12, 0.08, 0.07, 0.06, 0.05, 0.05, 0.03])
LAMP_COLOURS = np.array([(1.0, 0.58, 0.25), (0.85, 0.92, 1.0)], np.float32)

LAMP_INTENSITY = 18.0      # exposure units · m² (ours; a lamp 7 m up lights the road to ~0.37 E)
HEADLIGHT_INTENSITY = 90.0
CAR_WHEEL_R = 0.32


@dataclass
class Car:
    """A moving car on a straight street: ``along(t) = lo + (a0 - lo + d v t) mod (hi - lo)``."""

    axis: int
    line: float        # street centre-line coordinate
    across: float      # lateral offset from the centre line (metres, world sign)
    direction: float   # +1 / -1 along the street
    speed: float
    a0: float
    lo: float
    hi: float
    length: float
    width: float
    kind: int          # 0 car, 1 van
    colour: np.ndarray
    key: int

    def along(self, t: np.ndarray | float) -> np.ndarray:
        span = self.hi - self.lo
        return self.lo + np.mod(self.a0 - self.lo + self.direction * self.speed * t, span)

    def xy(self, t: np.ndarray | float) -> Tuple[np.ndarray, np.ndarray]:
        a = self.along(t)
        if self.axis == 0:
            return np.full_like(a, self.line + self.across), a
        return a, np.full_like(a, self.line + self.across)

    @property
    def yaw(self) -> float:
        if self.axis == 0:
            return np.pi / 2 if self.direction > 0 else -np.pi / 2
        return 0.0 if self.direction > 0 else np.pi


def add_vehicle(pb: PrimBuilder, x: float, y: float, yaw: float, length: float, width: float,
                kind: int, colour, key: int, obj: int = -1, lights_on: bool = False) -> None:
    """Append a car (body + cabin) or a van (one tall box) centred at ``(x, y)``."""
    c, s = np.cos(yaw), np.sin(yaw)
    on = 1.0 if lights_on else 0.0
    if kind == 0:
        z0, hb = 0.2, 0.72
        zc = z0 + hb / 2
        pb.add(KIND_BOX, (x, y, zc), (length / 2, width / 2, hb / 2), yaw, MAT_CAR, colour,
               (on, 0.0, CAR_WHEEL_R - zc, 0.0), obj, key)
        ch = 0.27
        off = -0.08 * length
        pb.add(KIND_BOX, (x + c * off, y + s * off, z0 + hb + ch), (0.28 * length, width / 2 - 0.09,
               ch), yaw, MAT_CABIN, colour, (on, 0.0, 0.0, 0.0), obj, key)
    else:
        z0, hb = 0.28, 1.95
        zc = z0 + hb / 2
        pb.add(KIND_BOX, (x, y, zc), (length / 2, width / 2, hb / 2), yaw, MAT_CAR, colour,
               (on, 0.0, CAR_WHEEL_R + 0.04 - zc, 1.0), obj, key)


def _street_xy(axis: int, line: float, along: float, across: float) -> Tuple[float, float]:
    return (line + across, along) if axis == 0 else (along, line + across)


class World:
    """Everything in one drive that does not depend on the lighting.

    Args:
        seed: world seed (layout, route, traffic).
        duration: seconds of driving that will be rendered (plus margins inside).
        cfg: configuration.
    Attributes:
        grid, ego, lead, static (:class:`Prims`), lamps (:class:`Lights`), cars (list of
        :class:`Car`), info (:class:`WorldInfo`).
    """

    def __init__(self, seed: int, duration: float, cfg: SyntheticConfig):
        self.seed = int(seed)
        self.cfg = cfg
        self.grid = StreetGrid(seed)
        rng = np.random.default_rng([self.seed, 201])
        min_len = cfg.max_speed * (duration + 3.0) + 60.0
        route = plan_route(self.grid, rng, min_len, cfg)
        self.ego = EgoMotion(route, np.random.default_rng([self.seed, 202]), duration + 3.0, cfg)
        lrng = np.random.default_rng([self.seed, 203])
        self.lead: Optional[LeadCar] = (LeadCar(self.ego, lrng)
                                        if lrng.random() < cfg.lead_car_probability else None)
        self.lead_colour = CAR_COLOURS[lrng.choice(len(CAR_COLOURS), p=CAR_COLOUR_P)] * \
            lrng.uniform(0.85, 1.1)
        self.lead_width = float(lrng.uniform(1.75, 1.9))
        self.duration = float(duration)
        self._build_static()
        self._build_traffic()
        self.info = WorldInfo(n_static=len(self.static), n_lamps=len(self.lamps),
                              n_moving_cars=len(self.cars), has_lead_car=self.lead is not None)

    # ------------------------------------------------------------------ region
    def _blocks_near_route(self) -> List[Tuple[int, int]]:
        pts = self.ego.route_points(step=4.0)
        margin = self.cfg.max_depth + 15.0
        bx, by = self.grid.spacing
        i0 = int(np.floor((pts[:, 0].min() - margin) / bx)) - 1
        i1 = int(np.ceil((pts[:, 0].max() + margin) / bx)) + 1
        j0 = int(np.floor((pts[:, 1].min() - margin) / by)) - 1
        j1 = int(np.ceil((pts[:, 1].max() + margin) / by)) + 1
        blocks = []
        for i in range(i0, i1):
            for j in range(j0, j1):
                x0, x1 = i * bx, (i + 1) * bx
                y0, y1 = j * by, (j + 1) * by
                dx = np.maximum(0.0, np.maximum(x0 - pts[:, 0], pts[:, 0] - x1))
                dy = np.maximum(0.0, np.maximum(y0 - pts[:, 1], pts[:, 1] - y1))
                if float(np.min(np.hypot(dx, dy))) < margin:
                    blocks.append((i, j))
        return blocks

    # ------------------------------------------------------------------ static world
    def _build_static(self) -> None:
        pb = PrimBuilder()
        lamp_rows: List[tuple] = []
        blocks = self._blocks_near_route()
        segments = set()
        for i, j in blocks:
            self._block_buildings(pb, i, j)
            segments.update({(0, i, j), (0, i + 1, j), (1, j, i), (1, j + 1, i)})
        self.segments = sorted(segments)
        for axis, idx, seg in self.segments:
            self._street_furniture(pb, lamp_rows, axis, idx, seg)
        self.static: Prims = pb.build()
        self.lamps: Lights = Lights.from_rows(lamp_rows)
        self.blocks = blocks

    def _block_buildings(self, pb: PrimBuilder, i: int, j: int) -> None:
        rng = np.random.default_rng([self.seed, 301, i + (1 << 20), j + (1 << 20)])
        x0, y0, x1, y1 = self.grid.block_interior(i, j)
        if x1 - x0 < 20 or y1 - y0 < 20:
            return
        # north/south rows span the block; west/east rows fill in between them
        d_s = self._row(pb, rng, axis=0, a0=x0, a1=x1, front=y0, outward=-1.0, depth_max=(y1 - y0) / 2)
        d_n = self._row(pb, rng, axis=0, a0=x0, a1=x1, front=y1, outward=1.0, depth_max=(y1 - y0) / 2)
        self._row(pb, rng, axis=1, a0=y0 + d_s, a1=y1 - d_n, front=x0, outward=-1.0,
                  depth_max=(x1 - x0) / 2)
        self._row(pb, rng, axis=1, a0=y0 + d_s, a1=y1 - d_n, front=x1, outward=1.0,
                  depth_max=(x1 - x0) / 2)
        # block core: seen through gaps between buildings
        m = 13.0
        if x1 - x0 > 2 * m + 2 and y1 - y0 > 2 * m + 2:
            h = float(rng.uniform(5.0, 14.0))
            col = FACADE_COLOURS[rng.integers(len(FACADE_COLOURS))] * rng.uniform(0.6, 0.9)
            pb.box((x0 + m, y0 + m, 0.0), (x1 - m, y1 - m, h), MAT_WALL, col,
                   key=int(rng.integers(1 << 30)))

    def _row(self, pb: PrimBuilder, rng: np.random.Generator, axis: int, a0: float, a1: float,
             front: float, outward: float, depth_max: float) -> float:
        """One row of buildings along a block side; returns the deepest building depth.

        ``axis`` 0: the row runs along x and the facade faces ±y (``outward``); ``front`` is the
        building line coordinate.
        """
        a = a0
        max_depth = 0.0
        while a1 - a > 4.0:
            if rng.random() < 0.1:  # a gap (alley, yard) of a few metres
                a += float(rng.uniform(3.0, 8.0))
                continue
            w = float(rng.uniform(8.0, 26.0))
            if a1 - (a + w) < 7.0:
                w = a1 - a
            depth = float(min(rng.uniform(9.0, 20.0), depth_max - 0.5))
            setback = 0.0 if rng.random() < 0.7 else float(rng.uniform(0.5, 4.0))
            floors = int(rng.choice([2, 3, 4, 5, 6, 7, 8, 10], p=[0.08, 0.17, 0.22, 0.2, 0.13,
                                                                   0.1, 0.06, 0.04]))
            floor_h = float(rng.uniform(2.9, 3.6))
            gf_h = float(rng.uniform(3.4, 4.6))
            height = gf_h + (floors - 1) * floor_h + float(rng.uniform(0.2, 1.2))
            win_sp = float(rng.uniform(2.2, 3.6))
            win_w = float(rng.uniform(0.35, 0.62)) * win_sp
            win_h = float(rng.uniform(0.42, 0.62)) * floor_h
            shop = 1.0 if rng.random() < 0.45 else 0.0
            lit = float(rng.uniform(0.08, 0.5))
            col = FACADE_COLOURS[rng.integers(len(FACADE_COLOURS))] * rng.uniform(0.75, 1.15)
            params = (floor_h, gf_h, win_sp, win_w, win_h, shop, lit,
                      float(rng.uniform(0.0, win_sp)))
            inner = front - outward * (setback + depth)
            outer = front - outward * setback
            lo_c, hi_c = min(inner, outer), max(inner, outer)
            if axis == 0:
                pb.box((a, lo_c, 0.0), (a + w, hi_c, height), MAT_BUILDING, col, params,
                       key=int(rng.integers(1 << 30)))
            else:
                pb.box((lo_c, a, 0.0), (hi_c, a + w, height), MAT_BUILDING, col, params,
                       key=int(rng.integers(1 << 30)))
            max_depth = max(max_depth, setback + depth)
            a += w
        return max_depth

    def _segment_range(self, axis: int, seg: int) -> Tuple[float, float]:
        """Along-street range of a street segment between two crossings (curb to curb)."""
        sp = self.grid.spacing[1 - axis]
        lo = seg * sp + self.grid.street(1 - axis, seg).road_hw
        hi = (seg + 1) * sp - self.grid.street(1 - axis, seg + 1).road_hw
        return lo, hi

    def _street_furniture(self, pb: PrimBuilder, lamp_rows: List[tuple], axis: int, idx: int,
                          seg: int) -> None:
        spec: StreetSpec = self.grid.street(axis, idx)
        rng = np.random.default_rng([self.seed, 401, axis, idx + (1 << 20), seg + (1 << 20)])
        line = self.grid.line(axis, idx)
        lo, hi = self._segment_range(axis, seg)
        sp = self.grid.spacing[1 - axis]
        # keep furniture off the crossing zones (crosswalks, turning arcs)
        a_lo = seg * sp + self.grid.street(1 - axis, seg).outer + 2.0
        a_hi = (seg + 1) * sp - self.grid.street(1 - axis, seg + 1).outer - 2.0
        if a_hi - a_lo < 5.0:
            return
        lamp_col = LAMP_COLOURS[spec.lamp_color]
        for side in (1.0, -1.0):
            # street lamps near the curb, arm over the road
            lamps_along = []
            a = a_lo + float(rng.uniform(0.0, spec.lamp_spacing))
            while a < a_hi:
                lamps_along.append(a)
                h = float(rng.uniform(6.5, 8.5))
                c_pole = side * (spec.road_hw + 0.6)
                c_head = side * (spec.road_hw + 0.6 - 1.7)
                key = int(rng.integers(1 << 30))
                px, py = _street_xy(axis, line, a, c_pole)
                pb.box((px - 0.09, py - 0.09, 0.0), (px + 0.09, py + 0.09, h), MAT_POLE,
                       (0.22, 0.23, 0.24), key=key)
                hx, hy = _street_xy(axis, line, a, c_head)
                # arm from pole to head
                ax0, ay0 = min(px, hx), min(py, hy)
                ax1, ay1 = max(px, hx), max(py, hy)
                pb.box((ax0 - 0.05, ay0 - 0.05, h - 0.1), (ax1 + 0.05, ay1 + 0.05, h),
                       MAT_POLE, (0.22, 0.23, 0.24), key=key)
                on = rng.random() > 0.08
                ext = (0.35, 0.2) if axis == 0 else (0.2, 0.35)  # long along the arm
                pb.box((hx - ext[0], hy - ext[1], h - 0.28), (hx + ext[0], hy + ext[1], h - 0.1),
                       MAT_LAMP, (0.55, 0.55, 0.5), (1.0 if on else 0.0, spec.lamp_color), key=key)
                if on:
                    inten = lamp_col * LAMP_INTENSITY * float(rng.uniform(0.8, 1.2))
                    lamp_rows.append(((hx, hy, h - 0.3), (0.0, 0.0, -1.0),
                                      np.cos(np.radians(42.0)), np.cos(np.radians(68.0)),
                                      inten, 45.0))
                a += spec.lamp_spacing * float(rng.uniform(0.9, 1.1))
            lamps_along = np.asarray(lamps_along)
            # trees in the middle of wide pavements
            if spec.trees and spec.walk_w > 3.2:
                a = a_lo + float(rng.uniform(1.0, 8.0))
                while a < a_hi:
                    if lamps_along.size == 0 or np.min(np.abs(lamps_along - a)) > 3.0:
                        c = side * (spec.road_hw + 0.5 * spec.walk_w)
                        tx, ty = _street_xy(axis, line, a, c)
                        th = float(rng.uniform(2.2, 3.4))
                        rt = float(rng.uniform(0.12, 0.2))
                        key = int(rng.integers(1 << 30))
                        pb.box((tx - rt, ty - rt, 0.0), (tx + rt, ty + rt, th + 0.8), MAT_TRUNK,
                               (0.11, 0.075, 0.05), key=key)
                        rxy = float(rng.uniform(1.3, min(2.4, spec.walk_w * 0.5 + 0.8)))
                        rz = float(rng.uniform(1.5, 2.8))
                        green = np.array([0.07, 0.13, 0.035]) * rng.uniform(0.7, 1.4)
                        pb.add(KIND_ELLIPSOID, (tx, ty, th + 0.7 * rz), (rxy, rxy * rng.uniform(0.85, 1.15), rz),
                               float(rng.uniform(0, np.pi)), MAT_FOLIAGE, green, key=key)
                    a += float(rng.uniform(7.0, 14.0))
            # small props along the building line
            a = a_lo + float(rng.uniform(2.0, 15.0))
            while a < a_hi:
                c = side * (spec.road_hw + spec.walk_w - 0.7)
                x, y = _street_xy(axis, line, a, c)
                kind = rng.integers(3)
                key = int(rng.integers(1 << 30))
                if kind == 0:    # bin
                    hx, hy, hz = 0.3, 0.3, 1.0
                    col = (0.05, 0.14, 0.06) if rng.random() < 0.5 else (0.18, 0.18, 0.18)
                elif kind == 1:  # utility cabinet
                    hx, hy, hz = (0.5, 0.25, 1.3) if axis == 1 else (0.25, 0.5, 1.3)
                    col = (0.3, 0.32, 0.3)
                else:            # crates / planter
                    hx, hy, hz = 0.5, 0.5, 0.7
                    col = tuple(rng.uniform(0.1, 0.45, 3))
                pb.box((x - hx, y - hy, 0.0), (x + hx, y + hy, hz), MAT_PROP, col, key=key)
                a += float(rng.uniform(8.0, 30.0))
            # parked cars (facing the traffic direction of that side)
            if spec.parking:
                c = side * spec.parking_offset
                if axis == 0:
                    yaw = np.pi / 2 if side > 0 else -np.pi / 2
                else:
                    yaw = np.pi if side > 0 else 0.0
                a = a_lo + float(rng.uniform(0.0, 3.0))
                while a + 6.0 < a_hi:
                    slot = float(rng.uniform(5.6, 7.0))
                    if rng.random() < self.cfg.parked_density:
                        kind = 1 if rng.random() < 0.12 else 0
                        length = float(rng.uniform(3.9, 4.9)) if kind == 0 else \
                            float(rng.uniform(4.8, 5.6))
                        width = float(rng.uniform(1.72, 1.9)) if kind == 0 else 1.98
                        col = CAR_COLOURS[rng.choice(len(CAR_COLOURS), p=CAR_COLOUR_P)] * \
                            rng.uniform(0.85, 1.1)
                        x, y = _street_xy(axis, line, a + slot / 2, c)
                        add_vehicle(pb, x, y, yaw, length, width, kind, col,
                                    int(rng.integers(1 << 30)))
                    a += slot

    # ------------------------------------------------------------------ traffic
    def _build_traffic(self) -> None:
        cfg = self.cfg
        rng = np.random.default_rng([self.seed, 501])
        lines: Dict[Tuple[int, int], List[Tuple[float, float]]] = {}
        for axis, idx, seg in self.segments:
            lo, hi = self._segment_range(axis, seg)
            lines.setdefault((axis, idx), []).append((lo, hi))
        t_s = np.arange(0.0, self.duration + 3.0, 0.05)
        ex, ey, _, _ = self.ego.path_pose(self.ego.s_at(t_s))
        if self.lead is not None:
            lead_xy = np.array([self.lead.state(float(t))[:2] for t in t_s])
        cars: List[Car] = []
        for (axis, idx), ranges in sorted(lines.items()):
            spec = self.grid.street(axis, idx)
            lo = min(r[0] for r in ranges) - 30.0
            hi = max(r[1] for r in ranges) + 30.0
            length = hi - lo
            line = self.grid.line(axis, idx)
            for direction in (1.0, -1.0):
                for lane in range(spec.lanes):
                    # right-hand traffic: "right of heading" is +across for axis 0 heading +,
                    # and -across for axis 1 heading +
                    right = direction if axis == 0 else -direction
                    across = right * (lane + 0.5) * spec.lane_w
                    speed = float(rng.uniform(6.0, 13.0))
                    mean_n = cfg.traffic_density * length / 100.0 / (2 * spec.lanes)
                    n = int(rng.poisson(mean_n))
                    if n == 0:
                        continue
                    gaps = 10.0 + rng.exponential(max(length / n - 10.0, 1.0), n)
                    pos = lo + np.cumsum(gaps) * (length / max(gaps.sum(), length))
                    for a0 in pos:
                        kind = 1 if rng.random() < 0.12 else 0
                        car = Car(axis=axis, line=line, across=across, direction=direction,
                                  speed=speed, a0=float(a0), lo=lo, hi=hi,
                                  length=float(rng.uniform(3.9, 4.9)) if kind == 0 else
                                  float(rng.uniform(4.8, 5.8)),
                                  width=float(rng.uniform(1.72, 1.9)) if kind == 0 else 1.98,
                                  kind=kind,
                                  colour=CAR_COLOURS[rng.choice(len(CAR_COLOURS), p=CAR_COLOUR_P)]
                                  * rng.uniform(0.85, 1.1), key=int(rng.integers(1 << 30)))
                        cx, cy = car.xy(t_s)
                        hx = car.length / 2 if axis == 1 else car.width / 2
                        hy = car.width / 2 if axis == 1 else car.length / 2
                        dx = np.maximum(np.abs(ex - cx) - hx, 0.0)
                        dy = np.maximum(np.abs(ey - cy) - hy, 0.0)
                        if np.min(np.hypot(dx, dy)) < 1.6:
                            continue
                        if self.lead is not None:
                            dxl = np.maximum(np.abs(lead_xy[:, 0] - cx) - hx, 0.0)
                            dyl = np.maximum(np.abs(lead_xy[:, 1] - cy) - hy, 0.0)
                            if np.min(np.hypot(dxl, dyl)) < 3.2:
                                continue
                        cars.append(car)
        self.cars = cars

    # ------------------------------------------------------------------ per-frame state
    def dynamic(self, t: float, cam_xy: np.ndarray, radius: float
                ) -> Tuple[Prims, Lights, np.ndarray, np.ndarray]:
        """Moving objects at time ``t`` near ``cam_xy``.

        Returns:
            ``(prims, headlights, obj_speed, obj_velocity)``: primitives with ``obj`` ids
            indexing ``obj_speed`` (m/s) and ``obj_velocity`` ``[n_obj, 3]`` (world m/s).
        """
        pb = PrimBuilder()
        rows: List[tuple] = []
        speeds: List[float] = []
        vels: List[np.ndarray] = []
        for car in self.cars:
            x, y = (float(v) for v in car.xy(t))
            if np.hypot(x - cam_xy[0], y - cam_xy[1]) > radius:
                continue
            oid = len(speeds)
            yaw = car.yaw
            add_vehicle(pb, x, y, yaw, car.length, car.width, car.kind, car.colour, car.key,
                        obj=oid, lights_on=True)
            fwd = np.array([np.cos(yaw), np.sin(yaw), 0.0])
            speeds.append(car.speed)
            vels.append(fwd * car.speed)
            rows.append(self._headlight(x, y, fwd, car.length))
        if self.lead is not None:
            x, y, yaw, spd = self.lead.state(t)
            if np.hypot(x - cam_xy[0], y - cam_xy[1]) <= radius:
                oid = len(speeds)
                fwd = np.array([np.cos(yaw), np.sin(yaw), 0.0])
                add_vehicle(pb, x, y, yaw, self.lead.length, self.lead_width, 0,
                            self.lead_colour, 77 + self.seed, obj=oid, lights_on=True)
                speeds.append(spd)
                vels.append(fwd * spd)
                rows.append(self._headlight(x, y, fwd, self.lead.length))
        return (pb.build(), Lights.from_rows(rows), np.asarray(speeds, np.float64),
                np.asarray(vels, np.float64).reshape(-1, 3))

    @staticmethod
    def _headlight(x: float, y: float, fwd: np.ndarray, length: float) -> tuple:
        p = (x + fwd[0] * (length / 2 + 0.05), y + fwd[1] * (length / 2 + 0.05), 0.68)
        d = (fwd[0], fwd[1], -0.04)
        # dipped beam: sharp cut-off a little above the lamp height
        return (p, d, np.cos(np.radians(10.0)), np.cos(np.radians(26.0)),
                np.array([1.0, 0.96, 0.88]) * HEADLIGHT_INTENSITY, 60.0, 1.3)
