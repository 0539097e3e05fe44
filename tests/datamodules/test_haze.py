"""SyntheticHaze: I = J·t + A·(1 − t) with a smooth t shared by the clip and a grey-ish A."""

import math

import pytest
import torch

from datamodules.degradations import SyntheticHaze, build_degradation


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_scattering_model_inverts_exactly():
    torch.manual_seed(0)
    gt = torch.rand(3, 3, 40, 48)
    hazy, info = build_degradation("haze")(gt, _gen(1))
    t, a = info["transmission"], info["airlight"].view(1, 3, 1, 1)
    assert t.shape == (1, 1, 40, 48)  # one map for the whole clip
    recovered = (hazy - a * (1 - t)) / t
    torch.testing.assert_close(recovered, gt, atol=1e-5, rtol=0)
    torch.testing.assert_close(t, torch.exp(-info["beta"] * info["depth"]))


def test_transmission_is_smooth_and_in_range():
    haze = SyntheticHaze(beta_range=(1.5, 1.5))
    _, info = haze(torch.rand(1, 3, 64, 80), _gen(2))
    t, depth = info["transmission"][0, 0], info["depth"][0, 0]
    assert depth.min() >= 0 and depth.max() <= 1 and depth.max() - depth.min() > 0.5
    assert t.min() >= math.exp(-1.5) - 1e-6 and t.max() <= 1
    # Low frequency: neighbouring pixels differ by a small fraction of the whole range.
    assert (t[1:] - t[:-1]).abs().max() < 0.05 and (t[:, 1:] - t[:, :-1]).abs().max() < 0.05


def test_haze_is_stable_over_a_static_clip_and_lowers_contrast():
    torch.manual_seed(1)
    frame = torch.rand(1, 3, 32, 32)
    hazy, _ = SyntheticHaze()(frame.expand(4, -1, -1, -1), _gen(3))
    for t in range(1, 4):
        assert torch.equal(hazy[t], hazy[0])  # same t and A in every frame
    assert hazy.std() < frame.std()


def test_airlight_is_greyish_within_range():
    haze = SyntheticHaze(airlight_range=(0.7, 1.0), airlight_tint=0.05)
    generator = _gen(4)
    for _ in range(50):
        a = haze.draw_airlight(generator)
        assert a.min() >= 0.65 and a.max() <= 1.0
        assert a.max() - a.min() <= 0.1 + 1e-6


def test_reproducible_and_bad_arguments():
    gt = torch.rand(2, 3, 16, 16)
    a, _ = SyntheticHaze()(gt, _gen(5))
    b, _ = SyntheticHaze()(gt, _gen(5))
    c, _ = SyntheticHaze()(gt, _gen(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="airlight_range"):
        SyntheticHaze(airlight_range=(0.5, 1.5))
    with pytest.raises(ValueError, match="beta_range"):
        SyntheticHaze(beta_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="SyntheticHaze input"):
        SyntheticHaze()(torch.zeros(2, 4, 8, 8), _gen())
