"""Tests for the alignment hint: excess warp energy over the noise, and the out-of-frame mask."""

import math

import pytest
import torch

from lightning_modules.stages.alignment_hint import (
    HINT_CHANNELS,
    alignment_hint,
    hint_pyramid,
    window_mean,
)
from lightning_modules.stages.warp import in_bounds_mask


def _textured(h=48, w=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, h // 4, w // 4, generator=gen)
    return torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear")


def _shift_flow(dx, dy, h=48, w=64):
    flow = torch.zeros(1, 2, h, w)
    flow[:, 0], flow[:, 1] = dx, dy
    return flow


def test_window_mean_of_a_constant_is_the_constant_and_of_a_spike_is_its_share():
    x = torch.full((1, 1, 9, 9), 3.0)
    torch.testing.assert_close(window_mean(x, 5), x)
    spike = torch.zeros(1, 1, 9, 9)
    spike[..., 4, 4] = 25.0
    assert window_mean(spike, 5)[..., 4, 4].item() == pytest.approx(1.0)
    assert window_mean(spike, 5)[..., 0, 0].item() == 0.0


def test_exact_alignment_without_noise_gives_zero_and_a_wrong_flow_does_not():
    """prev shifted by 3 px to the right is the current frame; the right flow explains it."""
    frame = _textured()
    previous = torch.roll(frame, shifts=-3, dims=3)  # previous[x] = frame[x + 3]
    # warp(previous, v)[x] = previous[x + v]: with v = -3 that is previous[x - 3] = frame[x]
    flow = _shift_flow(-3.0, 0.0)
    hint = alignment_hint(frame, previous, flow, None)
    assert hint.shape == (1, HINT_CHANNELS, 48, 64)
    inside = hint[:, 0, :, 8:-8]  # away from the columns the shift reads outside the frame
    assert inside.abs().max() < 1e-4
    wrong = alignment_hint(frame, previous, torch.zeros_like(flow), None)
    assert wrong[:, 0, :, 8:-8].mean() > 1.0


def test_noise_alone_is_not_misalignment_but_a_misalignment_above_it_is():
    """With independent noise σ on both frames the excess over 2σ² is near 0 where aligned."""
    sigma = 30 / 255
    frame = _textured(96, 128)
    gen = torch.Generator().manual_seed(5)
    current = frame + sigma * torch.randn(frame.shape, generator=gen)
    previous = frame + sigma * torch.randn(frame.shape, generator=gen)
    level = torch.tensor([sigma])
    aligned = alignment_hint(current, previous, torch.zeros(1, 2, 96, 128), level)
    # the log-ratio of the excess to 2σ²: small on average (window noise), far below log(2)
    assert aligned[:, 0].mean() < 0.2
    moved = torch.roll(previous, shifts=4, dims=3)
    misaligned = alignment_hint(current, moved, torch.zeros(1, 2, 96, 128), level)
    assert misaligned[:, 0].mean() > aligned[:, 0].mean() + 0.3
    # without σ the noise itself counts as misalignment
    unaware = alignment_hint(current, previous, torch.zeros(1, 2, 96, 128), None)
    assert unaware[:, 0].mean() > 5 * aligned[:, 0].mean()


def test_out_of_frame_channel_is_one_minus_the_in_bounds_mask_and_flow_is_detached():
    frame = _textured()
    flow = _shift_flow(-3.0, 2.0).requires_grad_(True)
    hint = alignment_hint(frame, frame, flow, torch.tensor([0.1]))
    torch.testing.assert_close(hint[:, 1:2], 1.0 - in_bounds_mask(flow.detach()))
    assert hint[:, 1].sum() > 0 and not hint.requires_grad


def test_the_hint_grows_with_the_misalignment_energy_as_a_log_ratio():
    """h = log(1 + e² / (2σ² + c²)): a constant offset d between the frames, σ = 0."""
    current = torch.zeros(1, 3, 16, 16)
    previous = torch.full((1, 3, 16, 16), 0.1)
    hint = alignment_hint(current, previous, torch.zeros(1, 2, 16, 16), None, offset=0.02)
    expected = math.log1p(0.1**2 / 0.02**2)
    torch.testing.assert_close(hint[:, 0], torch.full((1, 16, 16), expected))


def test_pyramid_pools_to_each_size_and_is_zero_without_a_past():
    hint = torch.rand(2, HINT_CHANNELS, 12, 20)
    sizes = [(12, 20), (6, 10), (3, 5)]
    levels = hint_pyramid(hint, sizes, hint)
    assert levels[0] is hint
    torch.testing.assert_close(levels[1], torch.nn.functional.avg_pool2d(hint, 2))
    torch.testing.assert_close(levels[2], torch.nn.functional.avg_pool2d(hint, 4))
    odd = hint_pyramid(torch.full((1, HINT_CHANNELS, 13, 21), 0.7), [(7, 11)], hint)[0]
    torch.testing.assert_close(odd, torch.full((1, HINT_CHANNELS, 7, 11), 0.7))  # ceil sizes
    zeros = hint_pyramid(None, sizes, hint)
    assert [tuple(z.shape) for z in zeros] == [(2, HINT_CHANNELS, *s) for s in sizes]
    assert all(z.abs().sum() == 0 for z in zeros)


def test_bad_shapes_raise_one_clear_error():
    with pytest.raises(ValueError, match="alignment_hint: current"):
        alignment_hint(
            torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9), torch.zeros(1, 2, 8, 8), None
        )
