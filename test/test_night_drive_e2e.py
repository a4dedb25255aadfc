"""End to end over real DDS, across processes: synthetic night bag → bag_replay → depth_node
(ONNX Runtime) → bag_eval, and the live metrics equal ``evaluate()`` offline on the same frames.

Tolerance: the node publishes float32 depth and both sides run the same ONNX graph with the
same preprocessing, so per-image metrics agree to float32 rounding; we allow 1e-4 relative.
"""

from __future__ import annotations

import json
from argparse import Namespace

import pytest
from ros_domain import ros_domain

pytest.importorskip("rclpy")
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    from dasp_core.export.onnx import export_depth_net
    from dasp_core.models.depth_net import DepthNet, DepthNetConfig
    from dasp_core.runtime.base import ModelInfo

    torch.manual_seed(3)
    net = DepthNet(DepthNetConfig(encoder="resnet18")).eval()
    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    export_depth_net(net, ModelInfo(input_height=64, input_width=192), path, (64, 192))
    return str(path)


def test_live_metrics_equal_offline_evaluation(tmp_path, onnx_model):
    from dasp_core.data.sample import Clip
    from dasp_core.data.synthetic import SyntheticConfig, render_sequence
    from dasp_core.eval.evaluate import evaluate
    from dasp_core.runtime.factory import create_estimator
    from dasp_ros.night_drive import run

    frames, h, w, seed = 10, 96, 320, 10_001
    args = Namespace(out=str(tmp_path / "drive"), model=onnx_model, backend="onnxruntime",
                     threads=1, frames=frames, height=h, width=w, rate=1.0, seed=seed,
                     domain_id=ros_domain("night_drive_e2e"), docs="",
                     fastdds_transports="DEFAULT")
    assert run(args) == 0
    live = json.loads((tmp_path / "drive" / "eval" / "metrics.json").read_text())
    assert live["frames_in"] == frames
    assert live["frames_out"] >= frames - 1  # latest-frame policy may drop one under load
    for name in ("points.ply", "strip.png", "drive.gif", "report.md"):
        assert (tmp_path / "drive" / "eval" / name).is_file(), name
    assert (tmp_path / "drive" / "eval" / "outputs" / "metadata.yaml").is_file()

    # offline: the very same frames (deterministic renderer) through the same estimator
    seq = render_sequence(seed, "night", frames, SyntheticConfig(height=h, width=w))
    clips = [Clip(frames=seq.frames[i:i + 1], K=seq.K, domain="night", offsets=(0,),
                  depth=seq.depth[i], source=f"frame {i}") for i in range(frames)]
    est = create_estimator(onnx_model, backend="onnxruntime", threads=1)
    res = evaluate(est, clips, protocol="synthetic", median_scaling=True, progress=False)
    offline = {r["index"]: r["scores"]["median"] for r in res.per_image}
    order = live["input_stamps"]
    online = {order.index(r["stamp"]): r for r in live["per_image"]}
    assert len(online) >= frames - 1 and set(online) <= set(offline)
    for i, m in online.items():
        for k in ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3"):
            assert m[k] == pytest.approx(offline[i][k], rel=1e-4, abs=1e-6), (i, k)
    if len(online) == frames:  # and so the tables agree
        assert live["median_scaled"]["metrics"]["abs_rel"] == pytest.approx(
            res.scores["median"].metrics["abs_rel"], rel=1e-4)
