"""Parameter table, YAML file, RViz config, launch spec and the launch file (fake launch_ros)."""

from __future__ import annotations

import importlib.util
import py_compile
import sys
import types
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from dasp_core.errors import ConfigError
from dasp_ros import launch_spec as ls
from dasp_ros import params

ROOT = Path(__file__).resolve().parent.parent
YAML_FILE = ROOT / "config" / "night_depth.yaml"
RVIZ_FILE = ROOT / "config" / "night_depth.rviz"
LAUNCH_FILE = ROOT / "launch" / "night_depth.launch.py"


# ----------------------------------------------------------------------------- parameter table

def test_table_defaults_are_valid_and_match_config():
    cfg = params.config_from_values({})
    assert {f.name for f in fields(cfg)} == set(params.PARAMS_BY_NAME)
    for p in params.PARAMETERS:
        assert type(p.default) is p.type, p.name
        assert p.description.strip().endswith((".", ")")), p.name
        assert getattr(cfg, p.name) == p.default


@pytest.mark.parametrize("name,value,needle", [
    ("backend", "tensorflow", "allowed: 'auto', 'onnxruntime'"),
    ("points_decimation", 0, "an integer in [1, 64]"),
    ("max_range", 1e9, "a number in"),
    ("scale_factor", 1, "decimal point"),  # int for a double
    ("publish_points", "yes", "a bool"),
    ("device", "gpu0", "'cuda:N'"),
    ("no_such_parameter", 1, "a dasp depth_node parameter"),
])
def test_bad_values_name_the_parameter_and_what_is_allowed(name, value, needle):
    with pytest.raises(ConfigError) as e:
        params.validate_values({name: value})
    assert e.value.key == name and needle in str(e.value)


def test_ordered_pairs_checked():
    with pytest.raises(ConfigError, match="min_range .* less than max_range"):
        params.validate_values({"min_range": 50.0, "max_range": 40.0})
    with pytest.raises(ConfigError, match="color_min_depth"):
        params.validate_values({"color_min_depth": 60.0})


def test_runtime_update_rules():
    cfg = params.config_from_values({})
    new = cfg.updated({"points_decimation": 4, "max_range": 30.0})
    assert (new.points_decimation, new.max_range, cfg.points_decimation) == (4, 30.0, 2)
    with pytest.raises(ConfigError, match="read-only"):
        cfg.updated({"backend": "torch"})
    with pytest.raises(ConfigError, match="min_range"):
        cfg.updated({"min_range": 100.0})
    dynamic = {p.name for p in params.PARAMETERS if p.dynamic}
    assert {"min_range", "max_range", "points_decimation", "publish_points", "publish_depth",
            "publish_depth_mm", "publish_color", "points_format"} <= dynamic
    assert not {"model", "backend", "image_transport", "scale_mode"} & dynamic


def test_descriptors_carry_ranges_and_read_only():
    pytest.importorskip("rcl_interfaces.msg")
    d = params.PARAMS_BY_NAME["points_decimation"].descriptor()
    assert not d.read_only and d.integer_range[0].from_value == 1 \
        and d.integer_range[0].to_value == 64
    d = params.PARAMS_BY_NAME["max_range"].descriptor()
    assert d.floating_point_range[0].to_value == 10000.0
    d = params.PARAMS_BY_NAME["backend"].descriptor()
    assert d.read_only and "onnxruntime" in d.additional_constraints and d.description


def test_markdown_table_has_every_parameter():
    md = params.markdown_table()
    lines = md.strip().splitlines()
    assert len(lines) == 2 + len(params.PARAMETERS)
    for p in params.PARAMETERS:
        assert f"| `{p.name}` |" in md
    assert all(line.count("|") - line.count("\\|") == 7 for line in lines)


# ----------------------------------------------------------------------------- YAML and RViz

def test_yaml_keys_and_types_are_node_parameters():
    doc = yaml.safe_load(YAML_FILE.read_text())
    assert list(doc) == ["/**"]
    values = doc["/**"]["ros__parameters"]
    for name, value in values.items():
        spec = params.PARAMS_BY_NAME[name]  # KeyError = unknown parameter
        # exact types: rclpy rejects 1 for a double parameter
        assert type(value) is spec.type, f"{name}: {value!r} is {type(value).__name__}"
    params.validate_values(values)
    assert set(values) == set(params.PARAMS_BY_NAME)  # the file documents all of them


def test_rviz_config_topics_are_node_outputs_and_frame_is_optical():
    cfg = yaml.safe_load(RVIZ_FILE.read_text())
    vm = cfg["Visualization Manager"]
    assert vm["Global Options"]["Fixed Frame"] == \
        ls.ARGUMENTS_BY_NAME["camera_frame"].default == "camera_optical_frame"
    topics = {d["Name"]: (d["Class"], d["Topic"]["Value"]) for d in vm["Displays"]
              if "Topic" in d}
    ns = ls.ARGUMENTS_BY_NAME["camera_namespace"].default
    outs = ls.output_topics(ns)
    assert topics["Depth (colour)"] == ("rviz_default_plugins/Image", outs["color"])
    assert topics["Point cloud"] == ("rviz_default_plugins/PointCloud2", outs["points"])
    assert topics["Camera image"] == ("rviz_default_plugins/Image",
                                      dict(ls.input_remappings(ns))["image"])
    pc = next(d for d in vm["Displays"] if d["Name"] == "Point cloud")
    assert pc["Color Transformer"] == "RGB8"  # default points_format is xyzrgb
    assert params.PARAMS_BY_NAME["points_format"].default == "xyzrgb"


def test_rendered_rviz_config_follows_launch_arguments(tmp_path):
    out = ls.render_rviz_config(RVIZ_FILE, "/front", "/front/image_color", True, "front_optical",
                                out_dir=tmp_path)
    vm = yaml.safe_load(out.read_text())["Visualization Manager"]
    topics = {d["Name"]: d["Topic"]["Value"] for d in vm["Displays"] if "Topic" in d}
    assert topics == {"Camera image": "/front/image_color/compressed",
                      "Depth (colour)": "/front/depth/color", "Point cloud": "/front/points"}
    assert vm["Global Options"]["Fixed Frame"] == "front_optical"


# ----------------------------------------------------------------------------- launch spec

@pytest.mark.parametrize("ns,image,info,compressed,expected", [
    ("/camera", "", "", False, [("image", "/camera/image_raw"),
                                ("camera_info", "/camera/camera_info")]),
    ("front_cam/", "", "", False, [("image", "/front_cam/image_raw"),
                                   ("camera_info", "/front_cam/camera_info")]),
    ("/camera", "image_rect_color", "", False, [("image", "/camera/image_rect_color"),
                                                ("camera_info", "/camera/camera_info")]),
    ("/camera", "/cams/left/image", "/cams/left/info", False,
     [("image", "/cams/left/image"), ("camera_info", "/cams/left/info")]),
    ("/camera", "", "", True, [("image/compressed", "/camera/image_raw/compressed"),
                               ("camera_info", "/camera/camera_info")]),
    ("", "/img", "", True, [("image/compressed", "/img/compressed"),
                            ("camera_info", "/camera_info")]),
])
def test_input_remappings(ns, image, info, compressed, expected):
    assert ls.input_remappings(ns, image, info, compressed) == expected


def test_build_plan_default(tmp_path):
    plan = ls.build_plan({}, share=ROOT, env={})
    assert plan.environment == {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}
    (node,) = plan.nodes
    kw = node.as_kwargs()
    assert (kw["package"], kw["executable"], kw["name"], kw["namespace"]) == \
        ("dasp_ros", "depth_node", "depth_node", "/camera")
    assert kw["parameters"][0] == str(ROOT / "config" / "night_depth.yaml")
    assert Path(kw["parameters"][0]).is_file()
    assert kw["parameters"][1] == {"use_sim_time": False, "image_transport": "raw"}
    assert ("diagnostics", "/diagnostics") in kw["remappings"]
    assert ("image", "/camera/image_raw") in kw["remappings"]
    assert kw["ros_arguments"] == ["--log-level", "info"]


def test_build_plan_variants():
    plan = ls.build_plan({"compressed": "true", "camera_namespace": "/cam2", "rviz": "true",
                          "use_sim_time": "true", "model": "/m/x.onnx", "backend": "onnxruntime",
                          "params_file": "/etc/p.yaml"}, share=ROOT,
                         env={"FASTDDS_BUILTIN_TRANSPORTS": "SHM"})
    assert plan.environment == {}  # the user's own choice is kept
    node, rviz = plan.nodes
    assert node.namespace == "/cam2"
    assert node.parameters == ["/etc/p.yaml", {"use_sim_time": True,
                                               "image_transport": "compressed",
                                               "model": "/m/x.onnx",
                                               "backend": "onnxruntime"}]
    assert ("image/compressed", "/cam2/image_raw/compressed") in node.remappings
    assert rviz.executable == "rviz2" and rviz.arguments[0] == "-d"
    rendered = yaml.safe_load(Path(rviz.arguments[1]).read_text())
    topics = [d["Topic"]["Value"] for d in rendered["Visualization Manager"]["Displays"]
              if "Topic" in d]
    assert "/cam2/points" in topics and "/cam2/image_raw/compressed" in topics
    with pytest.raises(ValueError, match="compressed"):
        ls.build_plan({"compressed": "maybe"}, share=ROOT)
    with pytest.raises(ValueError, match="unknown launch argument"):
        ls.build_plan({"camera": "/x"}, share=ROOT)


def test_large_data_switch_and_dds_hints():
    plan = ls.build_plan({"fastdds_large_data": "false"}, share=ROOT, env={})
    assert plan.environment == {}
    assert ls.dds_environment_hints({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}) == []
    (hint,) = ls.dds_environment_hints({})
    assert hint[0] == "warn" and "LARGE_DATA" in hint[1]
    hints = ls.dds_environment_hints({"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA",
                                      "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"})
    assert [lv for lv, _ in hints] == ["info", "warn"] and "LOCALHOST" in hints[1][1]


def test_params_overrides_from_launch_are_valid_parameters():
    plan = ls.build_plan({"compressed": "true", "backend": "torch", "device": "cuda:0"},
                         share=ROOT, env={})
    overrides = dict(plan.nodes[0].parameters[1])
    overrides.pop("use_sim_time")  # rclpy's own parameter
    params.validate_values(overrides)


# ----------------------------------------------------------------------------- launch file

class _Action:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _fake_launch_modules():
    launch = types.ModuleType("launch")
    actions = types.ModuleType("launch.actions")
    subs = types.ModuleType("launch.substitutions")
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")

    class LaunchDescription(_Action):
        pass

    class DeclareLaunchArgument(_Action):
        pass

    class SetEnvironmentVariable(_Action):
        pass

    class OpaqueFunction(_Action):
        pass

    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context.launch_configurations[self.name]

    class Node(_Action):
        pass

    launch.LaunchDescription = LaunchDescription
    actions.DeclareLaunchArgument = DeclareLaunchArgument
    actions.SetEnvironmentVariable = SetEnvironmentVariable
    actions.OpaqueFunction = OpaqueFunction
    subs.LaunchConfiguration = LaunchConfiguration
    ros_actions.Node = Node
    launch.actions, launch.substitutions, launch_ros.actions = actions, subs, ros_actions
    return {"launch": launch, "launch.actions": actions, "launch.substitutions": subs,
            "launch_ros": launch_ros, "launch_ros.actions": ros_actions}


def test_launch_file_compiles():
    py_compile.compile(str(LAUNCH_FILE), doraise=True, cfile=None)


def test_launch_file_maps_spec_onto_launch_ros(monkeypatch):
    for name, mod in _fake_launch_modules().items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.delenv("FASTDDS_BUILTIN_TRANSPORTS", raising=False)
    spec = importlib.util.spec_from_file_location("night_depth_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ld = module.generate_launch_description()
    entities = ld.args[0]
    declared = [e for e in entities if type(e).__name__ == "DeclareLaunchArgument"]
    assert [d.args[0] for d in declared] == [a.name for a in ls.ARGUMENTS]
    compressed = next(d for d in declared if d.args[0] == "compressed")
    assert compressed.kwargs["default_value"] == "false"
    assert compressed.kwargs["choices"] == ["true", "false"]
    (opaque,) = [e for e in entities if type(e).__name__ == "OpaqueFunction"]

    values = {a.name: a.default for a in ls.ARGUMENTS}
    values.update(compressed="true", camera_namespace="/cam")
    context = types.SimpleNamespace(launch_configurations=values)
    actions = opaque.kwargs["function"](context)
    env = [a for a in actions if type(a).__name__ == "SetEnvironmentVariable"]
    assert [e.args for e in env] == [("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")]
    nodes = [a for a in actions if type(a).__name__ == "Node"]
    assert len(nodes) == 1 and actions.index(env[0]) < actions.index(nodes[0])
    kw = nodes[0].kwargs
    assert kw["executable"] == "depth_node" and kw["namespace"] == "/cam"
    assert ("image/compressed", "/cam/image_raw/compressed") in kw["remappings"]
    assert kw["parameters"][1]["image_transport"] == "compressed"


def test_readme_parameter_table_is_generated_from_params():
    """The README's table is markdown_table() verbatim (regenerate: scripts/update_readme.py)."""
    from pathlib import Path

    from dasp_ros.params import markdown_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start, end = "<!-- params-table:start -->", "<!-- params-table:end -->"
    assert start in readme and end in readme
    table = readme.split(start, 1)[1].split(end, 1)[0].strip()
    assert table == markdown_table().strip()
