"""Writing (and reading back) synthetic drives: image folders and rosbag2 bags.

Folder layout (one drive per folder; :func:`write_folder` / :func:`read_folder`)::

    ROOT/
      sequence.json        seed, domain, fps, size, intrinsics, config, units, file list
      intrinsics.json      fx, fy, cx, cy, width, height, K (pixels; pixel-centre convention)
      poses.csv            frame, timestamp_s, speed_mps, then T_world_cam row-major 3x4
                           (camera→world, REP 103 optical frame; world z up)
      image/000000.png     RGB 8-bit
      depth/000000.npy     float32 metres, 0 = invalid (authoritative)
      depth/000000.png     uint16 millimetres, 0 = invalid; depths above 65.535 m are 0 too
      masks/<name>/000000.png   uint8 0/255 (moving, dark, lit)

Bag layout (:func:`write_synthetic_bag`; rosbag2, mcap or sqlite3; any number of drives one
after another with a 2 s gap, each in its own world — the ``odom`` frame restarts)::

    /camera/image_raw               sensor_msgs/Image rgb8      frame camera_optical_frame
      or /camera/image_raw/compressed  sensor_msgs/CompressedImage jpeg
    /camera/camera_info             sensor_msgs/CameraInfo (plumb_bob, zero distortion)
    /camera/depth_gt                sensor_msgs/Image 32FC1 metres, NaN invalid (REP 118/117)
    /camera/mask/{moving,dark,lit}  sensor_msgs/Image mono8 0/255 (evaluation regions)
    /odom                           nav_msgs/Odometry odom → base_link; twist.linear.x = speed
    /tf                             odom → base_link
    /tf_static                      base_link → camera_optical_frame (latched)

``custom_data["dasp.synthetic"]`` in ``metadata.yaml`` is JSON listing each drive (name, seed,
domain, first/last stamp), so readers can split them.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any, Dict, Iterable, List

import cv2
import numpy as np

from dasp_core.data.synthetic.config import SyntheticConfig
from dasp_core.data.synthetic.sequence import MASK_NAMES, SyntheticSequence
from dasp_core.data.synthetic.trajectory import camera_mount
from dasp_core.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

DEPTH_FORMATS = ("both", "npy", "png")
TOPIC_IMAGE = "/camera/image_raw"
TOPIC_IMAGE_COMPRESSED = "/camera/image_raw/compressed"
TOPIC_INFO = "/camera/camera_info"
TOPIC_DEPTH = "/camera/depth_gt"
TOPIC_MASK = "/camera/mask/{}"
TOPIC_ODOM = "/odom"
TOPIC_TF = "/tf"
TOPIC_TF_STATIC = "/tf_static"
FRAME_CAMERA = "camera_optical_frame"
FRAME_BASE = "base_link"
FRAME_ODOM = "odom"
START_TIME_NS = 1_700_000_000 * 1_000_000_000   # deterministic stamps (2023-11-14)
GAP_NS = 2_000_000_000


def base_to_camera(seq: SyntheticSequence) -> np.ndarray:
    """``T_base_cam`` ``[4, 4]`` of a sequence (stored in ``meta``, else from its config)."""
    if "T_base_cam" in seq.meta:
        return np.asarray(seq.meta["T_base_cam"], np.float64).reshape(4, 4)
    cfg = SyntheticConfig.from_dict(seq.meta.get("config", {})) if seq.meta.get("config") \
        else SyntheticConfig()
    return camera_mount(cfg)


# ============================================================================ folders
def write_folder(seq: SyntheticSequence, root: str | Path, depth_format: str = "both") -> Path:
    """Write one drive as an image folder (layout in the module docstring).

    Args:
        seq: the drive.
        root: output directory (created; existing files with the same names are replaced).
        depth_format: ``"both"`` (npy + png), ``"npy"`` or ``"png"``.
    Returns:
        ``root`` as a Path.
    """
    if depth_format not in DEPTH_FORMATS:
        raise ConfigError("depth_format", depth_format, DEPTH_FORMATS)
    root = Path(root)
    for sub in ["image", "depth"] + [f"masks/{m}" for m in seq.masks]:
        (root / sub).mkdir(parents=True, exist_ok=True)
    K = seq.K
    intr = {"fx": K[0, 0], "fy": K[1, 1], "cx": K[0, 2], "cy": K[1, 2], "width": seq.width,
            "height": seq.height, "K": K.tolist(),
            "convention": "pixels; centre of the top-left pixel is (0, 0)"}
    (root / "intrinsics.json").write_text(json.dumps(intr, indent=2))
    meta = {
        "name": seq.name, "seed": seq.seed, "domain": seq.domain, "fps": seq.fps,
        "n_frames": seq.n_frames, "height": seq.height, "width": seq.width,
        "K": K.tolist(), "T_base_cam": base_to_camera(seq).tolist(),
        "units": {"depth": "metres (z-depth), 0 = invalid", "depth_png": "uint16 millimetres, "
                  "0 = invalid or beyond 65.535 m", "poses": "T_world_cam camera->world, REP 103 "
                  "optical frame (x right, y down, z forward), world z up", "speed": "m/s"},
        "depth_format": depth_format, "masks": sorted(seq.masks),
        "meta": _jsonable(seq.meta),
    }
    (root / "sequence.json").write_text(json.dumps(meta, indent=2))
    with open(root / "poses.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["frame", "timestamp_s", "speed_mps"] +
                   [f"T{r}{c}" for r in range(3) for c in range(4)])
        for i in range(seq.n_frames):
            w.writerow([i, f"{seq.timestamps[i]:.6f}", f"{seq.speeds[i]:.6f}"] +
                       [f"{v:.9f}" for v in seq.poses[i, :3, :].reshape(-1)])
    for i in range(seq.n_frames):
        name = f"{i:06d}"
        _imwrite(root / "image" / f"{name}.png", seq.frames[i][..., ::-1])
        d = seq.depth[i]
        if depth_format in ("both", "npy"):
            np.save(root / "depth" / f"{name}.npy", d.astype(np.float32))
        if depth_format in ("both", "png"):
            mm = np.round(d * 1000.0)
            mm[(mm > 65535) | ~np.isfinite(mm)] = 0
            _imwrite(root / "depth" / f"{name}.png", mm.astype(np.uint16))
        for m, arr in seq.masks.items():
            _imwrite(root / "masks" / m / f"{name}.png", arr[i].astype(np.uint8) * 255)
    log.info("wrote %s (%d frames) to %s", seq.name, seq.n_frames, root)
    return root


def read_folder(root: str | Path) -> SyntheticSequence:
    """Read a folder written by :func:`write_folder` (npy depth preferred over png)."""
    root = Path(root)
    meta_path = root / "sequence.json"
    if not meta_path.is_file():
        raise DatasetError(f"{str(root)!r} is not a synthetic sequence folder "
                           "(no sequence.json)")
    meta = json.loads(meta_path.read_text())
    n = int(meta["n_frames"])
    frames, depth = [], []
    masks: Dict[str, List[np.ndarray]] = {m: [] for m in meta.get("masks", [])}
    for i in range(n):
        name = f"{i:06d}"
        img = cv2.imread(str(root / "image" / f"{name}.png"), cv2.IMREAD_COLOR)
        if img is None:
            raise DatasetError(f"{str(root / 'image' / (name + '.png'))!r} is missing or not "
                               "an image")
        frames.append(img[..., ::-1])
        npy = root / "depth" / f"{name}.npy"
        if npy.is_file():
            depth.append(np.load(npy).astype(np.float32))
        else:
            png = cv2.imread(str(root / "depth" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
            if png is None or png.dtype != np.uint16:
                raise DatasetError(f"depth of frame {i} in {str(root)!r} is missing or not a "
                                   "16-bit PNG")
            depth.append(png.astype(np.float32) / 1000.0)
        for m in masks:
            mk = cv2.imread(str(root / "masks" / m / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
            if mk is None:
                raise DatasetError(f"mask {m!r} of frame {i} in {str(root)!r} is missing")
            masks[m].append(mk > 127)
    poses = np.tile(np.eye(4), (n, 1, 1))
    ts = np.zeros(n)
    speeds = np.zeros(n)
    with open(root / "poses.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if len(rows) != n:
        raise DatasetError(f"{str(root / 'poses.csv')!r} has {len(rows)} rows, expected {n}")
    for r in rows:
        i = int(r["frame"])
        ts[i] = float(r["timestamp_s"])
        speeds[i] = float(r["speed_mps"])
        poses[i, :3, :] = np.array([float(r[f"T{a}{b}"]) for a in range(3) for b in range(4)]
                                   ).reshape(3, 4)
    inner = dict(meta.get("meta", {}))
    inner["T_base_cam"] = meta.get("T_base_cam")
    return SyntheticSequence(frames=np.stack(frames), depth=np.stack(depth),
                             K=np.asarray(meta["K"], np.float64), poses=poses, speeds=speeds,
                             timestamps=ts, masks={m: np.stack(v) for m, v in masks.items()},
                             domain=meta["domain"], seed=int(meta["seed"]),
                             fps=float(meta["fps"]), meta=inner)


def _imwrite(path: Path, img: np.ndarray) -> None:
    if not cv2.imwrite(str(path), np.ascontiguousarray(img)):
        raise DatasetError(f"cannot write {str(path)!r}")


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    return x


# ============================================================================ bags
def _yaw_rate(poses: np.ndarray, dt: float) -> np.ndarray:
    """Yaw rate (rad/s) of base_link from camera poses by central differences."""
    fwd = poses[:, :3, 2]  # camera z axis = driving direction (up to the small pitch)
    yaw = np.unwrap(np.arctan2(fwd[:, 1], fwd[:, 0]))
    if len(yaw) < 2:
        return np.zeros(len(yaw))
    return np.gradient(yaw, dt)


def write_synthetic_bag(sequences: Iterable[SyntheticSequence] | SyntheticSequence,
                        path: str | Path, storage: str = "mcap", compressed: bool = False,
                        jpeg_quality: int = 92, include_masks: bool = True,
                        start_time_ns: int = START_TIME_NS, progress: bool = False) -> Path:
    """Write drives into one rosbag2 bag (topics and frames in the module docstring).

    Args:
        sequences: one or more drives (any iterable, consumed once, so a generator keeps
            only one drive in memory); written one after another with a 2 s gap.
        path: bag directory to create (must not exist).
        storage: ``"mcap"`` or ``"sqlite3"``.
        compressed: JPEG ``CompressedImage`` on ``/camera/image_raw/compressed`` instead of
            raw ``rgb8`` on ``/camera/image_raw``.
        jpeg_quality: JPEG quality (1–100) when ``compressed``.
        include_masks: also write the evaluation masks as mono8 images.
        start_time_ns: stamp of the first frame.
        progress: tqdm progress bar.
    Returns:
        The bag path.
    """
    from tqdm import tqdm

    from dasp_core.bagio import (BagWriter, TransformData, make_camera_info, make_odometry,
                                 make_tf_message, numpy_to_image, rgb_to_compressed)

    if isinstance(sequences, SyntheticSequence):
        sequences = [sequences]
    if not 1 <= int(jpeg_quality) <= 100:
        raise ConfigError("jpeg_quality", jpeg_quality, "an integer in [1, 100]")
    path = Path(path)
    listing = []
    total = sum(s.n_frames for s in sequences) if isinstance(sequences, (list, tuple)) else None
    n_written = 0
    t_base = int(start_time_ns)
    with BagWriter(path, storage=storage) as bag, \
            tqdm(total=total, desc=f"bag {path.name}", disable=not progress, unit="frame") as bar:
        for seq in sequences:
            T_bc = base_to_camera(seq)
            T_cb = np.linalg.inv(T_bc)
            stamps = [t_base + int(round((seq.timestamps[i] - seq.timestamps[0]) * 1e9))
                      for i in range(seq.n_frames)]
            bag.write(TOPIC_TF_STATIC, make_tf_message(
                [TransformData(stamps[0], FRAME_BASE, FRAME_CAMERA, T_bc)], bag.ts), stamps[0])
            yaw_rate = _yaw_rate(seq.poses, seq.dt)
            info = make_camera_info(seq.K, seq.width, seq.height, stamp_ns=stamps[0],
                                    frame_id=FRAME_CAMERA, ts=bag.ts)
            for i in range(seq.n_frames):
                ns = stamps[i]
                info.header = _header(bag.ts, ns, FRAME_CAMERA)
                if compressed:
                    bag.write(TOPIC_IMAGE_COMPRESSED, rgb_to_compressed(
                        seq.frames[i], "jpeg", int(jpeg_quality), ns, FRAME_CAMERA, bag.ts), ns)
                else:
                    bag.write(TOPIC_IMAGE, numpy_to_image(seq.frames[i], "rgb8", ns, FRAME_CAMERA,
                                                          ts=bag.ts), ns)
                bag.write(TOPIC_INFO, info, ns)
                d = seq.depth[i].astype(np.float32, copy=True)
                d[~(d > 0)] = np.nan
                bag.write(TOPIC_DEPTH, numpy_to_image(d, "32FC1", ns, FRAME_CAMERA, ts=bag.ts), ns)
                if include_masks:
                    for m in MASK_NAMES:
                        if m in seq.masks:
                            bag.write(TOPIC_MASK.format(m), numpy_to_image(
                                seq.masks[m][i].astype(np.uint8) * 255, "mono8", ns,
                                FRAME_CAMERA, ts=bag.ts), ns)
                T_ob = seq.poses[i] @ T_cb
                bag.write(TOPIC_ODOM, make_odometry(T_ob, [seq.speeds[i], 0.0, 0.0],
                                                    [0.0, 0.0, yaw_rate[i]], ns, FRAME_ODOM,
                                                    FRAME_BASE, ts=bag.ts), ns)
                bag.write(TOPIC_TF, make_tf_message(
                    [TransformData(ns, FRAME_ODOM, FRAME_BASE, T_ob)], bag.ts), ns)
                bar.update(1)
            listing.append({"name": seq.name, "seed": seq.seed, "domain": seq.domain,
                            "fps": seq.fps, "n_frames": seq.n_frames, "start_ns": stamps[0],
                            "end_ns": stamps[-1], "height": seq.height, "width": seq.width})
            t_base = stamps[-1] + GAP_NS
            n_written += seq.n_frames
        if not listing:
            raise ConfigError("sequences", "empty", "at least one SyntheticSequence")
        bag.set_metadata("dasp.synthetic", json.dumps({
            "sequences": listing, "image_topic": TOPIC_IMAGE_COMPRESSED if compressed
            else TOPIC_IMAGE, "depth_topic": TOPIC_DEPTH, "camera_frame": FRAME_CAMERA}))
    log.info("wrote %d drive(s), %d frames to %s (%s)", len(listing), n_written, path, storage)
    return path


def _header(ts, ns: int, frame_id: str):
    from dasp_core.bagio import make_header
    return make_header(ns, frame_id, ts)


def read_synthetic_bag(path: str | Path) -> List[SyntheticSequence]:
    """Read drives back from a bag written by :func:`write_synthetic_bag`.

    Poses are rebuilt as ``T_odom_base · T_base_cam`` from ``/odom`` and ``/tf_static``;
    speeds from ``|twist.linear|``; masks from ``/camera/mask/*`` when present. Drives are
    split by the ``dasp.synthetic`` metadata, or by gaps longer than 1 s without it.
    """
    from dasp_core.bagio import (BagReader, bag_custom_data, camera_info_to_model,
                                 compressed_to_rgb, image_to_depth, image_to_numpy, image_to_rgb,
                                 odometry_to_numpy, tf_to_numpy)

    path = Path(path)
    custom = bag_custom_data(path) if path.is_dir() else {}
    listing = json.loads(custom["dasp.synthetic"])["sequences"] if "dasp.synthetic" in custom \
        else None
    per_stamp: Dict[int, Dict[str, Any]] = {}
    statics: Dict[int, np.ndarray] = {}
    K = None
    with BagReader(path, errors="raise") as r:
        for topic, _mt, t, msg in r.messages():
            rec = per_stamp.setdefault(t, {})
            if topic == TOPIC_IMAGE:
                rec["image"] = image_to_rgb(msg, topic)
            elif topic == TOPIC_IMAGE_COMPRESSED:
                rec["image"] = compressed_to_rgb(msg, topic)
            elif topic == TOPIC_DEPTH:
                rec["depth"] = np.nan_to_num(image_to_depth(msg, topic), nan=0.0)
            elif topic == TOPIC_INFO:
                K = camera_info_to_model(msg, topic).K
                rec["K"] = K
            elif topic == TOPIC_ODOM:
                od = odometry_to_numpy(msg, topic)
                rec["T_ob"] = od.T
                rec["speed"] = od.speed
            elif topic == TOPIC_TF_STATIC:
                for tr in tf_to_numpy(msg, topic):
                    if tr.parent == FRAME_BASE and tr.child == FRAME_CAMERA:
                        statics[t] = tr.T
            elif topic.startswith("/camera/mask/"):
                rec.setdefault("masks", {})[topic.rsplit("/", 1)[1]] = \
                    image_to_numpy(msg, topic) > 127
    stamps = sorted(s for s, rec in per_stamp.items() if "image" in rec)
    if not stamps:
        raise DatasetError(f"bag {str(path)!r} has no camera images on {TOPIC_IMAGE} or "
                           f"{TOPIC_IMAGE_COMPRESSED}")
    if listing is None:
        groups, cur = [], [stamps[0]]
        for a, b in zip(stamps, stamps[1:]):
            if b - a > 1_000_000_000:
                groups.append(cur)
                cur = []
            cur.append(b)
        groups.append(cur)
        listing = [{"name": f"sequence{i}", "seed": -1, "domain": "day", "start_ns": g[0],
                    "end_ns": g[-1]} for i, g in enumerate(groups)]
    out = []
    static_times = sorted(statics)
    for item in listing:
        ss = [s for s in stamps if item["start_ns"] <= s <= item["end_ns"]]
        if not ss:
            continue
        st = [t for t in static_times if t <= ss[0]]
        if not st:
            raise DatasetError(f"bag {str(path)!r}: no {FRAME_BASE}->{FRAME_CAMERA} transform on "
                               f"{TOPIC_TF_STATIC} before drive {item['name']!r}")
        T_bc = statics[st[-1]]
        recs = [per_stamp[s] for s in ss]
        missing = [k for k in ("depth", "T_ob", "K") if any(k not in rc for rc in recs)]
        if missing:
            raise DatasetError(f"bag {str(path)!r} drive {item['name']!r}: frames without "
                               f"{', '.join(missing)}")
        mask_names = sorted(set.intersection(*[set(rc.get("masks", {})) for rc in recs]))
        fps = float(item.get("fps") or (1e9 * (len(ss) - 1) / max(ss[-1] - ss[0], 1)))
        out.append(SyntheticSequence(
            frames=np.stack([rc["image"] for rc in recs]),
            depth=np.stack([rc["depth"] for rc in recs]).astype(np.float32),
            K=recs[0]["K"], poses=np.stack([rc["T_ob"] @ T_bc for rc in recs]),
            speeds=np.array([rc["speed"] for rc in recs]),
            timestamps=(np.array(ss, np.float64) - ss[0]) * 1e-9,
            masks={m: np.stack([rc["masks"][m] for rc in recs]) for m in mask_names},
            domain=item.get("domain", "day"), seed=int(item.get("seed", -1)), fps=fps,
            meta={"T_base_cam": T_bc.tolist(), "source": str(path)}))
    return out
