"""nuScenes reader (torch-free, no nuscenes-devkit): JSON tables → camera clips → :class:`Clip`.

Reads the metadata tables of a nuScenes release directly::

    root/
      v1.0-trainval/  scene.json sample.json sample_data.json calibrated_sensor.json
                      ego_pose.json sensor.json log.json   (v1.0-mini / v1.0-test alike)
      samples/CAM_FRONT/*.jpg  samples/LIDAR_TOP/*.pcd.bin   (key frames, 2 Hz)
      sweeps/CAM_FRONT/*.jpg                                  (intermediate frames, ~12 Hz)

Clips are consecutive camera ``sample_data`` records of one channel following the tables'
``prev``/``next`` links (key frames and sweeps interleaved, as md4all does). Key frames carry
lidar ground truth: the ``LIDAR_TOP`` sweep of the same sample, moved
lidar → ego (lidar time) → global → ego (camera time) → camera with the calibrated-sensor
and ego-pose records, points with z > 1 m kept, nearest depth per pixel (the devkit's
``map_pointcloud_to_image`` chain with its 1-pixel border; RNW/md4all use it).

Day/night (paper protocol via RNW/md4all): a scene is night when its description contains
"night"; or RNW's split files (``{day,night}_{train,test}_split.txt``) pick scenes/frames and
give the domain. Images are resized to 768x384 (RNW), stretching 1600x900 as RNW does.

Quaternions in the tables are (w, x, y, z); translations metres; timestamps microseconds.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

import numpy as np

from dasp_core.data.augment import center_crop_clip, fit_clip
from dasp_core.data.folder import SampleError, clip_dt, read_image, read_list_file
from dasp_core.data.robotcar import points_to_depth_map, quaternion_to_so3
from dasp_core.data.sample import DOMAINS, Clip
from dasp_core.errors import ConfigError, DatasetError, check_choice, check_range

log = logging.getLogger(__name__)

__all__ = ["NUSCENES_TABLES", "CAMERA_CHANNELS", "load_tables", "transform_matrix",
           "read_lidar_points", "project_lidar_to_camera", "scene_domain", "NuScenesDataset"]

PathLike = Union[str, os.PathLike]

NUSCENES_TABLES = ("scene", "sample", "sample_data", "calibrated_sensor", "ego_pose", "sensor",
                   "log")
CAMERA_CHANNELS = ("CAM_FRONT", "CAM_FRONT_LEFT", "CAM_FRONT_RIGHT", "CAM_BACK",
                   "CAM_BACK_LEFT", "CAM_BACK_RIGHT")
_SD_FIELDS = ("token", "sample_token", "ego_pose_token", "calibrated_sensor_token", "timestamp",
              "is_key_frame", "filename", "prev", "next", "width", "height")


def transform_matrix(translation: Sequence[float], rotation_wxyz: Sequence[float]) -> np.ndarray:
    """Record (translation m, quaternion w x y z) → ``float64 [4, 4]`` child → parent."""
    T = np.eye(4)
    T[:3, :3] = quaternion_to_so3(np.asarray(rotation_wxyz, np.float64))
    T[:3, 3] = np.asarray(translation, np.float64)
    return T


def scene_domain(description: str) -> str:
    """``"night"`` if the scene description mentions night (RNW/md4all rule), else ``"day"``."""
    return "night" if "night" in (description or "").lower() else "day"


def load_tables(table_dir: PathLike, channels: Sequence[str],
                cache_dir: Optional[PathLike] = None) -> Dict[str, Any]:
    """Load the tables, keeping only ``sample_data`` rows of the given channels and the
    ``ego_pose`` rows they reference (both tables are large in trainval).

    Args:
        table_dir: the ``v1.0-*`` folder.
        channels: sensor channels to keep, e.g. ``("CAM_FRONT", "LIDAR_TOP")``.
        cache_dir: if given, the filtered ``sample_data``/``ego_pose`` are stored there (keyed
            by the table files' size and modification time) and reused by later runs.
    Returns:
        dict with ``scene``, ``sample``, ``calibrated_sensor``, ``ego_pose``, ``sensor``,
        ``log``, ``sample_data`` (token → record) and ``channel_of`` (calibrated_sensor token →
        channel).
    """
    table_dir = os.fspath(table_dir)
    missing = [t + ".json" for t in NUSCENES_TABLES
               if not os.path.isfile(os.path.join(table_dir, t + ".json"))]
    if missing:
        raise DatasetError(f"nuScenes tables {table_dir!r}: missing {', '.join(missing)} "
                           f"(expected {', '.join(t + '.json' for t in NUSCENES_TABLES)})")

    def load(name: str) -> List[Dict[str, Any]]:
        path = os.path.join(table_dir, name + ".json")
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"nuScenes table {path!r} is not readable JSON: {exc}") from exc
        if not isinstance(data, list):
            raise DatasetError(f"nuScenes table {path!r}: expected a JSON list of records")
        return data

    t0 = time.time()
    out: Dict[str, Any] = {}
    for name in ("scene", "sample", "calibrated_sensor", "sensor", "log"):
        out[name] = {r["token"]: r for r in load(name)}
    channel_of_sensor = {tok: r.get("channel", "") for tok, r in out["sensor"].items()}
    out["channel_of"] = {tok: channel_of_sensor.get(r.get("sensor_token"), "")
                         for tok, r in out["calibrated_sensor"].items()}

    cache_path = None
    if cache_dir is not None:
        sig = []
        for name in ("sample_data", "ego_pose", "calibrated_sensor", "sensor"):
            st = os.stat(os.path.join(table_dir, name + ".json"))
            sig.append(f"{st.st_size}-{st.st_mtime_ns}")
        key = "_".join([os.path.basename(os.path.normpath(table_dir)), "+".join(sorted(channels)),
                        *sig])
        cache_path = os.path.join(os.fspath(cache_dir), f"nuscenes_{key}.json")
        if os.path.isfile(cache_path):
            try:
                with open(cache_path, encoding="utf-8") as fh:
                    cached = json.load(fh)
                out["sample_data"], out["ego_pose"] = cached["sample_data"], cached["ego_pose"]
                log.info("nuScenes tables %s loaded in %.1f s (cache %s)", table_dir,
                         time.time() - t0, cache_path)
                return out
            except (OSError, ValueError, KeyError) as exc:
                log.warning("ignoring unreadable nuScenes cache %s (%s)", cache_path, exc)

    wanted = set(channels)
    sd: Dict[str, Dict[str, Any]] = {}
    for r in load("sample_data"):
        ch = out["channel_of"].get(r.get("calibrated_sensor_token"), "")
        if ch in wanted:
            rec = {k: r.get(k) for k in _SD_FIELDS}
            rec["channel"] = ch
            sd[r["token"]] = rec
    out["sample_data"] = sd
    needed = {r["ego_pose_token"] for r in sd.values()}
    out["ego_pose"] = {r["token"]: r for r in load("ego_pose") if r["token"] in needed}
    if cache_path is not None:
        try:
            os.makedirs(os.path.dirname(cache_path), exist_ok=True)
            tmp = cache_path + f".tmp{os.getpid()}"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump({"sample_data": sd, "ego_pose": out["ego_pose"]}, fh)
            os.replace(tmp, cache_path)
        except OSError as exc:
            log.warning("cannot write nuScenes cache %s (%s)", cache_path, exc)
    log.info("nuScenes tables %s loaded in %.1f s (%d scenes, %d %s records)", table_dir,
             time.time() - t0, len(out["scene"]), len(sd), "/".join(channels))
    return out


def read_lidar_points(path: PathLike) -> np.ndarray:
    """A nuScenes ``.pcd.bin`` (float32 x, y, z, intensity, ring) → ``float64 [3, N]`` xyz."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SampleError(path, "lidar file missing")
    nbytes = os.path.getsize(path)
    if nbytes == 0 or nbytes % 20:
        raise SampleError(path, f"{nbytes} bytes is not N x 5 float32 (x, y, z, intensity, ring);"
                                f" truncated or not a nuScenes lidar file")
    raw = np.fromfile(path, np.float32)
    return raw.reshape(-1, 5)[:, :3].T.astype(np.float64)


def project_lidar_to_camera(points_lidar: np.ndarray, T_ego_lidar: np.ndarray,
                            T_global_ego_lidar: np.ndarray, T_global_ego_cam: np.ndarray,
                            T_ego_cam: np.ndarray, K: np.ndarray, height: int, width: int,
                            min_dist: float = 1.0) -> np.ndarray:
    """Lidar points → sparse depth map of the camera (devkit ``map_pointcloud_to_image`` chain).

    Args:
        points_lidar: ``[3, N]`` metres in the lidar frame.
        T_ego_lidar, T_global_ego_lidar, T_global_ego_cam, T_ego_cam: ``[4, 4]`` sensor → parent
            transforms (calibrated_sensor and ego_pose records).
        K: ``[3, 3]`` camera intrinsics (pixels) for ``height x width``.
        min_dist: keep points with camera z > this (metres; devkit default 1.0).
    Returns:
        ``float32 [height, width]`` z-depth in metres, 0 invalid; the nearest point per pixel.
    """
    T_cam_lidar = (np.linalg.inv(T_ego_cam) @ np.linalg.inv(T_global_ego_cam)
                   @ T_global_ego_lidar @ T_ego_lidar)
    pts = T_cam_lidar[:3, :3] @ points_lidar + T_cam_lidar[:3, 3:4]
    z = pts[2]
    keep = z > min_dist
    pts = pts[:, keep]
    uvw = K @ pts
    u, v = uvw[0] / pts[2], uvw[1] / pts[2]
    # devkit border: 1 < u < W - 1, 1 < v < H - 1 (strict)
    inside = (u > 1) & (u < width - 1) & (v > 1) & (v < height - 1)
    return points_to_depth_map(pts[:, inside], K, height, width, min_depth=min_dist)


@dataclass
class _Item:
    tokens: Tuple[str, ...]   # camera sample_data tokens in offsets order
    scene: str
    domain: str


class NuScenesDataset:
    """nuScenes camera clips (torch-free; ``__getitem__ -> Clip``).

    Args:
        root: nuScenes root (contains ``v1.0-*/``, ``samples/``, ``sweeps/``).
        version: table folder name (``"v1.0-trainval"``, ``"v1.0-mini"``, ...); None picks the
            only one present.
        channel: camera channel (default ``CAM_FRONT``).
        domain: keep only ``"day"`` or ``"night"`` scenes (None: both). With ``split_file`` the
            listed scenes/frames are given this domain (RNW's files are per domain); without
            it, the scene description decides.
        split_file: RNW-style list of scene tokens/names, sample tokens, sample_data tokens or
            image file stems (one per line). Scenes select all their frames; the others select
            single targets.
        scenes: scene names or tokens to use (None: all).
        targets: ``"keyframes"`` (2 Hz, with ground truth), ``"all"`` (every frame) or
            ``"auto"`` (key frames when ``load_depth``, else all).
        offsets: clip offsets along the camera's prev/next chain, e.g. (-1, 0, 1).
        load_depth: project the key frame's LIDAR_TOP sweep into the target (key frames only).
        min_dist: lidar points closer than this (metres, camera z) are dropped (devkit: 1.0).
        min_speed: drop targets whose ego speed (m/s, from ego poses) is below this; 0 keeps all.
        crop_hw: optional centre crop ``(h, w)`` before resizing.
        size_hw: output size (paper/RNW: (384, 768)); None keeps 1600x900.
        resize_mode: ``"stretch"`` (RNW) or ``"center_crop"``.
        keep_full_depth: also keep the full-resolution ground truth in ``meta['depth_full']``
            (``meta['K_full']``): RNW evaluates at the ground truth's resolution.
        cache_dir: folder for a filtered copy of the large tables (faster later starts).
    """

    def __init__(self, root: PathLike, version: Optional[str] = None, channel: str = "CAM_FRONT",
                 domain: Optional[str] = None, split_file: Optional[PathLike] = None,
                 scenes: Optional[Sequence[str]] = None, targets: str = "auto",
                 offsets: Sequence[int] = (-1, 0, 1), load_depth: bool = False,
                 min_dist: float = 1.0, min_speed: float = 0.0,
                 crop_hw: Optional[Tuple[int, int]] = None,
                 size_hw: Optional[Tuple[int, int]] = (384, 768), resize_mode: str = "stretch",
                 keep_full_depth: bool = False, cache_dir: Optional[PathLike] = None):
        self.root = os.fspath(root)
        check_choice("channel", channel, CAMERA_CHANNELS)
        if domain is not None:
            check_choice("domain", domain, DOMAINS)
        check_choice("targets", targets, ("auto", "keyframes", "all"))
        check_choice("resize_mode", resize_mode, ("stretch", "center_crop"))
        check_range("min_dist", min_dist, 0.0)
        check_range("min_speed", min_speed, 0.0)
        self.channel = channel
        self.offsets = tuple(int(o) for o in offsets)
        if 0 not in self.offsets:
            raise ConfigError("offsets", self.offsets, "a tuple containing 0 (the target)")
        self.load_depth = bool(load_depth)
        self.min_dist = float(min_dist)
        self.crop_hw = None if crop_hw is None else (int(crop_hw[0]), int(crop_hw[1]))
        self.size_hw = None if size_hw is None else (int(size_hw[0]), int(size_hw[1]))
        self.resize_mode = resize_mode
        self.keep_full_depth = keep_full_depth
        if targets == "auto":
            targets = "keyframes" if self.load_depth else "all"
        self.targets = targets

        if not os.path.isdir(self.root):
            raise DatasetError(f"nuScenes root {self.root!r} does not exist")
        self.version = self._find_version(version)
        self.tables = load_tables(os.path.join(self.root, self.version), (channel, "LIDAR_TOP"),
                                  cache_dir)
        if not any(os.path.isdir(os.path.join(self.root, d)) for d in ("samples", "sweeps")):
            raise DatasetError(f"nuScenes root {self.root!r} has no samples/ or sweeps/ folder "
                               f"(the image and lidar files)")

        chains = self._camera_chains()
        self._lidar_of_sample = {r["sample_token"]: tok
                                 for tok, r in self.tables["sample_data"].items()
                                 if r["channel"] == "LIDAR_TOP" and r["is_key_frame"]}
        selection = self._selection(split_file, scenes)
        self.items: List[_Item] = []
        counts: Dict[str, int] = {"day": 0, "night": 0}
        slow = 0
        for scene_tok, chain in chains.items():
            scene = self.tables["scene"][scene_tok]
            dom = scene_domain(scene.get("description", ""))
            if split_file is not None and domain is not None:
                dom = domain
            if domain is not None and dom != domain:
                continue
            sel_all, sel_targets = selection(scene_tok, scene)
            if not sel_all and not sel_targets:
                continue
            lo, hi = -min(self.offsets), max(self.offsets)
            for j in range(lo, len(chain) - hi):
                tok = chain[j]
                rec = self.tables["sample_data"][tok]
                if not sel_all and not self._matches(tok, rec, sel_targets):
                    continue
                if self.targets == "keyframes" and not rec["is_key_frame"]:
                    continue
                if min_speed > 0 and self._ego_speed(chain, j) < min_speed:
                    slow += 1
                    continue
                self.items.append(_Item(tuple(chain[j + o] for o in self.offsets), scene_tok, dom))
                counts[dom] += 1
        log.info("nuScenes %s %s: %d clips (%d day, %d night)%s", self.version, channel,
                 len(self.items), counts["day"], counts["night"],
                 f", {slow} near-static targets dropped (< {min_speed} m/s)" if slow else "")
        if not self.items:
            raise DatasetError(f"nuScenes root {self.root!r}: no clips for channel {channel}, "
                               f"domain {domain}, targets {self.targets}, offsets {self.offsets}")

    # -- construction helpers
    def _find_version(self, version: Optional[str]) -> str:
        found = sorted(d for d in os.listdir(self.root)
                       if d.startswith("v1.0-") and os.path.isdir(os.path.join(self.root, d)))
        if version is not None:
            if version not in found:
                raise DatasetError(f"nuScenes root {self.root!r}: table folder {version!r} not "
                                   f"found; found {found or 'no v1.0-* folder'}")
            return version
        if not found:
            raise DatasetError(f"nuScenes root {self.root!r} has no v1.0-* table folder "
                               f"(expected e.g. v1.0-trainval/ with "
                               f"{', '.join(t + '.json' for t in NUSCENES_TABLES)})")
        if len(found) > 1:
            raise ConfigError("version", None, found)
        return found[0]

    def _camera_chains(self) -> Dict[str, List[str]]:
        """Scene token → camera sample_data tokens in time order (prev/next linked list)."""
        sd = self.tables["sample_data"]
        cams = {t: r for t, r in sd.items() if r["channel"] == self.channel}
        chains: Dict[str, List[str]] = {}
        for tok, rec in cams.items():
            if rec["prev"] and rec["prev"] in cams:
                continue  # not a chain head
            chain = [tok]
            seen = {tok}
            nxt = rec["next"]
            while nxt and nxt in cams and nxt not in seen:
                chain.append(nxt)
                seen.add(nxt)
                nxt = cams[nxt]["next"]
            sample = self.tables["sample"].get(rec["sample_token"])
            if sample is None:
                log.warning("nuScenes: sample_data %s points to unknown sample %s; chain skipped",
                            tok, rec["sample_token"])
                continue
            chains.setdefault(sample["scene_token"], []).extend(chain)
        for k in chains:
            chains[k].sort(key=lambda t: cams[t]["timestamp"])
        return chains

    def _selection(self, split_file: Optional[PathLike], scenes: Optional[Sequence[str]]):
        names: Optional[Set[str]] = None
        if split_file is not None:
            names = {os.path.splitext(os.path.basename(x.split()[0]))[0].replace(".pcd", "")
                     for x in read_list_file(split_file)}
        scene_filter: Optional[Set[str]] = set(scenes) if scenes is not None else None
        if scene_filter is not None:
            known = {s["name"] for s in self.tables["scene"].values()} | set(self.tables["scene"])
            unknown = sorted(scene_filter - known)
            if unknown:
                raise DatasetError(f"nuScenes {self.version}: unknown scenes {unknown[:5]}")

        def select(scene_tok: str, scene: Mapping[str, Any]) -> Tuple[bool, Set[str]]:
            if scene_filter is not None and scene_tok not in scene_filter \
                    and scene.get("name") not in scene_filter:
                return False, set()
            if names is None:
                return True, set()
            if scene_tok in names or scene.get("name") in names:
                return True, set()
            return False, names

        return select

    @staticmethod
    def _matches(tok: str, rec: Mapping[str, Any], names: Set[str]) -> bool:
        stem = os.path.splitext(os.path.basename(rec.get("filename") or ""))[0]
        return tok in names or rec.get("sample_token") in names or stem in names

    def _cam_pose(self, tok: str) -> np.ndarray:
        """``T_global_cam`` (camera → global) of a camera sample_data record."""
        rec = self.tables["sample_data"][tok]
        ego = self.tables["ego_pose"][rec["ego_pose_token"]]
        cs = self.tables["calibrated_sensor"][rec["calibrated_sensor_token"]]
        return (transform_matrix(ego["translation"], ego["rotation"])
                @ transform_matrix(cs["translation"], cs["rotation"]))

    def _ego_speed(self, chain: List[str], j: int) -> float:
        a, b = chain[max(j - 1, 0)], chain[min(j + 1, len(chain) - 1)]
        if a == b:
            return 0.0
        sd, ep = self.tables["sample_data"], self.tables["ego_pose"]
        pa = np.asarray(ep[sd[a]["ego_pose_token"]]["translation"], np.float64)
        pb = np.asarray(ep[sd[b]["ego_pose_token"]]["translation"], np.float64)
        dt = (sd[b]["timestamp"] - sd[a]["timestamp"]) * 1e-6
        return float(np.linalg.norm(pb - pa) / dt) if dt > 0 else 0.0

    # -- dataset protocol
    def __len__(self) -> int:
        return len(self.items)

    def _depth(self, tok: str, K: np.ndarray, H: int, W: int) -> Optional[np.ndarray]:
        rec = self.tables["sample_data"][tok]
        if not rec["is_key_frame"]:
            return None
        lidar_tok = self._lidar_of_sample.get(rec["sample_token"])
        if lidar_tok is None:
            raise SampleError(f"nuscenes:{rec['filename']}", "key frame has no LIDAR_TOP sweep")
        lrec = self.tables["sample_data"][lidar_tok]
        pts = read_lidar_points(os.path.join(self.root, lrec["filename"]))
        ep, cs = self.tables["ego_pose"], self.tables["calibrated_sensor"]
        l_cs, c_cs = cs[lrec["calibrated_sensor_token"]], cs[rec["calibrated_sensor_token"]]
        l_ep, c_ep = ep[lrec["ego_pose_token"]], ep[rec["ego_pose_token"]]
        return project_lidar_to_camera(
            pts, transform_matrix(l_cs["translation"], l_cs["rotation"]),
            transform_matrix(l_ep["translation"], l_ep["rotation"]),
            transform_matrix(c_ep["translation"], c_ep["rotation"]),
            transform_matrix(c_cs["translation"], c_cs["rotation"]), K, H, W, self.min_dist)

    def __getitem__(self, index: int) -> Clip:
        item = self.items[index]
        sd = self.tables["sample_data"]
        tgt = item.tokens[self.offsets.index(0)]
        trec = sd[tgt]
        source = f"nuscenes:{trec['filename']}"
        frames = [read_image(os.path.join(self.root, sd[t]["filename"])) for t in item.tokens]
        if len({f.shape for f in frames}) != 1:
            raise SampleError(source, f"frames differ in size: {[f.shape for f in frames]}")
        H, W = frames[0].shape[:2]
        cs = self.tables["calibrated_sensor"][trec["calibrated_sensor_token"]]
        K = np.asarray(cs.get("camera_intrinsic") or [], np.float64)
        if K.shape != (3, 3):
            raise SampleError(source, f"calibrated_sensor {cs['token']} has no 3x3 "
                                      f"camera_intrinsic")
        depth = self._depth(tgt, K, H, W) if self.load_depth else None
        T_tgt = self._cam_pose(tgt)
        poses = np.stack([np.linalg.solve(T_tgt, self._cam_pose(t)) for t in item.tokens])
        times = np.asarray([sd[t]["timestamp"] for t in item.tokens], np.float64) * 1e-6
        lo, hi = int(np.argmin(self.offsets)), int(np.argmax(self.offsets))
        speed = None
        if hi != lo and times[hi] > times[lo]:
            dist = np.linalg.norm(poses[hi][:3, 3] - poses[lo][:3, 3])
            speed = float(dist / (times[hi] - times[lo]))
        clip = Clip(frames=np.stack(frames), K=K, domain=item.domain, offsets=self.offsets,
                    depth=depth, poses=poses, speed=speed, dt=clip_dt(times, self.offsets),
                    source=source,
                    meta={"scene": self.tables["scene"][item.scene].get("name", item.scene),
                          "sample_data_tokens": list(item.tokens),
                          "sample_token": trec["sample_token"], "depth_sparse": True,
                          "is_key_frame": bool(trec["is_key_frame"])})
        try:
            if self.crop_hw is not None:
                clip = center_crop_clip(clip, self.crop_hw)
            if self.keep_full_depth and clip.depth is not None:
                clip.meta["depth_full"] = clip.depth.copy()
                clip.meta["K_full"] = clip.K.copy()
            if self.size_hw is not None:
                clip = fit_clip(clip, self.size_hw, self.resize_mode)
        except ValueError as exc:
            raise SampleError(source, str(exc)) from exc
        return clip
