"""Configuration of the synthetic driving world (one dataclass, validated).

Units: metres, seconds, degrees where the name says ``_deg``. Light intensities are in
"exposure units": a Lambertian surface of albedo ``a`` receiving irradiance ``E`` appears with
linear value ``a * E`` before the sensor model (1.0 = sensor white level).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Tuple

import numpy as np

from dasp_core.errors import ConfigError, check_range

DOMAINS = ("day", "night")


@dataclass
class SyntheticConfig:
    """Every knob of the synthetic world, renderer and sensor.

    Geometry / camera:
        height, width: image size in pixels.
        fps: frame rate (Hz); ``dt = 1 / fps``.
        hfov_deg: horizontal field of view; square pixels, principal point at the image centre.
        camera_height: optical centre above the road at rest (m).
        camera_pitch_deg: mount tilt, positive looks down (ours: 1.5° like a windscreen camera).
        max_depth: rays hitting nothing closer than this are "sky": depth 0 and fog colour.
    Driving:
        min_speed, max_speed: range of cruise speeds (m/s); turns and stops go slower.
        stop_probability: chance of stopping (1–4 s) at an intersection.
        turn_probability: chance of turning (left or right) at an intersection.
        lead_car_probability: chance that a car drives ahead of the camera in its lane.
        traffic_density: moving cars per 100 m of street (both directions together).
        parked_density: probability that a parking slot holds a car.
    Rendering:
        shadows: sun shadows by day (static shadow map + moving-car ground shadows).
        motion_blur: blur moving-car pixels along their image motion during the exposure.
        bloom: glare around bright pixels.
        noise: sensor noise (shot + read + row noise); off gives clean images (tests).
        day_exposure_s, night_exposure_s: exposure times (motion-blur length).
        day_full_well, night_full_well: electrons at the white level (lower = noisier: night
            images run at high gain).
        day_read_noise, night_read_noise: read noise as a fraction of the white level.
        wet_road_probability: chance that a night sequence has a wet, mirror-like road.
    """

    height: int = 192
    width: int = 640
    fps: float = 10.0
    hfov_deg: float = 80.0
    camera_height: float = 1.55
    camera_pitch_deg: float = 1.5
    max_depth: float = 200.0
    min_speed: float = 5.0
    max_speed: float = 15.0
    stop_probability: float = 0.3
    turn_probability: float = 0.4
    lead_car_probability: float = 0.5
    traffic_density: float = 2.5
    parked_density: float = 0.6
    shadows: bool = True
    motion_blur: bool = True
    bloom: bool = True
    noise: bool = True
    day_exposure_s: float = 0.004
    night_exposure_s: float = 0.03
    day_full_well: float = 6000.0
    night_full_well: float = 300.0
    day_read_noise: float = 0.0015
    night_read_noise: float = 0.006
    wet_road_probability: float = 0.4

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ validation / io
    def validate(self) -> "SyntheticConfig":
        """Raise :class:`~dasp_core.errors.ConfigError` naming the first invalid field."""
        for key in ("height", "width"):
            v = getattr(self, key)
            if not isinstance(v, (int, np.integer)) or v < 16 or v > 4096:
                raise ConfigError(f"synthetic.{key}", v, "an integer in [16, 4096]")
        check_range("synthetic.fps", self.fps, 1.0, 120.0)
        check_range("synthetic.hfov_deg", self.hfov_deg, 20.0, 150.0)
        check_range("synthetic.camera_height", self.camera_height, 0.5, 4.0)
        check_range("synthetic.camera_pitch_deg", self.camera_pitch_deg, -20.0, 20.0)
        check_range("synthetic.max_depth", self.max_depth, 20.0, 1000.0)
        check_range("synthetic.min_speed", self.min_speed, 0.5, 30.0)
        check_range("synthetic.max_speed", self.max_speed, self.min_speed, 30.0)
        for key in ("stop_probability", "turn_probability", "lead_car_probability",
                    "parked_density", "wet_road_probability"):
            check_range(f"synthetic.{key}", getattr(self, key), 0.0, 1.0)
        check_range("synthetic.traffic_density", self.traffic_density, 0.0, 20.0)
        check_range("synthetic.day_exposure_s", self.day_exposure_s, 0.0, 0.2)
        check_range("synthetic.night_exposure_s", self.night_exposure_s, 0.0, 0.2)
        check_range("synthetic.day_full_well", self.day_full_well, 10.0, 1e6)
        check_range("synthetic.night_full_well", self.night_full_well, 10.0, 1e6)
        check_range("synthetic.day_read_noise", self.day_read_noise, 0.0, 0.2)
        check_range("synthetic.night_read_noise", self.night_read_noise, 0.0, 0.2)
        return self

    @property
    def dt(self) -> float:
        """Seconds between frames."""
        return 1.0 / self.fps

    @property
    def size(self) -> Tuple[int, int]:
        """``(height, width)``."""
        return int(self.height), int(self.width)

    def intrinsics(self) -> np.ndarray:
        """Pixel intrinsics ``float64 [3, 3]`` for ``height x width`` (pixel-centre convention:
        the principal point of a centred camera is ``((W - 1) / 2, (H - 1) / 2)``)."""
        f = 0.5 * self.width / np.tan(np.radians(self.hfov_deg) / 2.0)
        return np.array([[f, 0.0, (self.width - 1) / 2.0],
                         [0.0, f, (self.height - 1) / 2.0],
                         [0.0, 0.0, 1.0]])

    def replace(self, **changes: Any) -> "SyntheticConfig":
        """A validated copy with some fields changed (unknown names raise ConfigError)."""
        names = {f.name for f in dataclasses.fields(self)}
        for k in changes:
            if k not in names:
                raise ConfigError(f"synthetic.{k}", changes[k], sorted(names))
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "SyntheticConfig":
        """Build from a dict (e.g. YAML); unknown keys raise ConfigError naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        for k in d:
            if k not in names:
                raise ConfigError(f"synthetic.{k}", d[k], sorted(names))
        return cls(**d)


def check_domain(domain: str) -> str:
    """Return ``domain`` if it is ``"day"`` or ``"night"``, else raise ConfigError."""
    if domain not in DOMAINS:
        raise ConfigError("synthetic.domain", domain, DOMAINS)
    return domain
