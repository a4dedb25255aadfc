"""The `dasp` command: every sub-command resolves, parses --help, and the demo runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dasp_core.cli import COMMANDS, main


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    assert f"dasp {name}" in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "synth" in capsys.readouterr().out


def test_demo_runs_without_ros_and_writes_pictures(tmp_path):
    torch = pytest.importorskip("torch")
    from dasp_core.export.onnx import export_depth_net
    from dasp_core.models.depth_net import DepthNet, DepthNetConfig
    from dasp_core.ply import read_ply
    from dasp_core.runtime.base import ModelInfo

    torch.manual_seed(0)
    model = tmp_path / "m.onnx"
    export_depth_net(DepthNet(DepthNetConfig(encoder="resnet18")).eval(),
                     ModelInfo(input_height=64, input_width=192), model, (64, 192))
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "dasp_core.cli", "demo", "--model", str(model),
                        "--frames", "3", "--size", "96x320", "--out", str(out)],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    for name in ("strip.png", "drive.gif", "points.ply", "report.md"):
        assert (out / name).stat().st_size > 0, name
    pts, cols = read_ply(out / "points.ply")
    assert pts.shape[1] == 3 and cols is not None and len(pts) > 1000
    assert "| median |" in (out / "report.md").read_text()
