"""SyntheticRain: visible streaks along the fall angle that move coherently through the clip."""

import pytest
import torch

from datamodules.degradations import SyntheticRain, build_degradation


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _shift(layer, vx, vy):
    """(new, old) overlapping views such that new(y, x) should equal old(y - vy, x - vx)."""
    height, width = layer.shape[-2:]
    new = layer[..., max(vy, 0) : height + min(vy, 0), max(vx, 0) : width + min(vx, 0)]
    old = layer[..., max(-vy, 0) : height - max(vy, 0), max(-vx, 0) : width - max(vx, 0)]
    return new, old


def _corr(a, b):
    return torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()


@pytest.mark.parametrize("angle", [0.0, 25.0, -20.0])
def test_single_layer_moves_by_its_velocity_and_is_not_redrawn(angle):
    torch.manual_seed(0)
    gt = torch.rand(4, 3, 48, 56)
    rain = SyntheticRain(
        layers_range=(1, 1), angle_range=(angle, angle), speed_range=(8, 8), length_range=(5, 5)
    )
    lq, info = rain(gt, _gen(1))
    ((vx, vy),) = info["velocities"]
    assert vy > 0 and (vx > 0) == (angle > 0) and (vx < 0) == (angle < 0)  # falls along φ
    layer = info["rain"]
    for t in range(3):
        new, old = _shift(layer, vx, vy)
        assert torch.equal(new[t + 1], old[t])  # exact translation, up to the entering border
        assert not torch.equal(layer[t + 1], layer[t])
    # The visible change lq - gt follows the same motion: a shifted copy of the previous frame
    # explains it, the unshifted one does not (streaks shorter than the per-frame step).
    change = lq - gt
    new, old = _shift(change.mean(1), vx, vy)
    shifted = _corr(new[1:], old[:-1])
    unshifted = _corr(change.mean(1)[1:], change.mean(1)[:-1])
    assert shifted > 0.8 and unshifted < 0.3


def test_rain_is_visible_brightening_and_in_range():
    gt = torch.full((3, 3, 64, 64), 0.3)
    lq, info = build_degradation("rain")(gt, _gen(2))
    change = lq - gt
    assert change.mean() > 0.01  # visible on average
    assert (change > 0.05).float().mean() > 0.01  # and on a real fraction of pixels
    assert change.min() >= 0 and lq.max() <= 1  # screen blend: brighter, never past white
    # Screen blend identity with the returned layer: lq = 1 - (1 - gt)(1 - rain).
    torch.testing.assert_close(lq, 1 - (1 - gt) * (1 - info["rain"]))


def test_streaks_follow_the_fall_angle():
    gt = torch.zeros(2, 3, 96, 96)
    _, info = SyntheticRain(angle_range=(0, 0), layers_range=(1, 1))(gt, _gen(3))
    layer = info["rain"][0, 0]
    vertical = _corr(layer[1:, :], layer[:-1, :])
    horizontal = _corr(layer[:, 1:], layer[:, :-1])
    assert vertical > 0.85 and horizontal < vertical - 0.3


def test_layers_and_reproducibility():
    gt = torch.rand(3, 3, 32, 32)
    rain = SyntheticRain(layers_range=(2, 3))
    a, info = rain(gt, _gen(4))
    b, _ = rain(gt, _gen(4))
    c, _ = rain(gt, _gen(5))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert 2 <= len(info["velocities"]) <= 3
    assert info["rain"].shape == (3, 1, 32, 32)


def test_bad_arguments():
    with pytest.raises(ValueError, match="layers_range"):
        SyntheticRain(layers_range=(0, 2))
    with pytest.raises(ValueError, match="angle_range"):
        SyntheticRain(angle_range=(10, -10))
    with pytest.raises(ValueError, match="density_range"):
        SyntheticRain(density_range=(0.1, 2.0))
    with pytest.raises(ValueError, match="SyntheticRain input"):
        SyntheticRain()(torch.zeros(2, 1, 8, 8), _gen())
