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
  ``backend``, ``device``, ``image_transport``, ``use_sim_time``) as a second YAML file in
  :func:`generated_dir` (launch_ros would write a dict of overrides to a new temp file on
  every launch and never delete it).
* Environment: ``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA`` unless the user set it (argument
  ``fastdds_large_data``). Fast DDS sends large best-effort samples between processes as UDP
  fragments that default socket buffers drop (a 640x480 image is ~0.9 MB; measured here: 2 of
  30 frames arrive); LARGE_DATA uses shared memory / TCP for big samples (30 of 30 at 640x480).
  LARGE_DATA alone is not enough for 5-12 MP images with best-effort QoS (most are lost;
  docs/large_images.md), hence the node's reliable input default. Other RMWs ignore the
  variable. The camera driver's process must use the same setting: measured with
  rmw_fastrtps (Kilted), a LARGE_DATA participant and a default one do not communicate *at
  all*, and ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` undoes LARGE_DATA (frames lost again);
  :func:`dds_environment_hints` says so at start. LARGE_DATA has a cost: Fast DDS 3.2.3
  sometimes never matches two of its participants on one host (docs/dds_matching.md), which
  the default transports did not do; with reliable QoS on both sides (the node's default)
  they deliver 640x480 frames whole, so ``fastdds_large_data:=false`` suits a reliable
  camera driver that must always connect (at the cost of a slower latency tail).
* RViz (``rviz:=true``): ``config/night_depth.rviz`` with its topics and fixed frame rewritten
  for the chosen namespace, compression and camera frame, written to
  ``$ROS_HOME/dasp_ros/night_depth_<hash>.rviz`` (default ``~/.ros``): like the overrides file,
  one file per distinct configuration, reused by later launches, nothing in the temp directory. RViz is not a
  dependency of the package (a headless robot does not want it): ``rviz:=true`` checks that
  ``rviz2`` is installed *before* anything starts.
* Arguments are checked before anything starts: booleans and choices in any case
  (``rviz:=True``, ``log_level:=DEBUG``; launch's own ``choices`` check is case-sensitive, so
  the declarations carry none and :func:`build_plan` checks), ``params_file`` and ``model``
  must be existing files. Any error raises :class:`ValueError` naming the argument, which
  makes ``ros2 launch`` exit non-zero with nothing started.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import yaml

__all__ = ["LaunchArgument", "ARGUMENTS", "NodeSpec", "LaunchPlan", "PACKAGE", "share_dir",
           "parse_bool", "join_topic", "input_remappings", "output_topics", "environment",
           "dds_environment_hints", "generated_dir", "write_generated", "locate_executable",
           "parameter_overrides", "node_parameters", "render_rviz_config", "build_plan", "RVIZ_TOPICS"]

PACKAGE = "dasp_ros"
LARGE_DATA_ENV = ("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")


BOOL_TEXT = ("true", "false", "1", "0", "yes", "no", "on", "off")


@dataclass(frozen=True)
class LaunchArgument:
    """One ``DeclareLaunchArgument``: name, default (string), description, allowed values.

    ``choices`` (lower case) are matched case-insensitively; ``boolean`` arguments take any
    of :data:`BOOL_TEXT` in any case.
    """

    name: str
    default: str
    description: str
    choices: Tuple[str, ...] = ()
    boolean: bool = False

    def help(self) -> str:
        """The description ``--show-args`` prints, with the allowed values."""
        if self.boolean:
            return f"{self.description} [true | false, any case]"
        if self.choices:
            shown = " | ".join(c or "''" for c in self.choices)
            return f"{self.description} [{shown}, any case]"
        return self.description

    def check(self, value: str) -> str:
        """The value normalised (lower case for booleans and choices); ValueError if not allowed."""
        if self.boolean:
            return "true" if parse_bool(self.name, value) else "false"
        if self.choices:
            v = value.strip().lower()
            if v not in self.choices:
                raise ValueError(f"launch argument {self.name}:={value!r} is not allowed; "
                                 f"allowed (any case): {', '.join(repr(c) for c in self.choices)}")
            return v
        return value


#: The launch file's arguments (all strings, as launch passes them).
ARGUMENTS: Tuple[LaunchArgument, ...] = (
    LaunchArgument("model", "", "depth model (.onnx/.pt/.engine, must exist); empty = value in "
                   "params_file (default: the shipped model)"),
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
                   "(sensor_msgs/CompressedImage)", boolean=True),
    LaunchArgument("camera_frame", "camera_optical_frame", "optical frame of the camera "
                   "(RViz fixed frame)"),
    LaunchArgument("rviz", "false", "also start RViz (package rviz2, installed separately) "
                   "with config/night_depth.rviz", boolean=True),
    LaunchArgument("use_sim_time", "false", "use /clock (bag replay)", boolean=True),
    LaunchArgument("params_file", "", "node parameters YAML (must exist); empty = the "
                   "package's config/night_depth.yaml"),
    LaunchArgument("log_level", "info", "node log level",
                   ("debug", "info", "warn", "error", "fatal")),
    LaunchArgument("fastdds_large_data", "true", "set FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA for "
                   "the launched nodes (unless already set); the camera driver must use the "
                   "same setting: Fast DDS participants with different builtin transports do "
                   "not communicate", boolean=True),
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
    """Launch argument text (any case) → bool; raises ValueError naming the argument."""
    v = str(value).strip().lower()
    if v in ("true", "1", "yes", "on"):
        return True
    if v in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"launch argument {name}:={value!r} is not allowed; allowed (any case): "
                     f"{', '.join(BOOL_TEXT)}")


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


def dds_environment_hints(env: Optional[Mapping[str, str]] = None, reliable_input: bool = False
                          ) -> List[Tuple[str, str]]:
    """``[(level, text), ...]`` about the DDS environment of an image subscriber (for logs).

    Levels are ``"info"`` or ``"warn"``. Only rmw_fastrtps (the default RMW) is checked.
    ``reliable_input``: the subscriber asks for reliable QoS, which the default transports
    deliver whole (large samples are retransmitted; shared memory on one host), so only a
    best-effort subscriber is warned about them.
    """
    env = os.environ if env is None else env
    rmw = env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") or "rmw_fastrtps_cpp"
    if not rmw.startswith("rmw_fastrtps"):
        return []
    transports = env.get("FASTDDS_BUILTIN_TRANSPORTS", "")
    same = ("the image publisher must use the same setting (Fast DDS participants with "
            "different builtin transports do not communicate at all)")
    if transports != "LARGE_DATA":
        if reliable_input:
            return [("info", f"FASTDDS_BUILTIN_TRANSPORTS is {transports or 'unset'}: fine for "
                             f"reliable input; {same}")]
        return [("warn", f"FASTDDS_BUILTIN_TRANSPORTS is {transports or 'unset'}: best-effort "
                         "images from other processes are mostly lost once larger than a few "
                         "UDP fragments; set FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA here and in "
                         "the camera driver's process, or use reliable QoS on both sides")]
    hints = [("info", f"FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA: {same}. With it, Fast DDS "
                      "sometimes never matches two participants on one host (measured in "
                      "docs/dds_matching.md): if no image arrives, restart the camera driver "
                      "and this node, or use reliable QoS with the default transports")]
    if env.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "").upper() == "LOCALHOST":
        hints.append(("warn", "ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST undoes LARGE_DATA in "
                              "rmw_fastrtps (large best-effort images are lost); unset it and "
                              "isolate with ROS_DOMAIN_ID instead"))
    return hints


def parameter_overrides(args: Mapping[str, str]) -> Dict[str, Any]:
    """``{parameter: value}`` the launch arguments set on top of the params file."""
    overrides: Dict[str, Any] = {
        "use_sim_time": parse_bool("use_sim_time", args.get("use_sim_time", "false")),
        "image_transport": "compressed" if parse_bool("compressed", args.get("compressed",
                                                                             "false")) else "raw",
    }
    for key in ("model", "backend", "device"):
        if args.get(key):
            overrides[key] = os.path.expanduser(args[key]) if key == "model" else args[key]
    return overrides


def node_parameters(args: Mapping[str, str], share: Optional[Path] = None,
                    out_dir: Optional[Path] = None) -> List[str]:
    """``parameters=`` of the node: the params file, then a file of :func:`parameter_overrides`
    written by :func:`write_generated` into ``out_dir`` (default :func:`generated_dir`)."""
    share = share_dir() if share is None else share
    params_file = os.path.expanduser(args.get("params_file") or
                                     str(share / "config" / "night_depth.yaml"))
    text = yaml.safe_dump({"/**": {"ros__parameters": parameter_overrides(args)}},
                          sort_keys=False)
    return [params_file, str(write_generated("launch_overrides", ".yaml", text, out_dir))]


RVIZ_TOPICS = ("camera_image", "color", "points")


def generated_dir(env: Optional[Mapping[str, str]] = None) -> Path:
    """Where the launch writes the files it generates: ``$ROS_HOME/dasp_ros`` (``ROS_HOME``
    defaults to ``~/.ros``, where ROS keeps its logs)."""
    env = os.environ if env is None else env
    ros_home = env.get("ROS_HOME") or os.path.join(os.path.expanduser("~"), ".ros")
    return Path(ros_home) / PACKAGE


def write_generated(stem: str, suffix: str, text: str, out_dir: Optional[Path] = None) -> Path:
    """Write ``text`` to ``out_dir/<stem>_<content hash><suffix>`` and return the path.

    The same content always gives the same file, so launches reuse files instead of leaving
    new ones; the write is atomic (concurrent launches never read half a file).
    """
    out_dir = generated_dir() if out_dir is None else Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem}_{hashlib.sha1(text.encode()).hexdigest()[:12]}{suffix}"
    if not (path.is_file() and path.read_text() == text):
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)
    return path


def locate_executable(package: str, executable: str) -> Optional[str]:
    """Why ``ros2 launch`` could not start ``package``'s ``executable``, or None if it can.

    Looks where launch_ros looks: the ament index (``AMENT_PREFIX_PATH``) and
    ``<prefix>/lib/<package>/<executable>``.
    """
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    except ImportError:
        return "ament_index_python is not installed (not a ROS 2 environment)"
    try:
        prefix = get_package_prefix(package)
    except (PackageNotFoundError, KeyError, OSError):
        return f"package {package!r} is not installed (not in the ament index)"
    path = Path(prefix) / "lib" / package / executable
    if not (path.is_file() and os.access(path, os.X_OK)):
        return f"package {package!r} has no executable {path}"
    return None


def render_rviz_config(template: Path, camera_namespace: str, image_topic: str,
                       compressed: bool, camera_frame: str, out_dir: Optional[Path] = None
                       ) -> Path:
    """Copy of the RViz config with topics and fixed frame for this launch.

    Displays are recognised by their ``Name`` (``Camera image``, ``Depth (colour)``,
    ``Point cloud``). The file is ``night_depth_<content hash>.rviz`` in ``out_dir``
    (default :func:`generated_dir`), see :func:`write_generated`.
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
    return write_generated("night_depth", ".rviz", yaml.safe_dump(cfg, sort_keys=False), out_dir)


def _check_file(name: str, value: str) -> None:
    if value and not os.path.isfile(os.path.expanduser(value)):
        raise ValueError(f"launch argument {name}:={value!r}: no such file; nothing was started")


def build_plan(args: Mapping[str, str], share: Optional[Path] = None,
               env: Optional[Mapping[str, str]] = None,
               locate: Callable[[str, str], Optional[str]] = locate_executable,
               out_dir: Optional[Path] = None) -> LaunchPlan:
    """The launch for the given argument values (missing ones take their defaults).

    Everything that can fail is checked here, before the launch starts any process.

    Args:
        locate: ``(package, executable) -> None`` if it can be started, else the reason
            (checked for RViz; default :func:`locate_executable`).
        out_dir: where the parameter overrides and the RViz config are written (default
            :func:`generated_dir`).
    Raises:
        ValueError: unknown argument, a value not allowed, a missing ``params_file`` or
            ``model`` file, ``rviz:=true`` without rviz2 (each names the argument).
    """
    share = share_dir() if share is None else share
    full = {a.name: a.default for a in ARGUMENTS}
    for name, value in args.items():
        spec = ARGUMENTS_BY_NAME.get(name)
        if spec is None:
            raise ValueError(f"unknown launch argument {name!r}; known: "
                             f"{', '.join(ARGUMENTS_BY_NAME)}")
        full[name] = spec.check(str(value))
    _check_file("params_file", full["params_file"])
    _check_file("model", full["model"])
    rviz = parse_bool("rviz", full["rviz"])
    if rviz:
        why = locate("rviz2", "rviz2")
        if why is not None:
            raise ValueError(f"launch argument rviz:={args.get('rviz')!r} needs RViz: {why}. "
                             "Install it (apt install ros-$ROS_DISTRO-rviz2; it is not a "
                             "dependency of dasp_ros so headless robots do not get it) or run "
                             "RViz on another machine; nothing was started")
    ns = _namespace(full)
    compressed = parse_bool("compressed", full["compressed"])
    remaps = input_remappings(ns, full["image_topic"], full["camera_info_topic"], compressed)
    remaps.append(("diagnostics", "/diagnostics"))
    depth = NodeSpec(package=PACKAGE, executable="depth_node", name="depth_node",
                     namespace=ns, parameters=node_parameters(full, share, out_dir),
                     remappings=remaps,
                     ros_arguments=["--log-level", full["log_level"]])
    nodes = [depth]
    if rviz:
        rviz_cfg = render_rviz_config(share / "config" / "night_depth.rviz", ns,
                                      full["image_topic"], compressed, full["camera_frame"],
                                      out_dir=out_dir)
        nodes.append(NodeSpec(package="rviz2", executable="rviz2", name="rviz2",
                              arguments=["-d", str(rviz_cfg)],
                              # -p, not a dict: launch_ros writes dicts to temp files it keeps
                              ros_arguments=["-p", f"use_sim_time:={full['use_sim_time']}"]))
    return LaunchPlan(environment=environment(
        env, parse_bool("fastdds_large_data", full["fastdds_large_data"])), nodes=nodes)
