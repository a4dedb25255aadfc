"""Tests of dasp_core.models: shapes, gradient flow, invariances, known values, config errors.

Small tensors only (the whole file should run in well under a minute on 2 CPU cores).
"""

from __future__ import annotations

import math

import pytest
import torch
import torchvision

import dasp_core.models as models
from dasp_core.errors import ConfigError, ModelFileError
from dasp_core.geometry import pose_vec_to_matrix, warp_image
from dasp_core.models import (DepthNet, DepthNetConfig, DisparityHead, Discriminator,
                              DiscriminatorConfig, PatchDiscriminator, PoseNet, PoseNetConfig,
                              mean_normalise_stack)
from dasp_core.models.blocks import (STLM, AxialAttention, check_bool, check_int, position_maps,
                                     temporal_orthogonal_differences)


def _assert_grads_reach_all(model: torch.nn.Module) -> None:
    """Every trainable parameter has a finite gradient with at least one non-zero entry."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert params, "model has no trainable parameters"
    missing = [n for n, p in params if p.grad is None]
    assert not missing, f"no gradient for {missing[:10]}"
    nonfinite = [n for n, p in params if not torch.isfinite(p.grad).all()]
    assert not nonfinite, f"non-finite gradient for {nonfinite[:10]}"
    zero = [n for n, p in params if not (p.grad != 0).any()]
    assert not zero, f"all-zero gradient for {zero[:10]}"


def _moving_stack(B: int = 2, T: int = 3, H: int = 64, W: int = 96, step: int = 4,
                  seed: int = 0) -> torch.Tensor:
    """A random disparity-like pattern translated by ``step`` pixels per frame: [B,T,1,H,W]."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(B, 1, H, W + step * T, generator=g) + 0.5
    frames = [base[..., t * step: t * step + W] for t in range(T)]
    return torch.stack(frames, dim=1).contiguous()


# ----------------------------------------------------------------------------- exports

def test_package_exports_agreed_names():
    for name in ["DepthNet", "DepthNetConfig", "DisparityHead", "PoseNet", "PoseNetConfig",
                 "Discriminator", "DiscriminatorConfig", "PatchDiscriminator"]:
        assert name in models.__all__ and hasattr(models, name)


# ----------------------------------------------------------------------------- DepthNet

@pytest.mark.parametrize("encoder", ["resnet18", "resnet34", "resnet50", "mobilenet_v3_large"])
def test_depthnet_every_encoder_shapes_and_range(encoder):
    net = DepthNet(DepthNetConfig(encoder=encoder)).eval()
    with torch.no_grad():
        outs = net(torch.rand(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 1, 64 // 2 ** s, 96 // 2 ** s) for s in range(4)]
    for o in outs:
        assert torch.isfinite(o).all() and (o > 0).all() and (o < 1).all()


@pytest.mark.parametrize("hw", [(64, 96), (96, 320), (128, 64)])
def test_depthnet_sizes_and_disparity_head(hw):
    H, W = hw
    net = DepthNet(DepthNetConfig(scales=(0, 2))).eval()
    x = torch.rand(2, 3, H, W)
    with torch.no_grad():
        outs = net(x)
        head = DisparityHead(net)(x)
    assert [tuple(o.shape) for o in outs] == [(2, 1, H, W), (2, 1, H // 4, W // 4)]
    assert torch.equal(head, outs[0])


def test_depthnet_rejects_non_multiple_of_32():
    with pytest.raises(ValueError, match="multiple of 32.*70x96"):
        DepthNet()(torch.rand(1, 3, 70, 96))
    with pytest.raises(ValueError, match="at least 64x64, got 32x64"):
        DepthNet()(torch.rand(1, 3, 32, 64))


@pytest.mark.parametrize("encoder", ["resnet18", "mobilenet_v3_large"])
def test_depthnet_gradients_reach_all_parameters(encoder):
    net = DepthNet(DepthNetConfig(encoder=encoder)).train()
    outs = net(torch.rand(2, 3, 64, 64))
    sum(((o - 0.3) ** 2).mean() for o in outs).backward()
    _assert_grads_reach_all(net)


def test_depthnet_loads_local_pretrained_weights(tmp_path):
    torch.manual_seed(1)
    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18_imagenet.pth"
    torch.save(ref.state_dict(), path)
    net = DepthNet(DepthNetConfig(encoder="resnet18", pretrained_path=str(path)))
    assert torch.equal(net.encoder.stem[0].weight, ref.conv1.weight)
    assert torch.equal(net.encoder.stages[3][1].conv2.weight, ref.layer4[1].conv2.weight)
    assert torch.equal(net.encoder.stem[1].running_var, ref.bn1.running_var)
    # a network built without the file differs, so the comparison above means something
    assert not torch.equal(DepthNet().encoder.stem[0].weight, ref.conv1.weight)


def test_depthnet_loads_local_mobilenet_weights(tmp_path):
    torch.manual_seed(2)
    ref = torchvision.models.mobilenet_v3_large(weights=None)
    path = tmp_path / "mbv3.pth"
    torch.save(ref.state_dict(), path)
    net = DepthNet(DepthNetConfig(encoder="mobilenet_v3_large", pretrained_path=str(path)))
    assert torch.equal(net.encoder.stem[0][0].weight, ref.features[0][0].weight)
    assert torch.equal(net.encoder.stages[3][-1].block[0][0].weight,
                       ref.features[15].block[0][0].weight)


def test_missing_pretrained_file_names_the_path(tmp_path):
    path = str(tmp_path / "nope" / "resnet18.pth")
    with pytest.raises(ModelFileError, match="nope/resnet18.pth.*not found"):
        DepthNet(DepthNetConfig(pretrained_path=path))
    with pytest.raises(ModelFileError, match="nope/resnet18.pth.*not found"):
        PoseNet(PoseNetConfig(pretrained_path=path))


def test_pretrained_file_of_other_architecture_is_rejected(tmp_path):
    path = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    with pytest.raises(ModelFileError, match="r50.pth.*does not match the encoder"):
        DepthNet(DepthNetConfig(encoder="resnet18", pretrained_path=str(path)))
    bad = tmp_path / "list.pth"
    torch.save([1, 2, 3], bad)
    with pytest.raises(ModelFileError, match="list.pth.*not a state_dict"):
        PoseNet(PoseNetConfig(pretrained_path=str(bad)))


def test_depthnet_config_errors_name_key():
    with pytest.raises(ConfigError, match=r"model\.depth\.encoder = 'vgg16'.*'resnet18'"):
        DepthNetConfig(encoder="vgg16").validate()


def test_depthnet_decoder_options_build_what_they_say_and_round_trip(tmp_path):
    from dasp_core.checkpoint import load_depth_model, save_checkpoint
    from dasp_core.runtime.base import ModelInfo

    torch.manual_seed(0)
    cfg = DepthNetConfig(encoder="resnet18", decoder_padding="zeros", decoder_activation="relu")
    net = DepthNet(cfg).eval()
    convs = [m for m in net.decoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and {c.padding_mode for c in convs} == {"zeros"}
    assert not any(isinstance(m, torch.nn.ELU) for m in net.modules())
    assert sum(isinstance(m, torch.nn.ReLU) for m in net.decoder.modules()) == 10
    default = DepthNet(DepthNetConfig(encoder="resnet18"))
    assert {c.padding_mode for c in default.decoder.modules()
            if isinstance(c, torch.nn.Conv2d)} == {"reflect"}
    assert sum(isinstance(m, torch.nn.ELU) for m in default.decoder.modules()) == 10
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        out = net(x)
    assert [tuple(o.shape) for o in out] == [(2, 1, 64, 96), (2, 1, 32, 48), (2, 1, 16, 24),
                                             (2, 1, 8, 12)]
    # the same weights with reflection padding give other border values: the key is real
    default.load_state_dict(net.state_dict())
    with torch.no_grad():
        ref = default.eval()(x)[0]
    assert (out[0] - ref)[..., 0, :].abs().max() > 1e-6
    path = save_checkpoint(tmp_path / "zr.pt", net, ModelInfo(input_height=64, input_width=96))
    loaded, _, _ = load_depth_model(path)
    assert loaded.cfg.decoder_padding == "zeros" and loaded.cfg.decoder_activation == "relu"
    with torch.no_grad():
        assert torch.allclose(loaded.float()(x)[0], out[0], atol=1e-6)


@pytest.mark.parametrize("key,value,allowed", [("decoder_padding", "replicate", "'reflect'"),
                                               ("decoder_activation", "gelu", "'elu'")])
def test_depthnet_decoder_option_errors_name_key_and_choices(key, value, allowed):
    with pytest.raises(ConfigError, match=rf"model\.depth\.{key} = '{value}'.*{allowed}"):
        DepthNetConfig(**{key: value}).validate()


def test_exposure_normalize_known_values():
    from dasp_core.models.depth_net import ExposureNormalize
    norm = ExposureNormalize(0.4)
    gen = torch.Generator().manual_seed(0)
    dark = 0.02 + 0.2 * torch.rand(2, 3, 32, 48, generator=gen)     # night-like levels
    out = norm(dark)
    # geometric mean intensity lands on the target, per image
    torch.testing.assert_close(out.log().mean(dim=(1, 2, 3)).exp(), torch.full((2,), 0.4))
    # a monotone map: the order of intensities within an image is kept
    flat_in, flat_out = dark[0].flatten(), out[0].flatten()
    assert torch.equal(flat_in.argsort(), flat_out.argsort())
    assert out.min() > 0 and out.max() <= 1
    # an image already at the target level is left alone (gamma 1)
    at_level = torch.full((1, 3, 8, 8), 0.4)
    torch.testing.assert_close(norm(at_level), at_level)
    # gamma is clamped: a black frame is not blown up to white, a white one stays white
    black = norm(torch.zeros(1, 3, 8, 8))
    torch.testing.assert_close(black, torch.full_like(black, ExposureNormalize.EPS ** 0.25))
    torch.testing.assert_close(norm(torch.ones(1, 3, 8, 8)), torch.ones(1, 3, 8, 8))


def test_depthnet_exposure_option_is_in_the_graph_and_round_trips(tmp_path):
    from dasp_core.checkpoint import load_depth_model, save_checkpoint
    from dasp_core.runtime.base import ModelInfo

    torch.manual_seed(0)
    # zero-centred, scaled head: the disparity spreads over the sigmoid so differences show
    net = DepthNet(DepthNetConfig(encoder="resnet18", exposure="log_mean",
                                  init_depth=None)).eval()
    with torch.no_grad():
        net.decoder.heads["0"].weight.mul_(30.0)
    plain = DepthNet(DepthNetConfig(encoder="resnet18", init_depth=None)).eval()
    plain.load_state_dict(net.state_dict())          # no weights of its own
    x = 0.02 + 0.1 * torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        assert (net(x)[0] - plain(x)[0]).abs().max() > 1e-5
        # the same scene under another tone curve (a gamma) is the same network input
        torch.testing.assert_close(net.forward_disparity(x ** 1.2), net.forward_disparity(x),
                                   atol=1e-5, rtol=0)
        assert (plain.forward_disparity(x ** 1.2) - plain.forward_disparity(x)).abs().max() \
            > 1e-4
    path = save_checkpoint(tmp_path / "exp.pt", net, ModelInfo(input_height=64, input_width=96))
    loaded, _, _ = load_depth_model(path)
    assert loaded.cfg.exposure == "log_mean" and loaded.cfg.exposure_target == 0.4
    with torch.no_grad():
        torch.testing.assert_close(loaded.float()(x)[0], net(x)[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("key,value,allowed", [("exposure", "clahe", "'none', 'log_mean'"),
                                               ("exposure_target", 1.5, "0.0")])
def test_depthnet_exposure_errors_name_key(key, value, allowed):
    with pytest.raises(ConfigError, match=rf"model\.depth\.{key}.*{allowed}"):
        DepthNetConfig(**{key: value}).validate()


# ----------------------------------------------------------------------------- PoseNet

@pytest.mark.parametrize("hw", [(64, 96), (96, 320), (128, 64)])
def test_posenet_shapes(hw):
    net = PoseNet().eval()
    with torch.no_grad():
        aa, t = net(torch.rand(2, 3, *hw), torch.rand(2, 3, *hw))
    assert aa.shape == (2, 3) and t.shape == (2, 3)
    assert torch.isfinite(aa).all() and torch.isfinite(t).all()
    # the 0.01 output scale keeps a fresh network's motion small (monodepth2)
    assert aa.abs().max() < 0.2 and t.abs().max() < 0.2


def test_posenet_gradients_reach_all_parameters():
    net = PoseNet().train()
    aa, t = net(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64))
    ((aa - 0.01) ** 2 + (t - 0.02) ** 2).sum().backward()
    _assert_grads_reach_all(net)


def test_posenet_known_output_slicing_and_scale():
    """Zero last-layer weights + bias b → (0.01 b[:3], 0.01 b[3:]) for any input."""
    net = PoseNet().eval()
    conv = net.decoder.out_conv
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
        aa, t = net(torch.rand(3, 3, 64, 96), torch.rand(3, 3, 64, 96))
    assert torch.allclose(aa, torch.tensor([0.01, 0.02, 0.03]).expand(3, 3))
    assert torch.allclose(t, torch.tensor([0.04, 0.05, 0.06]).expand(3, 3))


def test_posenet_zero_head_gives_identity_and_warp_reproduces_target():
    net = PoseNet().eval()
    with torch.no_grad():
        net.decoder.out_conv.weight.zero_()
        net.decoder.out_conv.bias.zero_()
        img = torch.rand(2, 3, 64, 96)
        aa, t = net(img, img)
        T = pose_vec_to_matrix(aa, t)
    assert torch.equal(T, torch.eye(4).expand(2, 4, 4))
    K = torch.tensor([[60.0, 0.0, 47.5], [0.0, 60.0, 31.5], [0.0, 0.0, 1.0]]).expand(2, 3, 3)
    depth = torch.rand(2, 1, 64, 96) * 20 + 1
    warped, valid = warp_image(img, depth, T, K)
    assert valid.all()
    assert torch.allclose(warped, img, atol=1e-4)


def test_posenet_batch_independent_and_order_sensitive():
    torch.manual_seed(3)
    net = PoseNet().eval()
    a, b = torch.rand(2, 3, 64, 96), torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        aa, t = net(a, b)
        aa0, t0 = net(a[:1], b[:1])
        aa_swapped, t_swapped = net(b, a)
    # samples never mix inside a batch (catches reshapes that interleave batch and frames)
    assert torch.allclose(aa[:1], aa0, atol=1e-6) and torch.allclose(t[:1], t0, atol=1e-6)
    # the network knows which frame is the target: swapping changes the prediction
    assert not torch.allclose(torch.cat([aa, t], 1), torch.cat([aa_swapped, t_swapped], 1))


def test_posenet_pretrained_conv1_duplicated_and_halved(tmp_path):
    torch.manual_seed(4)
    ref = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path / "r18.pth"
    torch.save(ref.state_dict(), path)
    net = PoseNet(PoseNetConfig(pretrained_path=str(path))).eval()
    w = ref.conv1.weight
    assert torch.equal(net.encoder.features[0].weight, torch.cat([w, w], 1) / 2)
    assert torch.equal(net.encoder.features[7][0].conv1.weight, ref.layer4[0].conv1.weight)
    # property: an identical pair gives exactly the ImageNet network's features of one image
    img = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        feats = net.encoder(img, img)
        x = net.encoder.normalize(img)
        ref_feats = torch.nn.Sequential(ref.conv1, ref.bn1, ref.relu, ref.maxpool, ref.layer1,
                                        ref.layer2, ref.layer3, ref.layer4)(x)
    assert torch.allclose(feats, ref_feats, atol=1e-4, rtol=1e-4)


def test_posenet_rejects_bad_inputs():
    net = PoseNet()
    with pytest.raises(ValueError, match="two \\[B, 3, H, W\\] images"):
        net(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 96))
    with pytest.raises(ValueError, match="at least 32x32"):
        net(torch.rand(1, 3, 16, 64), torch.rand(1, 3, 16, 64))


def test_posenet_config_errors_and_round_trip():
    with pytest.raises(ConfigError, match=r"model\.pose\.encoder = 'vgg16'.*'resnet18', "
                                          r"'resnet34', 'resnet50'"):
        PoseNetConfig(encoder="vgg16").validate()
    with pytest.raises(ConfigError, match=r"model\.pose\.output_scale"):
        PoseNetConfig(output_scale=0.0).validate()
    with pytest.raises(ConfigError, match=r"model\.pose\.decoder_channels"):
        PoseNetConfig(decoder_channels=0).validate()
    with pytest.raises(ConfigError, match=r"model\.pose\.layers.*known keys: decoder_channels"):
        PoseNetConfig.from_dict({"layers": 18})
    cfg = PoseNetConfig(encoder="resnet34", output_scale=0.02)
    assert PoseNetConfig.from_dict(cfg.to_dict()) == cfg


# ----------------------------------------------------------------------------- STLM / blocks

def test_orthogonal_differences_known_values():
    f = torch.rand(2, 3, 4, 8, 10)
    # uniform change over time: the temporal difference is a constant and its spatial
    # differences (the orthogonal ones) vanish exactly
    g = f + torch.arange(3.0).view(1, 3, 1, 1, 1) * 0.5
    od = temporal_orthogonal_differences(g - f + 1.0)
    assert od.shape == (2, 2, 12, 8, 10)
    assert torch.allclose(od[:, :, :4], torch.full_like(od[:, :, :4], 0.5))
    assert torch.equal(od[:, :, 4:], torch.zeros_like(od[:, :, 4:]))
    # a single pixel switching on between frames 0 and 1: known mixed differences
    h = torch.zeros(1, 2, 1, 5, 5)
    h[0, 1, 0, 2, 2] = 1.0
    od = temporal_orthogonal_differences(h)[0, 0]
    assert od[0, 2, 2] == 1 and od[1, 1, 2] == 1 and od[1, 2, 2] == -1
    assert od[2, 2, 1] == 1 and od[2, 2, 2] == -1 and od.abs().sum() == 5


def test_stlm_zero_temporal_response_for_static_stack():
    torch.manual_seed(5)
    stlm = STLM(8)
    frame = torch.rand(2, 1, 8, 16, 24)
    static = frame.expand(2, 3, 8, 16, 24).contiguous()
    resp = stlm.temporal_response(static)
    assert resp.shape == (2, 3, 48, 16, 24)
    assert torch.equal(resp, torch.zeros_like(resp))
    out = stlm(static)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    moving = torch.cat([frame, frame.roll(2, dims=-1), frame.roll(4, dims=-1)], dim=1)
    assert stlm.temporal_response(moving).abs().amax() > 1e-3


def _reference_axial_w(att: AxialAttention, x: torch.Tensor) -> torch.Tensor:
    """Loop-free but independent reference: attention along W for every row, via einsum."""
    N, C, H, W = x.shape
    h = att.heads
    d = C // h
    q, k, v = att.qkv(x).view(N, 3, h, d, H, W).unbind(1)           # [N, h, d, H, W]
    logits = torch.einsum("nhdyi,nhdyj->nhyij", q, k) / math.sqrt(d)
    out = torch.einsum("nhyij,nhdyj->nhdyi", logits.softmax(-1), v)  # [N, h, d, H, W]
    return att.proj(out.reshape(N, C, H, W))


def test_axial_attention_matches_reference_and_axis_symmetry():
    torch.manual_seed(6)
    att_w = AxialAttention(8, 2, "w", spectral_norm=False).eval()
    att_h = AxialAttention(8, 2, "h", spectral_norm=False).eval()
    att_h.load_state_dict(att_w.state_dict())
    x = torch.rand(2, 8, 5, 7)
    with torch.no_grad():
        assert torch.allclose(att_w(x), _reference_axial_w(att_w, x), atol=1e-5)
        # attention along H equals attention along W on the transposed map
        assert torch.allclose(att_h(x), att_w(x.transpose(-1, -2)).transpose(-1, -2), atol=1e-5)


def test_position_maps_values():
    p = position_maps(2, 4, 5)
    assert p.shape == (2, 2, 4, 5)
    assert torch.allclose(p[0, 0, :, 0], torch.tensor([0.0, 1 / 3, 2 / 3, 1.0]))
    assert torch.allclose(p[1, 1, 0], torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))


def test_config_check_helpers():
    assert check_int("k", 3, 1, 5) == 3
    for bad in (True, 3.0, "3", 0):
        with pytest.raises(ConfigError, match="k = "):
            check_int("k", bad, 1, 5)
    with pytest.raises(ConfigError, match="flag = 'yes'.*True, False"):
        check_bool("flag", "yes")


# ----------------------------------------------------------------------------- Discriminator

@pytest.mark.parametrize("hw", [(64, 96), (96, 320), (128, 64)])
def test_discriminator_shapes(hw):
    H, W = hw
    d = Discriminator(DiscriminatorConfig(base_channels=8)).eval()
    with torch.no_grad():
        out = d(torch.rand(2, 3, 1, H, W))
    assert out.shape == (2, 1, H // 16, W // 16)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("use_stlm,use_aslm,position", [(True, True, False), (True, True, True),
                                                        (False, True, False), (True, False, False),
                                                        (False, False, True)])
def test_discriminator_variants_gradients_reach_all_parameters(use_stlm, use_aslm, position):
    cfg = DiscriminatorConfig(base_channels=8, use_stlm=use_stlm, use_aslm=use_aslm,
                              position_channels=position, attention_head_dim=4)
    d = Discriminator(cfg).train()
    seq = _moving_stack(2, 3, 32, 64)
    out = d(seq)
    assert out.shape == (2, 1, 2, 4)
    ((out - 1.0) ** 2).mean().backward()
    _assert_grads_reach_all(d)


def test_discriminator_sees_time():
    torch.manual_seed(7)
    d = Discriminator(DiscriminatorConfig(base_channels=8, use_stlm=True)).eval()
    seq = _moving_stack(2, 3, 64, 96)
    with torch.no_grad():
        out = d(seq)
        shuffled = d(seq[:, [2, 0, 1]])
        reversed_ = d(seq.flip(1))
    assert (out - shuffled).abs().max() > 1e-4
    assert (out - reversed_).abs().max() > 1e-4


def test_discriminator_is_scale_free_after_mean_normalisation():
    torch.manual_seed(8)
    d = Discriminator(DiscriminatorConfig(base_channels=8)).eval()
    seq = _moving_stack(1, 3, 64, 64)
    norm = mean_normalise_stack(seq)
    assert torch.allclose(norm.mean(), torch.tensor(1.0), atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(d(norm), d(mean_normalise_stack(7.5 * seq)), atol=1e-4)
    per_frame = mean_normalise_stack(seq * torch.tensor([1.0, 2.0, 4.0]).view(1, 3, 1, 1, 1),
                                     per_frame=True)
    assert torch.allclose(per_frame.mean(dim=(2, 3, 4)), torch.ones(1, 3), atol=1e-5)


def test_discriminator_rejects_wrong_input():
    d = Discriminator(DiscriminatorConfig(base_channels=8))
    with pytest.raises(ValueError, match="seq_len=3.*T=2"):
        d(torch.rand(1, 2, 1, 64, 64))
    with pytest.raises(ValueError, match="in_channels=1.*C=3"):
        d(torch.rand(1, 3, 3, 64, 64))
    with pytest.raises(ValueError, match=r"\[B, T, C, H, W\]"):
        d(torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match="smaller than"):
        d(torch.rand(1, 3, 1, 8, 64))


def test_discriminator_config_errors_and_round_trip():
    p = "model.discriminator"
    with pytest.raises(ConfigError, match=rf"{p}\.seq_len = 1.*\[2, 16\] when use_stlm"):
        DiscriminatorConfig(seq_len=1).validate()
    DiscriminatorConfig(seq_len=1, use_stlm=False).validate()  # single frame is fine without STLM
    with pytest.raises(ConfigError, match=rf"{p}\.kernel_sizes.*odd integers"):
        DiscriminatorConfig(kernel_sizes=(3, 4)).validate()
    with pytest.raises(ConfigError, match=rf"{p}\.use_aslm = 'no'.*True, False"):
        DiscriminatorConfig(use_aslm="no").validate()
    with pytest.raises(ConfigError, match=rf"{p}\.num_blocks = 9"):
        DiscriminatorConfig(num_blocks=9).validate()
    with pytest.raises(ConfigError, match=rf"{p}\.blocks.*known keys"):
        DiscriminatorConfig.from_dict({"blocks": 4})
    cfg = DiscriminatorConfig(base_channels=16, kernel_sizes=(3, 5), position_channels=True)
    d = cfg.to_dict()
    assert d["kernel_sizes"] == [3, 5]
    assert DiscriminatorConfig.from_dict(d) == cfg
    heads = DiscriminatorConfig(base_channels=48, attention_head_dim=32).block_heads()
    assert heads == [1, 3, 6, 12]  # 48, 96, 192, 384 channels


def test_ablations_have_similar_capacity():
    def count(**kw):
        return sum(p.numel() for p in Discriminator(DiscriminatorConfig(**kw)).parameters())
    full = count()
    for kw in ({"use_stlm": False}, {"use_aslm": False}, {"use_stlm": False, "use_aslm": False}):
        assert abs(count(**kw) - full) / full < 0.1, kw


# ----------------------------------------------------------------------------- PatchDiscriminator

@pytest.mark.parametrize("hw,expected", [((96, 320), (10, 38)), ((64, 96), (6, 10)),
                                         ((128, 64), (14, 6))])
def test_patch_discriminator_shapes(hw, expected):
    d = PatchDiscriminator().eval()
    with torch.no_grad():
        assert d(torch.rand(2, 1, *hw)).shape == (2, 1, *expected)


@pytest.mark.parametrize("norm", ["batch", "spectral"])
def test_patch_discriminator_gradients_and_position_channels(norm):
    d = PatchDiscriminator(base_channels=8, norm=norm, position_channels=True).train()
    out = d(torch.rand(2, 1, 64, 96))
    ((out - 1.0) ** 2).mean().backward()
    _assert_grads_reach_all(d)


def test_patch_discriminator_errors():
    with pytest.raises(ConfigError, match=r"model\.patch_discriminator\.norm = 'layer'"):
        PatchDiscriminator(norm="layer")
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        PatchDiscriminator()(torch.rand(1, 3, 64, 64))


# ----------------------------------------------------------------------------- bench script

def _load_bench_script():
    from script_loader import load_script
    return load_script("bench_models")


def test_bench_script_helpers(tmp_path):
    bench = _load_bench_script()
    assert bench.percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert bench.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 90) == pytest.approx(4.6)
    quick = bench.parse_args(["--quick", "--out", str(tmp_path / "r.md")])
    assert (quick.height, quick.width, quick.runs, quick.train_steps) == (64, 96, 1, 1)
    with pytest.raises(SystemExit):
        bench.parse_args(["--height", "100"])
    # only the marked section of an existing report is replaced
    doc = tmp_path / "models.md"
    doc.write_text(f"# prose\n\n{bench.BEGIN}\nold numbers\n{bench.END}\ntail\n")
    bench.write_report(doc, "new numbers")
    assert doc.read_text() == f"# prose\n\n{bench.BEGIN}\nnew numbers\n{bench.END}\ntail\n"
    fresh = tmp_path / "sub" / "fresh.md"
    bench.write_report(fresh, "numbers")
    assert bench.BEGIN in fresh.read_text() and "numbers" in fresh.read_text()


def test_discriminator_state_dict_round_trip():
    """Checkpoint resume: spectral-norm state (weights and power-iteration vectors) reloads."""
    torch.manual_seed(9)
    cfg = DiscriminatorConfig(base_channels=8)
    a = Discriminator(cfg).train()
    seq = _moving_stack(1, 3, 32, 64)
    a(seq)  # one training forward advances the power iteration
    b = Discriminator(DiscriminatorConfig.from_dict(cfg.to_dict()))
    b.load_state_dict(a.state_dict())
    a.eval()
    b.eval()
    with torch.no_grad():
        assert torch.equal(a(seq), b(seq))
