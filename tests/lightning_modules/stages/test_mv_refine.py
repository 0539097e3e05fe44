"""MotionRefinement: identity at init, gradient flow, learning a correction, cost, errors."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from lightning_modules.stages.mv_refine import MotionRefinement
from lightning_modules.stages.warp import flow_warp


def test_untrained_refiner_is_identity():
    torch.manual_seed(0)
    refiner = MotionRefinement()
    flow = torch.randn(2, 2, 21, 30) * 3
    cur, prev = torch.rand(2, 3, 21, 30), torch.rand(2, 3, 21, 30)
    assert torch.equal(refiner(flow, cur, prev), flow)


def test_gradients_reach_every_parameter_and_the_inputs():
    torch.manual_seed(0)
    refiner = MotionRefinement(channels=8)
    flow = torch.randn(1, 2, 16, 16).requires_grad_(True)
    cur = torch.rand(1, 3, 16, 16)
    prev = torch.rand(1, 3, 16, 16).requires_grad_(True)
    refiner(flow, cur, prev).square().sum().backward()
    # Zero-initialised output conv: it gets a gradient at once, the rest after one update.
    assert refiner.to_residual.weight.grad.abs().sum() > 0
    assert flow.grad is not None and flow.grad.abs().sum() > 0
    with torch.no_grad():
        refiner.to_residual.weight.add_(0.01)
    refiner.zero_grad()
    prev.grad = None
    refiner(flow, cur, prev).square().sum().backward()
    for name, parameter in refiner.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert prev.grad.abs().sum() > 0  # through warp(prev, flow)


def test_learns_to_correct_a_biased_flow():
    """Flow off by a constant half pixel: a few steps of the photometric loss remove the bias."""
    torch.manual_seed(0)
    x = torch.linspace(0, 1, 24)
    pattern = torch.sin(6 * x).view(1, 1, 1, 24) * torch.cos(5 * x).view(1, 1, 24, 1)
    prev = (0.5 + 0.4 * pattern).repeat(1, 3, 1, 1)
    true_flow = torch.zeros(1, 2, 24, 24)
    true_flow[:, 0] = 1.0
    cur = flow_warp(prev, true_flow)
    biased = true_flow.clone()
    biased[:, 0] -= 0.5
    refiner = MotionRefinement(channels=8, downscale=2)
    optimizer = torch.optim.Adam(refiner.parameters(), lr=1e-2)
    for _ in range(40):
        refined = refiner(biased, cur, prev)
        loss = (flow_warp(prev, refined) - cur)[..., 2:-2, 2:-2].abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        refined = refiner(biased, cur, prev)
    error_before = (biased - true_flow)[..., 4:-4, 4:-4].abs().mean()
    error_after = (refined - true_flow)[..., 4:-4, 4:-4].abs().mean()
    assert error_after < 0.1 * error_before


def test_cost_at_480p_is_at_most_3_gflops():
    refiner = MotionRefinement()
    with torch.no_grad():
        refiner.to_residual.weight.normal_()
    frames = torch.rand(1, 3, 480, 854)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        refiner(torch.zeros(1, 2, 480, 854), frames, frames)
    assert counter.get_total_flops() <= 3e9


def test_bad_inputs_raise():
    refiner = MotionRefinement(channels=4)
    with pytest.raises(ValueError, match="cur must be"):
        refiner(torch.zeros(1, 2, 8, 8), torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="prev must have the shape of cur"):
        refiner(torch.zeros(1, 2, 8, 8), torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(ValueError, match="flow"):
        refiner(torch.zeros(1, 2, 8, 9), torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="channels"):
        MotionRefinement(channels=0)
