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


def _hints(b=2, h=5, w=7, n=1, scale=1.0):
    gen = torch.Generator().manual_seed(3)
    return [scale * torch.rand(b, 2, h, w, generator=gen) for _ in range(n)]


@pytest.mark.parametrize("n", [1, 2])
def test_hint_starts_as_distrust_and_a_zero_hint_is_the_hintless_gate(n):
    """The hint's gate weights start at −1 on the centre tap of each map's own hint, 0 elsewhere:
    a zero hint (the past agrees) leaves the gate of the same weights without a hint, a large
    one closes the gate."""
    cur, temporal = _inputs(n=n)
    hinted = TemporalAttentionFusion(8, num_temporal=n, hint_channels=2)
    plain = TemporalAttentionFusion(8, num_temporal=n)
    with torch.no_grad():
        plain.spatial_gate.weight.copy_(hinted.spatial_gate.weight[:, : 8 * (1 + n)])
        plain.spatial_gate.bias.copy_(hinted.spatial_gate.bias)
    hint_weights = hinted.spatial_gate.weight[:, 8 * (1 + n) :]
    assert hint_weights.sum().item() == -2.0 * n and (hint_weights != 0).sum() == 2 * n
    zero = [torch.zeros(2, 2, 5, 7) for _ in range(n)]
    torch.testing.assert_close(hinted.gate(cur, temporal, zero), plain.gate(cur, temporal))
    distrust = _hints(n=n, scale=0.0)
    distrust[-1] = torch.full((2, 2, 5, 7), 50.0)
    gate = hinted.gate(cur, temporal, distrust)
    assert gate[:, -1, 1:-1, 1:-1].max() < 1e-6  # the last map's own hint closed its gate
    if n == 2:  # and only its own
        torch.testing.assert_close(gate[:, 0], plain.gate(cur, temporal)[:, 0])


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("batch", [1, 3])
def test_inference_path_with_a_hint_equals_the_autograd_formula(n, batch):
    cur, temporal = _inputs(b=batch, h=9, w=13, n=n)
    hint = _hints(b=batch, h=9, w=13, n=n, scale=3.0)
    fusion = TemporalAttentionFusion(8, num_temporal=n, hint_channels=2)
    with torch.no_grad():
        fusion.spatial_gate.weight.normal_(0.0, 0.3)
    expected_gate = torch.sigmoid(fusion.spatial_gate(torch.cat([cur, *temporal, *hint], 1)))
    torch.testing.assert_close(
        fusion.gate(cur, temporal, hint), expected_gate, rtol=1e-5, atol=1e-6
    )
    expected = fusion(cur, temporal, hint)
    with torch.no_grad():
        fast = fusion(cur, temporal, hint)
    torch.testing.assert_close(fast, expected.detach(), rtol=1e-5, atol=1e-5)


def test_concat_fusion_with_a_hint_concatenates_it_last():
    cur, temporal = _inputs(n=1)
    hint = _hints(b=2, n=1)
    fusion = ConcatFusion(8, num_temporal=1, hint_channels=2)
    assert fusion.project.in_channels == 18
    with torch.no_grad():
        fusion.project.weight.zero_()
        fusion.project.bias.zero_()
        fusion.project.weight[0, 17] = 1.0  # output channel 0 = the hint's second channel
    torch.testing.assert_close(fusion(cur, temporal, hint)[:, 0], hint[0][:, 1])


def test_hint_gradients_reach_the_gate_weights():
    cur, temporal = _inputs(n=1)
    fusion = TemporalAttentionFusion(8, num_temporal=1, hint_channels=2)
    fusion(cur, temporal, _hints()).square().mean().backward()
    assert fusion.spatial_gate.weight.grad[:, 16:].abs().sum() > 0


@pytest.mark.parametrize("cls", [TemporalAttentionFusion, ConcatFusion])
def test_bad_hints_raise(cls):
    cur, temporal = _inputs(n=1)
    with pytest.raises(ValueError, match="hint_channels=0"):
        cls(8, num_temporal=1)(cur, temporal, _hints())
    hinted = cls(8, num_temporal=1, hint_channels=2)
    with pytest.raises(ValueError, match="hint: expected a list of 1"):
        hinted(cur, temporal)
    with pytest.raises(ValueError, match=r"hint\[0\]: expected shape \(2, 2, 5, 7\)"):
        hinted(cur, temporal, [torch.zeros(2, 3, 5, 7)])
    with pytest.raises(ValueError, match="hint_channels >= 0"):
        cls(8, num_temporal=1, hint_channels=-1)
