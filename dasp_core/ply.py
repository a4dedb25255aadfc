"""Point clouds to PLY files (binary little-endian), readable by MeshLab, CloudCompare, Open3D.

Points are metres in the camera optical frame (x right, y down, z forward, REP 103).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import numpy as np


def write_ply(path: str | Path, points: np.ndarray, colors: Optional[np.ndarray] = None) -> Path:
    """Write ``points`` float ``[N, 3]`` (metres) and optional ``colors`` uint8 ``[N, 3]`` RGB.

    Non-finite points are dropped (PLY has no notion of invalid). Returns the path.
    """
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    keep = np.isfinite(pts).all(axis=1)
    pts = pts[keep]
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        cols = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)[keep]
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    rec = np.empty(len(pts), dtype=fields)
    rec["x"], rec["y"], rec["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    if colors is not None:
        rec["red"], rec["green"], rec["blue"] = cols[:, 0], cols[:, 1], cols[:, 2]
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(pts)}",
              "property float x", "property float y", "property float z"]
    if colors is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header.append("end_header")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(rec.tobytes())
    return path


def read_ply(path: str | Path) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Read a PLY written by :func:`write_ply` → (points ``[N, 3]`` float32, colors or None)."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    if header[1] != "format binary_little_endian 1.0":
        raise ValueError(f"{path}: only binary little-endian PLY is supported")
    n = int(next(h for h in header if h.startswith("element vertex")).split()[-1])
    has_color = any(h.endswith(" red") for h in header)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if has_color:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    rec = np.frombuffer(data, dtype=fields, count=n, offset=end)
    pts = np.stack([rec["x"], rec["y"], rec["z"]], axis=1)
    cols = np.stack([rec["red"], rec["green"], rec["blue"]], axis=1) if has_color else None
    return pts, cols
