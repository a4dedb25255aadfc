"""Training: config ↔ YAML, overrides, day/night steps in every mode, teacher frozen, resume,
divergence handling, velocity supervision, data order, DDP (2 gloo ranks on CPU)."""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dasp_core.checkpoint import read_checkpoint, save_checkpoint
from dasp_core.data.sample import Clip
from dasp_core.errors import ConfigError
from dasp_core.models import DepthNet, DepthNetConfig, PoseNet, PoseNetConfig
from dasp_core.runtime.base import ModelInfo
from dasp_core.train import config as C
from dasp_core.train.distributed import ShardedEpochSampler
from dasp_core.train.scale import (recovered_scale, velocity_loss, velocity_ratio,
                                   velocity_targets)
from dasp_core.train.stages import FrameLayout
from dasp_core.train.trainer import Trainer, TrainingDivergedError, lr_factor

REPO = Path(__file__).resolve().parents[1]
H, W = 64, 64


# ----------------------------------------------------------------------------- fixtures

class FakeClips:
    """Torch-free clip reader: a smooth random texture seen by a camera moving sideways.

    Frames at offset ``o`` are crops shifted by ``2·o`` pixels, so the photometric loss has a
    real signal; every clip has constant GT depth 10 m, speed 5 m/s and dt 0.1 s.
    """

    def __init__(self, n: int, domain: str, seed: int = 0, offsets=(0, -1, 1)):
        self.n, self.domain, self.seed, self.offsets = n, domain, seed, tuple(offsets)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Clip:
        import cv2

        rng = np.random.default_rng(self.seed * 1000 + i)
        small = rng.uniform(0, 1, (H // 8 + 1, (W + 16) // 8 + 1, 3)).astype(np.float32)
        tex = cv2.resize(small, (W + 16, H), interpolation=cv2.INTER_CUBIC)
        if self.domain == "night":
            tex = tex * 0.3
        frames = np.stack([tex[:, 8 + 2 * o: 8 + 2 * o + W] for o in self.offsets])
        frames = np.clip(frames * 255, 0, 255).astype(np.uint8)
        K = np.array([[0.6 * W, 0, W / 2 - 0.5], [0, 0.9 * W, H / 2 - 0.5], [0, 0, 1]])
        return Clip(frames=frames, K=K, domain=self.domain, offsets=self.offsets,
                    depth=np.full((H, W), 10.0, np.float32), speed=5.0, dt=0.1,
                    source=f"fake:{self.domain}:{i}")


TINY = [f"data.height={H}", f"data.width={W}", "data.batch_size=2", "data.val_batch_size=2",
        "data.day_train.kind=synthetic", "data.night_train.kind=synthetic",
        "model.depth.encoder=mobilenet_v3_large", "model.depth.decoder_channels=[8,8,16,16,32]",
        "model.pose.decoder_channels=32", "model.discriminator.num_blocks=2",
        "model.discriminator.base_channels=8", "model.patch_discriminator.base_channels=8",
        "model.patch_discriminator.n_layers=2", "train.progress=false",
        "train.tensorboard=false", "train.log_interval=1", "train.image_interval=0",
        "train.threads=2", "optim.lr=1e-3", "optim.disc_lr=1e-3"]


def tiny_cfg(*extra: str) -> C.TrainingConfig:
    return C.load_config(None, TINY + list(extra))


def datasets(n: int = 4):
    return {"day_train": FakeClips(n, "day", 1), "night_train": FakeClips(n, "night", 2)}


@pytest.fixture(scope="module")
def day_ckpt(tmp_path_factory) -> str:
    """A day-stage checkpoint (random weights) with depth and pose, like a day run writes."""
    cfg = tiny_cfg()
    torch.manual_seed(0)
    depth = DepthNet(cfg.model.depth)
    pose = PoseNet(cfg.model.pose)
    path = tmp_path_factory.mktemp("day") / "final.pt"
    save_checkpoint(path, depth, ModelInfo(input_height=H, input_width=W),
                    {"pose_config": pose.cfg.to_dict(), "pose_state": pose.state_dict()})
    return str(path)


def night(day_ckpt: str, *extra: str) -> C.TrainingConfig:
    return tiny_cfg("train.stage=night", f"train.day_checkpoint={day_ckpt}", *extra)


def params(module: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed(before: dict, module: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.named_parameters())


# ----------------------------------------------------------------------------- config

def test_config_yaml_round_trip(tmp_path):
    cfg = tiny_cfg("loss.lambda_3d=0.2", "data.offsets=[-1,0,1]", "val.max_depth=60")
    path = C.save_config(cfg, tmp_path / "c.yaml")
    again = C.load_config(path)
    assert again.to_dict() == cfg.to_dict()
    assert again.loss.lambda_3d == 0.2 and again.data.offsets == [-1, 0, 1]
    # nested foreign dataclasses become their real types
    assert isinstance(again.model.depth, DepthNetConfig)
    assert isinstance(again.model.pose, PoseNetConfig)


@pytest.mark.parametrize("name", ["train_synthetic_small", "train_synthetic_full",
                                  "train_robotcar", "train_nuscenes", "train_rosbag"])
def test_shipped_configs_load_and_round_trip(name, tmp_path):
    path = REPO / "config" / f"{name}.yaml"
    cfg = C.load_config(path)
    assert C.load_config(C.save_config(cfg, tmp_path / "x.yaml")).to_dict() == cfg.to_dict()
    C.load_config(path, ["train.stage=night", "train.day_checkpoint=day.pt"])


def test_every_key_is_documented():
    text = C.describe_config()
    for line in text.splitlines():
        if " = " in line:
            assert len(line.split("  ", 2)[-1].strip()) > 3, f"undocumented: {line}"
    assert "loss.lambda_3d" in text and "[paper]" in text and "[RNW]" in text


def test_config_normaliser_choices_are_the_loss_forms():
    from dasp_core.losses.consistency3d import MASKS, NORMALISERS
    assert C.CONSISTENCY_NORMALISERS == NORMALISERS
    assert C.CONSISTENCY_MASKS == MASKS


def test_unknown_key_names_it_and_lists_known_keys():
    with pytest.raises(ConfigError) as e:
        C.config_from_dict({"loss": {"lamda_3d": 0.1}})
    assert e.value.key == "loss.lamda_3d"
    assert "lambda_3d" in str(e.value) and "adversarial" in str(e.value)
    with pytest.raises(ConfigError) as e:
        C.config_from_dict({"trian": {}})
    assert e.value.key == "trian" and "train" in str(e.value)


@pytest.mark.parametrize("override, key, allowed", [
    ("loss.adversarial=patchgan", "loss.adversarial", "'dasp', 'rnw', 'none'"),
    ("train.stage=dusk", "train.stage", "'day', 'night'"),
    ("loss.gan_kind=wgan", "loss.gan_kind", "'lsgan', 'vanilla'"),
    ("model.depth.encoder=vgg16", "model.depth.encoder", "resnet50"),
    ("data.height=100", "data.height", "multiple of 32"),
    ("optim.lr=fast", "optim.lr", "a number"),
    ("train.amp=maybe", "train.amp", "true or false"),
    ("loss.smoothness=-1", "loss.smoothness", "[0.0, inf]"),
    ("data.offsets=[-1,1]", "data.offsets", "containing 0"),
    ("data.day_train.kind=kitti", "data.day_train.kind", "robotcar"),
    ("loss.consistency_normaliser=median", "loss.consistency_normaliser", "'pixel', 'scene'"),
])
def test_bad_value_names_key_and_allowed(override, key, allowed):
    with pytest.raises(ConfigError) as e:
        tiny_cfg(override)
    assert e.value.key == key
    assert allowed in str(e.value)


def test_cross_section_rules():
    with pytest.raises(ConfigError) as e:     # adversarial night stage needs the teacher
        tiny_cfg("train.stage=night")
    assert e.value.key == "train.day_checkpoint"
    with pytest.raises(ConfigError) as e:     # temporal stack length = number of frames
        tiny_cfg("train.stage=night", "train.day_checkpoint=x.pt",
                 "model.discriminator.seq_len=2")
    assert e.value.key == "model.discriminator.seq_len"
    # night-only baseline from scratch is allowed without a day checkpoint
    cfg = tiny_cfg("train.stage=night", "loss.adversarial=none", "train.init_from_day=false")
    assert cfg.train.day_checkpoint is None


def test_overrides_parse_and_validate():
    pairs = C.parse_overrides(["optim.lr=1e-4", "data.offsets=[0, -1, 1]", "loss.use_3d=false",
                               "train.day_checkpoint=null", "experiment.name=a=b"])
    assert pairs == [("optim.lr", "1e-4"), ("data.offsets", [0, -1, 1]),
                     ("loss.use_3d", False), ("train.day_checkpoint", None),
                     ("experiment.name", "a=b")]
    cfg = tiny_cfg("optim.lr=1e-4", "loss.use_3d=false", "model.discriminator.use_stlm=false")
    assert cfg.optim.lr == 1e-4 and cfg.loss.use_3d is False
    assert cfg.model.discriminator.use_stlm is False
    with pytest.raises(ConfigError) as e:
        C.parse_overrides(["loss.lambda_3d"])
    assert "key.path=value" in str(e.value)
    with pytest.raises(ConfigError) as e:
        tiny_cfg("loss.lambda3d=0.1")
    assert e.value.key == "loss.lambda3d"


def test_lr_milestones():
    assert lr_factor(0, [10], 0.5) == 1.0
    assert lr_factor(9, [10], 0.5) == 1.0
    assert lr_factor(10, [10], 0.5) == 0.5
    assert lr_factor(25, [10, 20], 0.5) == 0.25


# ----------------------------------------------------------------------------- data order

def test_sampler_deterministic_sharded_and_resumable():
    def order(rank, world, epoch, start=0, seed=3):
        s = ShardedEpochSampler(23, 2, seed=seed, rank=rank, world_size=world)
        s.set_epoch(epoch, start)
        return list(s)

    assert order(0, 1, 0) == order(0, 1, 0)
    assert order(0, 1, 0) != order(0, 1, 1)              # reshuffled per epoch
    assert order(0, 1, 0) != order(0, 1, 0, seed=4)
    a, b = order(0, 2, 5), order(1, 2, 5)
    assert len(a) == len(b) == 10 and not set(a) & set(b)  # equal, disjoint shards
    assert order(0, 1, 2, start=3) == order(0, 1, 2)[6:]   # mid-epoch resume skips batches


def test_sampler_draw_seeds_follow_the_data_order_only():
    def items(start=0, epoch=2, rank=0, world=1):
        s = ShardedEpochSampler(23, 2, seed=3, rank=rank, world_size=world, draw_seeds=True)
        s.set_epoch(epoch, start)
        return list(s)

    full = items()
    plain = ShardedEpochSampler(23, 2, seed=3)
    plain.set_epoch(2)
    assert [i for i, _ in full] == list(plain)
    assert items(start=3) == full[6:]                          # resume repeats the draws
    assert len({d for _, d in full}) == len(full)              # a seed per position
    assert [d for _, d in items(epoch=3)] != [d for _, d in full]
    assert not {d for _, d in items(rank=0, world=2)} & {d for _, d in items(rank=1, world=2)}


@pytest.mark.parametrize("workers", [0, 1])
def test_augmented_batches_repeat_after_resume_with_workers(workers):
    """Augmentation (flip, colour jitter) drew from a DataLoader worker's random stream,
    which restarts when a resumed run starts new workers: a run resumed at step 250 saw
    other flips and colours than the original from its first step on. Draws now follow the
    data order, with or without workers."""
    from dasp_core.data.torch_dataset import ClipTorchDataset
    from dasp_core.train.distributed import DistInfo
    from dasp_core.train.loader import EpochLoader

    def loader():
        ds = ClipTorchDataset(FakeClips(12, "day", 1), train=True,
                              augment={"flip_prob": 0.5, "jitter_prob": 1.0})
        return EpochLoader(ds, 2, seed=5, dist=DistInfo(0, 1, 0, None), num_workers=workers)

    first = loader()
    ref = [next(first) for _ in range(8)]                      # crosses an epoch (6 batches)
    resumed = loader()
    resumed.load_state_dict({"epoch": 0, "batch": 3})
    again = [next(resumed) for _ in range(5)]
    for a, b in zip(ref[3:], again):
        assert torch.equal(a["index"], b["index"])
        assert torch.equal(a["frames_aug"], b["frames_aug"]) and torch.equal(a["frames"],
                                                                             b["frames"])
    # the draws are real: jitter changes the network input
    assert not torch.equal(ref[0]["frames_aug"], ref[0]["frames"])
    fresh = loader()
    assert all(torch.equal(a["frames_aug"], next(fresh)["frames_aug"]) for a in ref)


def test_frame_layout():
    lay = FrameLayout((0, -1, 1))
    assert lay.target == 0 and lay.sources == (1, 2) and lay.source_offsets == (-1, 1)
    assert lay.temporal == (1, 0, 2)


# ----------------------------------------------------------------------------- velocity

def test_velocity_loss_zero_at_speed_times_dt():
    speed = torch.tensor([5.0, 10.0])
    dt = torch.tensor([0.1, 0.05])
    dirs = torch.nn.functional.normalize(torch.randn(2, 3), dim=-1)
    t_prev = dirs * 0.5               # 5 m/s * 0.1 s and 10 m/s * 0.05 s
    t_next2 = -dirs * 1.0             # two frames away: twice the distance
    loss, n = velocity_loss([t_prev, t_next2], [-1, 2], speed, dt)
    assert n == 4 and float(loss) == pytest.approx(0.0, abs=1e-6)
    loss, _ = velocity_loss([t_prev * 1.2], [-1], speed, dt)
    assert float(loss) == pytest.approx(0.1, rel=1e-5)   # 20 % of 0.5 m


def test_velocity_loss_ignores_clips_without_speed():
    speed = torch.tensor([float("nan"), 4.0])
    dt = torch.tensor([0.1, float("nan")])
    t = torch.ones(2, 3, requires_grad=True)
    loss, n = velocity_loss([t], [1], speed, dt)
    assert n == 0 and float(loss.detach()) == 0.0
    loss.backward()
    assert float(t.grad.abs().sum()) == 0.0
    target, valid = velocity_targets(torch.tensor([3.0]), torch.tensor([0.2]), -2)
    assert valid.all() and float(target) == pytest.approx(1.2)


# ----------------------------------------------------------------------------- steps

def test_velocity_ratio_and_recovered_scale():
    speed = torch.tensor([5.0, float("nan"), 10.0])
    dt = torch.tensor([0.1, 0.1, 0.1])
    t = torch.tensor([[0.0, 0.0, 0.01], [0.0, 0.0, 9.0], [0.0, 0.03, 0.04]])  # norms .01, 9, .05
    target_m, predicted, n = velocity_ratio([t, -2 * t], [-1, 2], speed, dt)
    assert n == 4                                             # the NaN-speed clip is ignored
    assert target_m == pytest.approx(0.5 + 1.0 + 1.0 + 2.0)   # speed·dt·|k|
    assert predicted == pytest.approx(0.01 + 0.05 + 0.02 + 0.10)
    assert recovered_scale([3.0, float("nan"), 1.0, -2.0, 2.0]) == 2.0
    assert recovered_scale([4.0, 1.0]) == 2.5 and recovered_scale([]) is None


@pytest.mark.parametrize("mode", ["loss", "recover"])
def test_day_step_finite_and_updates(tmp_path, mode):
    cfg = tiny_cfg("scale.velocity=true", f"scale.velocity_mode={mode}")
    tr = Trainer(cfg, tmp_path, datasets=datasets())
    before_d, before_p = params(tr.depth), params(tr.pose)
    out = tr.train_step()
    assert {"loss/photometric", "loss/smoothness", "loss/total"} <= set(out)
    assert "loss/adversarial" not in out and "loss/consistency_3d" not in out
    assert all(math.isfinite(v) for v in out.values())
    assert out["loss/photometric"] > 0 and out["stats/velocity_samples"] == 4  # 2 clips x 2 src
    assert changed(before_d, tr.depth) and changed(before_p, tr.pose)
    info = tr.model_info()
    assert info.scale_source == "learned"
    if mode == "loss":   # md4all: the networks learn metres
        assert "loss/velocity" in out and info.scale_factor == 1.0
    else:                # recover: scale-free training, the measured factor is stored
        assert "loss/velocity" not in out
        ratio = out["stats/velocity_ratio"]
        assert ratio > 0 and info.scale_factor == pytest.approx(ratio)
        assert out["stats/recovered_scale"] == pytest.approx(ratio)
    assert tr.disc is None and tr.teacher is None


NIGHT_CASES = [
    ("dasp", []),
    ("rnw", []),
    ("none", []),
    ("dasp", ["model.discriminator.use_stlm=false"]),
    ("dasp", ["model.discriminator.use_aslm=false"]),
    ("dasp", ["loss.use_3d=false"]),
]


@pytest.mark.parametrize("mode, extra", NIGHT_CASES,
                         ids=["dasp", "rnw", "none", "no_stlm", "no_aslm", "no_3d"])
def test_night_step_modes(mode, extra, day_ckpt, tmp_path):
    cfg = night(day_ckpt, f"loss.adversarial={mode}", *extra)
    tr = Trainer(cfg, tmp_path, datasets=datasets())
    # the student starts as the day model
    day = read_checkpoint(day_ckpt)["depth_state"]
    assert all(torch.equal(day[k], v) for k, v in tr.depth.state_dict().items())
    g_before = params(tr.depth)
    d_before = params(tr.disc) if tr.disc is not None else None
    t_before = params(tr.teacher) if tr.teacher is not None else None
    out = tr.train_step()
    assert all(math.isfinite(v) for v in out.values())
    assert changed(g_before, tr.depth)
    assert ("loss/consistency_3d" in out) == cfg.loss.use_3d
    if mode == "none":
        assert tr.disc is None and tr.teacher is None and "loss/adversarial" not in out
        return
    assert "loss/adversarial" in out and "loss/discriminator" in out
    assert {"D/d_real", "D/d_fake"} <= set(out)
    assert changed(d_before, tr.disc), "discriminator did not update"
    # frozen teacher: no gradients, unchanged weights, eval mode
    assert not tr.teacher.training
    assert all(not p.requires_grad and p.grad is None for p in tr.teacher.parameters())
    assert not changed(t_before, tr.teacher)
    assert all(torch.equal(day[k], v) for k, v in tr.teacher.state_dict().items())
    expected = "splb" if mode == "dasp" else "patch"
    assert tr.disc_kind == expected


def test_night_step_gradients_reach_generator_through_discriminator(day_ckpt, tmp_path):
    """With only the GAN term, the depth network still gets gradients (via D's input)."""
    cfg = night(day_ckpt, "loss.use_3d=false", "loss.smoothness=0", "loss.lambda_G=1.0")
    tr = Trainer(cfg, tmp_path, datasets=datasets())
    from dasp_core.train.stages import compute_generator_step

    batch = {k: v for k, v in next(tr.primary).items()}
    tr.disc.requires_grad_(False)
    res = compute_generator_step(tr.nets, batch, cfg, tr.layout)
    res.terms["adversarial"].backward()
    grads = [p.grad for p in tr.depth.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    assert all(p.grad is None for p in tr.disc.parameters())


# ----------------------------------------------------------------------------- checkpoints

class Killed(Exception):
    pass


def test_resume_after_kill_is_identical(day_ckpt, tmp_path):
    common = ["train.max_steps=4", "loss.pool_size=2", "data.augment={}",
              "train.keep_checkpoints=0"]
    # the uninterrupted reference writes no intermediate checkpoint (they do not affect training)
    ref = Trainer(night(day_ckpt, *common, "train.checkpoint_interval=100"), tmp_path / "ref",
                  datasets=datasets(6)).fit()
    common.append("train.checkpoint_interval=2")
    ref_state = read_checkpoint(ref.final_checkpoint)

    def kill_at_3(step):
        if step == 3:
            raise Killed()

    run = tmp_path / "run"
    with pytest.raises(Killed):
        Trainer(night(day_ckpt, *common), run, datasets=datasets(6), callbacks=[kill_at_3]).fit()
    assert read_checkpoint(run / "last.pt")["train_state"]["step"] == 2
    tr = Trainer(night(day_ckpt, *common), run, resume=True, datasets=datasets(6))
    assert tr.step == 2
    summary = tr.fit()
    assert summary.steps == 4
    got = read_checkpoint(summary.final_checkpoint)
    for key in ("depth_state", "pose_state", "disc_state"):
        for k, v in ref_state[key].items():
            assert torch.equal(v, got[key][k]), f"{key}.{k} differs after resume"
    info = got["model_info"]
    assert (info["input_height"], info["input_width"]) == (H, W)
    assert info["scale_source"] == "none" and info["scale_factor"] == 1.0
    # a resumed run refuses a changed model
    with pytest.raises(ConfigError) as e:
        Trainer(night(day_ckpt, *common, "model.depth.encoder=resnet18"), run, resume=True,
                datasets=datasets(6))
    assert e.value.key == "model"


def test_nan_stops_with_message_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    from dasp_core.train import stages

    calls = {"n": 0}
    real = stages.edge_aware_smoothness

    def flaky(disp, img):
        calls["n"] += 1
        out = real(disp, img)
        # 4 scales per step: poison step 3
        return out * float("nan") if 8 < calls["n"] <= 12 else out

    monkeypatch.setattr(stages, "edge_aware_smoothness", flaky)
    snapshot = {}
    tr = Trainer(tiny_cfg("train.max_steps=5", "train.checkpoint_interval=2"), tmp_path,
                 datasets=datasets(),
                 callbacks=[lambda s: snapshot.update({s: params(tr.depth)})])
    with pytest.raises(TrainingDivergedError) as e:
        tr.fit()
    msg = str(e.value)
    assert "step 3" in msg and "smoothness" in msg and "last.pt" in msg and "(step 2)" in msg
    assert e.value.step == 3 and "smoothness" in e.value.terms
    ck = read_checkpoint(tmp_path / "last.pt")
    assert ck["train_state"]["step"] == 2
    assert all(torch.isfinite(v).all() for v in ck["depth_state"].values()
               if v.is_floating_point())
    for k, v in snapshot[2].items():
        assert torch.equal(ck["depth_state"][k], v)
    assert not (tmp_path / "final.pt").exists()


def test_validation_best_and_log_files(tmp_path):
    ds = dict(datasets(), day_val=FakeClips(2, "day", 9))
    tr = Trainer(tiny_cfg("train.max_steps=2", "train.checkpoint_interval=1",
                          "train.keep_checkpoints=1", "train.tensorboard=true",
                          "train.image_interval=1", "val.interval=1", "scale.velocity=true"),
                 tmp_path, datasets=ds)
    summary = tr.fit()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert {"best.pt", "final.pt", "last.pt", "config.yaml", "train.log", "tb"} <= set(names)
    assert [n for n in names if n.startswith("step_")] == ["step_00000002.pt"]
    assert "abs_rel" in summary.val_metrics and "median_scale" in summary.val_metrics
    log_text = (tmp_path / "train.log").read_text()
    assert "step 2/2" in log_text and "photometric" in log_text and "validation" in log_text
    info = read_checkpoint(tmp_path / "final.pt")["model_info"]
    # velocity_mode=recover (default): the stored factor is the median of the steps' ratios
    assert len(tr.velocity_ratios) == 2
    assert info["scale_source"] == "learned"
    assert info["scale_factor"] == pytest.approx(recovered_scale(tr.velocity_ratios))
    assert info["scale_factor"] > 0
    assert "val_median_gt_scale" in info["extra"]
    assert C.load_config(tmp_path / "config.yaml").to_dict() == tr.cfg.to_dict()
    assert any((tmp_path / "tb").iterdir())


class ConstantDepth(torch.nn.Module):
    """A depth network stand-in that predicts ``depth_m`` everywhere (no BatchNorm)."""

    def __init__(self, depth_m: float, cfg: DepthNetConfig):
        super().__init__()
        from dasp_core.geometry import depth_to_disp

        self.cfg = cfg
        self.disp = torch.nn.Parameter(
            depth_to_disp(torch.tensor(depth_m), cfg.min_depth, cfg.max_depth))

    def forward(self, x: torch.Tensor) -> list:
        return [self.disp.expand(x.shape[0], 1, *x.shape[-2:])]


@pytest.mark.parametrize("factor, metric_abs_rel", [(2.0, 0.0), (1.0, 0.5), (None, None)])
def test_validate_depth_known_values(factor, metric_abs_rel):
    """GT is 10 m everywhere; a network that says 5 m is perfect after median scaling (x2),
    off by half in metres unless its declared factor is 2, and has no train/eval gap."""
    from dasp_core.train.loader import wrap_reader
    from dasp_core.train.validation import validate_depth

    cfg = tiny_cfg()
    net = ConstantDepth(5.0, cfg.model.depth)
    val_set = wrap_reader(FakeClips(3, "night", 9), cfg, train=False)
    out = validate_depth(net, val_set, cfg.val, target=0, batch_size=2,
                         device=torch.device("cpu"), metric_factor=factor,
                         report_median_scale=True)
    assert out["n_images"] == 3
    assert out["abs_rel"] == pytest.approx(0.0, abs=1e-5)
    assert out["a1"] == pytest.approx(1.0)
    assert out["median_scale"] == pytest.approx(2.0, rel=1e-4)
    assert out["bn_gap_log_depth"] == pytest.approx(0.0, abs=1e-6)
    # constant depth against constant GT: the same (zero) spread, correlation undefined; the
    # pooled percentiles are exact to one histogram bin (0.3 %)
    assert out["spread"] == pytest.approx(1.0, rel=5e-3)
    assert out["spread_rel"] == pytest.approx(1.0, rel=5e-3)
    assert "log_corr" not in out
    if metric_abs_rel is None:
        assert "metric_abs_rel" not in out
    else:
        assert out["metric_abs_rel"] == pytest.approx(metric_abs_rel, abs=1e-4)
    assert net.training  # handed back in train mode, as the loop needs it


def test_rng_state_round_trip():
    """What a checkpoint stores of the generators replays the same draws after a restore."""
    import random

    from dasp_core.train.rng import rng_state, seed_everything, set_rng_state

    seed_everything(123)
    state = rng_state()
    first = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    seed_everything(7)  # anything in between
    set_rng_state(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == first


# ----------------------------------------------------------------------------- CLI

def test_cli_describe_and_errors(tmp_path, capsys):
    from dasp_core.cli import main

    assert main(["train", "--describe"]) == 0
    assert "loss.adversarial" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"loss": {"adversarial": "cyclegan"}}))
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "loss.adversarial" in err and "'dasp', 'rnw', 'none'" in err


def _synthetic_overrides() -> list:
    out = [f"data.height={H}", f"data.width={W}", "data.batch_size=2", "data.num_workers=0",
           "model.depth.decoder_channels=[8,8,16,16,32]", "model.pose.decoder_channels=32",
           "model.discriminator.num_blocks=2", "model.discriminator.base_channels=8",
           "train.progress=false", "train.tensorboard=false", "train.max_steps=2",
           "train.checkpoint_interval=1", "val.max_batches=1", "data.augment=null"]
    for key, start in (("day_train", 0), ("night_train", 100), ("day_val", 200),
                       ("night_val", 300)):
        out += [f"data.{key}.seeds={{start: {start}, count: 1}}",
                f"data.{key}.frames_per_sequence=4",
                f"data.{key}.render={{height: {H}, width: {W}, noise: false}}"]
    return out


def test_cli_trains_day_then_night_on_synthetic_drives(tmp_path, capsys):
    """The shipped small config end to end through `dasp train` (tiny sizes)."""
    from dasp_core.cli import main

    cfg = str(REPO / "config" / "train_synthetic_small.yaml")
    day, nite = tmp_path / "day", tmp_path / "night"
    assert main(["train", cfg, "--out", str(day), *_synthetic_overrides()]) == 0
    info = read_checkpoint(day / "final.pt")["model_info"]
    # the shipped recipe trains with the clips' odometry: metric by construction
    assert (info["scale_source"], info["scale_factor"]) == ("odometry", 1.0)
    assert (info["input_height"], info["input_width"]) == (H, W)
    # an existing run is never overwritten silently
    assert main(["train", cfg, "--out", str(day), *_synthetic_overrides()]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", cfg, "--out", str(nite), "train.stage=night",
                 f"train.day_checkpoint={day / 'final.pt'}", *_synthetic_overrides()]) == 0
    ck = read_checkpoint(nite / "final.pt")
    assert ck["disc_kind"] == "splb" and ck["train_state"]["step"] == 2
    assert "val" in ck["model_info"]["extra"]


# ----------------------------------------------------------------------------- DDP

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, port: int, out: str, day_ckpt: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from dasp_core.train.distributed import cleanup_distributed

    try:
        cfg = night(day_ckpt, "data.batch_size=1", "train.max_steps=1", "train.threads=1",
                    "train.device=cpu")
        tr = Trainer(cfg, out, datasets=datasets())
        assert tr.dist.world_size == 2 and tr.dist.backend == "gloo"
        tr.fit()
        state = {f"{name}.{k}": v.detach().clone() for name, net in
                 (("depth", tr.depth), ("pose", tr.pose), ("disc", tr.disc))
                 for k, v in net.named_parameters()}
        torch.save(state, os.path.join(out, f"rank{rank}.pt"))
    finally:
        cleanup_distributed()


@pytest.mark.timeout(240)
def test_ddp_two_gloo_ranks_hold_identical_weights(day_ckpt, tmp_path):
    import torch.multiprocessing as mp

    before = {f"depth.{k}": v for k, v in read_checkpoint(day_ckpt)["depth_state"].items()}
    mp.spawn(_ddp_worker, args=(_free_port(), str(tmp_path), day_ckpt), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt")
    b = torch.load(tmp_path / "rank1.pt")
    assert a.keys() == b.keys() and len(a) > 100
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs between ranks"
    # the step did something (ranks saw different clips, gradients were averaged)
    assert any(not torch.equal(a[k], before[k]) for k in a if k in before)
    # only rank 0 wrote checkpoints and logs
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "final.pt").is_file()
