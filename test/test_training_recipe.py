"""Issue 14's training fixes: pose sources (odometry, temporally ordered PoseNet), initial
depth, precise-BN, learning-rate schedule, the supervised ceiling, and a trainer that uses
odometry end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from dasp_core.checkpoint import read_checkpoint
from dasp_core.data.sample import Clip, collate_clips
from dasp_core.data.synthetic import SyntheticClipDataset, SyntheticConfig
from dasp_core.errors import ConfigError, DatasetError
from dasp_core.geometry import disp_to_depth, invert_pose, pose_vec_to_matrix
from dasp_core.losses import photometric_error
from dasp_core.models import DepthNet, DepthNetConfig, PoseNet, PoseNetConfig
from dasp_core.models.depth_net import initial_disparity_logit
from dasp_core.train.poses import odometry_poses, posenet_poses
from dasp_core.train.precise_bn import recompute_bn_stats, train_eval_gap
from dasp_core.train.schedule import lr_factor
from dasp_core.train.stages import FrameLayout, StageNets, supervised_depth_step
from dasp_core.train.trainer import Trainer
from test_train import FakeClips, H, W, tiny_cfg

LAYOUT = FrameLayout((0, -1, 1))


@pytest.fixture(scope="module")
def drive_clips():
    """Two clips of a synthetic day drive at 64x192 (exact depth and camera poses)."""
    cfg = SyntheticConfig(height=64, width=192)
    ds = SyntheticClipDataset("day", seeds=[3], frames_per_sequence=12, cfg=cfg,
                              offsets=(0, -1, 1))
    return [ds[4], ds[8]]


def _translation(x: float) -> np.ndarray:
    T = np.eye(4)
    T[0, 3] = x
    return T


# ----------------------------------------------------------------------------- odometry

def test_odometry_poses_are_relative_camera_motion():
    # camera→world poses of a camera moving +0.5 m per frame along x, target in the middle
    poses = torch.tensor(np.stack([_translation(0.0), _translation(-0.5), _translation(0.5)]),
                         dtype=torch.float32)[None]
    T, t = odometry_poses(poses, torch.tensor([True]), LAYOUT.target, LAYOUT.sources)
    # a point fixed in the world is 0.5 m further along -x seen from the later camera
    np.testing.assert_allclose(t[0][0].numpy(), [0.5, 0, 0], atol=1e-6)   # source -1
    np.testing.assert_allclose(t[1][0].numpy(), [-0.5, 0, 0], atol=1e-6)  # source +1
    # round trip: T_s_t @ T_t_s is the identity
    back = odometry_poses(poses[:, [1, 0, 2]], torch.tensor([True]), 0, (1,))[0][0]
    np.testing.assert_allclose((T[0] @ back)[0].numpy(), np.eye(4), atol=1e-6)


def test_odometry_poses_warp_a_real_drive_exactly(drive_clips):
    """With ground-truth depth, odometry T_s_t makes the warp beat the unwarped source."""
    from dasp_core.geometry import warp_image

    batch = collate_clips(drive_clips)
    T, _ = odometry_poses(batch["poses"], batch["has_poses"], LAYOUT.target, LAYOUT.sources)
    tgt = batch["frames"][:, 0]
    depth = batch["depth"].clamp(min=0.1)
    depth[batch["depth"] <= 0] = 1000.0  # sky
    for i, Ts in zip(LAYOUT.sources, T):
        src = batch["frames"][:, i]
        warped, valid = warp_image(src, depth, Ts, batch["K"])
        e_warp = photometric_error(warped, tgt)[valid].mean()
        e_ident = photometric_error(src, tgt)[valid].mean()
        wrong = warp_image(src, depth, invert_pose(Ts), batch["K"])[0]
        e_wrong = photometric_error(wrong, tgt)[valid].mean()
        assert e_warp < 0.7 * e_ident and e_warp < 0.7 * e_wrong


@pytest.mark.parametrize("baseline", [2, 3])
def test_odometry_poses_warp_exactly_over_wider_baselines(baseline):
    """``data.offsets=[0,-b,b]``: the sources b frames away still warp onto the target with
    ground-truth depth, and the far range moves more pixels than at b = 1 (the reason to
    widen the baseline: docs/parallax_probe.md)."""
    from dasp_core.geometry import pixel_grid, reproject_pixels, warp_image

    cfg = SyntheticConfig(height=64, width=192)
    motion = {}
    for b in (1, baseline):
        ds = SyntheticClipDataset("day", seeds=[3], frames_per_sequence=30, cfg=cfg,
                                  offsets=(0, -b, b))
        batch = collate_clips([ds[20 - b]])  # target frame 20 (cruising) for every b
        T, _ = odometry_poses(batch["poses"], batch["has_poses"], 0, (1, 2))
        depth = batch["depth"].clamp(min=0.1)
        depth[batch["depth"] <= 0] = 1000.0
        tgt = batch["frames"][:, 0]
        for i, Ts in zip((1, 2), T):
            warped, valid = warp_image(batch["frames"][:, i], depth, Ts, batch["K"])
            e_warp = photometric_error(warped, tgt)[valid].mean()
            e_ident = photometric_error(batch["frames"][:, i], tgt)[valid].mean()
            assert e_warp < 0.7 * e_ident
        far = (batch["depth"] > 30) & (batch["depth"] < 80)
        pix, _ = reproject_pixels(depth, T[0], batch["K"])
        moved = (pix - pixel_grid(*depth.shape[-2:])[:, :2]).norm(dim=1, keepdim=True)
        motion[b] = float(moved[far].median())
    # the translational parallax grows ~ b; the body's pitch (rotation, no parallax) does
    # not, so the total image motion of far points grows less than b-fold
    assert motion[baseline] > 1.5 * motion[1]


def test_odometry_without_poses_names_the_fix():
    with pytest.raises(DatasetError, match="pose.source=posenet"):
        odometry_poses(torch.eye(4).expand(2, 3, 4, 4), torch.tensor([True, False]), 0, (1, 2))


# ----------------------------------------------------------------------------- PoseNet order

class ConstantMotion(nn.Module):
    """Predicts the same motion for any pair: what a network does for two look-alike pairs."""

    def forward(self, a, b):
        B = a.shape[0]
        return (torch.tensor([0.0, 0.02, 0.0]).expand(B, 3),
                torch.tensor([0.0, 0.0, -1.0]).expand(B, 3))


def test_posenet_pairs_are_ordered_in_time_and_inverted_for_earlier_sources():
    frames = torch.rand(2, 3, 3, 64, 64)
    T, t = posenet_poses(ConstantMotion(), frames, LAYOUT.target, LAYOUT.sources,
                         LAYOUT.source_offsets, torch.no_grad)
    M = pose_vec_to_matrix(torch.tensor([[0.0, 0.02, 0.0]]), torch.tensor([[0.0, 0.0, -1.0]]))
    torch.testing.assert_close(T[1], M.expand(2, 4, 4))             # later source: as is
    torch.testing.assert_close(T[0], invert_pose(M).expand(2, 4, 4))  # earlier: inverted
    assert float((t[0] * t[1]).sum(-1).max()) < 0  # opposite motions


def test_untrained_posenet_predicts_opposite_motion_for_previous_and_next(drive_clips):
    """The bug this guards: PoseNet(target, source) for both sources gave the same motion."""
    torch.manual_seed(0)
    net = PoseNet(PoseNetConfig(decoder_channels=32)).eval()
    frames = collate_clips(drive_clips)["frames"]
    with torch.no_grad():
        _, t = posenet_poses(net, frames, LAYOUT.target, LAYOUT.sources, LAYOUT.source_offsets,
                             torch.no_grad)
        # the old call, target first for both, for contrast: same direction
        _, old_prev = net(frames[:, 0], frames[:, 1])
        _, old_next = net(frames[:, 0], frames[:, 2])
    assert bool(((t[0] * t[1]).sum(-1) < 0).all())
    assert bool(((old_prev * old_next).sum(-1) > 0).all())


# ----------------------------------------------------------------------------- initial depth

@pytest.mark.parametrize("depth", [0.5, 10.0, 60.0])
def test_initial_disparity_logit_maps_to_the_depth(depth):
    s = torch.sigmoid(torch.tensor(initial_disparity_logit(depth, 0.1, 100.0),
                                   dtype=torch.float64))
    assert float(disp_to_depth(s, 0.1, 100.0)[1]) == pytest.approx(depth, rel=1e-9)


def test_untrained_depthnet_starts_near_init_depth():
    torch.manual_seed(0)
    cfg = DepthNetConfig(encoder="mobilenet_v3_large", init_depth=10.0)
    with torch.no_grad():
        d = disp_to_depth(DepthNet(cfg).eval()(torch.rand(2, 3, 64, 128))[0], 0.1, 100.0)[1]
    assert 5.0 < float(d.median()) < 20.0
    with pytest.raises(ConfigError, match="init_depth"):
        DepthNetConfig(init_depth=200.0).validate()


# ----------------------------------------------------------------------------- precise-BN

def test_precise_bn_sets_population_statistics_and_closes_the_gap():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4, momentum=0.01),
                        nn.Sigmoid())
    batches = [torch.rand(4, 3, 8, 8) * (1 + k) for k in range(3)]
    with torch.no_grad():
        for b in batches:  # a few momentum-0.01 updates: running stats far from the truth
            net.train()(b)
    conv_out = [net[0](b).detach() for b in batches]
    to_depth = lambda d: 1.0 / (d + 0.1)  # noqa: E731  any positive map will do

    class Wrap(nn.Module):  # train_eval_gap reads model(x)[0]
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return [self.m(x)]

    x = torch.cat(batches)
    wrapped = Wrap(net).eval()
    before = train_eval_gap(wrapped, x, to_depth)
    assert recompute_bn_stats(net, batches) == 3
    bn = net[1]
    expect_mean = torch.stack([c.mean(dim=(0, 2, 3)) for c in conv_out]).mean(0)
    torch.testing.assert_close(bn.running_mean, expect_mean, rtol=1e-5, atol=1e-6)
    assert bn.momentum == 0.01 and not net.training
    after = train_eval_gap(wrapped, x, to_depth)
    assert after < 0.1 * before
    # no side effect: the gap measurement left the statistics alone
    torch.testing.assert_close(bn.running_mean, expect_mean, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- schedule

def test_lr_factor_warmup_cosine_and_step():
    assert lr_factor(0, [], 0.5, warmup_steps=10) == pytest.approx(0.1)
    assert lr_factor(9, [], 0.5, warmup_steps=10) == pytest.approx(1.0)
    kw = dict(total_steps=110, warmup_steps=10, schedule="cosine", min_ratio=0.1)
    assert lr_factor(10, [], 0.5, **kw) == pytest.approx(1.0)
    assert lr_factor(60, [], 0.5, **kw) == pytest.approx(0.55)  # half-way: mean of 1 and 0.1
    assert lr_factor(110, [], 0.5, **kw) == pytest.approx(0.1)
    assert lr_factor(25, [10, 20], 0.5) == 0.25  # RNW's steps unchanged


# ----------------------------------------------------------------------------- ceiling

class ExactDepth(nn.Module):
    """A 'network' whose disparity at every scale is the ground truth times ``factor``."""

    def __init__(self, gt: torch.Tensor, factor: float):
        super().__init__()
        self.gt, self.factor = gt, factor

    def forward(self, x):
        d = self.gt * self.factor
        disp = (1.0 / d - 1.0 / 100.0) / (1.0 / 0.1 - 1.0 / 100.0)
        return [disp, nn.functional.avg_pool2d(disp, 2)]


def test_supervised_ceiling_loss_is_log_l1_of_the_depth():
    cfg = tiny_cfg("train.supervision=depth", "model.depth.scales=[0,1]")
    gt = torch.full((2, 1, 8, 8), 10.0)
    batch = {"frames": torch.rand(2, 3, 3, 8, 8), "depth": gt,
             "has_depth": torch.tensor([True, True])}
    exact = supervised_depth_step(StageNets(depth=ExactDepth(gt, 1.0)), batch, cfg, LAYOUT)
    double = supervised_depth_step(StageNets(depth=ExactDepth(gt, 2.0)), batch, cfg, LAYOUT)
    assert float(exact.total) == pytest.approx(0.0, abs=1e-5)
    assert float(double.total) == pytest.approx(math.log(2.0), rel=1e-4)


# ----------------------------------------------------------------------------- trainer

class PosedFakeClips(FakeClips):
    """FakeClips with the camera poses its 2-px-per-frame shift implies (depth 10 m)."""

    def __getitem__(self, i: int) -> Clip:
        c = super().__getitem__(i)
        step = 2.0 * 10.0 / c.K[0, 0]  # metres per frame
        c.poses = np.stack([_translation(step * o) for o in c.offsets])
        return c


def test_trainer_with_odometry_has_no_posenet_and_a_metric_model(tmp_path):
    cfg = tiny_cfg("pose.source=odometry", "train.max_steps=2", "train.precise_bn_batches=1",
                   "optim.warmup_steps=1", "optim.schedule=cosine")
    ds = {"day_train": PosedFakeClips(4, "day", 1), "day_val": PosedFakeClips(2, "day", 3)}
    tr = Trainer(cfg, tmp_path, datasets=ds)
    assert tr.pose is None
    before = {k: v.clone() for k, v in tr.depth.state_dict().items()}
    summary = tr.fit()
    assert summary.scale_source == "odometry"
    ck = read_checkpoint(summary.final_checkpoint)
    assert "pose_state" not in ck and ck["model_info"]["scale_factor"] == 1.0
    assert "bn_gap_log_depth" in ck["model_info"]["extra"]["val"]
    assert any(not torch.equal(before[k], v) for k, v in tr.depth.state_dict().items())


def test_trainer_with_odometry_refuses_clips_without_poses(tmp_path):
    cfg = tiny_cfg("pose.source=odometry", "train.max_steps=1", "train.precise_bn_batches=0")
    tr = Trainer(cfg, tmp_path, datasets={"day_train": FakeClips(4, "day", 1)})
    with pytest.raises(DatasetError, match="carry no camera poses"):
        tr.train_step()


# ----------------------------------------------------------------------------- frame cache

def test_synthetic_disk_cache_returns_the_rendered_frames(tmp_path):
    cfg = SyntheticConfig(height=32, width=96)
    fresh = SyntheticClipDataset("night", seeds=[5], frames_per_sequence=4, cfg=cfg)
    cached = SyntheticClipDataset("night", seeds=[5], frames_per_sequence=4, cfg=cfg,
                                  cache_dir=str(tmp_path))
    a = cached[1]
    files = sorted(p.name for p in tmp_path.rglob("*.npz"))
    assert files == ["000001.npz", "000002.npz", "000003.npz"]  # item 1: target frame 2
    again = SyntheticClipDataset("night", seeds=[5], frames_per_sequence=4, cfg=cfg,
                                 cache_dir=str(tmp_path))
    def no_render(i):
        raise AssertionError(f"frame {i} rendered although it is on disk")

    again.renderer(0).render = no_render
    b, ref = again[1], fresh[1]
    for x in (a, b):
        np.testing.assert_array_equal(x.frames, ref.frames)
        np.testing.assert_array_equal(x.depth, ref.depth)
        np.testing.assert_array_equal(x.poses, ref.poses)
        assert x.masks.keys() == ref.masks.keys() and x.speed == ref.speed
    # other renderer settings never read these frames
    other = SyntheticClipDataset("night", seeds=[5], frames_per_sequence=4,
                                 cfg=SyntheticConfig(height=32, width=64),
                                 cache_dir=str(tmp_path))
    assert other.frames_per_sequence == 4 and other.cache_dir != cached.cache_dir


def test_odometry_training_asks_rosbag_readers_for_posed_clips_only(monkeypatch):
    import dasp_core.data.registry as registry
    from dasp_core.train import loader

    seen = []
    monkeypatch.setattr(registry, "build_dataset", lambda spec, key: seen.append(spec) or [])
    monkeypatch.setattr(loader, "wrap_reader", lambda reader, cfg, train: reader)
    specs = [{"kind": "rosbag", "path": "a"}, {"kind": "rosbag", "path": "b",
                                               "require_poses": False}, {"kind": "folder"}]
    loader.build_dataset(specs, "data.day_train", tiny_cfg("pose.source=odometry"), True)
    assert [s.get("require_poses") for s in seen[0]] == [True, False, None]
    loader.build_dataset(specs, "data.day_train", tiny_cfg(), True)  # posenet: untouched
    assert "require_poses" not in seen[1][0]
