"""Tests for the attention (fusion) stage."""

import pytest
import torch
from torch import nn

from lightning_modules.stages.attention import ConcatFusion, TemporalAttentionFusion


def _inputs(b=2, c=8, h=5, w=7, n=1):
    torch.manual_seed(0)
    return torch.randn(b, c, h, w), [torch.randn(b, c, h, w) for _ in range(n)]


@pytest.mark.parametrize("n", [1, 2])
def test_gate_is_in_unit_interval_and_output_shape(n):
    cur, temporal = _inputs(n=n)
    fusion = TemporalAttentionFusion(8, num_temporal=n)
    with torch.no_grad():
        fusion.spatial_gate.weight.mul_(50.0)  # push towards saturation on both sides
    gate = fusion.gate(cur, [t * 10 for t in temporal])
    assert gate.shape == (2, n, 5, 7)
    assert gate.min() >= 0 and gate.max() <= 1
    assert gate.min() < 0.01 and gate.max() > 0.99  # both ends reachable
    assert fusion(cur, temporal).shape == cur.shape


def test_closed_gate_ignores_temporal_features():
    cur, temporal = _inputs(n=2)
    fusion = TemporalAttentionFusion(8, num_temporal=2)
    with torch.no_grad():
        fusion.spatial_gate.weight.zero_()
        fusion.spatial_gate.bias.fill_(-1e4)  # gate = sigmoid(-1e4) = 0: trust nothing
    out_a = fusion(cur, temporal)
    out_b = fusion(cur, [torch.randn_like(t) * 100 for t in temporal])
    torch.testing.assert_close(out_a, out_b)


def test_open_gate_equals_hand_computed_channel_attention():
    cur, temporal = _inputs(n=1)
    fusion = TemporalAttentionFusion(8, num_temporal=1)
    with torch.no_grad():
        fusion.spatial_gate.weight.zero_()
        fusion.spatial_gate.bias.fill_(1e4)  # gate = 1: plain concat
    x = torch.cat([cur, temporal[0]], dim=1)
    pooled = x.mean(dim=(2, 3), keepdim=True)
    se = fusion.channel_gate
    weights = torch.sigmoid(se[3](torch.relu(se[1](pooled))))
    expected = fusion.project(x * weights)
    torch.testing.assert_close(fusion(cur, temporal), expected)


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_inference_path_equals_the_autograd_formula(n, batch, channels_last):
    """Without autograd the fusion skips the concatenations (taps + shifted sum for the gate,
    the channel weights folded into the projection); the result must be the same formula."""
    cur, temporal = _inputs(b=batch, h=9, w=13, n=n)
    fusion = TemporalAttentionFusion(8, num_temporal=n)
    with torch.no_grad():
        fusion.spatial_gate.bias.fill_(0.3)
        fusion.project.bias.normal_()
    # the plain formula: the 3x3 conv of the concatenation (both paths compute it by taps)
    expected_gate = torch.sigmoid(fusion.spatial_gate(torch.cat([cur, *temporal], dim=1)))
    torch.testing.assert_close(fusion.gate(cur, temporal), expected_gate, rtol=1e-5, atol=1e-6)
    expected = fusion(cur, temporal)
    assert expected.requires_grad
    if channels_last:
        fusion = fusion.to(memory_format=torch.channels_last)
        cur = cur.to(memory_format=torch.channels_last)
        temporal = [t.to(memory_format=torch.channels_last) for t in temporal]
    with torch.no_grad():
        gate = fusion.gate(cur, temporal)
        fast = fusion(cur, temporal)
    torch.testing.assert_close(gate, expected_gate, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast, expected.detach(), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(gate[..., 0, :], gate[..., 1, :])  # the borders are not trivial


def test_concat_fusion_is_a_1x1_conv_of_the_concatenation():
    cur, temporal = _inputs(n=2)
    fusion = ConcatFusion(8, num_temporal=2)
    with torch.no_grad():
        fusion.project.weight.zero_()
        fusion.project.bias.zero_()
        for i in range(8):  # select current channel i + second temporal channel i
            fusion.project.weight[i, i] = 1.0
            fusion.project.weight[i, 16 + i] = 1.0
    torch.testing.assert_close(fusion(cur, temporal), cur + temporal[1])


def test_gradients_reach_all_parameters_and_inputs():
    cur, temporal = _inputs(n=2)
    cur.requires_grad_(True)
    temporal = [t.requires_grad_(True) for t in temporal]
    fusion = TemporalAttentionFusion(8, num_temporal=2)
    fusion(cur, temporal).square().mean().backward()
    for name, p in fusion.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert all(t.grad.abs().sum() > 0 for t in [cur, *temporal])


@pytest.mark.parametrize("cls", [TemporalAttentionFusion, ConcatFusion])
def test_bad_inputs_raise(cls):
    fusion: nn.Module = cls(8, num_temporal=2)
    cur, temporal = _inputs(n=2)
    with pytest.raises(ValueError, match="temporal: expected a list of 2"):
        fusion(cur, temporal[:1])
    with pytest.raises(ValueError, match=r"temporal\[1\]"):
        fusion(cur, [temporal[0], temporal[1][:, :4]])
    with pytest.raises(ValueError, match="current"):
        fusion(cur[:, :3], temporal)
    with pytest.raises(ValueError):
        cls(0)
