"""Tests for the restoration stage (CAB and the 3-scale U-Net)."""

import pytest
import torch

from lightning_modules.stages.restoration import ChannelAttentionBlock, RestorationUNet


def test_cab_with_zero_last_conv_is_identity():
    torch.manual_seed(0)
    cab = ChannelAttentionBlock(8)
    with torch.no_grad():
        cab.body[-1].weight.zero_()
        cab.body[-1].bias.zero_()
    x = torch.randn(2, 8, 6, 5)
    torch.testing.assert_close(cab(x), x)


def test_cab_gate_scales_the_residual_per_channel():
    torch.manual_seed(0)
    cab = ChannelAttentionBlock(8)
    with torch.no_grad():  # excite gate = sigmoid(-1e4) = 0 in every channel -> identity again
        cab.excite[-2].weight.zero_()
        cab.excite[-2].bias.fill_(-1e4)
    x = torch.randn(1, 8, 4, 4)
    torch.testing.assert_close(cab(x), x)
    with torch.no_grad():  # gate = 1 -> x + body(x)
        cab.excite[-2].bias.fill_(1e4)
    torch.testing.assert_close(cab(x), x + cab.body(x))


def test_cab_inference_in_place_equals_the_autograd_path_and_keeps_its_input():
    torch.manual_seed(0)
    cab = ChannelAttentionBlock(8)
    x = torch.randn(2, 8, 6, 5)
    kept = x.clone()
    expected = cab(x)  # autograd: x + residual · gate
    assert expected.requires_grad
    with torch.inference_mode():
        got = cab(x)  # written into the body's output
    torch.testing.assert_close(got, expected.detach())
    torch.testing.assert_close(x, kept)  # the skip input is read, never written
    expected.sum().backward()
    assert all(p.grad is not None for p in cab.parameters())


@pytest.mark.parametrize("size", [(16, 24), (13, 19), (1, 1), (6, 10)])
def test_unet_sizes_and_residual_identity(size):
    torch.manual_seed(0)
    h, w = size
    net = RestorationUNet(channels=(4, 8, 16), num_blocks=(1, 1, 1))
    frame = torch.rand(2, 3, h, w)
    extra = torch.full((2, 1, h, w), 0.1)
    feats = net.encode(frame, extra)
    expected_sizes = [(-(-h // 2**s), -(-w // 2**s)) for s in range(3)]
    assert [tuple(f.shape[2:]) for f in feats] == expected_sizes
    assert [f.shape[1] for f in feats] == [4, 8, 16]
    restored, decoded = net.decode(feats, frame)
    assert restored.shape == frame.shape
    assert [tuple(d.shape) for d in decoded] == [tuple(f.shape) for f in feats]
    with torch.no_grad():
        net.tail.weight.zero_()
        net.tail.bias.zero_()
    restored, _ = net.decode(feats, frame)
    torch.testing.assert_close(restored, frame)


@pytest.mark.parametrize("size", [(16, 24), (13, 19), (1, 1)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_unet_inference_merge_equals_the_autograd_path(size, channels_last):
    """Without autograd the decoder folds the merge's up-block into the transposed conv; the
    restored frame and every decoder feature must match the concatenating path."""
    torch.manual_seed(0)
    net = RestorationUNet(channels=(4, 8, 16), num_blocks=(1, 1, 1))
    for module in (*net.up, *net.merge):
        torch.nn.init.normal_(module.bias)
    frame = torch.rand(2, 3, *size)
    feats = net.encode(frame, torch.full((2, 1, *size), 0.1))
    restored, decoded = net.decode(feats, frame)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        feats = [f.to(memory_format=torch.channels_last) for f in feats]
    with torch.no_grad():
        fast, fast_decoded = net.decode(feats, frame)
    torch.testing.assert_close(fast, restored.detach(), rtol=1e-5, atol=1e-5)
    for got, expected in zip(fast_decoded, decoded):
        torch.testing.assert_close(got, expected.detach(), rtol=1e-5, atol=1e-5)


def test_unet_last_decoder_feature_drives_output_and_noise_map_matters():
    torch.manual_seed(0)
    net = RestorationUNet(channels=(4, 8, 16), num_blocks=(1, 1, 1))
    frame = torch.rand(1, 3, 12, 12)
    restored, decoded = net.decode(net.encode(frame, torch.zeros(1, 1, 12, 12)), frame)
    torch.testing.assert_close(restored, frame + net.tail(decoded[0]))
    restored_b, _ = net.decode(net.encode(frame, torch.ones(1, 1, 12, 12)), frame)
    assert not torch.allclose(restored, restored_b)


def test_unet_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = RestorationUNet(extra_channels=0, channels=(4, 8, 16), num_blocks=(1, 2, 1))
    frame = torch.rand(1, 3, 10, 14)
    restored, decoded = net.decode(net.encode(frame), frame)
    (restored.mean() + sum(d.mean() for d in decoded)).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_unet_bad_inputs_raise():
    net = RestorationUNet(channels=(4, 8, 16))
    frame = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="extra: expected shape"):
        net.encode(frame)
    with pytest.raises(ValueError, match="frame: expected"):
        net.encode(torch.rand(3, 8, 8), torch.zeros(1, 1, 8, 8))
    feats = net.encode(frame, torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"fused\[1\]"):
        net.decode([feats[0], feats[1][:, :, :2], feats[2]], frame)
    with pytest.raises(ValueError, match="fused: expected 3"):
        net.decode(feats[:2], frame)
    with pytest.raises(ValueError, match="extra must be None"):
        RestorationUNet(extra_channels=0).encode(frame, torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="channels"):
        RestorationUNet(channels=(4, 8))
