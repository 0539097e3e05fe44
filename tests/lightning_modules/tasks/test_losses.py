"""Known answers and invariants of the Charbonnier, census and edge-aware smoothness losses."""

import kornia
import numpy as np
import pytest
import torch
from skimage import data

from lightning_modules.tasks.losses import (
    census_loss,
    charbonnier,
    clean_warp_loss,
    edge_aware_smoothness,
    endpoint_error,
)


@pytest.fixture(scope="module")
def astronaut_crop() -> torch.Tensor:
    """(1, 3, 48, 64) real photograph in [0, 1] (skimage ships it offline)."""
    image = data.astronaut()[100:148, 180:244].astype(np.float32) / 255.0
    return torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0)


def test_charbonnier_is_eps_at_zero_and_abs_for_large_differences():
    x = torch.rand(2, 3, 4, 4)
    assert charbonnier(x, x, eps=1e-3).item() == pytest.approx(1e-3, rel=1e-6)
    d = 10.0
    assert charbonnier(x + d, x, eps=1e-3).item() == pytest.approx(d, rel=1e-6)
    known = float(np.sqrt(0.3**2 + 0.1**2))
    assert charbonnier(x + 0.3, x, eps=0.1).item() == pytest.approx(known, rel=1e-5)


def test_charbonnier_differs_from_kornia_barron_version():
    x = torch.zeros(1, 1, 2, 2)
    ours = charbonnier(x + 0.5, x, eps=1e-3)
    barron = kornia.losses.charbonnier_loss(x + 0.5, x, reduction="mean")
    assert ours.item() == pytest.approx(0.5, rel=1e-5)
    assert barron.item() == pytest.approx(np.sqrt(1.25) - 1, rel=1e-5)


def test_charbonnier_mask_ignores_masked_pixels_and_passes_gradients():
    target = torch.zeros(1, 3, 4, 4)
    pred = torch.zeros(1, 3, 4, 4, requires_grad=True)
    with torch.no_grad():
        pred[..., :2] = 100.0  # huge error in the masked-out half
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 2:] = 1.0
    loss = charbonnier(pred, target, eps=1e-3, mask=mask)
    assert loss.item() == pytest.approx(1e-3, rel=1e-5)
    loss.backward()
    assert pred.grad[..., :2].abs().sum() == 0


def test_charbonnier_rejects_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        charbonnier(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))
    with pytest.raises(ValueError, match="eps"):
        charbonnier(torch.zeros(1), torch.zeros(1), eps=0.0)
    with pytest.raises(ValueError, match="mask"):
        charbonnier(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), mask=torch.ones(1, 2, 4, 4))


def test_census_is_zero_for_identical_images_and_grows_with_shift(astronaut_crop):
    img = astronaut_crop
    assert census_loss(img, img).item() == pytest.approx(0.0, abs=1e-7)
    losses = [census_loss(img, torch.roll(img, s, dims=-1)).item() for s in (1, 2, 4)]
    assert 0 < losses[0] < losses[1] < losses[2] < 1


def test_census_ignores_brightness_offset_but_mean_charbonnier_does_not(astronaut_crop):
    brighter = astronaut_crop + 0.1
    assert census_loss(astronaut_crop, brighter).item() < 1e-4
    assert charbonnier(astronaut_crop, brighter).item() > 0.09


def test_census_mask_and_gradient(astronaut_crop):
    img = astronaut_crop
    shifted = torch.roll(img, 2, dims=-1).requires_grad_(True)
    empty = torch.zeros(1, 1, *img.shape[-2:])
    assert census_loss(img, shifted, mask=empty).item() == 0.0
    census_loss(img, shifted).backward()
    assert torch.isfinite(shifted.grad).all() and shifted.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="patch_size"):
        census_loss(img, img, patch_size=4)
    with pytest.raises(ValueError, match="too small"):
        census_loss(img[..., :5, :5], img[..., :5, :5])


def test_smoothness_zero_for_constant_flow_positive_for_checkerboard():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 8, 8)
    constant = torch.ones(2, 2, 8, 8) * torch.tensor([1.5, -2.0]).view(1, 2, 1, 1)
    assert edge_aware_smoothness(constant, image).item() == 0.0
    checker = ((torch.arange(8).view(1, 8) + torch.arange(8).view(8, 1)) % 2).float()
    checker_flow = checker.expand(2, 2, 8, 8)
    # Central/Sobel differences would see no gradient in a checkerboard; forward ones do.
    assert edge_aware_smoothness(checker_flow, torch.zeros(2, 3, 8, 8)).item() == pytest.approx(1)


def test_smoothness_is_cheaper_at_image_edges():
    image = torch.zeros(1, 3, 8, 8)
    image[..., 4:] = 1.0  # vertical edge between columns 3 and 4
    flow_at_edge = torch.zeros(1, 2, 8, 8)
    flow_at_edge[..., 4:] = 1.0
    flow_in_flat = torch.zeros(1, 2, 8, 8)
    flow_in_flat[..., 1:] = 1.0  # same jump, between columns 0 and 1 (flat image there)
    at_edge = edge_aware_smoothness(flow_at_edge, image, alpha=10.0)
    in_flat = edge_aware_smoothness(flow_in_flat, image, alpha=10.0)
    assert at_edge.item() < 0.1 * in_flat.item()
    assert edge_aware_smoothness(flow_at_edge, image, alpha=0.0).item() == pytest.approx(
        in_flat.item()
    )


def test_smoothness_gradient_and_bad_input():
    flow = torch.randn(1, 2, 6, 6, requires_grad=True)
    edge_aware_smoothness(flow, torch.rand(1, 3, 6, 6)).backward()
    assert flow.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"flow must be \(B, 2, H, W\)"):
        edge_aware_smoothness(torch.zeros(1, 3, 6, 6), torch.zeros(1, 3, 6, 6))
    with pytest.raises(ValueError, match="image must be"):
        edge_aware_smoothness(torch.zeros(1, 2, 6, 6), torch.zeros(1, 3, 5, 6))


def test_endpoint_error_known_values_mask_and_eps():
    flow = torch.zeros(1, 2, 2, 2)
    target = torch.zeros(1, 2, 2, 2)
    target[0, 0] = 3.0
    target[0, 1] = 4.0  # every vector is off by 5 px
    assert endpoint_error(flow, target).item() == pytest.approx(5.0)
    valid = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    target[0, :, 0, 1] = 0.0  # an exact pixel, but masked out
    assert endpoint_error(flow, target, valid).item() == pytest.approx(5.0)
    assert endpoint_error(flow, flow, eps=0.1).item() == pytest.approx(0.1)
    flow.requires_grad_(True)
    endpoint_error(flow, target, eps=0.01).backward()
    assert torch.isfinite(flow.grad).all()
    with pytest.raises(ValueError, match="eps must be >= 0"):
        endpoint_error(flow, target, eps=-1)


def _shifted_clip(shift_x=2, frames=3, size=12):
    """Clip whose frame t is frame 0 moved right by t·shift_x pixels (circularly)."""
    base = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    return torch.stack([base.roll(t * shift_x, dims=-1) for t in range(frames)], dim=1)


def test_clean_warp_loss_is_eps_for_the_true_flow_and_larger_without_it():
    gt = _shifted_clip()
    true = torch.zeros(1, 3, 2, 12, 12)
    true[:, :, 0] = -2.0  # backward flow: gt_t(p) = gt_{t-1}(p - 2 x)
    assert clean_warp_loss(true, gt).item() == pytest.approx(1e-3, abs=1e-6)
    assert clean_warp_loss(torch.zeros_like(true), gt).item() > 0.1
    assert clean_warp_loss(true[:, :1], gt[:, :1]).item() == 0.0  # one frame: nothing to align


def test_clean_warp_loss_gives_the_flows_a_gradient_towards_the_motion():
    gt = _shifted_clip()
    flows = torch.zeros(1, 3, 2, 12, 12)
    flows[:, :, 0] = -1.5
    flows.requires_grad_(True)
    clean_warp_loss(flows, gt).backward()
    assert flows.grad[:, 0].abs().sum() == 0  # v_0 is not used
    assert flows.grad[:, 1:, 0].sum() > 0  # x flow should move towards -2


def test_clean_warp_loss_bad_shapes():
    with pytest.raises(ValueError, match=r"flows must be \(B, T, 2, H, W\)"):
        clean_warp_loss(torch.zeros(1, 3, 3, 12, 12), _shifted_clip())
