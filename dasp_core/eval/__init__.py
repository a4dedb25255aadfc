"""Evaluation: depth metrics under named protocols, the evaluation loop, reports.

* :mod:`dasp_core.eval.metrics`: ``compute_depth_metrics``, ``PROTOCOLS``,
  ``MetricAccumulator`` (numpy only).
* :mod:`dasp_core.eval.resize`: a prediction brought to GT resolution as RNW (nearest) or
  md4all (bilinear, align_corners) does it.
* :mod:`dasp_core.eval.result`: ``EvalResult``/``ScoreSet`` and their JSON round trip.
* :mod:`dasp_core.eval.evaluate`: ``evaluate(estimator, dataset, protocol, ...) -> EvalResult``
  and the synthetic test seeds reserved for evaluation (``SYNTHETIC_TEST_SEEDS``).
* :mod:`dasp_core.eval.report`: JSON, Markdown tables, plots, sample strips.
* :mod:`dasp_core.eval.paired`: ``paired_difference`` of two evaluations of the same images,
  with a bootstrap interval over drives (``scripts/compare_evals.py``).
* :mod:`dasp_core.eval.cli`: the ``dasp eval`` command.

Nothing here imports torch; the estimator passed in decides the backend.
"""

from dasp_core.eval.evaluate import (SYNTHETIC_TEST_SEEDS, SYNTHETIC_TRAIN_SEED_LIMIT, evaluate,
                                     is_test_seed)
from dasp_core.eval.metrics import (METRIC_NAMES, PROTOCOLS, EvalProtocol, MetricAccumulator,
                                    compute_depth_metrics, get_protocol)
from dasp_core.eval.result import EvalResult, ScoreSet

__all__ = [
    "METRIC_NAMES", "PROTOCOLS", "EvalProtocol", "MetricAccumulator", "compute_depth_metrics",
    "get_protocol", "EvalResult", "ScoreSet", "evaluate", "SYNTHETIC_TEST_SEEDS",
    "SYNTHETIC_TRAIN_SEED_LIMIT", "is_test_seed",
]
