"""DISFlow: OpenCV's DIS as a no-training flow stage, in the network's backward convention."""

import pickle

import pytest

from datamodules.sample import load_photo
from lightning_modules.stages.dis_flow import DISFlow
from lightning_modules.stages.warp import flow_warp

pytest.importorskip("cv2")


def _shifted_pair(shift=(-6, 4), size=192):
    """x_t(p) = x_{t-1}(p + shift): the backward flow of the pair is ``shift``."""
    photo = load_photo("astronaut")
    top, left = 120, 140
    previous = photo[:, top : top + size, left : left + size]
    current = photo[
        :, top + shift[1] : top + shift[1] + size, left + shift[0] : left + shift[0] + size
    ]
    return current[None], previous[None]


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_a_known_translation_is_recovered_in_the_backward_convention(scale):
    current, previous = _shifted_pair()
    flow = DISFlow(scale=scale)(current, previous)
    assert flow.shape == (1, 2, 192, 192)
    inner = flow[0, :, 24:-24, 24:-24].flatten(1).median(dim=1).values
    assert inner.tolist() == pytest.approx([-6.0, 4.0], abs=0.3)
    warped = flow_warp(previous, flow)[..., 24:-24, 24:-24]
    zero = (current - previous)[..., 24:-24, 24:-24].abs().mean()
    assert (warped - current[..., 24:-24, 24:-24]).abs().mean() < 0.25 * zero


def test_it_pickles_runs_without_gradients_and_checks_its_inputs():
    flow = pickle.loads(pickle.dumps(DISFlow()))  # ddp_spawn pickles the model
    current, previous = _shifted_pair()
    out = flow(current.requires_grad_(), previous)
    assert not out.requires_grad and list(flow.parameters()) == []
    with pytest.raises(ValueError, match="differ in shape"):
        flow(current, previous[..., :-1])
    with pytest.raises(ValueError, match="scale must be in"):
        DISFlow(scale=0)
    with pytest.raises(ValueError, match="preset must be one of"):
        DISFlow(preset="slow")
