"""Run a depth estimator over a dataset of clips and score it under a named protocol.

:func:`evaluate` is backend-agnostic: it needs only the :class:`DepthEstimator` protocol
(torch, onnxruntime or TensorRT) and any dataset yielding :class:`Clip` objects with
ground-truth depth. It never imports torch.

Ground truth: ``clip.meta["depth_full"]`` when the reader kept it (``keep_full_depth: true``:
the ground truth before the reader's resize, which is where RNW and md4all score), else
``clip.depth``.

Scoring modes (ours, following md4all which reports both):

* ``"median"``: per-image median scaling (the RNW/STEPS/DASP tables);
* ``"metric"``: the estimator's metres as they are (no scaling), computed whenever the model
  declares a scale (``ModelInfo.scale_source != "none"``) or median scaling is switched off.

The synthetic test set: :data:`SYNTHETIC_TEST_SEEDS` (10 000 … 10 099) are reserved for
evaluation; training and validation must draw their synthetic sequences from seeds below
:data:`SYNTHETIC_TRAIN_SEED_LIMIT` (10 000).
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from dasp_core.errors import ConfigError, DatasetError, check_choice
from dasp_core.eval.metrics import (METRIC_NAMES, PRED_RESIZE_MODES, EvalProtocol,
                                    MetricAccumulator, get_protocol)
from dasp_core.eval.report import save_sample_strip
from dasp_core.eval.resize import resize_prediction
from dasp_core.eval.result import EvalResult, ScoreSet

__all__ = [
    "SYNTHETIC_TEST_SEEDS", "SYNTHETIC_TRAIN_SEED_LIMIT", "SYNTHETIC_TEST_FRAMES",
    "SYNTHETIC_NIGHT_VAL_SEEDS", "SYNTHETIC_DAY_VAL_SEEDS",
    "PRESETS", "is_test_seed", "build_preset", "ScoreSet", "EvalResult", "evaluate",
    "predict_at_gt_size", "ground_truth_of",
]

log = logging.getLogger(__name__)

#: Seeds of the synthetic test sequences. Training must never render these (ours).
SYNTHETIC_TEST_SEEDS: range = range(10_000, 10_100)
#: Training/validation seeds are ``0 <= seed < SYNTHETIC_TRAIN_SEED_LIMIT``.
SYNTHETIC_TRAIN_SEED_LIMIT: int = 10_000
#: Frames rendered (and scored) per synthetic test sequence: 100 x 8 = 800 test images.
SYNTHETIC_TEST_FRAMES: int = 8

#: Seeds of the synthetic validation sequences: the training configs validate on the first
#: few (``data.night_val`` / ``data.day_val``) and train below 9000. A model is *chosen* on
#: these, at the test set's size, never on the test seeds.
SYNTHETIC_NIGHT_VAL_SEEDS: range = range(9500, 9600)
SYNTHETIC_DAY_VAL_SEEDS: range = range(9000, 9100)

#: ``--data`` presets: name → (domain, seeds). The protocol of every preset is ``synthetic``.
PRESETS: Dict[str, Tuple[str, range]] = {
    "synthetic-night-test": ("night", SYNTHETIC_TEST_SEEDS),
    "synthetic-day-test": ("day", SYNTHETIC_TEST_SEEDS),
    "synthetic-night-val": ("night", SYNTHETIC_NIGHT_VAL_SEEDS),
    "synthetic-day-val": ("day", SYNTHETIC_DAY_VAL_SEEDS),
}


def is_test_seed(seed: int) -> bool:
    """True if ``seed`` belongs to the reserved synthetic test range."""
    return int(seed) in SYNTHETIC_TEST_SEEDS


def build_preset(name: str, frames_per_sequence: int = SYNTHETIC_TEST_FRAMES,
                 n_sequences: Optional[int] = None, cfg: Any = None) -> Any:
    """Build a named evaluation dataset (a key of :data:`PRESETS`: the synthetic test or
    validation drives, night or day).

    Args:
        name: a key of :data:`PRESETS`.
        frames_per_sequence: frames rendered per sequence.
        n_sequences: use only the first n seeds of the preset (None: all 100).
        cfg: a ``SyntheticConfig`` (None: its defaults).

    Returns:
        a ``SyntheticClipDataset`` (torch-free, ``__getitem__ -> Clip``).
    """
    check_choice("data", name, sorted(PRESETS))
    from dasp_core.data.synthetic import SyntheticClipDataset, SyntheticConfig

    domain, seeds = PRESETS[name]
    if n_sequences is not None:
        if not 1 <= n_sequences <= len(seeds):
            raise ConfigError("n_sequences", n_sequences, f"1 … {len(seeds)}")
        seeds = seeds[:n_sequences]
    # Only the target frame is scored: clips of one frame (offset 0) render a third of the
    # frames of (-1, 0, 1) clips, and a small cache suffices because each frame is used once.
    return SyntheticClipDataset(domain=domain, seeds=list(seeds),
                                frames_per_sequence=int(frames_per_sequence),
                                cfg=cfg if cfg is not None else SyntheticConfig(),
                                offsets=(0,), max_cached_frames=4)


# ----------------------------------------------------------------------------- evaluation

def predict_at_gt_size(estimator: Any, image: np.ndarray, gt_shape: Tuple[int, int],
                       pred_resize: str) -> np.ndarray:
    """Depth of ``image`` at ground-truth resolution, resized as the protocol prescribes.

    Args:
        estimator: a :class:`~dasp_core.runtime.base.DepthEstimator`.
        image: ``uint8 [H, W, 3]`` RGB.
        gt_shape: ``(h, w)`` of the ground truth.
        pred_resize: ``"estimator"``: ``estimator.predict(image, output_size=gt_shape)``;
            ``"nearest"``/``"bilinear_align_corners"``: predict at network resolution, then
            :func:`~dasp_core.eval.resize.resize_prediction` (RNW / md4all).

    Returns:
        ``float32 [h, w]`` depth (metres, or relative units for a scale-free model).
    """
    check_choice("pred_resize", pred_resize, PRED_RESIZE_MODES)
    h, w = int(gt_shape[0]), int(gt_shape[1])
    if pred_resize == "estimator":
        pred = np.asarray(estimator.predict(image, output_size=(h, w)), dtype=np.float32)
    else:
        info = estimator.info
        net = estimator.predict(image, output_size=(int(info.input_height),
                                                    int(info.input_width)))
        pred = resize_prediction(net, (h, w), pred_resize)
    if pred.ndim == 3 and 1 in (pred.shape[0], pred.shape[-1]):
        pred = pred.reshape(pred.shape[-2:] if pred.shape[0] == 1 else pred.shape[:2])
    return pred


def ground_truth_of(clip: Any) -> Tuple[Optional[np.ndarray], str]:
    """``(gt, source)``: ``clip.meta["depth_full"]`` (``source="depth_full"``) when the reader
    kept it, else ``clip.depth`` (``"depth"``); ``(None, "")`` without ground truth.

    ``depth_full`` is the ground truth at the reader's crop before its resize (RobotCar and
    nuScenes readers with ``keep_full_depth: true``): RNW and md4all score there, not at the
    network resolution.
    """
    meta = getattr(clip, "meta", None) or {}
    full = meta.get("depth_full") if isinstance(meta, dict) else None
    if full is not None:
        return np.asarray(full), "depth_full"
    depth = getattr(clip, "depth", None)
    return (None, "") if depth is None else (np.asarray(depth), "depth")


def _masks_at(masks: Any, shape: Tuple[int, int], gt_source: str) -> Dict[str, np.ndarray]:
    """Region masks at the GT resolution. Masks come at ``clip.depth``'s size; against a
    ``depth_full`` GT they are brought to its size by nearest neighbour (ours: the regions are
    our breakdown, no peer has them). Against ``clip.depth`` a different size stays an error."""
    out: Dict[str, np.ndarray] = {}
    for k, v in (masks or {}).items():
        m = np.asarray(v, bool)
        if gt_source == "depth_full" and m.ndim == 2 and m.shape != tuple(shape):
            import cv2

            m = cv2.resize(m.astype(np.uint8), (shape[1], shape[0]),
                           interpolation=cv2.INTER_NEAREST).astype(bool)
        out[k] = m
    return out


def _select_indices(n: int, max_images: Optional[int]) -> List[int]:
    """All indices, or ``max_images`` evenly spread over the dataset (so a subset still covers
    every sequence instead of only the first ones; ours)."""
    if max_images is None or max_images >= n:
        return list(range(n))
    idx = np.unique(np.round(np.linspace(0, n - 1, max_images)).astype(int))
    return [int(i) for i in idx]


def _iter_samples(dataset: Any, max_images: Optional[int]
                  ) -> Tuple[Optional[int], Iterator[Tuple[int, Any, Optional[str]]]]:
    """Yield ``(index, clip or None, error text or None)``; a bad sample never stops the run."""
    if hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"):
        indices = _select_indices(len(dataset), max_images)

        def gen() -> Iterator[Tuple[int, Any, Optional[str]]]:
            for i in indices:
                try:
                    yield i, dataset[i], None
                except Exception as e:  # a corrupt file must not end the evaluation
                    yield i, None, f"{type(e).__name__}: {e}"
        return len(indices), gen()

    def gen_iter() -> Iterator[Tuple[int, Any, Optional[str]]]:
        it = iter(dataset)
        i = 0
        while max_images is None or i < max_images:
            try:
                clip = next(it)
            except StopIteration:
                return
            except Exception as e:  # generator datasets end after raising; report and stop
                yield i, None, f"{type(e).__name__}: {e}"
                return
            yield i, clip, None
            i += 1
    return max_images, gen_iter()


def _describe(dataset: Any) -> str:
    name = type(dataset).__name__
    try:
        return f"{name} ({len(dataset)} samples)"
    except Exception:
        return name


_MAX_SKIP_RECORDS = 200


def evaluate(estimator: Any, dataset: Any, protocol: str | EvalProtocol = "synthetic",
             median_scaling: Optional[bool] = None, max_images: Optional[int] = None,
             progress: bool = True, save_samples: int = 0,
             out_dir: Optional[str | os.PathLike] = None,
             bins: Optional[Sequence[float]] = None, label: Optional[str] = None,
             model_path: Optional[str] = None, dataset_name: Optional[str] = None
             ) -> EvalResult:
    """Score ``estimator`` on the target frames of ``dataset`` under ``protocol``.

    Each clip's target frame (offset 0, ``uint8 [H, W, 3]`` RGB) is predicted at the GT
    resolution (see :func:`predict_at_gt_size`) and scored against its ground truth
    (:func:`ground_truth_of`: ``meta["depth_full"]`` when kept, else ``clip.depth``) with
    :class:`MetricAccumulator` under the protocol's depth range and median rule (per-image
    averaging, distance bins, regions from ``clip.masks``, per domain). Images that cannot
    be scored are skipped and counted (``n_skipped``, ``skip_reasons``; see
    :data:`~dasp_core.eval.metrics.SKIP_RULE`).

    Args:
        estimator: a :class:`~dasp_core.runtime.base.DepthEstimator`.
        dataset: ``__len__``/``__getitem__`` or an iterable, yielding :class:`Clip` with
            ``depth``.
        protocol: a name in :data:`~dasp_core.eval.metrics.PROTOCOLS` or a protocol object.
        median_scaling: None = the protocol's default. True: score ``"median"`` (and
            ``"metric"`` as well when the model declares a scale). False: ``"metric"`` only.
        max_images: score at most this many samples, evenly spread over the dataset.
        progress: show a tqdm bar.
        save_samples: write this many image | prediction | GT | error strips (PNG) to
            ``out_dir/samples``.
        out_dir: folder for sample strips (required when ``save_samples > 0``).
        bins: distance-bin edges in metres (None: the protocol's).
        label: row name in reports (default: model file stem or the model name).
        model_path: recorded in the result.
        dataset_name: recorded in the result beside the dataset's class and size (e.g. the
            ``--data`` preset or file).

    Returns:
        :class:`EvalResult`.

    Raises:
        DatasetError: no sample could be scored (the reasons are in the message).
    """
    from tqdm import tqdm

    proto = get_protocol(protocol)
    info = estimator.info
    if median_scaling is None:
        median_scaling = proto.median_scaling
    if max_images is not None and max_images < 1:
        raise ConfigError("max_images", max_images, "a positive number of images or None")
    if save_samples < 0:
        raise ConfigError("save_samples", save_samples, "0 or a positive number of strips")
    if save_samples and out_dir is None:
        raise ConfigError("out_dir", out_dir, "a folder when save_samples > 0")

    modes: List[str] = ["median"] if median_scaling else []
    if info.is_metric or not median_scaling:
        modes.append("metric")
    if not median_scaling and not info.is_metric:
        log.warning("median scaling is off but the model has no scale (scale_source='none'): "
                    "the 'metric' scores compare relative depth with metres")
    accs = {m: MetricAccumulator.for_protocol(proto, median_scaling=(m == "median"), bins=bins)
            for m in modes}
    warnings: List[str] = []
    skip_reasons: Dict[str, int] = {}
    skipped: List[Dict[str, Any]] = []
    per_image: List[Dict[str, Any]] = []
    latencies: List[float] = []
    seen_sizes: set = set()
    gt_sizes: Dict[str, int] = {}
    gt_sources: List[str] = []
    sample_dir = Path(out_dir) / "samples" if save_samples else None
    n_saved = 0

    def skip(index: int, source: str, reason: str, detail: str = "") -> None:
        skip_reasons[reason] = skip_reasons.get(reason, 0) + 1
        if len(skipped) < _MAX_SKIP_RECORDS:
            skipped.append({"index": index, "source": source, "reason": reason,
                            "detail": detail})
        log.warning("skipped sample %d (%s): %s%s", index, source or "?", reason,
                    f" ({detail})" if detail else "")

    total, samples = _iter_samples(dataset, max_images)
    t_start = time.perf_counter()
    bar = tqdm(samples, total=total, desc=f"eval [{proto.name}]", unit="img",
               disable=not progress, dynamic_ncols=True)
    for index, clip, load_error in bar:
        if load_error is not None:
            skip(index, "", "load error", load_error)
            continue
        source = str(getattr(clip, "source", ""))
        gt, gt_source = ground_truth_of(clip)
        if gt is None:
            skip(index, source, "no ground truth")
            continue
        try:
            frames = np.asarray(clip.frames)
            image = frames[clip.target_index]
            gt = np.asarray(gt, dtype=np.float32)
            if gt.ndim == 3 and gt.shape[0] == 1:
                gt = gt[0]
            if gt.ndim != 2:
                raise ValueError(f"depth must be [H, W], got {gt.shape}")
        except Exception as e:
            skip(index, source, "malformed sample", f"{type(e).__name__}: {e}")
            continue
        if proto.eval_size is not None and tuple(gt.shape) != tuple(proto.eval_size) \
                and gt.shape not in seen_sizes:
            msg = (f"GT size {gt.shape[0]}x{gt.shape[1]} differs from the {proto.name} "
                   f"evaluation size {proto.eval_size[0]}x{proto.eval_size[1]}; numbers are "
                   f"not directly comparable with published ones")
            warnings.append(msg)
            log.warning(msg)
        seen_sizes.add(tuple(gt.shape))
        try:
            t0 = time.perf_counter()
            pred = predict_at_gt_size(estimator, image, gt.shape, proto.pred_resize)
            latency = (time.perf_counter() - t0) * 1000.0
        except Exception as e:
            skip(index, source, "prediction error", f"{type(e).__name__}: {e}")
            continue
        try:
            masks = _masks_at(getattr(clip, "masks", None), gt.shape, gt_source)
            scores = {m: accs[m].score(pred, gt, masks) for m in modes}
        except ValueError as e:
            skip(index, source, "bad prediction", str(e))
            continue
        if any(s is None for s in scores.values()):
            skip(index, source, "no valid GT in range",
                 f"no GT pixel in ({proto.min_depth:g}, {proto.max_depth:g}) m")
            continue
        domain = str(getattr(clip, "domain", ""))
        for m in modes:
            accs[m].add(scores[m], group=domain or None)
        size_key = f"{gt.shape[0]}x{gt.shape[1]}"
        gt_sizes[size_key] = gt_sizes.get(size_key, 0) + 1
        if gt_source not in gt_sources:
            gt_sources.append(gt_source)
        latencies.append(latency)
        per_image.append({"index": index, "source": source, "domain": domain,
                          "latency_ms": latency,
                          "scores": {m: dict(s["metrics"]) for m, s in scores.items()}})
        if progress:
            bar.set_postfix(abs_rel=f"{accs[modes[0]].metrics()['abs_rel']:.4f}", refresh=False)
        if sample_dir is not None and n_saved < save_samples:
            try:
                save_sample_strip(image, pred, gt, sample_dir / f"sample_{index:06d}.png",
                                  proto.min_depth, proto.max_depth,
                                  scale=float(scores[modes[0]]["metrics"]["scale"]),
                                  title=source)
                n_saved += 1
            except Exception as e:  # a picture must never cost the numbers
                log.warning("could not write sample strip for %d: %s", index, e)
    bar.close()
    total_s = time.perf_counter() - t_start
    n_images = accs[modes[0]].n_images
    n_skipped = sum(skip_reasons.values())
    if n_images == 0:
        reasons = ", ".join(f"{k}: {v}" for k, v in skip_reasons.items()) or "empty dataset"
        first = skipped[0]["detail"] if skipped else ""
        raise DatasetError(f"no sample of {_describe(dataset)} could be evaluated under "
                           f"protocol {proto.name} ({reasons}){'; first: ' + first if first else ''}")
    if n_skipped:
        log.warning("%d of %d samples skipped: %s", n_skipped, n_images + n_skipped,
                    ", ".join(f"{k}: {v}" for k, v in skip_reasons.items()))

    lat = np.asarray(latencies)
    timing = {"total_s": total_s, "images_per_s": n_images / total_s if total_s > 0 else 0.0,
              "predict_ms_mean": float(lat.mean()), "predict_ms_median": float(np.median(lat)),
              "predict_ms_p95": float(np.percentile(lat, 95))}
    score_sets = {m: ScoreSet(median_scaling=(m == "median"), metrics=accs[m].metrics(),
                              per_bin=accs[m].per_bin(), per_region=accs[m].per_region(),
                              per_domain=accs[m].per_group(), scale=accs[m].scale_stats(),
                              spread=accs[m].spread())
                  for m in modes}
    if label is None:
        label = Path(model_path).stem if model_path else (info.name or "model")
    result = EvalResult(
        protocol=proto, label=label, primary=modes[0], scores=score_sets, n_images=n_images,
        n_skipped=n_skipped, skip_reasons=skip_reasons, skipped=skipped, per_image=per_image,
        timing=timing,
        model={"path": model_path or "", "backend": str(getattr(estimator, "backend", "")),
               "info": dict(info.__dict__)},
        dataset=f"{dataset_name}: {_describe(dataset)}" if dataset_name else _describe(dataset),
        warnings=warnings, gt_sizes=gt_sizes, gt_source="+".join(gt_sources),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    m = result.metrics
    log.info("%s [%s, %s]: %s (n=%d, skipped %d)", label, proto.name, result.primary,
             " ".join(f"{k}={m[k]:.4f}" for k in METRIC_NAMES), n_images, n_skipped)
    return result
