"""GaussianNoise: unclipped i.i.d. AWGN with one σ per clip, reproducible by generator; the
0-255 <-> [0, 1] conversion of noise levels at the config boundary."""

import pytest
import torch

from datamodules.degradations import GaussianNoise, build_degradation, sigma_from_255, sigma_to_255


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_fixed_sigma_statistics():
    torch.manual_seed(0)
    gt = torch.rand(4, 3, 32, 32)
    lq, info = GaussianNoise(fixed_sigma=30 / 255)(gt, _gen())
    noise = lq - gt
    assert info == {"sigma": pytest.approx(30 / 255)}
    n = noise.numel()  # 12288 samples: std of the sample std ≈ σ/sqrt(2n) ≈ 0.6 % of σ
    assert noise.std().item() == pytest.approx(30 / 255, rel=0.03)
    assert abs(noise.mean().item()) < 4 * (30 / 255) / n**0.5
    for frame in noise:  # the same σ in every frame
        assert frame.std().item() == pytest.approx(30 / 255, rel=0.06)


def test_noise_is_independent_across_frames_channels_and_unclipped():
    gt = torch.full((2, 3, 32, 32), 0.98)
    lq, _ = GaussianNoise(fixed_sigma=50 / 255)(gt, _gen(1))
    noise = lq - gt
    assert not torch.allclose(noise[0], noise[1])
    corr_frames = torch.corrcoef(torch.stack([noise[0].flatten(), noise[1].flatten()]))[0, 1]
    corr_channels = torch.corrcoef(torch.stack([noise[0, 0].flatten(), noise[0, 1].flatten()]))
    assert abs(corr_frames) < 0.06 and abs(corr_channels[0, 1]) < 0.1
    assert lq.max() > 1.0 and lq.min() < 0.98  # not clipped to [0, 1]


def test_training_sigma_is_uniform_in_range_and_per_clip():
    noise = GaussianNoise(sigma_range=(10 / 255, 20 / 255))
    generator = _gen(2)
    sigmas = [noise(torch.zeros(1, 3, 4, 4), generator)[1]["sigma"] * 255 for _ in range(200)]
    assert 10 <= min(sigmas) < 11 and 19 < max(sigmas) <= 20
    assert sum(sigmas) / len(sigmas) == pytest.approx(15, abs=0.7)
    lq, info = noise(torch.zeros(3, 3, 48, 48), generator)
    per_frame = lq.flatten(1).std(dim=1)
    torch.testing.assert_close(per_frame, torch.full((3,), info["sigma"]), rtol=0.05, atol=0)


def test_same_generator_state_same_noise():
    gt = torch.rand(2, 3, 8, 8)
    a, _ = GaussianNoise()(gt, _gen(5))
    b, _ = GaussianNoise()(gt, _gen(5))
    c, _ = GaussianNoise()(gt, _gen(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_zero_sigma_is_identity():
    gt = torch.rand(2, 3, 8, 8)
    lq, info = GaussianNoise(fixed_sigma=0)(gt, _gen())
    assert torch.equal(lq, gt) and info["sigma"] == 0.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="sigma_range"):
        GaussianNoise(sigma_range=(0.2, 0.1))
    with pytest.raises(ValueError, match=r"sigma_range.*\[0, 1\] units"):
        GaussianNoise(sigma_range=(0, 50))  # a 0-255 value where [0, 1] units are expected
    with pytest.raises(ValueError, match="fixed_sigma"):
        GaussianNoise(fixed_sigma=-1)
    with pytest.raises(ValueError, match="GaussianNoise input"):
        GaussianNoise()(torch.zeros(3, 8, 8), _gen())
    assert isinstance(build_degradation("noise", fixed_sigma=10), GaussianNoise)


def test_noise_levels_change_units_only_at_the_config_boundary():
    assert sigma_from_255(25.5) == pytest.approx(0.1) and sigma_to_255(0.1) == pytest.approx(25.5)
    assert sigma_from_255([0, 51]) == pytest.approx([0.0, 0.2])
    built = build_degradation("noise", sigma_range=[0, 50], fixed_sigma=30)  # as configs write
    assert built.sigma_range == pytest.approx((0.0, 50 / 255))
    assert built.fixed_sigma == pytest.approx(30 / 255)
    with pytest.raises(ValueError, match="unknown degradation 'blur'; valid names: noise, rain"):
        build_degradation("blur")
    with pytest.raises(TypeError, match="degradation 'noise'.*sigma_rang"):
        build_degradation("noise", sigma_rang=(0, 1))
