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


@pytest.mark.parametrize("detector", TemporalBlend.DETECTORS)
def test_disagreeing_past_is_ignored_and_gradients_reach_the_parameters(detector):
    frame = torch.zeros(1, 3, 16, 16)
    guide = torch.ones(1, 3, 16, 16)  # the past shows something else: an occlusion
    blend = TemporalBlend(detector=detector)
    out, weight = blend(frame, guide, torch.tensor([10 / 255]))
    assert out.abs().max() < 1e-6 and weight.max() < 1e-6
    near, _ = blend(frame, frame + 0.1, torch.tensor([10 / 255]))
    near.sum().backward()
    assert all(p.grad is not None and p.grad.abs() > 0 for p in blend.parameters())
    with pytest.raises(ValueError, match="same"):
        blend(frame, guide[..., :8])
    with pytest.raises(ValueError, match="window"):
        TemporalBlend(window=4)


def test_excess_energy_sees_a_small_misalignment_that_the_noise_hides_from_mean_abs():
    """At σ = 30, a 2-pixel shift of fine texture (misalignment RMS ≈ 2σ) still gets half of
    α_max from the mean_abs detector (blended in: ghosting), while the excess energy
    (g − x)² − σ² all but rejects it; an aligned, cleaner past is trusted by both."""
    generator = torch.Generator().manual_seed(0)
    texture = torch.rand(1, 3, 48, 48, generator=generator).mul(0.6).add(0.2)
    sigma = 30 / 255
    frame = texture + sigma * torch.randn(texture.shape, generator=generator)
    shifted = torch.roll(texture, shifts=2, dims=-1)
    level = torch.tensor([sigma])
    mean_abs = TemporalBlend(init_kappa=2.0, detector="mean_abs")
    energy = TemporalBlend()
    inner = (..., slice(8, -8), slice(8, -8))
    assert mean_abs.weight(frame, shifted, level)[inner].mean() > 0.2
    assert energy.weight(frame, shifted, level)[inner].mean() < 0.05
    aligned = texture + 0.3 * sigma * torch.randn(texture.shape, generator=generator)
    assert energy.weight(frame, aligned, level)[inner].mean() > 0.4
    with pytest.raises(ValueError, match="detector must be one of"):
        TemporalBlend(detector="mse")
