"""The camera's drive: a route through the street grid, a speed profile, 6-DoF camera poses.

* Route: lane centre lines joined by circular arcs at turns (analytic: straight segments and
  arcs, so positions and headings are exact functions of the arc length ``s``), plus a slow
  lateral wander inside the lane.
* Speed: a simple driver model integrated at 100 Hz — cruise speed per street in
  ``[min_speed, max_speed]``, lateral-acceleration limits in turns, stops at some intersections.
* Body motion: pitch from longitudinal acceleration (nose dives when braking), roll from
  lateral acceleration, small road-induced pitch/roll/bounce oscillations.

Frames: world is ENU (z up). ``base_link`` is the vehicle frame (x forward, y left, z up) on
the road below the camera; the camera is ``camera_height`` above it, tilted down by
``camera_pitch_deg``, in the REP 103 optical frame (z forward, x right, y down).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple

import numpy as np

from dasp_core.data.synthetic.config import SyntheticConfig
from dasp_core.data.synthetic.grid import StreetGrid

# camera optical axes expressed in the body frame (columns): x_c = -y_b, y_c = -z_b, z_c = x_b
R_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0],
                           [-1.0, 0.0, 0.0],
                           [0.0, -1.0, 0.0]])

A_LAT = 2.2       # m/s², comfortable lateral acceleration in turns (ours)
B_COMF = 2.0      # m/s², planned braking
A_MAX = 1.8       # m/s², maximum acceleration
B_MAX = 4.0       # m/s², maximum braking
SIM_DT = 0.01     # s, driver-model integration step


def rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def make_T(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


def camera_mount(cfg: SyntheticConfig) -> np.ndarray:
    """``T_base_cam`` ``[4, 4]``: optical frame ``camera_height`` above ``base_link``, tilted
    down by ``camera_pitch_deg``."""
    return make_T(rot_y(np.radians(cfg.camera_pitch_deg)) @ R_BODY_OPTICAL,
                  np.array([0.0, 0.0, cfg.camera_height]))


@dataclass
class Route:
    """Analytic path: segments (straight or arc) with cumulative arc length.

    Arrays (one row per segment): ``x0, y0, th0`` start pose, ``length``, ``k`` curvature
    (1/m, positive = left turn), ``s0`` cumulative start. ``arcs``: ``(s_start, s_end, radius)``
    of every turn; ``stops``: ``(s_stop, wait_s)``; ``legs``: ``(s_start, cruise_speed)``.
    """

    x0: np.ndarray
    y0: np.ndarray
    th0: np.ndarray
    length: np.ndarray
    k: np.ndarray
    s0: np.ndarray
    arcs: List[Tuple[float, float, float]] = field(default_factory=list)
    stops: List[Tuple[float, float]] = field(default_factory=list)
    legs: List[Tuple[float, float]] = field(default_factory=list)

    @property
    def total_length(self) -> float:
        return float(self.s0[-1] + self.length[-1])

    def eval(self, s: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Centre-line pose at arc lengths ``s``: ``(x, y, heading, curvature)`` arrays."""
        s = np.clip(np.asarray(s, float), 0.0, self.total_length)
        i = np.clip(np.searchsorted(self.s0, s, side="right") - 1, 0, len(self.s0) - 1)
        u = s - self.s0[i]
        th0, k = self.th0[i], self.k[i]
        th = th0 + k * u
        straight = np.abs(k) < 1e-12
        ks = np.where(straight, 1.0, k)
        x = np.where(straight, self.x0[i] + u * np.cos(th0),
                     self.x0[i] + (np.sin(th) - np.sin(th0)) / ks)
        y = np.where(straight, self.y0[i] + u * np.sin(th0),
                     self.y0[i] - (np.cos(th) - np.cos(th0)) / ks)
        return x, y, th, k


def plan_route(grid: StreetGrid, rng: np.random.Generator, min_length: float,
               cfg: SyntheticConfig) -> Route:
    """Random drive through the grid of at least ``min_length`` metres (ours).

    Starts mid-block on a random street, in the rightmost lane; at each intersection goes
    straight or turns (``cfg.turn_probability``, left/right equally), and may stop before it.
    """
    axis = int(rng.integers(2))
    sgn = 1.0 if rng.random() < 0.5 else -1.0
    street_idx = int(rng.integers(-3, 4))
    h = np.array([0.0, sgn]) if axis == 0 else np.array([sgn, 0.0])
    r = np.array([h[1], -h[0]])  # right of heading
    spec = grid.street(axis, street_idx)
    a = spec.ego_offset
    along0 = float(rng.uniform(0.25, 0.6)) * grid.spacing[1 - axis] + \
        int(rng.integers(-3, 4)) * grid.spacing[1 - axis]
    centre = np.zeros(2)
    centre[1 - axis] = along0  # coordinate along the street
    centre[axis] = grid.line(axis, street_idx)
    P = centre + a * r

    segs: List[Tuple[float, float, float, float, float]] = []  # x0, y0, th0, length, k
    arcs, stops, legs = [], [], []
    s = 0.0
    legs.append((0.0, float(rng.uniform(cfg.min_speed, cfg.max_speed))))

    def heading_angle(v: np.ndarray) -> float:
        return float(np.arctan2(v[1], v[0]))

    while s < min_length:
        # the crossing street is perpendicular: its axis is the one we are *not* driving along
        cross_axis = 1 - axis
        # we move along world coordinate 1 - axis; crossing streets sit at multiples of sp
        coord = P[1 - axis]
        step = h[1 - axis]
        sp = grid.spacing[1 - axis]
        if step > 0:
            ci = int(np.floor(coord / sp + 1e-9)) + 1
        else:
            ci = int(np.ceil(coord / sp - 1e-9)) - 1
        C = np.zeros(2)
        C[1 - axis] = ci * sp
        C[axis] = grid.line(axis, street_idx)
        cross = grid.street(cross_axis, ci)
        D = float((C - P) @ h)  # distance to the crossing centre along the lane

        u = rng.random()
        turn = 0
        if u < cfg.turn_probability:
            turn = 1 if rng.random() < 0.5 else -1  # +1 left, -1 right
        b = cross.ego_offset
        if turn == -1:
            h_out = r.copy()
            R = min(float(rng.uniform(5.0, 8.0)), cross.road_hw + cross.walk_w + 1.0 - b)
            X = C + a * r - b * h
            along_A = -(b + R)
            k = -1.0 / R
        elif turn == 1:
            h_out = -r
            R = min(float(rng.uniform(9.0, 14.0)), b + cross.road_hw + cross.walk_w + 1.0)
            X = C + a * r + b * h
            along_A = b - R
            k = 1.0 / R
        if turn != 0 and D + along_A < 2.0:
            turn = 0

        # stop line before the crossing (ours: behind the crosswalk)
        if rng.random() < cfg.stop_probability:
            d_stop = cross.road_hw + 0.6 * cross.walk_w + 1.5
            s_stop = s + max(1.0, D - d_stop)
            stops.append((s_stop, float(rng.uniform(1.0, 4.0))))

        th = heading_angle(h)
        if turn == 0:
            segs.append((P[0], P[1], th, D, 0.0))
            s += D
            P = C + a * r
        else:
            L1 = D + along_A
            segs.append((P[0], P[1], th, L1, 0.0))
            A = P + L1 * h
            arc_len = R * np.pi / 2.0
            segs.append((A[0], A[1], th, arc_len, k))
            arcs.append((s + L1, s + L1 + arc_len, R))
            s += L1 + arc_len
            P = X + R * h_out
            h = h_out
            r = np.array([h[1], -h[0]])
            axis, street_idx = cross_axis, ci
            a = b
            legs.append((s, float(rng.uniform(cfg.min_speed, cfg.max_speed))))
    # a final straight so that evaluation past the last turn stays on a street
    segs.append((P[0], P[1], heading_angle(h), 200.0, 0.0))
    arr = np.asarray(segs, float)
    s0 = np.concatenate([[0.0], np.cumsum(arr[:-1, 3])])
    return Route(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4], s0, arcs, stops, legs)


class EgoMotion:
    """Speed profile and camera poses of one drive.

    Args:
        route: the path.
        rng: generator for the driver model and body oscillations.
        duration: seconds to simulate (must cover every frame time plus margins).
        cfg: configuration (speeds, camera mount).
    """

    def __init__(self, route: Route, rng: np.random.Generator, duration: float,
                 cfg: SyntheticConfig):
        self.route = route
        self.cfg = cfg
        # lane wander (two sines) and body oscillations (sums of sines of time)
        self._wander = [(float(rng.uniform(0.06, 0.15)), float(rng.uniform(50, 90)),
                         float(rng.uniform(0, 2 * np.pi))),
                        (float(rng.uniform(0.02, 0.05)), float(rng.uniform(15, 30)),
                         float(rng.uniform(0, 2 * np.pi)))]
        self._osc = {name: [(float(rng.uniform(*amp)), float(rng.uniform(0.7, 3.0)),
                             float(rng.uniform(0, 2 * np.pi))) for _ in range(3)]
                     for name, amp in (("pitch", (0.0008, 0.0025)), ("roll", (0.0005, 0.0015)),
                                       ("bob", (0.002, 0.006)))}
        self.T_base_cam = camera_mount(cfg)
        self._simulate(rng, duration)

    # ------------------------------------------------------------------ driver model
    def _simulate(self, rng: np.random.Generator, duration: float) -> None:
        cfg, route = self.cfg, self.route
        n = int(np.ceil(duration / SIM_DT)) + 2
        ts = np.arange(n) * SIM_DT
        ss = np.zeros(n)
        vs = np.zeros(n)
        acc = np.zeros(n)
        v = min(float(route.legs[0][1]), cfg.max_speed - 0.15) if rng.random() < 0.8 else 0.0
        s = 0.0
        stops = list(route.stops)
        legs_s = np.array([l[0] for l in route.legs])
        legs_v = np.array([l[1] for l in route.legs])
        arcs = route.arcs
        waiting = 0.0
        self.stop_times: List[Tuple[float, float]] = []  # (t_brake_start, t_go)
        self.brake_starts: List[float] = []
        braking_for = None
        for i in range(n):
            ss[i], vs[i] = s, v
            if waiting > 0.0:
                waiting -= SIM_DT
                acc[i] = 0.0
                if waiting <= 0.0:
                    self.stop_times.append((braking_for, ts[i]))
                    braking_for = None
                continue
            leg = int(np.searchsorted(legs_s, s, side="right") - 1)
            # margin: body pitch/roll add a few cm/s at the camera, which must stay <= max_speed
            lim = min(float(legs_v[max(leg, 0)]), cfg.max_speed - 0.15)
            for sa, sb, R in arcs:
                vc = np.sqrt(A_LAT * R)
                if s < sa:
                    lim = min(lim, np.sqrt(vc * vc + 2.0 * B_COMF * (sa - s)))
                elif s <= sb:
                    lim = min(lim, vc)
                if sa > s + 200.0:
                    break
            if stops:
                s_stop, wait = stops[0]
                dist = s_stop - s
                lim_stop = np.sqrt(max(0.0, 2.0 * B_COMF * dist))
                if lim_stop < lim and braking_for is None:
                    braking_for = ts[i]
                    self.brake_starts.append(float(ts[i]))
                lim = min(lim, lim_stop)
                if dist < 0.6 and v < 0.3:
                    v = 0.0
                    waiting = wait
                    stops.pop(0)
                    vs[i] = 0.0
                    continue
            a = float(np.clip(2.0 * (lim - v), -B_MAX, A_MAX))
            acc[i] = a
            v = max(0.0, v + a * SIM_DT)
            s += v * SIM_DT
        self.ts, self.ss, self.vs = ts, ss, vs
        # low-pass filtered acceleration drives the body pitch (suspension lag ~0.3 s)
        alpha = SIM_DT / 0.3
        af = np.zeros(n)
        for i in range(1, n):
            af[i] = af[i - 1] + alpha * (acc[i] - af[i - 1])
        self.acc_filtered = af
        self.duration = float(ts[-1])

    # ------------------------------------------------------------------ poses
    def s_at(self, t: np.ndarray | float) -> np.ndarray:
        """Arc length (m) at time ``t`` (s)."""
        return np.interp(t, self.ts, self.ss)

    def path_pose(self, s: np.ndarray | float) -> Tuple[np.ndarray, np.ndarray, np.ndarray,
                                                          np.ndarray]:
        """Lane-following pose at arc length ``s`` including the lateral wander:
        ``(x, y, yaw, curvature)``."""
        x, y, th, k = self.route.eval(np.asarray(s, float))
        off = np.zeros_like(x)
        doff = np.zeros_like(x)
        for amp, lam, ph in self._wander:
            w = 2 * np.pi / lam
            off = off + amp * np.sin(w * s + ph)
            doff = doff + amp * w * np.cos(w * s + ph)
        # right vector of heading th is (sin th, -cos th)
        x = x + off * np.sin(th)
        y = y - off * np.cos(th)
        yaw = th - np.arctan(doff)
        return x, y, yaw, k

    def _osc_sum(self, name: str, t: float) -> float:
        return float(sum(a * np.sin(2 * np.pi * f * t + p) for a, f, p in self._osc[name]))

    def base_pose(self, t: float) -> np.ndarray:
        """``T_world_base`` ``[4, 4]`` at time ``t``."""
        s = float(self.s_at(t))
        x, y, yaw, k = (float(v) for v in self.path_pose(s))
        v = float(np.interp(t, self.ts, self.vs))
        a = float(np.interp(t, self.ts, self.acc_filtered))
        pitch = -0.005 * a + self._osc_sum("pitch", t)
        roll = 0.006 * v * v * k + self._osc_sum("roll", t)
        z = self._osc_sum("bob", t)
        R = rot_z(yaw) @ rot_y(pitch) @ rot_x(roll)
        return make_T(R, np.array([x, y, z]))

    def camera_pose(self, t: float) -> np.ndarray:
        """``T_world_cam`` ``[4, 4]`` (REP 103 optical frame) at time ``t``."""
        return self.base_pose(t) @ self.T_base_cam

    def camera_speed(self, t: float, h: float = 1e-3) -> float:
        """Speed of the optical centre (m/s), central difference of :meth:`camera_pose`."""
        p1 = self.camera_pose(t + h)[:3, 3]
        p0 = self.camera_pose(t - h)[:3, 3]
        return float(np.linalg.norm(p1 - p0) / (2 * h))

    def path_speed(self, t: float) -> float:
        return float(np.interp(t, self.ts, self.vs))

    def route_points(self, step: float = 5.0) -> np.ndarray:
        """``[M, 2]`` points along the driven part of the route (for region culling)."""
        s_end = float(self.ss[-1]) + 60.0
        s = np.arange(0.0, s_end + step, step)
        x, y, _, _ = self.route.eval(s)
        return np.stack([x, y], axis=1)


class LeadCar:
    """A car driving ahead in the camera's lane (ours).

    It keeps a speed-dependent gap (``g0 + headway * v``); when the camera brakes for a stop
    the lead car does not stop but drives on through the intersection at its speed, as
    a car ahead at a green light would, and disappears.
    """

    def __init__(self, ego: EgoMotion, rng: np.random.Generator):
        self.ego = ego
        self.g0 = float(rng.uniform(7.0, 11.0))
        self.headway = float(rng.uniform(0.7, 1.4))
        self.t_leave = ego.brake_starts[0] if ego.brake_starts else np.inf
        self.length = float(rng.uniform(4.0, 4.8))

    def s_at(self, t: float) -> float:
        ego = self.ego
        if t <= self.t_leave:
            return float(ego.s_at(t) + self.g0 + self.headway * np.interp(t, ego.ts, ego.vs))
        s_l = float(ego.s_at(self.t_leave) + self.g0 +
                    self.headway * np.interp(self.t_leave, ego.ts, ego.vs))
        v_l = float(np.interp(self.t_leave, ego.ts, ego.vs))
        return s_l + max(v_l, 6.0) * (t - self.t_leave)

    def state(self, t: float) -> Tuple[float, float, float, float]:
        """``(x, y, yaw, speed)`` of the car's centre at time ``t``."""
        s = self.s_at(t)
        x, y, yaw, _ = (float(v) for v in self.ego.path_pose(s))
        h = 1e-3
        speed = abs(self.s_at(t + h) - self.s_at(t - h)) / (2 * h)
        return x, y, yaw, speed
