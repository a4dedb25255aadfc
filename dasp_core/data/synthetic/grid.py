"""The street grid: a Manhattan city whose every street has its own width, lanes and furniture.

Streets with ``axis = 0`` run along world y at ``x = index * bx``; streets with ``axis = 1`` run
along world x at ``y = index * by``. A street's cross-section, from its centre line outwards on
each side: ``lanes`` driving lanes of ``lane_w``, a parking lane (or a gutter), a curb, then the
pavement of width ``walk_w``. Right-hand traffic.

Everything is a deterministic function of the seed and the street index, so the city is
unbounded and any part of it can be generated on demand.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, Tuple

import numpy as np

PARKING_W = 2.2
GUTTER_W = 0.4


@dataclass(frozen=True)
class StreetSpec:
    """Cross-section and furniture of one street (metres)."""

    lanes: int           # driving lanes per direction
    lane_w: float
    parking: bool        # parking lane on both sides
    road_hw: float       # half width of the carriageway (centre line to curb)
    walk_w: float        # pavement width
    yellow_centre: bool  # centre line colour
    trees: bool
    lamp_color: int      # 0 sodium (orange), 1 LED (cold white)
    lamp_spacing: float

    @property
    def ego_offset(self) -> float:
        """Lateral offset of the rightmost driving lane's centre from the street centre."""
        return (self.lanes - 0.5) * self.lane_w

    @property
    def parking_offset(self) -> float:
        """Lateral offset of the parking lane's centre."""
        return self.lanes * self.lane_w + 0.5 * PARKING_W

    @property
    def outer(self) -> float:
        """Half width of the whole street corridor (centre line to building line)."""
        return self.road_hw + self.walk_w


class StreetGrid:
    """Street layout of one world (seeded).

    Args:
        seed: world seed.
    """

    def __init__(self, seed: int):
        self.seed = int(seed)
        rng = np.random.default_rng([self.seed, 101])
        self.spacing = (float(rng.uniform(80.0, 115.0)), float(rng.uniform(80.0, 115.0)))

    @property
    def bx(self) -> float:
        return self.spacing[0]

    @property
    def by(self) -> float:
        return self.spacing[1]

    def street(self, axis: int, index: int) -> StreetSpec:
        """The street ``index`` of ``axis`` (0: along y at x = index*bx; 1: along x)."""
        return _street_spec(self.seed, int(axis), int(index))

    def line(self, axis: int, index: int) -> float:
        """Coordinate of the street's centre line (x for axis 0, y for axis 1)."""
        return index * self.spacing[axis]

    def table(self, axis: int, i0: int, i1: int) -> Dict[str, np.ndarray]:
        """Vectorised specs of streets ``i0..i1`` (inclusive) for per-pixel lookups.

        Returns float32 arrays ``road_hw, walk_w, lanes, lane_w, parking, yellow`` indexed by
        ``index - i0``.
        """
        specs = [self.street(axis, i) for i in range(i0, i1 + 1)]
        return {
            "road_hw": np.array([s.road_hw for s in specs], np.float32),
            "walk_w": np.array([s.walk_w for s in specs], np.float32),
            "lanes": np.array([s.lanes for s in specs], np.float32),
            "lane_w": np.array([s.lane_w for s in specs], np.float32),
            "parking": np.array([s.parking for s in specs], np.float32),
            "yellow": np.array([s.yellow_centre for s in specs], np.float32),
        }

    def nearest_index(self, axis: int, coord: float) -> int:
        return int(np.round(coord / self.spacing[axis]))

    def block_interior(self, i: int, j: int) -> Tuple[float, float, float, float]:
        """Building-line rectangle ``(x0, y0, x1, y1)`` of the block between vertical streets
        i, i+1 and horizontal streets j, j+1."""
        x0 = self.line(0, i) + self.street(0, i).outer
        x1 = self.line(0, i + 1) - self.street(0, i + 1).outer
        y0 = self.line(1, j) + self.street(1, j).outer
        y1 = self.line(1, j + 1) - self.street(1, j + 1).outer
        return x0, y0, x1, y1


@lru_cache(maxsize=65536)
def _street_spec(seed: int, axis: int, index: int) -> StreetSpec:
    rng = np.random.default_rng([seed, 102, axis, index + (1 << 20)])
    lanes = int(rng.choice([1, 2], p=[0.55, 0.45]))
    lane_w = float(rng.uniform(3.0, 3.5))
    parking = bool(rng.random() < 0.75)
    road_hw = lanes * lane_w + (PARKING_W if parking else GUTTER_W)
    walk_w = float(rng.uniform(2.8, 5.5))
    return StreetSpec(lanes=lanes, lane_w=lane_w, parking=parking, road_hw=road_hw,
                      walk_w=walk_w, yellow_centre=bool(rng.random() < 0.3),
                      trees=bool(rng.random() < 0.55), lamp_color=int(rng.random() < 0.45),
                      lamp_spacing=float(rng.uniform(22.0, 32.0)))
