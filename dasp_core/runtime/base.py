"""The inference interface shared by every backend, and the model description it carries.

No torch import here: the ROS node and the onnxruntime/TensorRT backends depend on this module
only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple, runtime_checkable

import numpy as np

from dasp_core.errors import ModelFileError

SCALE_SOURCES = ("learned", "odometry", "ground_truth", "fixed", "camera_height", "none")


@dataclass
class ModelInfo:
    """What a deployed depth model is; stored in checkpoints and as ONNX metadata.

    Attributes:
        input_height, input_width: network input size in pixels (multiples of 32).
        min_depth, max_depth: metres; the sigmoid disparity maps to [1/max, 1/min].
        scale_factor: multiply the network depth by this to get metres.
        scale_source: where ``scale_factor`` comes from: ``learned`` (weak velocity
            supervision in training), ``odometry`` (trained with the recording's metric camera
            motion: metric by construction, factor 1), ``ground_truth`` (a diagnostic model
            supervised with depth), ``fixed`` (calibrated by a user), ``camera_height``
            (estimated at run time from a ground plane), ``none`` (relative depth).
        output: what the graph outputs: ``"disparity"`` (sigmoid, ``[B, 1, H, W]``).
        input_format: ``"rgb_float01_nchw"``: RGB, float32 in [0, 1], NCHW; normalisation is
            inside the graph.
        name, version: free text (model name, dasp version that produced it).
        extra: anything else (training config hash, git revision, ...).
    """

    input_height: int = 192
    input_width: int = 640
    min_depth: float = 0.1
    max_depth: float = 100.0
    scale_factor: float = 1.0
    scale_source: str = "none"
    output: str = "disparity"
    input_format: str = "rgb_float01_nchw"
    name: str = "dasp"
    version: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ModelInfo":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def from_json(cls, text: str) -> "ModelInfo":
        return cls.from_dict(json.loads(text))

    @property
    def is_metric(self) -> bool:
        return self.scale_source != "none"


#: metadata key of the ModelInfo JSON in an exported graph (ONNX ``metadata_props``)
METADATA_KEY = "dasp_model_info"
INPUT_NAME = "image"
OUTPUT_NAME = "disparity"


def graph_model_info(path: str, metadata: Optional[str], inputs: Sequence[str],
                     outputs: Sequence[str], shape: List[Any], float32: bool, dtype: str,
                     expected: str) -> ModelInfo:
    """ModelInfo of an exported graph from its metadata JSON, checked against the graph's I/O
    (one input ``image``, static float32 ``[1, 3, H, W]`` of the metadata's size, an output
    ``disparity``); :class:`ModelFileError` naming ``path`` and ``expected`` otherwise. Shared
    by the runtimes that load the same ONNX file (onnxruntime, OpenVINO)."""
    if metadata is None:
        raise ModelFileError(path, f"has no {METADATA_KEY!r} metadata", expected)
    try:
        info = ModelInfo.from_json(metadata)
    except (ValueError, TypeError) as e:
        raise ModelFileError(path, f"{METADATA_KEY!r} metadata is not ModelInfo JSON ({e})",
                             expected) from None
    if list(inputs) != [INPUT_NAME] or OUTPUT_NAME not in outputs:
        raise ModelFileError(path, f"has inputs {list(inputs)} and outputs {list(outputs)}",
                             f"one input {INPUT_NAME!r} and an output {OUTPUT_NAME!r}")
    if (len(shape) != 4 or not all(isinstance(d, int) for d in shape) or shape[:2] != [1, 3]
            or not float32):
        raise ModelFileError(path, f"input {INPUT_NAME!r} is {dtype} {shape}",
                             "a static float32 [1, 3, H, W] input")
    if (shape[2], shape[3]) != (info.input_height, info.input_width):
        raise ModelFileError(path, f"graph input is {shape[2]}x{shape[3]} but its metadata says "
                                   f"{info.input_height}x{info.input_width}",
                             "consistent metadata (re-export the model)")
    return info


def check_input_size(path: str, info: ModelInfo, input_size: Optional[Tuple[int, int]]) -> None:
    """:class:`ModelFileError` when a fixed-size graph is not the ``input_size`` asked for."""
    if input_size is not None and tuple(input_size) != (info.input_height, info.input_width):
        raise ModelFileError(path, f"has input size {info.input_height}x{info.input_width}",
                             f"{input_size[0]}x{input_size[1]} as requested (export that size "
                             f"with `dasp export --onnx --size {input_size[0]}x{input_size[1]}`)")


@runtime_checkable
class DepthEstimator(Protocol):
    """A loaded depth model, ready to run.

    ``predict`` takes one RGB ``uint8 [H, W, 3]`` image of any size and returns
    ``float32 [h, w]`` depth in metres (times ``info.scale_factor``; relative when
    ``info.scale_source == "none"``), at ``output_size`` (h, w) if given, else at the input
    image size. ``predict_batch`` does the same for ``[B, H, W, 3]``. ``infer_disparity``
    runs the raw graph on a preprocessed ``float32 [B, 3, h, w]`` batch and returns the
    sigmoid disparity ``[B, 1, h, w]`` (for parity tests and benchmarks).
    """

    info: ModelInfo
    backend: str

    def predict(self, image: np.ndarray, output_size: Optional[Tuple[int, int]] = None
                ) -> np.ndarray: ...

    def predict_batch(self, images: np.ndarray, output_size: Optional[Tuple[int, int]] = None
                      ) -> np.ndarray: ...

    def infer_disparity(self, batch: np.ndarray) -> np.ndarray: ...
