"""Image folders with a calibration file, and the file-level helpers every reader shares.

Shared helpers (used by the RobotCar, nuScenes and rosbag2 readers too):

* :class:`SampleError` — one sample is unreadable (corrupt image, missing frame, unknown
  encoding). Readers raise it from ``__getitem__``; the training wrapper and
  :func:`dasp_core.data.registry.iter_clips` log it, count it and move on. A dataset root that
  is not what it claims to be raises :class:`~dasp_core.errors.DatasetError` at construction
  instead (fail fast).
* :func:`read_image` — any OpenCV-readable image file → ``uint8 [H, W, 3]`` RGB.
* :class:`Calibration`, :func:`read_calibration`, :func:`calibration_from_dict` — pinhole
  intrinsics (+ optional distortion) from YAML/JSON, including the ROS ``camera_info`` YAML
  written by ``camera_calibration``; :class:`Undistorter` removes the distortion with OpenCV.
* :func:`thumbnail`, :func:`motion_score`, :func:`median_luminance`, :func:`select_moving`,
  :class:`BrightnessRule` — the near-static-frame test and the day/night brightness rule.

Folder layout read by :class:`FolderClipDataset`::

    root/
      calibration.yaml        # or calib.yaml, camera_info.yaml, camera.yaml, *.json (see below)
      seq_a/                  # one sub-folder per sequence (or images directly in root/)
        000000.png ...        # or in seq_a/images/, image/ or rgb/; sorted by file name
        calibration.yaml      # optional, overrides the root's
        domain.txt            # optional: "day" or "night"
        timestamps.txt        # optional: one time in seconds per image (for dt)
        depth/000000.npy      # optional ground truth: metres (float), 0/NaN invalid
        depth/000000.png      #   or 16-bit PNG in millimetres (REP 118), 0 invalid
        masks/<name>/000000.png   # optional evaluation masks (0/255)

The folders written by :func:`dasp_core.data.synthetic.write_folder` are read as they are:
``image/``, ``intrinsics.json``, ``sequence.json`` (domain, fps) and ``poses.csv`` (times,
speeds, camera→world poses) are used. A folder's domain comes from ``domain.txt``, then the
calibration's ``domain``, then ``sequence.json``, then the ``domain`` argument.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from dasp_core.data.sample import DOMAINS, Clip
from dasp_core.errors import ConfigError, DatasetError, check_choice, check_range

log = logging.getLogger(__name__)

__all__ = [
    "SampleError", "read_image", "to_rgb8", "read_list_file", "IMAGE_EXTENSIONS",
    "CALIBRATION_NAMES",
    "DISTORTION_MODELS", "Calibration", "calibration_from_dict", "read_calibration",
    "find_calibration", "Undistorter", "thumbnail", "motion_score", "median_luminance",
    "select_moving", "clip_dt", "BrightnessRule", "read_depth_file", "FolderClipDataset",
]

PathLike = Union[str, os.PathLike]

_IMAGE_SUBDIRS = ("images", "image", "rgb")
_AUX_DIRS = ("depth", "masks") + _IMAGE_SUBDIRS
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp")
CALIBRATION_NAMES = ("calibration.yaml", "calibration.yml", "calib.yaml", "calib.yml",
                     "camera_info.yaml", "camera_info.yml", "camera.yaml", "camera.yml",
                     "calibration.json", "calib.json", "camera_info.json", "camera.json",
                     "intrinsics.json", "intrinsics.yaml")
DISTORTION_MODELS = ("none", "plumb_bob", "rational_polynomial", "equidistant")


class SampleError(DatasetError):
    """One sample cannot be read; the message names the file/topic/index and the problem.

    Attributes:
        source: what was being read (file path, ``bag:topic@index``, ...).
        problem: what is wrong with it.
    """

    def __init__(self, source: str, problem: str):
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


# ----------------------------------------------------------------------------- files

def read_image(path: PathLike) -> np.ndarray:
    """Read an image file as ``uint8 [H, W, 3]`` RGB.

    Grey images are replicated to three channels, alpha is dropped and 16-bit images are
    scaled to 8 bits (``>> 8``). Raises :class:`SampleError` naming the file when it is
    missing, empty, truncated or not an image.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SampleError(path, "file not found")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise SampleError(path, f"cannot read file ({exc})") from exc
    if data.size == 0:
        raise SampleError(path, "file is empty")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise SampleError(path, "not a readable image (corrupt, truncated or unknown format)")
    return to_rgb8(img, path, "BGR")


def to_rgb8(img: np.ndarray, source: str, order: str) -> np.ndarray:
    """Decoded array (grey, BGR(A) or RGB(A) per ``order``, 8/16 bit) → ``uint8 [H, W, 3]`` RGB.

    ``source`` names the file in the :class:`SampleError` raised for unsupported layouts.
    """
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise SampleError(source, f"unsupported pixel type {img.dtype}; expected 8 or 16 bit")
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2))
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise SampleError(source, f"unsupported image shape {img.shape}")
    if img.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(img, 3, axis=2))
    img = img[:, :, :3]
    if order == "BGR":
        img = img[:, :, ::-1]
    return np.ascontiguousarray(img)


def read_list_file(path: PathLike) -> List[str]:
    """Lines of a split/list file, stripped, without blanks and ``#`` comments.

    Raises :class:`~dasp_core.errors.DatasetError` when the file is missing.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DatasetError(f"list file {path!r} not found")
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def read_depth_file(path: PathLike) -> np.ndarray:
    """Ground-truth depth file → ``float32 [H, W]`` metres, 0 invalid.

    ``.npy`` (metres; a leading singleton axis is squeezed), ``.npz`` (key ``depth`` or the only
    array) or 16-bit ``.png`` in millimetres (REP 118). NaN/inf/negative become 0.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SampleError(path, "depth file not found")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npy":
            d = np.load(path, allow_pickle=False)
        elif ext == ".npz":
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.keys())
                if "depth" in keys:
                    d = z["depth"]
                elif len(keys) == 1:
                    d = z[keys[0]]
                else:
                    raise SampleError(path, f"npz has arrays {keys}; expected 'depth' or one array")
        elif ext == ".png":
            d = cv2.imread(path, cv2.IMREAD_UNCHANGED)
            if d is None or d.dtype != np.uint16 or d.ndim != 2:
                raise SampleError(path, "expected a single-channel 16-bit PNG in millimetres")
            d = d.astype(np.float32) / 1000.0
        else:
            raise SampleError(path, f"unknown depth format {ext!r}; allowed: .npy, .npz, .png")
    except SampleError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise SampleError(path, f"cannot read depth ({exc})") from exc
    d = np.asarray(d, dtype=np.float32)
    if d.ndim == 3 and 1 in (d.shape[0], d.shape[-1]):
        d = d.reshape(d.shape[1:] if d.shape[0] == 1 else d.shape[:2])
    if d.ndim != 2:
        raise SampleError(path, f"depth has shape {d.shape}; expected [H, W]")
    d = np.where(np.isfinite(d) & (d > 0), d, 0.0).astype(np.float32)
    return d


# ----------------------------------------------------------------------------- calibration

@dataclass
class Calibration:
    """Pinhole intrinsics of one camera.

    Attributes:
        K: ``float64 [3, 3]`` pixel intrinsics for ``width x height``.
        width, height: image size the calibration is for (None = not stated; then it is taken
            to be the size of the images).
        D: distortion coefficients (OpenCV order) or None.
        distortion_model: one of :data:`DISTORTION_MODELS`.
        domain: ``"day"``/``"night"`` if the file states one, else None.
        source: where it came from (file path or config key), for messages.
    """

    K: np.ndarray
    width: Optional[int] = None
    height: Optional[int] = None
    D: Optional[np.ndarray] = None
    distortion_model: str = "none"
    domain: Optional[str] = None
    source: str = ""

    @property
    def has_distortion(self) -> bool:
        return (self.distortion_model != "none" and self.D is not None
                and bool(np.any(np.abs(self.D) > 0)))

    def K_for_size(self, height: int, width: int) -> np.ndarray:
        """K for images of ``height x width``.

        When the calibration states another size with the same aspect ratio (e.g. images were
        down-scaled after calibration) K is scaled; a different aspect ratio raises
        :class:`~dasp_core.errors.DatasetError` (a crop cannot be guessed).
        """
        from dasp_core.data.augment import scale_K

        if self.width is None or self.height is None or \
                (self.width, self.height) == (width, height):
            return self.K.copy()
        sx, sy = width / self.width, height / self.height
        if abs(sx - sy) > 0.01 * max(sx, sy):
            raise DatasetError(
                f"calibration {self.source!r} is for {self.width}x{self.height} but the images "
                f"are {width}x{height} (different aspect ratio); calibrate at the image size")
        return scale_K(self.K, sx, sy)


def _as_matrix(value: Any, key: str, source: str) -> np.ndarray:
    """A 3x3 matrix from a nested list, a flat list of 9, or ``{rows, cols, data}`` (ROS)."""
    if isinstance(value, Mapping):
        if "data" not in value:
            raise ConfigError(f"{source}:{key}", value,
                              "a 3x3 list, 9 numbers or {rows, cols, data}")
        value = value["data"]
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}:{key}", value, "a 3x3 list or 9 numbers") from None
    if arr.size != 9:
        raise ConfigError(f"{source}:{key}", value, "a 3x3 list or 9 numbers")
    return arr.reshape(3, 3)


def _as_vector(value: Any, key: str, source: str) -> np.ndarray:
    if isinstance(value, Mapping):
        value = value.get("data", [])
    try:
        return np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}:{key}", value, "a list of numbers") from None


_CALIB_KEYS = ("K", "camera_matrix", "k", "fx", "fy", "cx", "cy", "width", "height",
               "image_width", "image_height", "D", "d", "dist", "distortion",
               "distortion_coefficients", "distortion_model", "domain", "camera_name",
               "rectification_matrix", "projection_matrix", "R", "r", "P", "p", "frame_id",
               "binning_x", "binning_y", "roi", "header", "convention")


def calibration_from_dict(d: Mapping[str, Any], source: str = "calibration") -> Calibration:
    """Build a :class:`Calibration` from a dict.

    Accepted forms (keys are case-sensitive):

    * ROS ``camera_info`` YAML: ``image_width, image_height, camera_matrix: {rows, cols, data},
      distortion_model, distortion_coefficients: {data}`` (``rectification_matrix`` and
      ``projection_matrix`` are accepted and ignored);
    * a CameraInfo-like dict: ``width, height, k`` (9 numbers), ``d``, ``distortion_model``;
    * plain: ``K`` (3x3 or 9 numbers) or ``fx, fy, cx, cy``; optional ``width, height``,
      ``D``/``dist``/``distortion`` and ``distortion_model`` (default ``plumb_bob`` when
      coefficients are given), optional ``domain``.

    Unknown keys raise :class:`~dasp_core.errors.ConfigError` naming the key and the allowed
    ones (typos must not be silently ignored).
    """
    if not isinstance(d, Mapping):
        raise ConfigError(source, d, "a mapping with K or fx, fy, cx, cy")
    for k in d:
        if k not in _CALIB_KEYS:
            raise ConfigError(f"{source}:{k}", d[k], _CALIB_KEYS)
    K = None
    for key in ("K", "camera_matrix", "k"):
        if key in d:
            K = _as_matrix(d[key], key, source)
            break
    if K is None:
        if not all(k in d for k in ("fx", "fy", "cx", "cy")):
            raise ConfigError(source, sorted(d),
                              "K (3x3), camera_matrix, k, or all of fx, fy, cx, cy")
        K = np.array([[float(d["fx"]), 0.0, float(d["cx"])],
                      [0.0, float(d["fy"]), float(d["cy"])],
                      [0.0, 0.0, 1.0]])
    if K[0, 0] <= 0 or K[1, 1] <= 0 or abs(K[2, 2] - 1.0) > 1e-9 or np.any(K[2, :2] != 0):
        raise ConfigError(f"{source}:K", K.tolist(),
                          "[[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0")
    width = d.get("width", d.get("image_width"))
    height = d.get("height", d.get("image_height"))
    if (width is None) != (height is None):
        raise ConfigError(f"{source}:width/height", (width, height), "both or neither")
    if width is not None and (int(width) <= 0 or int(height) <= 0):
        width = height = None  # ROS CameraInfo with 0 size = "not set"
    D = None
    for key in ("D", "d", "dist", "distortion", "distortion_coefficients"):
        if key in d and d[key] is not None:
            D = _as_vector(d[key], key, source)
            break
    model = d.get("distortion_model")
    if model in (None, ""):
        model = "plumb_bob" if D is not None and D.size else "none"
    model = str(model)
    if model == "fisheye":
        model = "equidistant"
    check_choice(f"{source}:distortion_model", model, DISTORTION_MODELS)
    if model != "none":
        allowed = {"plumb_bob": (4, 5, 8, 12, 14), "rational_polynomial": (8, 12, 14),
                   "equidistant": (4,)}[model]
        if D is None or D.size not in allowed:
            raise ConfigError(f"{source}:distortion_coefficients",
                              None if D is None else D.tolist(),
                              f"{'/'.join(map(str, allowed))} numbers for {model}")
    domain = d.get("domain")
    if domain is not None:
        check_choice(f"{source}:domain", domain, DOMAINS)
    return Calibration(K=K, width=None if width is None else int(width),
                       height=None if height is None else int(height),
                       D=D if model != "none" else None, distortion_model=model, domain=domain,
                       source=source)


def read_calibration(path: PathLike) -> Calibration:
    """Read a YAML or JSON calibration file (see :func:`calibration_from_dict` for the keys).

    Raises :class:`~dasp_core.errors.DatasetError` naming the file when it is missing or not
    valid YAML/JSON, and :class:`~dasp_core.errors.ConfigError` for bad contents.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DatasetError(f"calibration file {path!r} not found")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        if path.lower().endswith(".json"):
            data = json.loads(text)
        else:
            import yaml

            # camera_calibration writes "%YAML:1.0" headers (OpenCV FileStorage style) in some
            # versions; PyYAML rejects them, so drop that line.
            text = re.sub(r"^%YAML:1\.0\s*\n", "", text)
            data = yaml.safe_load(text)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"calibration file {path!r} is not valid YAML/JSON: {exc}") from exc
    except Exception as exc:  # yaml.YAMLError does not derive from ValueError
        raise DatasetError(f"calibration file {path!r} is not valid YAML/JSON: {exc}") from exc
    return calibration_from_dict(data, source=path)


def find_calibration(folder: PathLike) -> Optional[str]:
    """Path of the first :data:`CALIBRATION_NAMES` file in ``folder``, or None."""
    for name in CALIBRATION_NAMES:
        p = os.path.join(os.fspath(folder), name)
        if os.path.isfile(p):
            return p
    return None


class Undistorter:
    """Removes lens distortion with precomputed OpenCV maps; output keeps the same K.

    Keeping K (rather than an optimal new camera matrix) means a few border pixels become
    black with barrel distortion; the alternative would change K per camera (ours).
    """

    def __init__(self, calib: Calibration, height: int, width: int):
        self.K = calib.K_for_size(height, width)
        self.size = (height, width)
        D = np.asarray(calib.D, np.float64)
        if calib.distortion_model == "equidistant":
            self.map1, self.map2 = cv2.fisheye.initUndistortRectifyMap(
                self.K, D[:4], np.eye(3), self.K, (width, height), cv2.CV_32FC1)
        else:
            self.map1, self.map2 = cv2.initUndistortRectifyMap(
                self.K, D, None, self.K, (width, height), cv2.CV_32FC1)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if image.shape[:2] != self.size:
            raise ValueError(f"image {image.shape[:2]} does not match the undistortion maps "
                             f"{self.size}")
        return cv2.remap(image, self.map1, self.map2, interpolation=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT)


# ----------------------------------------------------------------------------- frame statistics

def thumbnail(image: np.ndarray, width: int = 64) -> np.ndarray:
    """Small grey version of an image for cheap statistics: ``float32 [h, width]`` in [0, 255].

    Accepts ``uint8`` RGB ``[H, W, 3]`` or grey ``[H, W]``. Area averaging suppresses noise, so
    sensor noise alone does not look like motion.
    """
    img = np.asarray(image)
    if img.ndim == 3:
        img = cv2.cvtColor(np.ascontiguousarray(img[:, :, :3]), cv2.COLOR_RGB2GRAY)
    H, W = img.shape[:2]
    h = max(1, int(round(H * width / W)))
    return cv2.resize(img.astype(np.float32), (width, h), interpolation=cv2.INTER_AREA)


def motion_score(thumb_a: np.ndarray, thumb_b: np.ndarray) -> float:
    """Mean absolute grey-level difference of two thumbnails (0..255)."""
    return float(np.mean(np.abs(thumb_a.astype(np.float32) - thumb_b.astype(np.float32))))


def median_luminance(thumb: np.ndarray) -> float:
    """Median grey level of a thumbnail (0..255)."""
    return float(np.median(thumb))


def select_moving(thumbs: Sequence[np.ndarray], threshold: float = 1.0) -> np.ndarray:
    """Indices of frames to keep so that consecutive kept frames differ by more than ``threshold``.

    A frame is kept when its thumbnail differs from the *last kept* frame by more than
    ``threshold`` (mean absolute grey-level difference, :func:`motion_score`), so a stopped
    vehicle contributes one frame and slow motion is sub-sampled until it is visible (ours;
    SfMLearner/monodepth2 drop static frames for the same reason: without motion the
    photometric loss says nothing about depth).

    Args:
        thumbs: thumbnails of all frames in order (:func:`thumbnail`).
        threshold: grey levels; ``<= 0`` keeps everything.
    Returns:
        ``int64`` indices of the kept frames (the first frame is always kept).
    """
    n = len(thumbs)
    if n == 0:
        return np.zeros(0, np.int64)
    if threshold <= 0:
        return np.arange(n, dtype=np.int64)
    keep = [0]
    last = thumbs[0]
    for i in range(1, n):
        if motion_score(thumbs[i], last) > threshold:
            keep.append(i)
            last = thumbs[i]
    return np.asarray(keep, np.int64)


def clip_dt(times: Sequence[float], offsets: Sequence[int]) -> Optional[float]:
    """Seconds per unit of offset: ``(t[max offset] - t[min offset]) / (max - min)``.

    ``times`` are the clip frames' times (seconds) in ``offsets`` order. None for one frame.
    """
    lo, hi = int(np.argmin(offsets)), int(np.argmax(offsets))
    span = offsets[hi] - offsets[lo]
    if span == 0:
        return None
    return float((times[hi] - times[lo]) / span)


@dataclass
class BrightnessRule:
    """Day/night by brightness (ours): a segment is night when the median of its frames'
    median grey levels is below ``night_threshold`` (0..255).

    The measured value is logged per segment so a user can see it and move the threshold.
    Typical values: street-lit night driving 15-45, overcast day 90-140.
    """

    night_threshold: float = 60.0

    def __post_init__(self) -> None:
        check_range("night_threshold", self.night_threshold, 0.0, 255.0)

    def classify(self, luminances: Sequence[float]) -> Tuple[str, float]:
        """``(domain, measured median luminance)`` for a segment's per-frame luminances."""
        if len(luminances) == 0:
            raise ValueError("no frames to classify")
        value = float(np.median(np.asarray(luminances, np.float64)))
        return ("night" if value < self.night_threshold else "day"), value


# ----------------------------------------------------------------------------- folder dataset

def _list_images(folder: str) -> List[str]:
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted(n for n in names if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS
                  and os.path.isfile(os.path.join(folder, n)))


@dataclass
class _FolderSequence:
    name: str
    image_dir: str
    files: List[str]
    calib: Calibration
    domain: str
    times: Optional[np.ndarray]
    depth_dir: Optional[str]
    undistorter: Optional[Undistorter] = None
    file_domain: Optional[str] = None                 # from sequence.json
    fps: Optional[float] = None                       # from sequence.json
    speeds: Optional[np.ndarray] = None               # from poses.csv (m/s)
    poses: Optional[np.ndarray] = None                # from poses.csv, camera → world
    mask_dirs: Dict[str, str] = dataclasses.field(default_factory=dict)


class FolderClipDataset:
    """Clips of consecutive images from one or more folders (torch-free; yields :class:`Clip`).

    Args:
        root: a folder of images, or a folder of sequence folders (see the module docstring).
        offsets: frame offsets of a clip relative to the target, e.g. ``(-1, 0, 1)``.
        domain: ``"day"``, ``"night"`` or ``"auto"``. A folder's own ``domain.txt`` or a
            ``domain`` key in its calibration file wins; ``"auto"`` applies ``brightness_rule``
            to that folder (its measured median luminance is logged).
        calibration: calibration file (or dict) used where a folder has none of its own.
        sequences: only these sub-folder names (default: every folder with images).
        size_hw: output ``(h, w)``; None keeps the native size. ``resize_mode`` as in
            :func:`dasp_core.data.augment.fit_clip`.
        fps: frame rate used for ``dt`` when a folder has no ``timestamps.txt`` (None: dt None).
        motion_threshold: drop near-static frames (mean absolute grey-level difference of
            64-px-wide thumbnails to the last kept frame); 0 disables. Needs one pass over the
            images at construction.
        night_threshold: median grey level below which ``"auto"`` says night.
        undistort: remove lens distortion when the calibration has any.
        load_depth: read ``depth/<stem>.npy|.png`` when present.
    """

    def __init__(self, root: PathLike, offsets: Sequence[int] = (-1, 0, 1), domain: str = "auto",
                 calibration: Union[PathLike, Mapping[str, Any], None] = None,
                 sequences: Optional[Sequence[str]] = None,
                 size_hw: Optional[Tuple[int, int]] = None, resize_mode: str = "center_crop",
                 fps: Optional[float] = None, motion_threshold: float = 0.0,
                 night_threshold: float = 60.0, undistort: bool = True, load_depth: bool = True):
        self.root = os.fspath(root)
        self.offsets = tuple(int(o) for o in offsets)
        if 0 not in self.offsets:
            raise ConfigError("offsets", self.offsets, "a tuple containing 0 (the target)")
        check_choice("domain", domain, DOMAINS + ("auto",))
        check_choice("resize_mode", resize_mode, ("center_crop", "stretch"))
        check_range("motion_threshold", motion_threshold, 0.0)
        if fps is not None:
            check_range("fps", fps, 0.0, lo_open=True)
        self.size_hw = None if size_hw is None else (int(size_hw[0]), int(size_hw[1]))
        self.resize_mode = resize_mode
        self.fps = fps
        self.undistort = undistort
        self.load_depth = load_depth
        self.rule = BrightnessRule(night_threshold)
        if not os.path.isdir(self.root):
            raise DatasetError(f"image folder {self.root!r} does not exist")

        default_calib: Optional[Calibration] = None
        if isinstance(calibration, Mapping):
            default_calib = calibration_from_dict(calibration, source="calibration")
        elif calibration is not None:
            default_calib = read_calibration(calibration)
        else:
            found = find_calibration(self.root)
            default_calib = read_calibration(found) if found else None

        folders = self._sequence_folders(sequences)
        self.sequences: List[_FolderSequence] = []
        self.items: List[Tuple[int, Tuple[int, ...]]] = []
        for name, folder in folders:
            seq = self._open_sequence(name, folder, default_calib, domain)
            keep = np.arange(len(seq.files))
            if motion_threshold > 0:
                keep = self._moving_frames(seq, motion_threshold)
            si = len(self.sequences)
            self.sequences.append(seq)
            lo, hi = -min(self.offsets), max(self.offsets)
            for j in range(lo, len(keep) - hi):
                self.items.append((si, tuple(int(keep[j + o]) for o in self.offsets)))
            log.info("folder %s: %d images, %d clips, domain %s", folder, len(seq.files),
                     len(keep) - lo - hi if len(keep) > lo + hi else 0, seq.domain)
        if not self.items:
            raise DatasetError(f"image folder {self.root!r}: no clips of {len(self.offsets)} "
                               f"frames (offsets {self.offsets}) could be formed")

    # -- construction helpers
    def _sequence_folders(self, sequences: Optional[Sequence[str]]) -> List[Tuple[str, str]]:
        def image_dir(folder: str) -> Optional[str]:
            for sub in _IMAGE_SUBDIRS + ("",):
                d = os.path.join(folder, sub) if sub else folder
                if os.path.isdir(d) and _list_images(d):
                    return d
            return None

        if sequences is not None:
            out = []
            for name in sequences:
                d = image_dir(os.path.join(self.root, name))
                if d is None:
                    raise DatasetError(f"image folder {os.path.join(self.root, name)!r} has no "
                                       f"images ({', '.join(IMAGE_EXTENSIONS)})")
                out.append((name, d))
            return out
        subs = sorted(n for n in os.listdir(self.root)
                      if os.path.isdir(os.path.join(self.root, n)) and n not in _AUX_DIRS)
        out = [(n, image_dir(os.path.join(self.root, n))) for n in subs]
        out = [(n, d) for n, d in out if d is not None]
        own = image_dir(self.root)
        if own is not None:
            out.insert(0, (os.path.basename(os.path.normpath(self.root)), own))
        if not out:
            raise DatasetError(f"image folder {self.root!r}: no images found in it or its "
                               f"sub-folders (extensions {', '.join(IMAGE_EXTENSIONS)})")
        return out

    def _open_sequence(self, name: str, image_dir: str, default_calib: Optional[Calibration],
                       domain: str) -> _FolderSequence:
        seq_dir = image_dir if os.path.basename(image_dir) not in _IMAGE_SUBDIRS \
            else os.path.dirname(image_dir)
        files = _list_images(image_dir)
        own = find_calibration(seq_dir)
        calib = read_calibration(own) if own else default_calib
        if calib is None:
            raise DatasetError(
                f"image folder {seq_dir!r}: no calibration; put one of "
                f"{', '.join(CALIBRATION_NAMES[:4])} in it or in {self.root!r}, or pass "
                f"calibration=<file or dict with K or fx, fy, cx, cy>")
        times = None
        tpath = os.path.join(seq_dir, "timestamps.txt")
        if os.path.isfile(tpath):
            try:
                times = np.asarray([float(x.split()[0]) for x in read_list_file(tpath)])
            except ValueError as exc:
                raise DatasetError(f"{tpath}: expected one time in seconds per line "
                                   f"({exc})") from exc
            if times.size != len(files):
                raise DatasetError(f"{tpath}: {times.size} times for {len(files)} images")
        depth_dir = os.path.join(seq_dir, "depth")
        seq = _FolderSequence(name=name, image_dir=image_dir, files=files, calib=calib,
                              domain="day", times=times,
                              depth_dir=depth_dir if os.path.isdir(depth_dir) else None)
        self._read_sequence_files(seq, seq_dir)
        mdir = os.path.join(seq_dir, "masks")
        if os.path.isdir(mdir):
            seq.mask_dirs = {n: os.path.join(mdir, n) for n in sorted(os.listdir(mdir))
                             if os.path.isdir(os.path.join(mdir, n))}
        seq.domain = self._folder_domain(seq, seq_dir, domain)
        return seq

    @staticmethod
    def _read_sequence_files(seq: _FolderSequence, seq_dir: str) -> None:
        """``sequence.json`` (domain, fps) and ``poses.csv`` (times, speeds, camera→world
        poses), as written by :func:`dasp_core.data.synthetic.write_folder`."""
        jpath = os.path.join(seq_dir, "sequence.json")
        if os.path.isfile(jpath):
            try:
                with open(jpath, encoding="utf-8") as fh:
                    info = json.load(fh)
            except (OSError, ValueError) as exc:
                raise DatasetError(f"{jpath}: not valid JSON ({exc})") from exc
            if isinstance(info, Mapping):
                if info.get("domain") is not None:
                    seq.file_domain = check_choice(f"{jpath}:domain", info["domain"], DOMAINS)
                if info.get("fps"):
                    seq.fps = float(info["fps"])
        ppath = os.path.join(seq_dir, "poses.csv")
        if not os.path.isfile(ppath):
            return
        import csv

        cols = ["T%d%d" % (r, c) for r in range(3) for c in range(4)]
        try:
            with open(ppath, newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
            n = len(rows)
            if n != len(seq.files):
                raise DatasetError(f"{ppath}: {n} rows for {len(seq.files)} images")
            if n and "timestamp_s" in rows[0] and seq.times is None:
                seq.times = np.asarray([float(r["timestamp_s"]) for r in rows])
            if n and "speed_mps" in rows[0]:
                seq.speeds = np.asarray([float(r["speed_mps"]) for r in rows])
            if n and all(c in rows[0] for c in cols):
                P = np.tile(np.eye(4), (n, 1, 1))
                P[:, :3, :] = np.asarray([[float(r[c]) for c in cols]
                                          for r in rows]).reshape(n, 3, 4)
                seq.poses = P
        except (OSError, ValueError, KeyError) as exc:
            raise DatasetError(f"{ppath}: expected columns frame, timestamp_s, speed_mps, "
                               f"T00..T23 ({exc})") from exc

    def _folder_domain(self, seq: _FolderSequence, seq_dir: str, domain: str) -> str:
        dpath = os.path.join(seq_dir, "domain.txt")
        if os.path.isfile(dpath):
            lines = read_list_file(dpath)
            value = lines[0] if lines else ""
            check_choice(f"{dpath}", value, DOMAINS)
            return value
        if seq.calib.domain is not None:
            return seq.calib.domain
        if seq.file_domain is not None:
            return seq.file_domain
        if domain != "auto":
            return domain
        # Brightness rule on up to 50 evenly spaced frames: enough for a stable median.
        idx = np.unique(np.linspace(0, len(seq.files) - 1, min(50, len(seq.files))).astype(int))
        lum = []
        for i in idx:
            try:
                lum.append(median_luminance(thumbnail(read_image(
                    os.path.join(seq.image_dir, seq.files[i])))))
            except SampleError as exc:
                log.warning("skipping unreadable image while measuring brightness: %s", exc)
        if not lum:
            raise DatasetError(f"image folder {seq_dir!r}: no readable image to measure brightness")
        value, lum_med = self.rule.classify(lum)
        log.info("folder %s: median luminance %.1f (night below %.1f) -> %s", seq_dir, lum_med,
                 self.rule.night_threshold, value)
        return value

    def _moving_frames(self, seq: _FolderSequence, threshold: float) -> np.ndarray:
        thumbs, valid = [], []
        for i, f in enumerate(seq.files):
            try:
                thumbs.append(thumbnail(read_image(os.path.join(seq.image_dir, f))))
                valid.append(i)
            except SampleError as exc:
                log.warning("skipping unreadable image: %s", exc)
        keep = select_moving(thumbs, threshold)
        kept = np.asarray(valid, np.int64)[keep] if len(valid) else np.zeros(0, np.int64)
        log.info("folder %s: kept %d of %d frames (motion threshold %.2f grey levels)",
                 seq.image_dir, kept.size, len(seq.files), threshold)
        return kept

    # -- dataset protocol
    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Clip:
        seq_idx, frame_idx = self.items[index]
        seq = self.sequences[seq_idx]
        frames = [read_image(os.path.join(seq.image_dir, seq.files[i])) for i in frame_idx]
        shapes = {f.shape for f in frames}
        tgt_file = seq.files[frame_idx[self.offsets.index(0)]]
        source = f"folder:{os.path.join(seq.image_dir, tgt_file)}"
        if len(shapes) != 1:
            raise SampleError(source, f"frames of one clip differ in size: {sorted(shapes)}")
        H, W = frames[0].shape[:2]
        try:
            K = seq.calib.K_for_size(H, W)
        except DatasetError as exc:
            raise SampleError(source, str(exc)) from exc
        if self.undistort and seq.calib.has_distortion:
            if seq.undistorter is None or seq.undistorter.size != (H, W):
                seq.undistorter = Undistorter(seq.calib, H, W)
            frames = [seq.undistorter(f) for f in frames]
        depth = None
        if self.load_depth and seq.depth_dir is not None:
            stem = os.path.splitext(tgt_file)[0]
            for ext in (".npy", ".npz", ".png"):
                p = os.path.join(seq.depth_dir, stem + ext)
                if os.path.isfile(p):
                    depth = read_depth_file(p)
                    break
            if depth is not None and depth.shape != (H, W):
                raise SampleError(p, f"depth is {depth.shape[1]}x{depth.shape[0]} but the image "
                                     f"is {W}x{H}")
        dt = None
        fps = self.fps or seq.fps
        if seq.times is not None:
            dt = clip_dt(seq.times[list(frame_idx)], self.offsets)
        elif fps:
            # frame numbers / fps: right even when static frames were dropped in between
            dt = clip_dt(np.asarray(frame_idx, np.float64) / fps, self.offsets)
        tgt = frame_idx[self.offsets.index(0)]
        masks = {}
        stem = os.path.splitext(tgt_file)[0]
        for mname, mdir in seq.mask_dirs.items():
            mp = os.path.join(mdir, stem + ".png")
            if os.path.isfile(mp):
                m = cv2.imread(mp, cv2.IMREAD_GRAYSCALE)
                if m is None or m.shape != (H, W):
                    raise SampleError(mp, f"mask is not a readable {W}x{H} grey PNG")
                masks[mname] = m > 127
        poses = None
        if seq.poses is not None:
            poses = seq.poses[list(frame_idx)]
        clip = Clip(frames=np.stack(frames), K=K, domain=seq.domain, offsets=self.offsets,
                    depth=depth, dt=dt, source=source, poses=poses, masks=masks,
                    speed=None if seq.speeds is None else float(seq.speeds[tgt]),
                    meta={"sequence": seq.name, "files": [seq.files[i] for i in frame_idx]})
        if self.size_hw is not None:
            from dasp_core.data.augment import fit_clip

            clip = fit_clip(clip, self.size_hw, self.resize_mode)
        return clip
