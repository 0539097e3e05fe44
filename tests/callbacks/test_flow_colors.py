"""Middlebury colour wheel: known colours for known directions."""

import pytest
import torch

from callbacks.flow_colors import flow_to_color, make_color_wheel


def _colour(u: float, v: float, max_flow: float = 1.0) -> torch.Tensor:
    return flow_to_color(torch.tensor([u, v]).view(2, 1, 1), max_flow=max_flow).view(3)


def test_wheel_has_55_hues_from_red():
    wheel = make_color_wheel()
    assert wheel.shape == (55, 3)
    assert wheel[0].tolist() == [1.0, 0.0, 0.0]
    assert wheel[15].tolist() == [1.0, 1.0, 0.0]  # after the 15 red->yellow hues
    assert wheel[21].tolist() == [0.0, 1.0, 0.0]
    assert ((wheel >= 0) & (wheel <= 1)).all()


def test_known_directions():
    assert _colour(0, 0).tolist() == [1.0, 1.0, 1.0]  # zero flow is white
    right = _colour(1, 0)
    assert right[0] == pytest.approx(1) and right[1] < 0.05 and right[2] < 0.2  # red
    down = _colour(0, 1)
    assert down[0] == pytest.approx(1) and down[1] > 0.8 and down[2] < 0.05  # yellow
    left = _colour(-1, 0)
    assert left[0] < 0.05 and left[2] == pytest.approx(1)  # cyan-blue
    up = _colour(0, -1)
    assert up[2] == pytest.approx(1) and up[1] < 0.05  # blue-violet


def test_magnitude_sets_saturation_and_overflow_darkens():
    half = _colour(0.5, 0)
    assert half.tolist() == pytest.approx([1.0, 0.5, 0.5])  # halfway between white and red
    beyond = _colour(2, 0, max_flow=1.0)
    assert beyond.tolist() == pytest.approx([0.75, 0.0, 0.0])


def test_batched_auto_scale_finite_and_bad_input():
    flow = torch.randn(2, 2, 5, 7) * 3
    flow[0, 0, 0, 0] = float("nan")
    colours = flow_to_color(flow)
    assert colours.shape == (2, 3, 5, 7) and torch.isfinite(colours).all()
    assert colours.min() >= 0 and colours.max() <= 1
    assert flow_to_color(torch.zeros(2, 4, 4)).eq(1).all()
    with pytest.raises(ValueError, match="flow must be"):
        flow_to_color(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="max_flow"):
        flow_to_color(torch.zeros(2, 4, 4), max_flow=0)
