"""Inference runtime: one :class:`DepthEstimator` interface, three backends.

Importing this package (and the onnxruntime/TensorRT backends) never imports torch.
"""

from dasp_core.runtime.base import DepthEstimator, ModelInfo

__all__ = ["DepthEstimator", "ModelInfo"]
