"""TemporalBlend: average the aligned past into the frame where they agree within the noise."""

import pytest
import torch

from lightning_modules.stages.temporal_blend import TemporalBlend


def test_agreeing_past_is_averaged_in_and_lowers_the_noise():
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(1, 3, 32, 32, generator=generator).mul(0.5).add(0.25)
    sigma = 30 / 255
    frame = clean + sigma * torch.randn(clean.shape, generator=generator)
    guide = clean + 0.3 * sigma * torch.randn(clean.shape, generator=generator)  # a cleaner past
    blend = TemporalBlend()
    out, weight = blend(frame, guide, torch.tensor([sigma]))
    assert 0.3 < weight.mean() <= 0.5  # α_max = 0.5 at init, close to it where they agree
    assert (out - clean).pow(2).mean() < 0.5 * (frame - clean).pow(2).mean()


def test_disagreeing_past_is_ignored_and_gradients_reach_the_parameters():
    frame = torch.zeros(1, 3, 16, 16)
    guide = torch.ones(1, 3, 16, 16)  # the past shows something else: an occlusion
    blend = TemporalBlend()
    out, weight = blend(frame, guide, torch.tensor([10 / 255]))
    assert out.abs().max() < 1e-6 and weight.max() < 1e-6
    near, _ = blend(frame, frame + 0.01, torch.tensor([10 / 255]))
    near.sum().backward()
    assert all(p.grad is not None and p.grad.abs() > 0 for p in blend.parameters())
    with pytest.raises(ValueError, match="same"):
        blend(frame, guide[..., :8])
    with pytest.raises(ValueError, match="window"):
        TemporalBlend(window=4)
