"""Every parameter of ``depth_node`` in one table: name, type, default, allowed, doc, dynamic.

The table (:data:`PARAMETERS`) is the single source for

* declaring the parameters on the node (:func:`declare_parameters`, with a
  ``ParameterDescriptor``: description, ``FloatingPointRange``/``IntegerRange``, ``read_only``
  for everything that cannot change at run time),
* validating them at start and on every run-time change (:func:`validate_values`, each error
  a :class:`~dasp_core.errors.ConfigError` naming the parameter and what is allowed),
* the frozen :class:`NodeConfig` snapshot the worker thread reads (swapped atomically on
  change, never mutated), and
* the README's parameter table (:func:`markdown_table`).

ROS imports happen only inside the functions that need them, so the table itself (and the
tests of the YAML file and launch spec) load without rclpy.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from dasp_core.errors import ConfigError
from dasp_core.scale import SCALE_MODES

__all__ = ["ParamSpec", "PARAMETERS", "PARAMS_BY_NAME", "NodeConfig", "validate_values",
           "defaults", "config_from_values", "declare_parameters", "markdown_table"]

_TYPE_NAMES = {bool: "bool", int: "int", float: "double", str: "string"}
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?|gpu(:\d+)?)$")


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter.

    Attributes:
        name: parameter name.
        type: ``bool``, ``int``, ``float`` (ROS double) or ``str``.
        default: default value (of ``type``).
        description: one-sentence doc (units in brackets).
        dynamic: may change at run time (else declared ``read_only``).
        choices: allowed values (strings), empty = any.
        lo, hi: inclusive numeric range (``None`` = unbounded).
        check: extra predicate on the value, with ``check_text`` describing what it allows.
    """

    name: str
    type: type
    default: Any
    description: str
    dynamic: bool = False
    choices: Tuple[Any, ...] = ()
    lo: Optional[float] = None
    hi: Optional[float] = None
    check: Optional[Callable[[Any], bool]] = None
    check_text: str = ""

    def allowed_text(self) -> str:
        """What values are allowed, in words (used in error messages and the README)."""
        t = _TYPE_NAMES[self.type]
        if self.choices:
            return f"one of {', '.join(repr(c) for c in self.choices)}"
        if self.check_text:
            return self.check_text
        if self.type is bool:
            return "true, false"
        if self.lo is not None or self.hi is not None:
            lo = "-inf" if self.lo is None else _num(self.lo)
            hi = "inf" if self.hi is None else _num(self.hi)
            return f"{'an integer' if self.type is int else 'a number'} in [{lo}, {hi}]"
        return f"any {t}"

    def validate(self, value: Any) -> Any:
        """Return ``value`` if it is allowed, else raise :class:`ConfigError`."""
        # bool is an int subclass in Python but a different ROS parameter type
        ok_type = isinstance(value, self.type) and (self.type is bool
                                                    or not isinstance(value, bool))
        if not ok_type:
            hint = " (write it with a decimal point, e.g. 1.0)" if self.type is float and \
                isinstance(value, int) else ""
            raise ConfigError(self.name, value,
                              f"a {_TYPE_NAMES[self.type]}{hint}; {self.allowed_text()}")
        if self.type is float and not math.isfinite(value):
            raise ConfigError(self.name, value, self.allowed_text())
        if self.choices and value not in self.choices:
            raise ConfigError(self.name, value, self.choices)
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            raise ConfigError(self.name, value, self.allowed_text())
        if self.check is not None and not self.check(value):
            raise ConfigError(self.name, value, self.allowed_text())
        return value

    def descriptor(self) -> Any:
        """The ``rcl_interfaces/ParameterDescriptor`` declaring this parameter."""
        from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                        ParameterType)

        ptype = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
                 float: ParameterType.PARAMETER_DOUBLE,
                 str: ParameterType.PARAMETER_STRING}[self.type]
        d = ParameterDescriptor(name=self.name, type=ptype, description=self.description,
                                read_only=not self.dynamic)
        constraints = []
        if self.choices:
            constraints.append(f"one of {', '.join(map(str, self.choices))}")
        if self.check_text:
            constraints.append(self.check_text)
        d.additional_constraints = "; ".join(constraints)
        if self.lo is not None and self.hi is not None:
            if self.type is int:
                d.integer_range = [IntegerRange(from_value=int(self.lo), to_value=int(self.hi),
                                                step=1)]
            elif self.type is float:
                d.floating_point_range = [FloatingPointRange(from_value=float(self.lo),
                                                             to_value=float(self.hi), step=0.0)]
        return d


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


P = ParamSpec
#: Every parameter of the node, in README order.
PARAMETERS: Tuple[ParamSpec, ...] = (
    # --- model and backend
    P("model", str, "", "Depth model file (.onnx, .pt checkpoint or .engine); empty = the "
      "shipped model (dasp_core.assets.default_model_path())."),
    P("backend", str, "auto", "Inference backend; auto picks tensorrt for an .engine (or a "
      "CUDA GPU), else the faster of openvino and onnxruntime on this CPU (timed at start), "
      "else torch (.pt); the choice and why are logged and in diagnostics.",
      choices=("auto", "onnxruntime", "openvino", "tensorrt", "torch")),
    P("device", str, "auto", "Where the model runs: auto (CUDA GPU if the backend has one, "
      "else CPU), cpu, cuda, cuda:N, or gpu / gpu:N (Intel GPU, openvino).",
      check=lambda v: bool(_DEVICE_RE.match(v)),
      check_text="'auto', 'cpu', 'cuda', 'cuda:N', 'gpu' or 'gpu:N'"),
    P("threads", int, 0, "CPU threads of the backend (0 = backend default).", lo=0, hi=256),
    P("precision", str, "auto", "Inference precision; auto = bf16 on openvino with a bf16 CPU "
      "(AMX/AVX512-BF16), else fp32; int8 runs the model's Q/DQ graph (dasp export "
      "--precision int8); others are honoured exactly or refused at start.",
      choices=("auto", "fp32", "fp16", "bf16", "int8")),
    P("warmup", bool, True, "Run one inference at start, so a broken model fails at start "
      "and the first frame is not slow."),
    # --- input
    P("image_transport", str, "raw", "Input: raw subscribes sensor_msgs/Image on 'image', "
      "compressed subscribes sensor_msgs/CompressedImage on 'image/compressed'.",
      choices=("raw", "compressed")),
    P("qos_reliability", str, "reliable", "Reliability of the image and camera_info "
      "subscriptions: reliable (default; 5-12 MP images are retransmitted instead of lost; "
      "needs a reliable publisher, a best-effort one is counted as incompatible_qos) or "
      "best_effort (hears every publisher; large images are mostly lost, counted as "
      "messages_lost).",
      choices=("best_effort", "reliable")),
    P("qos_depth", int, 5, "History depth of the input subscriptions (the node keeps only "
      "the newest frame anyway).", lo=1, hi=100),
    P("rectified", bool, False, "Input images are rectified (image_rect): use CameraInfo P as "
      "intrinsics and ignore distortion."),
    P("max_input_pixels", int, 7680 * 4320, "Reject larger input images (counted as "
      "decode_error_too_large).", lo=1, hi=1 << 28),
    P("frame_id", str, "", "frame_id of the outputs; empty = the input image's (its optical "
      "frame; an image without one is warned about and counted as empty_frame_id)."),
    P("fallback_fov_deg", float, 0.0, "Horizontal field of view [deg] used as intrinsics when "
      "no valid CameraInfo has arrived; 0 = none (point clouds are skipped until one does).",
      dynamic=True, lo=0.0, hi=179.0),
    # --- outputs
    P("output_resolution", str, "camera", "Size of depth, depth_mm, depth/color and points: "
      "camera (input size) or network (model input size, with matching depth/camera_info).",
      dynamic=True, choices=("camera", "network")),
    P("output_qos_reliability", str, "reliable", "Reliability of the outputs (reliable "
      "publishers also serve best-effort subscribers).", choices=("best_effort", "reliable")),
    P("output_qos_depth", int, 1, "History depth of the outputs.", lo=1, hi=100),
    P("publish_depth", bool, True, "Publish 'depth' (32FC1 metres, NaN invalid, +Inf beyond "
      "max_range, -Inf closer than min_range, NaN for depth <= 0; REP 117/118).", dynamic=True),
    P("publish_depth_mm", bool, False, "Publish 'depth_mm' (16UC1 millimetres, 0 invalid or "
      "out of range).", dynamic=True),
    P("publish_color", bool, True, "Publish 'depth/color' (bgr8 colourised inverse depth).",
      dynamic=True),
    P("publish_points", bool, True, "Publish 'points' (PointCloud2).", dynamic=True),
    P("publish_camera_info", bool, True, "Publish 'depth/camera_info' matching the output "
      "size.", dynamic=True),
    P("min_range", float, 0.1, "Closest valid depth [m]; closer pixels are -Inf in 'depth', 0 "
      "in 'depth_mm' and left out of 'points'.", dynamic=True, lo=0.0, hi=1000.0),
    P("max_range", float, 80.0, "Farthest valid depth [m] (sky and far background); farther "
      "pixels are +Inf in 'depth', 0 in 'depth_mm' and left out of 'points'.", dynamic=True,
      lo=0.01, hi=10000.0),
    P("points_format", str, "xyzrgb", "Point fields: xyz, or xyzrgb (PCL-packed float32 rgb "
      "from the input image).", dynamic=True, choices=("xyz", "xyzrgb")),
    P("points_decimation", int, 2, "Use every n-th pixel in both directions for 'points'.",
      dynamic=True, lo=1, hi=64),
    P("points_organized", bool, True, "Organised cloud (image grid, NaN invalid, is_dense "
      "false) or dense (valid points only, height 1).", dynamic=True),
    P("color_map", str, "turbo", "Colour map of 'depth/color' (near = warm with turbo).",
      dynamic=True, choices=("turbo", "magma", "inferno", "plasma", "viridis", "jet")),
    P("color_min_depth", float, 1.0, "Depth [m] mapped to the near end of the colour map.",
      dynamic=True, lo=0.01, hi=1000.0),
    P("color_max_depth", float, 50.0, "Depth [m] mapped to the far end of the colour map "
      "(colour is linear in inverse depth).", dynamic=True, lo=0.02, hi=10000.0),
    # --- metric scale
    P("scale_mode", str, "model", "Metric scale source: model (factor stored in the model), "
      "fixed (scale_factor), camera_height (ground-plane fit), none (relative depth).",
      choices=SCALE_MODES),
    P("scale_factor", float, 1.0, "scale_mode fixed: metres per network depth unit (replaces "
      "the model's factor).", dynamic=True, lo=1e-6, hi=1e6),
    P("camera_height", float, 1.5, "scale_mode camera_height: height of the camera's optical "
      "centre above the ground [m].", dynamic=True, lo=0.05, hi=50.0),
    P("ground_roi_fraction", float, 0.35, "scale_mode camera_height: lower share of image rows "
      "searched for the ground plane.", dynamic=True, lo=0.05, hi=1.0),
    P("ground_max_tilt_deg", float, 20.0, "scale_mode camera_height: largest angle [deg] "
      "between the ground normal and the camera's up axis (pitch/roll tolerance).",
      dynamic=True, lo=0.0, hi=60.0),
    P("scale_smoothing", float, 0.9, "scale_mode camera_height: weight of the previous "
      "ground-height estimate per frame (0 = no smoothing).", dynamic=True, lo=0.0, hi=0.999),
    # --- diagnostics
    P("diagnostics_period", float, 1.0, "Period of 'diagnostics' [s].", lo=0.1, hi=60.0),
)
del P

PARAMS_BY_NAME: Dict[str, ParamSpec] = {p.name: p for p in PARAMETERS}

# pairs that must satisfy lo < hi
_ORDERED_PAIRS = (("min_range", "max_range"), ("color_min_depth", "color_max_depth"))


def defaults() -> Dict[str, Any]:
    """``{name: default}`` of every parameter."""
    return {p.name: p.default for p in PARAMETERS}


def validate_values(values: Mapping[str, Any]) -> Dict[str, Any]:
    """Validate a full or partial ``{name: value}`` mapping (missing names take defaults).

    Raises:
        ConfigError: unknown name, wrong type, value not allowed, or an ordered pair out of
            order (``min_range < max_range``, ``color_min_depth < color_max_depth``).
    """
    merged = defaults()
    for name, value in values.items():
        if name not in PARAMS_BY_NAME:
            raise ConfigError(name, value, f"a dasp depth_node parameter: "
                                           f"{', '.join(PARAMS_BY_NAME)}")
        merged[name] = PARAMS_BY_NAME[name].validate(value)
    for lo, hi in _ORDERED_PAIRS:
        if not merged[lo] < merged[hi]:
            raise ConfigError(lo, merged[lo], f"less than {hi} = {merged[hi]}")
    return merged


@dataclass(frozen=True)
class NodeConfig:
    """Validated snapshot of all parameters (field names = parameter names)."""

    model: str
    backend: str
    device: str
    threads: int
    precision: str
    warmup: bool
    image_transport: str
    qos_reliability: str
    qos_depth: int
    rectified: bool
    max_input_pixels: int
    frame_id: str
    fallback_fov_deg: float
    output_resolution: str
    output_qos_reliability: str
    output_qos_depth: int
    publish_depth: bool
    publish_depth_mm: bool
    publish_color: bool
    publish_points: bool
    publish_camera_info: bool
    min_range: float
    max_range: float
    points_format: str
    points_decimation: int
    points_organized: bool
    color_map: str
    color_min_depth: float
    color_max_depth: float
    scale_mode: str
    scale_factor: float
    camera_height: float
    ground_roi_fraction: float
    ground_max_tilt_deg: float
    scale_smoothing: float
    diagnostics_period: float

    def as_dict(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def updated(self, changes: Mapping[str, Any]) -> "NodeConfig":
        """A new snapshot with ``changes`` applied (run-time update).

        Raises:
            ConfigError: a change to a static parameter, or an invalid value/combination.
        """
        for name in changes:
            spec = PARAMS_BY_NAME.get(name)
            if spec is not None and not spec.dynamic:
                raise ConfigError(name, changes[name],
                                  "no change at run time (read-only; restart the node)")
        merged = self.as_dict()
        merged.update(changes)
        return config_from_values(merged)


assert {f.name for f in fields(NodeConfig)} == set(PARAMS_BY_NAME), "NodeConfig != PARAMETERS"


def config_from_values(values: Mapping[str, Any]) -> NodeConfig:
    """Validated :class:`NodeConfig` from ``{name: value}`` (missing names take defaults)."""
    return NodeConfig(**validate_values(values))


def declare_parameters(node: Any) -> NodeConfig:
    """Declare every parameter on an rclpy ``node`` and return the validated snapshot.

    rclpy's own type/range errors are turned into :class:`ConfigError` naming the parameter
    and what is allowed.
    """
    from rclpy.exceptions import (InvalidParameterTypeException,
                                  InvalidParameterValueException)

    values: Dict[str, Any] = {}
    for spec in PARAMETERS:
        try:
            param = node.declare_parameter(spec.name, spec.default, spec.descriptor())
        except InvalidParameterTypeException:
            hint = " (write numbers with a decimal point)" if spec.type is float else ""
            raise ConfigError(spec.name, _override(node, spec.name),
                              f"a {_TYPE_NAMES[spec.type]}{hint}; {spec.allowed_text()}"
                              ) from None
        except InvalidParameterValueException:
            raise ConfigError(spec.name, _override(node, spec.name),
                              spec.allowed_text()) from None
        values[spec.name] = param.value
    return config_from_values(values)


def _override(node: Any, name: str) -> Any:
    """The value a launch file / YAML gave ``name`` (for error messages)."""
    override = getattr(node, "_parameter_overrides", {}).get(name)
    return getattr(override, "value", "?")


def parameters_from_list(params: Iterable[Any]) -> Dict[str, Any]:
    """``{name: value}`` of the node's parameters among rclpy ``Parameter`` objects (others,
    e.g. ``use_sim_time``, are left out)."""
    return {p.name: p.value for p in params if p.name in PARAMS_BY_NAME}


def markdown_table() -> str:
    """The parameter table as Markdown (for the README)."""
    rows: List[str] = ["| Parameter | Type | Default | Allowed | Run-time | Description |",
                       "|---|---|---|---|---|---|"]
    for p in PARAMETERS:
        if p.type is str:
            default = repr(p.default)
        elif p.type is bool:
            default = str(p.default).lower()
        else:
            default = str(p.default)
        allowed = p.allowed_text().replace("|", "\\|")
        rows.append(f"| `{p.name}` | {_TYPE_NAMES[p.type]} | `{default}` | {allowed} | "
                    f"{'yes' if p.dynamic else 'no'} | {p.description} |")
    return "\n".join(rows) + "\n"
