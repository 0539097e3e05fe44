"""RecursiveOutputFilter: the restored frame averaged with the aligned previous output."""

import math

import pytest
import torch

from lightning_modules.stages.output_filter import RecursiveOutputFilter
from tests.conftest_config import tiny_network


def zero_flow(x):
    return x.new_zeros(x.shape[0], 2, *x.shape[2:])


def test_known_weight_for_a_constant_disagreement():
    """d = δ² everywhere, so w = w_max·exp(−δ²/τ²) with τ = κσ + c and r = out + w·δ."""
    restored = torch.full((2, 3, 8, 8), 0.5)
    delta = 0.03
    sigma = torch.tensor([30 / 255, 0.0])
    out, weight = RecursiveOutputFilter()(restored, restored + delta, zero_flow(restored), sigma)
    tau = 0.4 * sigma + 0.01
    expected = 0.5 * torch.exp(-(delta**2) / tau.square())
    torch.testing.assert_close(weight[:, 0, 0, 0], expected)
    torch.testing.assert_close(out, restored + expected.view(2, 1, 1, 1) * delta)


def test_the_flow_aligns_the_past_and_an_aligned_past_averages_out_independent_errors():
    """The previous output is the clean frame one pixel to the left plus its own error; with
    the flow that undoes the shift, the average halves the error variance (w_max = 0.5 makes it
    a plain mean where they agree)."""
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(1, 3, 40, 40, generator=generator).mul(0.3).add(0.35)
    error = 0.01
    restored = clean + error * torch.randn(clean.shape, generator=generator)
    previous = torch.roll(clean, shifts=-1, dims=-1) + error * torch.randn(
        clean.shape, generator=generator
    )
    flow = zero_flow(clean)
    flow[:, 0] = -1.0  # flow_warp(previous, v)[x] = previous[x - 1] = clean[x]
    out, weight = RecursiveOutputFilter()(restored, previous, flow, torch.tensor([30 / 255]))
    inner = (..., slice(4, -4), slice(4, -4))
    assert weight[inner].min() > 0.45
    ratio = (out - clean)[inner].square().mean() / (restored - clean)[inner].square().mean()
    assert 0.45 < ratio < 0.6  # ≈ (1 − w)² + w² = 0.5 at w = 0.5
    assert torch.equal(weight[..., 0], torch.zeros_like(weight[..., 0]))  # read outside: w = 0
    torch.testing.assert_close(out[..., 0], restored[..., 0])


def test_a_disagreeing_past_is_ignored_and_gradients_reach_everything():
    restored = torch.zeros(1, 3, 16, 16, requires_grad=True)
    occluder = torch.ones(1, 3, 16, 16)
    filt = RecursiveOutputFilter()
    out, weight = filt(restored, occluder, zero_flow(occluder), torch.tensor([10 / 255]))
    assert weight.max() < 1e-6 and torch.allclose(out, restored)
    previous = (restored.detach() + 0.02).requires_grad_()
    flow = torch.full((1, 2, 16, 16), 0.3, requires_grad=True)
    texture = torch.linspace(0, 1, 16).expand(1, 3, 16, 16)
    near, _ = filt(restored + texture, previous + texture, flow, torch.tensor([10 / 255]))
    near.square().sum().backward()
    for name, tensor in [
        *filt.named_parameters(),
        ("restored", restored),
        ("previous", previous),
        ("flow", flow),
    ]:
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0, name


def test_bad_arguments_and_shapes_get_one_clear_error():
    frame = torch.zeros(1, 3, 8, 8)
    with pytest.raises(ValueError, match="window must be an odd int"):
        RecursiveOutputFilter(window=4)
    with pytest.raises(ValueError, match="init_trust must be in"):
        RecursiveOutputFilter(init_trust=1.0)
    with pytest.raises(ValueError, match="init_kappa and init_offset must be > 0"):
        RecursiveOutputFilter(init_offset=0.0)
    with pytest.raises(ValueError, match="same"):
        RecursiveOutputFilter()(frame, frame[..., :4], zero_flow(frame))
    with pytest.raises(ValueError, match="flow must be"):
        RecursiveOutputFilter()(frame, frame, zero_flow(frame)[..., :4])


def test_in_the_network_the_first_frame_is_untouched_and_no_trust_is_no_filter():
    torch.manual_seed(0)
    net = tiny_network(
        "no_codec", ["model.restoration.num_blocks=[1,1,1]", "model/output_filter=recursive"]
    ).eval()
    generator = torch.Generator().manual_seed(1)
    still = torch.rand(1, 1, 3, 32, 48, generator=generator).expand(1, 4, 3, 32, 48)
    lq = still + 0.02 * torch.randn(still.shape, generator=generator)  # a static scene
    sigma = torch.full((1,), 25 / 255)
    with torch.no_grad():
        output = net(lq, sigma, return_maps=True)
        filtered = output.restored
        stage = net.output_filter
        net.output_filter = None
        plain = net(lq, sigma).restored
        net.output_filter = stage
        stage.trust_logit.fill_(-math.inf)  # w_max = 0: the filter is the identity
        no_trust = net(lq, sigma).restored
    torch.testing.assert_close(filtered[:, 0], plain[:, 0])
    assert "filter_weight" not in output.maps[0]
    weights = torch.stack([m["filter_weight"] for m in output.maps[1:]])
    assert weights.shape == (3, 1, 1, 32, 48) and 0 < weights.mean() <= 0.5
    assert (filtered[:, 1:] - plain[:, 1:]).abs().max() > 1e-4
    torch.testing.assert_close(no_trust, plain)
