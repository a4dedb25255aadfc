"""Depth error metrics and the named evaluation protocols of the night-depth literature.

The seven metrics are computed exactly as monodepth2's ``compute_errors``, the RNW/STEPS
evaluation scripts (``evaluation/eval_robotcar.py``, ``eval_nuscenes.py`` of RNW) and md4all's
``utils/depth.py`` ``compute_depth_metrics`` compute them:

* ground truth is valid where ``min_depth < gt < max_depth`` (strict on both sides; 0, NaN and
  inf are therefore invalid);
* optionally the prediction is multiplied by the per-image median ratio
  ``s = median(gt[valid]) / median(pred[valid])`` (monocular depth is relative); the median
  of an even count is the mean of the two middle values (``np.median``: RNW, monodepth2) or,
  in the md4all protocols, the lower of the two (``torch.median``), see :data:`MEDIAN_RULES`;
* the (scaled) prediction is clipped to ``[min_depth, max_depth]``;
* on the valid pixels::

      thresh   = max(gt / pred, pred / gt)
      a1, a2, a3 = mean(thresh < 1.25), mean(thresh < 1.25**2), mean(thresh < 1.25**3)
      abs_rel  = mean(|gt - pred| / gt)
      sq_rel   = mean((gt - pred)**2 / gt)
      rmse     = sqrt(mean((gt - pred)**2))
      rmse_log = sqrt(mean((log gt - log pred)**2))

* the dataset score is the **mean of per-image metrics** (not a pixel-pooled mean).

Each protocol of :data:`PROTOCOLS` fixes the range, the median rule, how the prediction reaches
the ground truth's resolution (:mod:`dasp_core.eval.resize`) and the ground truth's crop and
size, with the peer's file and line beside each constant.

All depths are metres, ``float [H, W]`` numpy arrays. Nothing here imports torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from dasp_core.errors import ConfigError, check_range
from dasp_core.eval.spread import SpreadAccumulator

__all__ = [
    "METRIC_NAMES", "LOWER_IS_BETTER", "METRIC_LABELS", "EvalProtocol", "PROTOCOLS",
    "get_protocol", "default_bins", "bin_label", "valid_gt_mask", "median_of", "median_scale",
    "compute_depth_metrics", "MetricAccumulator", "mean_metrics", "MEDIAN_RULES",
    "PRED_RESIZE_MODES",
]

#: Metric keys in the order every table prints them.
METRIC_NAMES: Tuple[str, ...] = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
#: True where a smaller value is better (errors); the δ accuracies are higher-is-better.
LOWER_IS_BETTER: Dict[str, bool] = {"abs_rel": True, "sq_rel": True, "rmse": True,
                                    "rmse_log": True, "a1": False, "a2": False, "a3": False}
#: Column titles used in reports.
METRIC_LABELS: Dict[str, str] = {"abs_rel": "AbsRel", "sq_rel": "SqRel", "rmse": "RMSE",
                                 "rmse_log": "RMSElog", "a1": "δ<1.25", "a2": "δ<1.25²",
                                 "a3": "δ<1.25³"}

#: How a prediction at network resolution is brought to ground-truth resolution (see
#: :func:`dasp_core.eval.resize.resize_prediction`): ``"nearest"`` = ``cv2.resize`` with
#: ``INTER_NEAREST`` (RNW), ``"bilinear_align_corners"`` = ``torch.nn.functional.interpolate``
#: bilinear with ``align_corners=True`` (md4all), ``"estimator"`` = the deployed estimator's own
#: ``predict(output_size=...)``.
PRED_RESIZE_MODES = ("nearest", "bilinear_align_corners", "estimator")

#: Median of an even number of values: ``"midpoint"`` = mean of the two middle values
#: (``np.median``; RNW eval_*.py, monodepth2 evaluate_depth.py), ``"lower"`` = the lower of the
#: two (``torch.median``; md4all utils/depth.py). Odd counts give the middle value either way.
MEDIAN_RULES = ("midpoint", "lower")

#: How ``dasp eval`` treats an image the peers' scripts do not skip (stated in every report).
SKIP_RULE = ("dasp skips and counts an image whose prediction is NaN on an evaluated pixel or "
             "whose median prediction over the evaluated pixels is zero, negative, NaN or "
             "infinite, and one without valid ground truth; the means are over the scored "
             "images and the skipped count is printed beside them.")


@dataclass(frozen=True)
class EvalProtocol:
    """A named, documented evaluation protocol. Never mix protocols in one table.

    Attributes:
        name: key in :data:`PROTOCOLS`.
        min_depth: metres; GT valid where ``gt > min_depth``; predictions clipped to it.
        max_depth: metres, the evaluation cap; GT valid where ``gt < max_depth``; predictions
            clipped to it.
        median_scaling: whether the published numbers use per-image median scaling (the
            default of ``dasp eval``; metric models are additionally scored without it).
        pred_resize: how the prediction reaches GT resolution, one of
            :data:`PRED_RESIZE_MODES`: ``"nearest"`` (RNW: network-resolution depth,
            ``cv2.INTER_NEAREST``), ``"bilinear_align_corners"`` (md4all: bilinear on depth
            with ``align_corners=True``), ``"estimator"`` (the deployed estimator's own
            ``predict(output_size=...)``: what a robot receives).
        eval_size: ``(height, width)`` of the GT the published numbers use, or None where the
            reference scripts do not fix it; a different GT size is reported as a warning
            (numbers are then not directly comparable).
        bins: distance-bin edges in metres for the per-range breakdown.
        source: where the numbers come from (paper + script).
        description: one line for report headers, naming the data, the ground-truth crop
            and how the reader must be configured.
        median_rule: one of :data:`MEDIAN_RULES`, the median of an even count.
        differences: where ``dasp eval`` scores differently from the peer's script (the
            skip-and-count rule, modes not computed); empty when none.
    """

    name: str
    min_depth: float
    max_depth: float
    median_scaling: bool
    pred_resize: str
    eval_size: Optional[Tuple[int, int]]
    bins: Tuple[float, ...]
    source: str
    description: str
    median_rule: str = "midpoint"
    differences: str = ""

    def __post_init__(self) -> None:
        if self.pred_resize not in PRED_RESIZE_MODES:
            raise ConfigError(f"protocol {self.name}: pred_resize", self.pred_resize,
                              PRED_RESIZE_MODES)
        if self.median_rule not in MEDIAN_RULES:
            raise ConfigError(f"protocol {self.name}: median_rule", self.median_rule,
                              MEDIAN_RULES)

    def to_dict(self) -> Dict[str, object]:
        d = asdict(self)
        d["eval_size"] = list(self.eval_size) if self.eval_size else None
        d["bins"] = list(self.bins)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> "EvalProtocol":
        d = dict(d)
        d["eval_size"] = tuple(d["eval_size"]) if d.get("eval_size") else None  # type: ignore
        d["bins"] = tuple(float(b) for b in d.get("bins") or ())  # type: ignore
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})  # type: ignore

    def scoring_key(self) -> Tuple[object, ...]:
        """The fields that decide the numbers (not the prose): two results are comparable
        when their protocols' keys are equal."""
        return (self.name, self.min_depth, self.max_depth, self.pred_resize, self.eval_size,
                self.median_rule, self.bins)

    def details(self) -> str:
        """What the protocol does and where it comes from, in one sentence."""
        scaling = "per-image median scaling" if self.median_scaling else "no median scaling"
        median = ("median of an even count = lower middle value (torch.median)"
                  if self.median_rule == "lower" else
                  "median of an even count = mean of the two middle values (np.median)")
        size = (f"GT scored at {self.eval_size[0]}x{self.eval_size[1]} (HxW)"
                if self.eval_size else "GT scored at the dataset's resolution")
        diff = (f" Skips and differences from the peer's script: {self.differences}"
                if self.differences else "")
        return (f"GT valid in ({self.min_depth:g}, {self.max_depth:g}) m, predictions clipped "
                f"to [{self.min_depth:g}, {self.max_depth:g}] m, {scaling} by default "
                f"({median}), per-image averaging, prediction resize: {self.pred_resize}, "
                f"{size}. {self.description} Source: {self.source}.{diff}")

    def header(self) -> str:
        """One line that names the protocol in every report."""
        return f"protocol `{self.name}`: {self.details()}"


def default_bins(max_depth: float) -> Tuple[float, ...]:
    """Bin edges 0-10-20-40-80 m cut at ``max_depth`` (the last edge is the cap). Ours."""
    edges = [0.0]
    for e in (10.0, 20.0, 40.0, 80.0):
        if e < max_depth:
            edges.append(e)
    edges.append(float(max_depth))
    return tuple(edges)


def bin_label(lo: float, hi: float) -> str:
    """``"0-10 m"`` style label of a distance bin."""
    return f"{lo:g}-{hi:g} m"


# Peer commits the citations below refer to (file:line):
#   RNW  = github.com/w2kun/RNW @ 651f8f425d115afc9fd4808383e95a0b2d928d76
#   md4all = github.com/md4all/md4all @ 1cb9300fc08d4a44d1f1d8faea96f0d4ca5bb1dc
#   monodepth2 = github.com/nianticlabs/monodepth2 @ b676244e5a1ca55564eb5d16ab521a48f823af31

_RNW_DIFFERENCES = (
    "RNW's eval script stops with an error on an image without valid GT "
    "(evaluation/eval_*.py 'The size of ground truth is zero'), and a NaN prediction or a "
    "zero/NaN/infinite median prediction turns its mean into NaN; " + SKIP_RULE)
_MD4ALL_DIFFERENCES = (
    "md4all leaves images without valid GT out of its mean uncounted "
    "(utils/depth.py:221-222, evaluation/evaluator.py:78-79), and a NaN prediction or a "
    "zero/NaN/infinite median prediction turns its mean into NaN; " + SKIP_RULE + " md4all "
    "also prints flip post-processed ('_pp') modes, which dasp does not compute: dasp's "
    "'median' is md4all's '_gt' column and 'metric' its unsuffixed column.")

PROTOCOLS: Dict[str, EvalProtocol] = {
    "rnw_robotcar": EvalProtocol(
        name="rnw_robotcar",
        min_depth=1e-5,       # RNW evaluation/eval_robotcar.py:111 (--min_depth 1e-5)
        max_depth=40.0,       # RNW evaluation/eval_robotcar.py:110 (--max_depth 40.0)
        median_scaling=True,  # RNW evaluation/eval_robotcar.py:82-83
        pred_resize="nearest",  # RNW evaluation/eval_robotcar.py:76 (cv2.INTER_NEAREST)
        # RNW evaluation/eval_robotcar.py:20,67,72: GT centre-cropped to 1152x640 (WxH),
        # offsets ((W-1152)//2, (H-640)//2) as in transforms/cv2_transforms.py:136,139
        eval_size=(640, 1152),
        bins=default_bins(40.0),
        median_rule="midpoint",  # RNW evaluation/eval_robotcar.py:82 (np.median)
        source="RNW (Wang et al., ICCV 2021) evaluation/eval_robotcar.py: --min_depth 1e-5 "
               "--max_depth 40, full-resolution GT centre-cropped to 1152x640, prediction "
               "resized with cv2.INTER_NEAREST, np.median scaling; used unchanged by STEPS "
               "(ICRA 2023) and DASP (RA-L 2025)",
        description="Oxford RobotCar-Night (2014-12-16-18-44-24, RNW test split), lidar GT "
                    "at the 1152x640 centre crop of the 1280x960 image (RobotCar reader: "
                    "crop_hw [640, 1152], keep_full_depth true).",
        differences=_RNW_DIFFERENCES),
    "rnw_nuscenes": EvalProtocol(
        name="rnw_nuscenes",
        min_depth=1e-5,       # RNW evaluation/eval_nuscenes.py:94
        max_depth=60.0,       # RNW evaluation/eval_nuscenes.py:93
        median_scaling=True,  # RNW evaluation/eval_nuscenes.py:65-66
        pred_resize="nearest",  # RNW evaluation/eval_nuscenes.py:59 (cv2.INTER_NEAREST)
        eval_size=None,       # RNW evaluation/eval_nuscenes.py:58,104: GT as stored, no crop
        bins=default_bins(60.0),
        median_rule="midpoint",  # RNW evaluation/eval_nuscenes.py:65 (np.median)
        source="RNW (Wang et al., ICCV 2021) evaluation/eval_nuscenes.py: --min_depth 1e-5 "
               "--max_depth 60, GT at the resolution of RNW's test_gt files (no crop), "
               "prediction resized with cv2.INTER_NEAREST, np.median scaling; used by STEPS "
               "and DASP",
        description="nuScenes-Night front camera (RNW night test split), lidar GT.",
        differences=_RNW_DIFFERENCES),
    "md4all_robotcar": EvalProtocol(
        name="md4all_robotcar",
        min_depth=0.1,        # md4all config/config.py:206 (EVALUATION.DEPTH.MIN_DEPTH)
        max_depth=50.0,       # md4all config/eval_*_50m_robotcar_test.yaml:29
        median_scaling=True,  # md4all evaluation/evaluator.py:22,90 ('_gt' modes)
        # md4all utils/depth.py:214, utils/image.py:135 (bilinear, align_corners=True)
        pred_resize="bilinear_align_corners",
        # md4all config/eval_*_50m_robotcar_test.yaml:14-15,21-22 (960x1280 cropped to
        # 768x1280), config/config.py:99-100 (CROP.TOP = CROP.LEFT = 0),
        # data/robotcar/robotcar_dataset.py:291-293 and data/transforms.py:70-71 (the crop
        # applies to depth_gt), robotcar_dataset.py:295-297 (the resize does not)
        eval_size=(768, 1280),
        bins=default_bins(50.0),
        median_rule="lower",  # md4all utils/depth.py:227 (torch.median)
        source="md4all (Gasperini et al., ICCV 2023) config/eval_*_50m_robotcar_test.yaml "
               "(MAX_DEPTH 50; MIN_DEPTH 0.1 from config/config.py; crop TOP=LEFT=0 768x1280), "
               "utils/depth.py compute_depth_metrics (bilinear align_corners=True upsampling "
               "of depth, torch.median scaling for the '_gt' modes)",
        description="Oxford RobotCar day+night test split of md4all, lidar GT at the top "
                    "768 rows of the 1280x960 image (rows 0-767; RobotCar reader: crop_hw "
                    "[768, 1280], crop_anchor top_left, keep_full_depth true).",
        differences=_MD4ALL_DIFFERENCES),
    "md4all_nuscenes": EvalProtocol(
        name="md4all_nuscenes",
        min_depth=0.1,        # md4all config/config.py:206
        max_depth=80.0,       # md4all config/config.py:207 (eval_*_80m_nuscenes_val.yaml)
        median_scaling=True,  # md4all evaluation/evaluator.py:22,90
        pred_resize="bilinear_align_corners",  # md4all utils/depth.py:214
        # md4all data/nuscenes_dataset.py:183,491-493: GT projected at the original 900x1600,
        # only colour images are resized; config/config.py:80-81 (ORIGINAL_SIZE 900x1600)
        eval_size=(900, 1600),
        bins=default_bins(80.0),
        median_rule="lower",  # md4all utils/depth.py:227 (torch.median)
        source="md4all (Gasperini et al., ICCV 2023) config/eval_*_80m_nuscenes_val.yaml "
               "(MAX_DEPTH 80, MIN_DEPTH 0.1), utils/depth.py compute_depth_metrics "
               "(bilinear align_corners=True, torch.median)",
        description="nuScenes val split of md4all (day/night, clear/rain), front camera, "
                    "lidar GT at the full 1600x900 (nuScenes reader: keep_full_depth true).",
        differences=_MD4ALL_DIFFERENCES),
    "synthetic": EvalProtocol(
        name="synthetic",
        min_depth=1e-3,       # monodepth2 evaluate_depth.py:62 (MIN_DEPTH = 1e-3)
        max_depth=80.0,       # monodepth2 evaluate_depth.py:63 (MAX_DEPTH = 80)
        median_scaling=True, pred_resize="estimator", eval_size=None,
        bins=default_bins(80.0),
        median_rule="midpoint",  # monodepth2 evaluate_depth.py:207 (np.median)
        source="ours: monodepth2 evaluate_depth.py constants (MIN_DEPTH 1e-3, MAX_DEPTH 80) on "
               "the dasp synthetic world; prediction resized by the deployed estimator",
        description="dasp synthetic day/night drives, exact rendered depth (sky = invalid).",
        differences="no peer script scores this data (the constants are monodepth2's); "
                    + SKIP_RULE),
}


def get_protocol(name: str | EvalProtocol) -> EvalProtocol:
    """Look a protocol up by name; raise :class:`ConfigError` listing the known ones."""
    if isinstance(name, EvalProtocol):
        return name
    if name not in PROTOCOLS:
        raise ConfigError("protocol", name, sorted(PROTOCOLS))
    return PROTOCOLS[name]


# ----------------------------------------------------------------------------- per image

def _as_depth(name: str, a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 3 and 1 in (a.shape[0], a.shape[-1]):
        a = a.reshape(a.shape[1:] if a.shape[0] == 1 else a.shape[:2])
    if a.ndim != 2:
        raise ValueError(f"{name} must be a depth map [H, W] in metres, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    return a.astype(np.float64, copy=False)


def valid_gt_mask(gt: np.ndarray, min_depth: float, max_depth: float,
                  mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Boolean ``[H, W]``: ``min_depth < gt < max_depth`` (NaN/inf/0 are invalid) and ``mask``."""
    gt = np.asarray(gt)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(gt) & (gt > min_depth) & (gt < max_depth)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != gt.shape:
            raise ValueError(f"mask shape {mask.shape} does not match GT shape {gt.shape}")
        valid &= mask
    return valid


def median_of(values: np.ndarray, rule: str = "midpoint") -> float:
    """Median of a non-empty 1-D array under one of :data:`MEDIAN_RULES`.

    ``"midpoint"``: ``np.median`` (mean of the two middle values of an even count);
    ``"lower"``: the ``(n - 1) // 2``-th smallest value, which is what ``torch.median``
    returns (md4all utils/depth.py:227). NaN propagates under both rules.
    """
    if rule == "midpoint":
        return float(np.median(values))
    if rule != "lower":
        raise ConfigError("median_rule", rule, MEDIAN_RULES)
    v = np.asarray(values).ravel()
    if np.isnan(v).any():
        return float("nan")
    k = (v.size - 1) // 2
    return float(np.partition(v, k)[k])


def median_scale(pred_vals: np.ndarray, gt_vals: np.ndarray, rule: str = "midpoint") -> float:
    """``median(gt) / median(pred)`` over matching valid pixels (the RNW/monodepth2/md4all
    ratio), the median taken under ``rule`` (:data:`MEDIAN_RULES`)."""
    if gt_vals.size == 0:
        raise ValueError("median scaling needs at least one valid GT pixel")
    mp = median_of(pred_vals, rule)
    if not (mp > 0.0 and math.isfinite(mp)):
        raise ValueError(f"median of the prediction over valid GT pixels is {mp}; "
                         f"expected a positive finite depth")
    return median_of(gt_vals, rule) / mp


def _errors(pred: np.ndarray, gt: np.ndarray) -> Dict[str, float]:
    """monodepth2 ``compute_errors`` on 1-D arrays of valid, clipped values."""
    thresh = np.maximum(gt / pred, pred / gt)
    diff = gt - pred
    return {
        "abs_rel": float(np.mean(np.abs(diff) / gt)),
        "sq_rel": float(np.mean(diff ** 2 / gt)),
        "rmse": float(np.sqrt(np.mean(diff ** 2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(gt) - np.log(pred)) ** 2))),
        "a1": float(np.mean(thresh < 1.25)),
        "a2": float(np.mean(thresh < 1.25 ** 2)),
        "a3": float(np.mean(thresh < 1.25 ** 3)),
    }


def _empty_metrics(scale: float) -> Dict[str, float]:
    out = {k: float("nan") for k in METRIC_NAMES}
    out.update(scale=scale, ratio=float("nan"), n_valid=0)
    return out


def compute_depth_metrics(pred: np.ndarray, gt: np.ndarray, min_depth: float = 1e-3,
                          max_depth: float = 80.0, median_scaling: bool = True,
                          mask: Optional[np.ndarray] = None,
                          scale: Optional[float] = None,
                          median_rule: str = "midpoint") -> Dict[str, float]:
    """The seven depth metrics of one image (monodepth2 / RNW / md4all definitions).

    Args:
        pred: predicted depth ``[H, W]`` in metres (or relative units when median scaling).
            ``+inf`` is allowed (REP 117 "beyond range"; clipped to ``max_depth``); NaN inside
            the evaluated pixels is an error (a model must not get to choose its pixels).
        gt: ground-truth depth ``[H, W]`` metres; 0, negative, NaN and inf are invalid.
        min_depth, max_depth: GT validity ``min_depth < gt < max_depth`` and prediction clip
            range ``[min_depth, max_depth]``, metres.
        median_scaling: multiply ``pred`` by ``median(gt) / median(pred)`` over the evaluated
            pixels before clipping.
        mask: optional boolean ``[H, W]``: evaluate only these pixels (AND with GT validity).
        scale: use this factor instead of computing one (overrides ``median_scaling``); used
            to score distance bins and regions with the scale of the whole image.
        median_rule: median of an even count, one of :data:`MEDIAN_RULES` (the protocol's).

    Returns:
        dict with ``abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3`` (floats), ``scale`` (the
        factor applied, 1.0 without scaling), ``ratio`` (``median(gt) / median(pred)`` of the
        unscaled prediction, a diagnostic of a metric model's scale error; NaN if the median
        prediction is not positive) and ``n_valid`` (evaluated pixels). When no GT pixel is
        valid the metrics are NaN and ``n_valid`` is 0.

    Raises:
        ValueError: shapes differ, NaN predictions on evaluated pixels, or a non-positive
            median prediction.
    """
    check_range("min_depth", float(min_depth), lo=0.0, lo_open=True)
    check_range("max_depth", float(max_depth), lo=float(min_depth), lo_open=True)
    if median_rule not in MEDIAN_RULES:
        raise ConfigError("median_rule", median_rule, MEDIAN_RULES)
    pred = _as_depth("pred", pred)
    gt = _as_depth("gt", gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from GT shape {gt.shape}; "
                         f"resize the prediction to the GT resolution first")
    valid = valid_gt_mask(gt, min_depth, max_depth, mask)
    n_valid = int(valid.sum())
    if n_valid == 0:
        return _empty_metrics(1.0 if scale is None else float(scale))
    gt_vals = gt[valid]
    pred_vals = pred[valid]
    n_nan = int(np.isnan(pred_vals).sum())
    if n_nan:
        raise ValueError(f"prediction is NaN on {n_nan} of {n_valid} evaluated pixels")
    try:
        ratio = median_scale(pred_vals, gt_vals, median_rule)
    except ValueError:
        if median_scaling and scale is None:
            raise
        ratio = float("nan")
    if scale is None:
        scale = ratio if median_scaling else 1.0
    pred_vals = np.clip(pred_vals * float(scale), min_depth, max_depth)
    out = _errors(pred_vals, gt_vals)
    out.update(scale=float(scale), ratio=ratio, n_valid=n_valid)
    return out


# ----------------------------------------------------------------------------- accumulation

@dataclass
class _Mean:
    """Running per-image mean of the metrics plus image and pixel counts."""

    sums: Dict[str, float] = field(default_factory=lambda: {k: 0.0 for k in METRIC_NAMES})
    n_images: int = 0
    n_pixels: int = 0

    def add(self, m: Mapping[str, float]) -> None:
        for k in METRIC_NAMES:
            self.sums[k] += float(m[k])
        self.n_images += 1
        self.n_pixels += int(m["n_valid"])

    def result(self) -> Dict[str, float]:
        n = self.n_images
        out: Dict[str, float] = {k: (self.sums[k] / n if n else float("nan"))
                                 for k in METRIC_NAMES}
        out["n_images"] = n
        out["n_pixels"] = self.n_pixels
        return out


class MetricAccumulator:
    """Per-image metric averaging with distance-bin and region breakdowns.

    Every :meth:`update` scores one image. The overall score is the mean of per-image metrics
    (RNW/monodepth2). The per-image scale (median ratio, or 1) is computed once on all valid
    GT pixels and reused for the bins and regions, so a bin's error is the error of the
    image's prediction in that range, not of a prediction re-fitted to the range (ours).
    A bin/region score averages only over the images that have valid GT pixels in it;
    ``n_images`` and ``n_pixels`` say how many.

    Args:
        min_depth, max_depth: metres, as in :func:`compute_depth_metrics`.
        median_scaling: per-image median scaling.
        bins: distance-bin edges in metres (``lo <= gt < hi``), default
            :func:`default_bins` of ``max_depth``; empty to disable.
        median_rule: median of an even count (:data:`MEDIAN_RULES`); use
            :meth:`for_protocol` to take every setting from a protocol.
    """

    def __init__(self, min_depth: float, max_depth: float, median_scaling: bool = True,
                 bins: Optional[Sequence[float]] = None, median_rule: str = "midpoint"):
        check_range("min_depth", float(min_depth), lo=0.0, lo_open=True)
        check_range("max_depth", float(max_depth), lo=float(min_depth), lo_open=True)
        if median_rule not in MEDIAN_RULES:
            raise ConfigError("median_rule", median_rule, MEDIAN_RULES)
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.median_scaling = bool(median_scaling)
        self.median_rule = median_rule
        edges = default_bins(max_depth) if bins is None else tuple(float(b) for b in bins)
        if len(edges) == 1 or any(b <= a for a, b in zip(edges, edges[1:])):
            raise ConfigError("bins", list(edges), "at least two strictly increasing edges (m)")
        self.bins: Tuple[float, ...] = edges
        self._overall = _Mean()
        self._bins: Dict[str, _Mean] = {bin_label(a, b): _Mean()
                                        for a, b in zip(edges, edges[1:])}
        self._regions: Dict[str, _Mean] = {}
        self._groups: Dict[str, _Mean] = {}
        self._ratios: List[float] = []
        self._spread = SpreadAccumulator(self.min_depth, self.max_depth)
        self.n_empty = 0

    @classmethod
    def for_protocol(cls, protocol: "str | EvalProtocol", median_scaling: Optional[bool] = None,
                     bins: Optional[Sequence[float]] = None) -> "MetricAccumulator":
        """An accumulator with the protocol's depth range, median rule and bins.

        Args:
            protocol: a name in :data:`PROTOCOLS` or a protocol.
            median_scaling: None = the protocol's default.
            bins: None = the protocol's bins.
        """
        p = get_protocol(protocol)
        return cls(p.min_depth, p.max_depth,
                   p.median_scaling if median_scaling is None else median_scaling,
                   p.bins if bins is None else bins, median_rule=p.median_rule)

    @property
    def n_images(self) -> int:
        return self._overall.n_images

    def score(self, pred: np.ndarray, gt: np.ndarray,
              masks: Optional[Mapping[str, np.ndarray]] = None) -> Optional[Dict[str, object]]:
        """Score one image without adding it (see :meth:`update`)."""
        overall = compute_depth_metrics(pred, gt, self.min_depth, self.max_depth,
                                        self.median_scaling, median_rule=self.median_rule)
        if overall["n_valid"] == 0:
            return None
        scale = overall["scale"]
        gt_arr = _as_depth("gt", gt)
        per_bin: Dict[str, Dict[str, float]] = {}
        for (lo, hi), label in zip(zip(self.bins, self.bins[1:]), self._bins):
            with np.errstate(invalid="ignore"):
                in_bin = (gt_arr >= lo) & (gt_arr < hi)
            m = compute_depth_metrics(pred, gt, self.min_depth, self.max_depth, mask=in_bin,
                                      scale=scale, median_rule=self.median_rule)
            if m["n_valid"]:
                per_bin[label] = m
        per_region: Dict[str, Dict[str, float]] = {}
        for name, region in (masks or {}).items():
            m = compute_depth_metrics(pred, gt, self.min_depth, self.max_depth,
                                      mask=np.asarray(region, bool), scale=scale,
                                      median_rule=self.median_rule)
            if m["n_valid"]:
                per_region[name] = m
        # the scored pixels, as scored, for the pooled spread statistics
        valid = valid_gt_mask(gt_arr, self.min_depth, self.max_depth)
        pixels = (np.clip(_as_depth("pred", pred)[valid] * float(scale), self.min_depth,
                          self.max_depth), gt_arr[valid])
        return {"metrics": overall, "bins": per_bin, "regions": per_region, "pixels": pixels}

    def add(self, score: Optional[Mapping[str, object]], group: Optional[str] = None) -> None:
        """Add a :meth:`score` result (None counts as an image without valid GT).

        Args:
            score: the per-image score.
            group: optional group name (e.g. the clip's domain ``"day"``/``"night"``) for
                :meth:`per_group`.
        """
        if score is None:
            self.n_empty += 1
            return
        overall = score["metrics"]
        self._overall.add(overall)  # type: ignore[arg-type]
        self._ratios.append(float(overall["ratio"]))  # type: ignore[index]
        for label, m in score["bins"].items():  # type: ignore[union-attr]
            self._bins[label].add(m)
        for name, m in score["regions"].items():  # type: ignore[union-attr]
            self._regions.setdefault(name, _Mean()).add(m)
        if group is not None:
            self._groups.setdefault(group, _Mean()).add(overall)  # type: ignore[arg-type]
        if "pixels" in score:
            self._spread.add(*score["pixels"])  # type: ignore[misc]

    def update(self, pred: np.ndarray, gt: np.ndarray,
               masks: Optional[Mapping[str, np.ndarray]] = None,
               group: Optional[str] = None) -> Optional[Dict[str, object]]:
        """Score one image and add it.

        Args:
            pred, gt: ``[H, W]`` depth (see :func:`compute_depth_metrics`).
            masks: named boolean ``[H, W]`` region masks (e.g. ``"dark"``, ``"lit"``,
                ``"moving"``); each region is scored on the valid GT pixels inside it.
            group: optional group name for :meth:`per_group`.

        Returns:
            ``{"metrics": {...}, "bins": {label: {...}}, "regions": {name: {...}},
            "pixels": (pred [N], gt [N])}`` for this image (bins/regions without valid pixels
            are left out; ``pixels`` are the scored values, scaled and clipped), or None when
            the image has no valid GT pixel (counted in :attr:`n_empty`, not averaged).

        Raises:
            ValueError: see :func:`compute_depth_metrics`; nothing is added then.
        """
        s = self.score(pred, gt, masks)
        self.add(s, group)
        return s

    def metrics(self) -> Dict[str, float]:
        """Mean per-image metrics plus ``n_images`` and ``n_pixels``."""
        return self._overall.result()

    def per_bin(self) -> Dict[str, Dict[str, float]]:
        """``{"0-10 m": {metric: mean, "n_images": k, "n_pixels": p}, ...}`` (all bins)."""
        return {label: acc.result() for label, acc in self._bins.items()}

    def per_region(self) -> Dict[str, Dict[str, float]]:
        """``{region name: {metric: mean, "n_images": k, "n_pixels": p}}``."""
        return {name: acc.result() for name, acc in sorted(self._regions.items())}

    def per_group(self) -> Dict[str, Dict[str, float]]:
        """``{group: {metric: mean, "n_images": k, "n_pixels": p}}`` (e.g. per domain)."""
        return {name: acc.result() for name, acc in sorted(self._groups.items())}

    def scale_stats(self) -> Dict[str, float]:
        """Statistics of the per-image ratios ``median(gt) / median(pred)``.

        With median scaling these are the factors applied; their spread (``cv = std / mean``)
        measures how consistent the model's scale is across images, which median scaling
        otherwise hides. Without scaling, a mean of 1 means the model's metres are right.
        Images whose ratio is undefined (non-positive median prediction) are left out.
        """
        s = np.asarray(self._ratios, dtype=np.float64)
        s = s[np.isfinite(s)]
        if s.size == 0:
            return {"mean": float("nan"), "median": float("nan"), "std": float("nan"),
                    "cv": float("nan")}
        mean = float(s.mean())
        return {"mean": mean, "median": float(np.median(s)), "std": float(s.std()),
                "cv": float(s.std() / mean) if mean else float("nan")}

    def spread(self) -> Dict[str, float]:
        """Pooled depth spread of the scored pixels (:class:`~dasp_core.eval.spread.
        SpreadAccumulator`): prediction and GT p2/p50/p98 in metres, ``pred_ratio`` and
        ``gt_ratio`` (p98/p2), ``ratio_rel`` and the log-depth correlation ``log_corr``."""
        return self._spread.result()

    def summary(self) -> Dict[str, object]:
        """Everything as one JSON-ready dict."""
        return {"median_scaling": self.median_scaling, "median_rule": self.median_rule,
                "min_depth": self.min_depth,
                "max_depth": self.max_depth, "bins": list(self.bins),
                "metrics": self.metrics(), "per_bin": self.per_bin(),
                "per_region": self.per_region(), "per_group": self.per_group(),
                "scale": self.scale_stats(), "spread": self.spread(),
                "n_images": self.n_images, "n_empty": self.n_empty}


def mean_metrics(per_image: Iterable[Mapping[str, float]]) -> Dict[str, float]:
    """Per-image average of already computed metric dicts (NaN-free entries only)."""
    acc = _Mean()
    for m in per_image:
        if m.get("n_valid", 1):
            acc.add({**m, "n_valid": m.get("n_valid", 0)})
    return acc.result()
