"""The synthetic world: determinism, exact geometry, night statistics, I/O round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dasp_core.data.sample import Clip, collate_clips
from dasp_core.data.synthetic import (SequenceRenderer, SyntheticClipDataset, SyntheticConfig,
                                      read_folder, read_synthetic_bag, render_sequence,
                                      write_folder, write_synthetic_bag)
from dasp_core.errors import ConfigError
from dasp_core.geometry import reproject_pixels, warp_image

CFG = SyntheticConfig(height=96, width=320)
CFG_WARP = SyntheticConfig(height=128, width=416)

# thresholds of the geometry proof (mean absolute error of [0, 1] RGB on static visible pixels)
MAE_CLEAN = 0.018      # measured 0.009 mean, 0.013 max over 16 frames (bilinear resampling)
MAE_NOISY = 0.022      # measured 0.0135 mean, 0.0164 max (plus sensor noise in both frames)
PERTURBED_RATIO = 3.0  # a 20 cm / 1° pose error must be at least this much worse


@pytest.fixture(scope="module")
def day_renderer():
    return SequenceRenderer(11, "day", 40, CFG_WARP)


@pytest.fixture(scope="module")
def night_seq():
    return render_sequence(2, "night", 6, CFG)


@pytest.fixture(scope="module")
def day_seq():
    return render_sequence(3, "day", 6, CFG)


def _warp_errors(f0, f1, K, perturb=None):
    """Photometric error of frame t (f0) synthesised from t+1 (f1) with GT depth and pose,
    on static pixels visible in both frames; returns (static MAE, moving MAE, valid fraction)."""
    H, W = f0.depth.shape
    T = np.linalg.inv(f1.pose) @ f0.pose                  # T_s_t: target camera -> source
    if perturb is not None:
        T = perturb @ T
    T = torch.tensor(T, dtype=torch.float32)[None]
    Kt = torch.tensor(K, dtype=torch.float32)[None]
    src = torch.tensor(f1.image).permute(2, 0, 1)[None].float() / 255
    tgt = torch.tensor(f0.image).permute(2, 0, 1)[None].float() / 255
    d0 = torch.tensor(f0.depth)[None, None]
    d1 = torch.tensor(f1.depth)[None, None]
    warped, valid = warp_image(src, d0, T, Kt)
    pix, z = reproject_pixels(d0, T, Kt)
    grid = torch.stack([(2 * pix[:, 0] + 1) / W - 1, (2 * pix[:, 1] + 1) / H - 1], -1)
    d_src = F.grid_sample(d1, grid, mode="nearest", align_corners=False)
    visible = valid & (d0 > 0) & ((d_src - z).abs() < 0.02 * z)   # not occluded in t+1
    moving = torch.tensor(f0.masks["moving"])[None, None]
    err = (warped - tgt).abs().mean(1, keepdim=True)
    static = visible & ~moving
    mov_vis = valid & moving & (d0 > 0)
    mov = err[mov_vis].mean().item() if mov_vis.sum() > 50 else float("nan")
    return err[static].mean().item(), mov, static.float().mean().item()


def test_same_seed_same_frames_in_any_order():
    a = SequenceRenderer(5, "night", 10, CFG)
    b = SequenceRenderer(5, "night", 10, CFG)
    fa = [a.render(i) for i in (0, 1, 7)]
    fb = [b.render(i) for i in (7, 1, 0)][::-1]         # different order, fresh caches
    for x, y in zip(fa, fb):
        np.testing.assert_array_equal(x.image, y.image)
        np.testing.assert_array_equal(x.depth, y.depth)
        np.testing.assert_array_equal(x.pose, y.pose)
        for k in x.masks:
            np.testing.assert_array_equal(x.masks[k], y.masks[k])
    d = SequenceRenderer(5, "day", 10, CFG)
    d1, d2 = d.render(3), SequenceRenderer(5, "day", 10, CFG).render(3)
    np.testing.assert_array_equal(d1.image, d2.image)


def test_parallel_rendering_is_identical():
    one = render_sequence(8, "day", 8, CFG, workers=1)
    two = render_sequence(8, "day", 8, CFG, workers=2)
    np.testing.assert_array_equal(one.frames, two.frames)
    np.testing.assert_array_equal(one.depth, two.depth)
    np.testing.assert_array_equal(one.poses, two.poses)


def test_different_seeds_differ():
    a = SequenceRenderer(1, "day", 5, CFG).render(2)
    b = SequenceRenderer(2, "day", 5, CFG).render(2)
    assert np.abs(a.image.astype(int) - b.image).mean() > 10
    assert np.abs(a.depth - b.depth).mean() > 1.0
    assert not np.allclose(a.pose, b.pose)


def test_depth_is_metric_and_consistent_with_pose(day_seq, night_seq):
    for seq in (day_seq, night_seq):
        assert seq.depth.dtype == np.float32 and np.isfinite(seq.depth).all()
        assert (seq.depth >= 0).all() and seq.depth.max() <= CFG.max_depth
        sky = seq.depth == 0
        assert sky[:, : CFG.height // 4].mean() > 0.05       # some sky at the top
        assert not sky[:, -CFG.height // 4:].any()           # road everywhere at the bottom
        K_inv = np.linalg.inv(seq.K)
        for i in range(seq.n_frames):
            v, u = np.nonzero(seq.depth[i] > 0)
            rays = K_inv @ np.stack([u, v, np.ones_like(u)]).astype(np.float64)
            pts = rays * seq.depth[i][v, u]
            world = seq.poses[i, :3, :3] @ pts + seq.poses[i, :3, 3:4]
            # nothing is below the road plane z = 0 ...
            assert world[2].min() > -1e-3
            # ... and the pixel just below the image centre sees the road in front of the car
            uc, vc = CFG.width // 2, CFG.height - 2
            p = seq.poses[i, :3, :3] @ (K_inv @ np.array([uc, vc, 1.0]) * seq.depth[i][vc, uc]) \
                + seq.poses[i, :3, 3]
            assert abs(p[2]) < 1e-3
            assert 1.0 < seq.depth[i][vc, uc] < 10.0


def test_intrinsics_and_pose_conventions(day_seq):
    K = day_seq.K
    assert K[0, 0] == pytest.approx(K[1, 1])
    assert K[0, 2] == pytest.approx((CFG.width - 1) / 2) and K[1, 2] == pytest.approx(
        (CFG.height - 1) / 2)
    for T in day_seq.poses:
        R = T[:3, :3]
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(R) == pytest.approx(1.0)
        # REP 103 optical frame: camera y (down) points down in the z-up world, z is level-ish
        assert R[2, 1] < -0.95 and abs(R[2, 2]) < 0.15
        assert T[2, 3] == pytest.approx(CFG.camera_height, abs=0.05)


def test_geometry_proof_warping_reproduces_day_frames(day_renderer):
    """Frame t+1 warped into t with ground-truth depth and pose reproduces frame t."""
    r = day_renderer
    rot = np.eye(4)
    c, s = np.cos(np.radians(1.0)), np.sin(np.radians(1.0))
    rot[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    shift = np.eye(4)
    shift[0, 3] = 0.2
    for idx in (5, 25):
        f0, f1 = r.render(idx, noise=False), r.render(idx + 1, noise=False)
        clean, _, frac = _warp_errors(f0, f1, r.K)
        assert frac > 0.4, "too few static visible pixels for the test to mean anything"
        assert clean < MAE_CLEAN
        for P in (shift, rot):
            bad, _, _ = _warp_errors(f0, f1, r.K, perturb=P)
            assert bad > PERTURBED_RATIO * clean
        n0, n1 = r.render(idx), r.render(idx + 1)
        noisy, _, _ = _warp_errors(n0, n1, r.K)
        assert noisy < MAE_NOISY


def test_moving_cars_are_masked_and_do_not_warp_statically():
    # seed with a lead car and cross traffic: search a few frames for visible moving cars
    found = 0
    for seed in (2, 4, 6, 9):
        r = SequenceRenderer(seed, "day", 30, CFG_WARP)
        for idx in (3, 12, 21):
            f0, f1 = r.render(idx, noise=False), r.render(idx + 1, noise=False)
            m = f0.masks["moving"]
            if m.sum() < 200:
                continue
            assert (f0.depth[m] > 0).all()
            static, moving, _ = _warp_errors(f0, f1, r.K)
            speeds = r.world.dynamic(r.frame_time(idx), f0.pose[:2, 3], 300.0)[2]
            assert (speeds > 0.1).any()
            if np.isfinite(moving):
                assert moving > 2 * static
                found += 1
        if found >= 2:
            break
    assert found >= 1, "no frame with visible moving cars found"


def test_night_is_dark_with_bright_lights(night_seq):
    night = [SequenceRenderer(s, "night", 10, CFG).render(4) for s in (2, 5, 7)]
    day = [SequenceRenderer(s, "day", 10, CFG).render(4) for s in (2, 5, 7)]
    assert np.mean([f.image.mean() for f in night]) < 0.5 * np.mean([f.image.mean() for f in day])
    assert np.mean([f.masks["dark"].mean() for f in night]) > 0.3
    assert max(f.masks["dark"].mean() for f in day) < 0.01
    assert min(f.masks["lit"].mean() for f in day) > 0.6
    for i in range(night_seq.n_frames):
        lum = night_seq.frames[i].astype(np.float32).mean(-1)
        bright = lum > 200
        assert 0.0 < bright.mean() < 0.1                     # lights are local
        assert np.percentile(lum, 99.5) > 3 * max(np.median(lum), 1.0)
    # dark pixels really are dark in the image, lit ones bright
    lum = night_seq.frames.astype(np.float32).mean(-1)
    assert lum[night_seq.masks["dark"]].mean() < 40
    assert lum[night_seq.masks["lit"]].mean() > 2 * lum[night_seq.masks["dark"]].mean()
    assert not (night_seq.masks["dark"] & night_seq.masks["lit"]).any()


def test_speeds_are_consistent_with_poses():
    seq = render_sequence(4, "day", 40, SyntheticConfig(height=32, width=96, noise=False))
    assert (seq.speeds >= 0).all() and (seq.speeds <= 15.0 + 1e-6).all()
    assert seq.speeds.max() > 3.0
    p = seq.poses[:, :3, 3]
    fd = np.linalg.norm(p[2:] - p[:-2], axis=1) / (2 * seq.dt)
    np.testing.assert_allclose(fd, seq.speeds[1:-1], atol=0.35)
    np.testing.assert_allclose(np.diff(seq.timestamps), seq.dt)


def test_folder_round_trip(tmp_path, night_seq):
    write_folder(night_seq, tmp_path / "seq")
    back = read_folder(tmp_path / "seq")
    np.testing.assert_array_equal(back.frames, night_seq.frames)
    np.testing.assert_array_equal(back.depth, night_seq.depth)
    np.testing.assert_array_equal(back.K, night_seq.K)
    np.testing.assert_allclose(back.poses, night_seq.poses, atol=1e-8)
    np.testing.assert_allclose(back.speeds, night_seq.speeds, atol=1e-6)
    for k, v in night_seq.masks.items():
        np.testing.assert_array_equal(back.masks[k], v)
    # the 16-bit PNG depth alone (millimetres, 0 beyond 65.5 m)
    write_folder(night_seq, tmp_path / "png", depth_format="png")
    png = read_folder(tmp_path / "png")
    near = night_seq.depth < 65.0
    np.testing.assert_allclose(png.depth[near], night_seq.depth[near], atol=5e-4)
    assert (png.depth[~near] == 0).all()
    text = (tmp_path / "seq" / "poses.csv").read_text().splitlines()
    assert text[0].startswith("frame,timestamp_s,speed_mps,T00")
    assert len(text) == night_seq.n_frames + 1


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("compressed", [False, True])
def test_bag_round_trip(tmp_path, day_seq, night_seq, storage, compressed):
    path = tmp_path / "bag"
    write_synthetic_bag([day_seq, night_seq], path, storage=storage, compressed=compressed)
    from dasp_core.bagio import bag_topics
    topics = bag_topics(path)
    img_topic = "/camera/image_raw/compressed" if compressed else "/camera/image_raw"
    for t in (img_topic, "/camera/camera_info", "/camera/depth_gt", "/odom", "/tf"):
        assert topics[t][1] == day_seq.n_frames + night_seq.n_frames
    back = read_synthetic_bag(path)
    assert [b.domain for b in back] == ["day", "night"]
    for orig, b in zip((day_seq, night_seq), back):
        assert b.seed == orig.seed and b.n_frames == orig.n_frames
        if compressed:
            assert np.abs(b.frames.astype(int) - orig.frames).mean() < 12
        else:
            np.testing.assert_array_equal(b.frames, orig.frames)
        np.testing.assert_array_equal(b.depth, orig.depth)
        np.testing.assert_array_equal(b.K, orig.K)
        np.testing.assert_allclose(b.poses, orig.poses, atol=1e-9)
        np.testing.assert_allclose(b.speeds, orig.speeds, atol=1e-9)
        for k, v in orig.masks.items():
            np.testing.assert_array_equal(b.masks[k], v)


def test_clip_dataset(day_seq):
    ds = SyntheticClipDataset("day", seeds=[3], frames_per_sequence=6, cfg=CFG)
    assert len(ds) == 4
    clip = ds[0]
    assert isinstance(clip, Clip) and clip.domain == "day" and clip.offsets == (-1, 0, 1)
    np.testing.assert_array_equal(clip.frames, day_seq.frames[0:3])
    np.testing.assert_array_equal(clip.depth, day_seq.depth[1])
    np.testing.assert_allclose(clip.poses, day_seq.poses[0:3])
    assert clip.speed == pytest.approx(day_seq.speeds[1]) and clip.dt == pytest.approx(0.1)
    assert set(clip.masks) == {"moving", "dark", "lit"}
    assert ds[-1].meta["frame"] == 4
    with pytest.raises(IndexError):
        ds[4]
    batch = collate_clips([ds[0], ds[1]])
    assert batch["frames"].shape == (2, 3, 3, CFG.height, CFG.width)
    assert bool(batch["has_depth"].all()) and bool(batch["has_poses"].all())
    ds2 = SyntheticClipDataset("day", [3], 6, CFG, offsets=(0, 1), stride=2, max_cached_frames=2)
    assert len(ds2) == 3 and ds2[2].meta["frame"] == 4 and len(ds2._cache) <= 2


def test_bad_configuration_is_rejected():
    with pytest.raises(ConfigError, match="domain"):
        SequenceRenderer(0, "dusk", 5, CFG)
    with pytest.raises(ConfigError, match="height"):
        SyntheticConfig(height=8)
    with pytest.raises(ConfigError, match="max_speed"):
        SyntheticConfig(max_speed=1.0)
    with pytest.raises(ConfigError, match="nonsense"):
        SyntheticConfig.from_dict({"nonsense": 1})
    with pytest.raises(ConfigError, match="offsets"):
        SyntheticClipDataset("day", [1], 5, CFG, offsets=(-1, 1))
    with pytest.raises(ConfigError):
        SequenceRenderer(0, "day", 5, CFG).render(5)


def test_cli_writes_folders_and_bags(tmp_path):
    from dasp_core.cli import main

    rc = main(["synth", "--out", str(tmp_path / "f"), "--domain", "both", "--sequences", "1",
               "--frames", "3", "--size", "32x96", "--seed", "7"])
    assert rc == 0
    assert (tmp_path / "f" / "day_seed000007" / "depth" / "000002.npy").is_file()
    assert (tmp_path / "f" / "night_seed1000007" / "image" / "000000.png").is_file()
    rc = main(["synth", "--out", str(tmp_path / "b"), "--domain", "night", "--frames", "3",
               "--size", "32x96", "--format", "sqlite3", "--compressed"])
    assert rc == 0
    back = read_synthetic_bag(tmp_path / "b" / "synthetic_night")
    assert len(back) == 1 and back[0].n_frames == 3 and back[0].seed == 1_000_000
    assert main(["synth", "--out", str(tmp_path / "x"), "--size", "big"]) == 2
