"""Parameter table, YAML file, RViz config and launch spec (plain Python).

The launch file itself runs through the real upstream launch stack in test_launch_real.py.
"""

from __future__ import annotations

import os
import py_compile
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
    # the same launch reuses its file; another configuration gets another one
    assert ls.render_rviz_config(RVIZ_FILE, "/front", "/front/image_color", True,
                                 "front_optical", out_dir=tmp_path) == out
    other = ls.render_rviz_config(RVIZ_FILE, "/rear", "", False, "rear_optical", out_dir=tmp_path)
    assert other != out and sorted(p.name for p in tmp_path.iterdir()) == \
        sorted([out.name, other.name])
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


def _overrides(path: str) -> dict:
    doc = yaml.safe_load(Path(path).read_text())
    assert list(doc) == ["/**"]
    return doc["/**"]["ros__parameters"]


def test_build_plan_default(tmp_path):
    plan = ls.build_plan({}, share=ROOT, env={}, out_dir=tmp_path)
    assert plan.environment == {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}
    (node,) = plan.nodes
    kw = node.as_kwargs()
    assert (kw["package"], kw["executable"], kw["name"], kw["namespace"]) == \
        ("dasp_ros", "depth_node", "depth_node", "/camera")
    assert kw["parameters"][0] == str(ROOT / "config" / "night_depth.yaml")
    assert Path(kw["parameters"][0]).is_file()
    assert Path(kw["parameters"][1]).parent == tmp_path
    assert _overrides(kw["parameters"][1]) == {"use_sim_time": False, "image_transport": "raw"}
    assert ("diagnostics", "/diagnostics") in kw["remappings"]
    assert ("image", "/camera/image_raw") in kw["remappings"]
    assert kw["ros_arguments"] == ["--log-level", "info"]


def test_build_plan_variants(tmp_path):
    model, params_file = tmp_path / "x.onnx", tmp_path / "p.yaml"
    model.write_bytes(b"")
    params_file.write_text("{}\n")
    out = tmp_path / "generated"
    plan = ls.build_plan({"compressed": "true", "camera_namespace": "/cam2", "rviz": "true",
                          "use_sim_time": "true", "model": str(model), "backend": "onnxruntime",
                          "params_file": str(params_file)}, share=ROOT,
                         env={"FASTDDS_BUILTIN_TRANSPORTS": "SHM"},
                         locate=lambda pkg, exe: None, out_dir=out)
    assert plan.environment == {}  # the user's own choice is kept
    node, rviz = plan.nodes
    assert node.namespace == "/cam2"
    assert node.parameters[0] == str(params_file)
    assert _overrides(node.parameters[1]) == {"use_sim_time": True,
                                              "image_transport": "compressed",
                                              "model": str(model), "backend": "onnxruntime"}
    assert rviz.ros_arguments == ["-p", "use_sim_time:=true"] and not rviz.parameters
    assert ("image/compressed", "/cam2/image_raw/compressed") in node.remappings
    assert rviz.executable == "rviz2" and rviz.arguments[0] == "-d"
    assert Path(rviz.arguments[1]).parent == out
    rendered = yaml.safe_load(Path(rviz.arguments[1]).read_text())
    topics = [d["Topic"]["Value"] for d in rendered["Visualization Manager"]["Displays"]
              if "Topic" in d]
    assert "/cam2/points" in topics and "/cam2/image_raw/compressed" in topics
    with pytest.raises(ValueError, match="compressed"):
        ls.build_plan({"compressed": "maybe"}, share=ROOT, out_dir=out)
    with pytest.raises(ValueError, match="unknown launch argument"):
        ls.build_plan({"camera": "/x"}, share=ROOT, out_dir=out)


def test_arguments_are_case_insensitive_and_normalised(tmp_path):
    plan = ls.build_plan({"use_sim_time": "True", "compressed": "YES", "rviz": "False",
                          "log_level": "DEBUG", "backend": "ONNXRuntime",
                          "fastdds_large_data": "Off"}, share=ROOT, env={}, out_dir=tmp_path)
    (node,) = plan.nodes
    assert node.ros_arguments == ["--log-level", "debug"]
    assert _overrides(node.parameters[1]) == {"use_sim_time": True,
                                              "image_transport": "compressed",
                                              "backend": "onnxruntime"}
    assert plan.environment == {}
    for name, value, needle in [("rviz", "maybe", "true, false, 1, 0"),
                                ("log_level", "loud", "'debug', 'info'"),
                                ("backend", "tensorflow", "'onnxruntime'")]:
        with pytest.raises(ValueError, match=f"{name}:=") as e:
            ls.build_plan({name: value}, share=ROOT, env={}, out_dir=tmp_path)
        assert needle in str(e.value) and "any case" in str(e.value)
    # the declarations carry no case-sensitive `choices`; --show-args says what is allowed
    assert "[true | false, any case]" in ls.ARGUMENTS_BY_NAME["rviz"].help()
    assert "debug | info" in ls.ARGUMENTS_BY_NAME["log_level"].help()


@pytest.mark.parametrize("name", ["params_file", "model"])
def test_missing_files_fail_before_anything_is_written(tmp_path, name):
    out = tmp_path / "generated"
    with pytest.raises(ValueError, match=f"{name}:=.*no such file; nothing was started"):
        ls.build_plan({name: str(tmp_path / "missing.file")}, share=ROOT, env={}, out_dir=out)
    assert not out.exists()


def test_rviz_without_rviz2_fails_before_anything_is_written(tmp_path):
    out = tmp_path / "generated"
    asked = []

    def locate(pkg, exe):
        asked.append((pkg, exe))
        return f"package {pkg!r} is not installed"

    with pytest.raises(ValueError, match="rviz:='TRUE' needs RViz: package 'rviz2' is not "
                                         "installed.*ros-\\$ROS_DISTRO-rviz2"):
        ls.build_plan({"rviz": "TRUE"}, share=ROOT, env={}, locate=locate, out_dir=out)
    assert asked == [("rviz2", "rviz2")] and not out.exists()
    assert len(ls.build_plan({}, share=ROOT, env={}, locate=locate, out_dir=out).nodes) == 1
    assert asked == [("rviz2", "rviz2")]  # not asked when RViz is not wanted


def test_locate_executable_uses_the_ament_index(tmp_path, monkeypatch):
    pytest.importorskip("ament_index_python")
    prefix = tmp_path / "prefix"
    (prefix / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (prefix / "share" / "ament_index" / "resource_index" / "packages" / "rviz2").touch()
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    assert "has no executable" in ls.locate_executable("rviz2", "rviz2")
    exe = prefix / "lib" / "rviz2" / "rviz2"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert ls.locate_executable("rviz2", "rviz2") is None
    assert "not installed" in ls.locate_executable("no_such_package_here", "x")


def test_generated_dir_follows_ros_home(tmp_path):
    assert ls.generated_dir({"ROS_HOME": str(tmp_path)}) == tmp_path / "dasp_ros"
    assert ls.generated_dir({}) == Path(os.path.expanduser("~")) / ".ros" / "dasp_ros"


def test_large_data_switch_and_dds_hints(tmp_path):
    plan = ls.build_plan({"fastdds_large_data": "false"}, share=ROOT, env={}, out_dir=tmp_path)
    assert plan.environment == {}
    assert ls.dds_environment_hints({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}) == []
    (hint,) = ls.dds_environment_hints({})
    assert hint[0] == "warn" and "LARGE_DATA" in hint[1]
    (hint,) = ls.dds_environment_hints({}, reliable_input=True)  # retransmitted: no warning
    assert hint[0] == "info" and "fine for reliable input" in hint[1]
    (hint,) = ls.dds_environment_hints({"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"})
    assert hint[0] == "info" and "dds_matching.md" in hint[1]
    hints = ls.dds_environment_hints({"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA",
                                      "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"})
    assert [lv for lv, _ in hints] == ["info", "warn"] and "LOCALHOST" in hints[1][1]


def test_params_overrides_from_launch_are_valid_parameters():
    overrides = ls.parameter_overrides({"compressed": "true", "backend": "torch",
                                        "device": "cuda:0"})
    overrides.pop("use_sim_time")  # rclpy's own parameter
    params.validate_values(overrides)


# ----------------------------------------------------------------------------- launch file

def test_launch_file_compiles():
    py_compile.compile(str(LAUNCH_FILE), doraise=True, cfile=None)


def test_readme_parameter_table_is_generated_from_params():
    """The README's table is markdown_table() verbatim (regenerate: scripts/update_readme.py)."""
    from pathlib import Path

    from dasp_ros.params import markdown_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start, end = "<!-- params-table:start -->", "<!-- params-table:end -->"
    assert start in readme and end in readme
    table = readme.split(start, 1)[1].split(end, 1)[0].strip()
    assert table == markdown_table().strip()


def test_package_xml_leaves_rviz_to_the_machines_with_a_display():
    """rosdep must not install RViz on a headless robot; rviz:=true checks for it instead."""
    import xml.etree.ElementTree as ET

    root = ET.parse(ROOT / "package.xml").getroot()
    depends = {e.text for e in root if e.tag.endswith("depend")}
    assert "rviz2" not in depends
    assert {"rclpy", "sensor_msgs", "diagnostic_msgs", "launch", "launch_ros"} <= depends
