"""What ``launch/night_depth.launch.py`` launches, as plain Python (no ``launch`` imports).

``launch``/``launch_ros`` are not installable outside a ROS distribution, so every decision
lives here and is tested; the launch file only maps the result onto launch_ros actions
(``DeclareLaunchArgument``, ``SetEnvironmentVariable``, ``Node``, ``OpaqueFunction``).

Decisions:

* The node runs in the camera's namespace (default ``/camera``), so its outputs sit next to
  the camera's topics: ``/camera/depth``, ``/camera/depth/camera_info``,
  ``/camera/depth/color``, ``/camera/points``; ``diagnostics`` goes to the global
  ``/diagnostics`` that diagnostic aggregators read.
* Inputs: ``image`` → ``image_raw`` and ``camera_info`` → ``camera_info`` in that namespace
  unless ``image_topic``/``camera_info_topic`` name others. With ``compressed:=true`` the node
  subscribes ``image/compressed``, remapped to ``<image topic>/compressed`` (the
  image_transport naming; a remap of ``image`` alone would not move ``image/compressed``).
* Parameters: the YAML file (``params_file``, default the package's
  ``config/night_depth.yaml``), then the launch arguments that override it (``model``,
  ``backend``, ``device``, ``image_transport``, ``use_sim_time``).
* Environment: ``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA`` unless the user set it (argument
  ``fastdds_large_data``). Fast DDS sends large best-effort samples between processes as UDP
  fragments that default socket buffers drop (a 640x480 image is ~0.9 MB; measured here: 2 of
  30 frames arrive); LARGE_DATA uses shared memory / TCP for big samples (30 of 30). Other RMWs
  ignore the variable. The camera driver's process must use the same setting: measured with
  rmw_fastrtps (Kilted), a LARGE_DATA participant and a default one do not communicate *at
  all*, and ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` undoes LARGE_DATA (frames lost again);
  :func:`dds_environment_hints` says so at start.
* RViz (``rviz:=true``): ``config/night_depth.rviz`` with its topics and fixed frame rewritten
  for the chosen namespace, compression and camera frame (a temp copy).
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import yaml

__all__ = ["LaunchArgument", "ARGUMENTS", "NodeSpec", "LaunchPlan", "PACKAGE", "share_dir",
           "parse_bool", "join_topic", "input_remappings", "output_topics", "environment",
           "dds_environment_hints",
           "node_parameters", "render_rviz_config", "build_plan", "RVIZ_TOPICS"]

PACKAGE = "dasp_ros"
LARGE_DATA_ENV = ("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")


@dataclass(frozen=True)
class LaunchArgument:
    """One ``DeclareLaunchArgument``: name, default (string), description, choices."""

    name: str
    default: str
    description: str
    choices: Tuple[str, ...] = ()


#: The launch file's arguments (all strings, as launch passes them).
ARGUMENTS: Tuple[LaunchArgument, ...] = (
    LaunchArgument("model", "", "depth model (.onnx/.pt/.engine); empty = value in params_file "
                   "(default: the shipped model)"),
    LaunchArgument("backend", "", "inference backend; empty = value in params_file",
                   ("", "auto", "onnxruntime", "openvino", "tensorrt", "torch")),
    LaunchArgument("device", "", "auto | cpu | cuda | cuda:N | gpu | gpu:N; empty = value in "
                   "params_file"),
    LaunchArgument("camera_namespace", "/camera", "namespace of the camera; the node runs "
                   "there and its outputs appear there"),
    LaunchArgument("image_topic", "", "input image topic; empty = <camera_namespace>/image_raw"),
    LaunchArgument("camera_info_topic", "", "camera info topic; empty = "
                   "<camera_namespace>/camera_info"),
    LaunchArgument("compressed", "false", "subscribe <image_topic>/compressed "
                   "(sensor_msgs/CompressedImage)", ("true", "false")),
    LaunchArgument("camera_frame", "camera_optical_frame", "optical frame of the camera "
                   "(RViz fixed frame)"),
    LaunchArgument("rviz", "false", "also start RViz with config/night_depth.rviz",
                   ("true", "false")),
    LaunchArgument("use_sim_time", "false", "use /clock (bag replay)", ("true", "false")),
    LaunchArgument("params_file", "", "node parameters YAML; empty = the package's "
                   "config/night_depth.yaml"),
    LaunchArgument("log_level", "info", "node log level",
                   ("debug", "info", "warn", "error", "fatal")),
    LaunchArgument("fastdds_large_data", "true", "set FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA for "
                   "the launched nodes (unless already set); the camera driver must use the "
                   "same setting: Fast DDS participants with different builtin transports do "
                   "not communicate", ("true", "false")),
)
ARGUMENTS_BY_NAME = {a.name: a for a in ARGUMENTS}


@dataclass
class NodeSpec:
    """Keyword arguments of one ``launch_ros.actions.Node``."""

    package: str
    executable: str
    name: str
    namespace: str = ""
    parameters: List[Any] = field(default_factory=list)
    remappings: List[Tuple[str, str]] = field(default_factory=list)
    arguments: List[str] = field(default_factory=list)
    ros_arguments: List[str] = field(default_factory=list)
    output: str = "screen"

    def as_kwargs(self) -> Dict[str, Any]:
        kw: Dict[str, Any] = {"package": self.package, "executable": self.executable,
                              "name": self.name, "output": self.output}
        if self.namespace:
            kw["namespace"] = self.namespace
        if self.parameters:
            kw["parameters"] = list(self.parameters)
        if self.remappings:
            kw["remappings"] = list(self.remappings)
        if self.arguments:
            kw["arguments"] = list(self.arguments)
        if self.ros_arguments:
            kw["ros_arguments"] = list(self.ros_arguments)
        return kw


@dataclass
class LaunchPlan:
    """Everything the launch file does: environment to set, nodes to start."""

    environment: Dict[str, str]
    nodes: List[NodeSpec]


def share_dir() -> Path:
    """The package's share directory (``config/``, ``launch/``).

    An installed package (colcon or ``pip install``) is found through the ament index or the
    environment's ``share/dasp_ros``; a source checkout uses the repository root.
    """
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
        try:
            return Path(get_package_share_directory(PACKAGE))
        except (PackageNotFoundError, OSError):  # OSError: AMENT_PREFIX_PATH unset (pip venv)
            pass
    except ImportError:
        pass
    installed = Path(sys.prefix) / "share" / PACKAGE
    if (installed / "config").is_dir():
        return installed
    return Path(__file__).resolve().parent.parent


def parse_bool(name: str, value: str) -> bool:
    """Launch argument text → bool; raises ValueError naming the argument."""
    v = str(value).strip().lower()
    if v in ("true", "1", "yes", "on"):
        return True
    if v in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"launch argument {name}:={value!r} is not allowed; allowed: true, false")


def join_topic(namespace: str, name: str) -> str:
    """``join_topic('/camera', 'image_raw') == '/camera/image_raw'`` (absolute names kept)."""
    if name.startswith("/"):
        return name
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return f"{ns}/{name}"


def _namespace(args: Mapping[str, str]) -> str:
    ns = args.get("camera_namespace", "/camera").strip()
    return "/" + ns.strip("/") if ns.strip("/") else ""


def input_remappings(camera_namespace: str, image_topic: str = "", camera_info_topic: str = "",
                     compressed: bool = False) -> List[Tuple[str, str]]:
    """Remappings of the node's inputs (the node runs in ``camera_namespace``).

    Returns ``[(from, to), ...]``: ``image`` (or ``image/compressed``) and ``camera_info``,
    targets absolute.
    """
    image = join_topic(camera_namespace, image_topic or "image_raw")
    info = join_topic(camera_namespace, camera_info_topic or "camera_info")
    remaps = [("image/compressed", image + "/compressed")] if compressed else [("image", image)]
    remaps.append(("camera_info", info))
    return remaps


def output_topics(camera_namespace: str) -> Dict[str, str]:
    """Absolute names of the node's outputs when launched in ``camera_namespace``."""
    t = {k: join_topic(camera_namespace, v) for k, v in
         (("depth", "depth"), ("depth_mm", "depth_mm"), ("camera_info", "depth/camera_info"),
          ("color", "depth/color"), ("points", "points"))}
    t["diagnostics"] = "/diagnostics"
    return t


def environment(current: Optional[Mapping[str, str]] = None, large_data: bool = True
                ) -> Dict[str, str]:
    """Variables to set for the launched processes (none the user already set)."""
    current = os.environ if current is None else current
    key, value = LARGE_DATA_ENV
    return {} if key in current or not large_data else {key: value}


def dds_environment_hints(env: Optional[Mapping[str, str]] = None) -> List[Tuple[str, str]]:
    """``[(level, text), ...]`` about the DDS environment of an image subscriber (for logs).

    Levels are ``"info"`` or ``"warn"``. Only rmw_fastrtps (the default RMW) is checked.
    """
    env = os.environ if env is None else env
    rmw = env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") or "rmw_fastrtps_cpp"
    if not rmw.startswith("rmw_fastrtps"):
        return []
    transports = env.get("FASTDDS_BUILTIN_TRANSPORTS", "")
    if transports != "LARGE_DATA":
        return [("warn", f"FASTDDS_BUILTIN_TRANSPORTS is {transports or 'unset'}: best-effort "
                         "images from other processes are mostly lost once larger than a few "
                         "UDP fragments; set FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA here and in "
                         "the camera driver's process")]
    hints = [("info", "FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA: the image publisher must use it "
                      "too (Fast DDS participants with different builtin transports do not "
                      "communicate at all)")]
    if env.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "").upper() == "LOCALHOST":
        hints.append(("warn", "ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST undoes LARGE_DATA in "
                              "rmw_fastrtps (large best-effort images are lost); unset it and "
                              "isolate with ROS_DOMAIN_ID instead"))
    return hints


def node_parameters(args: Mapping[str, str], share: Optional[Path] = None) -> List[Any]:
    """``parameters=`` of the node: the YAML file, then overrides from launch arguments."""
    share = share_dir() if share is None else share
    params_file = args.get("params_file") or str(share / "config" / "night_depth.yaml")
    overrides: Dict[str, Any] = {
        "use_sim_time": parse_bool("use_sim_time", args.get("use_sim_time", "false")),
        "image_transport": "compressed" if parse_bool("compressed", args.get("compressed",
                                                                             "false")) else "raw",
    }
    for key in ("model", "backend", "device"):
        if args.get(key):
            overrides[key] = os.path.expanduser(args[key]) if key == "model" else args[key]
    return [params_file, overrides]


RVIZ_TOPICS = ("camera_image", "color", "points")


def render_rviz_config(template: Path, camera_namespace: str, image_topic: str,
                       compressed: bool, camera_frame: str, out_dir: Optional[Path] = None
                       ) -> Path:
    """Copy of the RViz config with topics and fixed frame for this launch.

    Displays are recognised by their ``Name`` (``Camera image``, ``Depth (colour)``,
    ``Point cloud``); the returned file lives in a temp directory.
    """
    with open(template) as f:
        cfg = yaml.safe_load(f)
    outs = output_topics(camera_namespace)
    image = join_topic(camera_namespace, image_topic or "image_raw")
    topics = {"Camera image": image + ("/compressed" if compressed else ""),
              "Depth (colour)": outs["color"], "Point cloud": outs["points"]}
    for display in cfg["Visualization Manager"]["Displays"]:
        name = display.get("Name")
        if name in topics:
            display["Topic"]["Value"] = topics[name]
    cfg["Visualization Manager"]["Global Options"]["Fixed Frame"] = camera_frame
    out_dir = Path(tempfile.mkdtemp(prefix="dasp_rviz_")) if out_dir is None else out_dir
    path = out_dir / "night_depth.rviz"
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    return path


def build_plan(args: Mapping[str, str], share: Optional[Path] = None,
               env: Optional[Mapping[str, str]] = None) -> LaunchPlan:
    """The launch for the given argument values (missing ones take their defaults).

    Raises:
        ValueError: an argument value outside its choices (names the argument).
    """
    share = share_dir() if share is None else share
    full = {a.name: a.default for a in ARGUMENTS}
    full.update({k: str(v) for k, v in args.items()})
    for name, value in full.items():
        spec = ARGUMENTS_BY_NAME.get(name)
        if spec is None:
            raise ValueError(f"unknown launch argument {name!r}; known: "
                             f"{', '.join(ARGUMENTS_BY_NAME)}")
        if spec.choices and value.lower() not in spec.choices:
            raise ValueError(f"launch argument {name}:={value!r} is not allowed; allowed: "
                             f"{', '.join(repr(c) for c in spec.choices)}")
    ns = _namespace(full)
    compressed = parse_bool("compressed", full["compressed"])
    remaps = input_remappings(ns, full["image_topic"], full["camera_info_topic"], compressed)
    remaps.append(("diagnostics", "/diagnostics"))
    depth = NodeSpec(package=PACKAGE, executable="depth_node", name="depth_node",
                     namespace=ns, parameters=node_parameters(full, share), remappings=remaps,
                     ros_arguments=["--log-level", full["log_level"].lower()])
    nodes = [depth]
    if parse_bool("rviz", full["rviz"]):
        rviz_cfg = render_rviz_config(share / "config" / "night_depth.rviz", ns,
                                      full["image_topic"], compressed, full["camera_frame"])
        nodes.append(NodeSpec(package="rviz2", executable="rviz2", name="rviz2",
                              arguments=["-d", str(rviz_cfg)],
                              parameters=[{"use_sim_time": parse_bool("use_sim_time",
                                                                      full["use_sim_time"])}]))
    return LaunchPlan(environment=environment(
        env, parse_bool("fastdds_large_data", full["fastdds_large_data"])), nodes=nodes)
