"""FlowGuidedDeformableAlignment: the flow warp plus a residual DCN correction at chosen scales."""

import math

import pytest
import torch

from lightning_modules.stages.alignment import MultiScaleAlignment
from lightning_modules.stages.deformable_alignment import TAPS, FlowGuidedDeformableAlignment
from lightning_modules.stages.warp import flow_warp

CHANNELS = (8, 16, 16)


def pyramid(batch=2, size=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, c, size // 2**s, size // 2**s, generator=generator)
        for s, c in enumerate(CHANNELS)
    ]


def identity_dcn(alignment, scale, offset_yx=(0.0, 0.0)):
    """Set scale's DCN to the identity kernel (centre tap), its masks to ~1 and its learned
    offset to ``offset_yx`` pixels for every tap: DCN(S) = S sampled at p + flow + offset."""
    part = alignment.deform[str(scale)]
    channels = part.dcn.weight.shape[0]
    groups = part.groups
    with torch.no_grad():
        part.dcn.weight.zero_()
        part.dcn.weight[torch.arange(channels), torch.arange(channels), 1, 1] = 1.0
        bias = part.head[-1].bias
        bias.zero_()
        offsets = bias[: 2 * TAPS * groups].view(groups, TAPS, 2)
        for axis, value in enumerate(offset_yx):
            offsets[..., axis] = math.atanh(value / part.max_residue)
        bias[2 * TAPS * groups :] = 30.0  # sigmoid(30) = 1 - 1e-13


def test_starts_as_the_plain_flow_warp():
    feats, current = pyramid(), pyramid(seed=1)
    flow = torch.randn(2, 2, 32, 32) * 3
    aligned = FlowGuidedDeformableAlignment(CHANNELS, deform_scales=(1, 2))(feats, flow, current)
    for out, ref in zip(aligned, MultiScaleAlignment(3)(feats, flow)):
        torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_identity_kernel_adds_the_warp_again():
    """Integer flow, identity DCN, no learned offset: A = warp + warp inside the frame."""
    feats, current = pyramid(), pyramid(seed=1)
    flow = torch.zeros(2, 2, 32, 32)
    flow[:, 0], flow[:, 1] = 8.0, -4.0  # at 1/4 scale: (2, -1) pixels
    alignment = FlowGuidedDeformableAlignment(CHANNELS, deform_scales=(2,), group_channels=4)
    identity_dcn(alignment, 2)
    aligned = alignment(feats, flow, current)
    warped = MultiScaleAlignment(3)(feats, flow)
    inside = (slice(None), slice(None), slice(1, 8), slice(0, 6))  # reads stay in the frame
    torch.testing.assert_close(aligned[2][inside], 2 * warped[2][inside], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(aligned[1], warped[1], rtol=0, atol=0)  # untouched scale


def test_learned_offset_moves_the_sample():
    """Zero flow and a learned offset of +1 row: the DCN reads the state one row below."""
    feats, current = pyramid(), pyramid(seed=1)
    flow = torch.zeros(2, 2, 32, 32)
    alignment = FlowGuidedDeformableAlignment(CHANNELS, deform_scales=(2,), max_residue=3.0)
    identity_dcn(alignment, 2, offset_yx=(1.0, 0.0))
    aligned = alignment(feats, flow, current)
    state = feats[2]
    correction = aligned[2] - state  # the warp by zero flow is the identity
    torch.testing.assert_close(correction[:, :, :-1], state[:, :, 1:], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(correction[:, :, -1], torch.zeros_like(state[:, :, -1]))


def test_learned_offset_is_bounded_by_max_residue():
    alignment = FlowGuidedDeformableAlignment(CHANNELS, deform_scales=(2,), max_residue=2.0)
    identity_dcn(alignment, 2)
    with torch.no_grad():
        alignment.deform["2"].head[-1].bias[: 2 * TAPS * 2] = 1e4  # tanh -> 1
    feats, current = pyramid(), pyramid(seed=1)
    aligned = alignment(feats, torch.zeros(2, 2, 32, 32), current)
    correction = aligned[2] - feats[2]
    # every tap reads 2 px down and right of itself: the centre tap's read is p + (2, 2)
    torch.testing.assert_close(
        correction[:, :, :-2, :-2], feats[2][:, :, 2:, 2:], rtol=1e-4, atol=1e-4
    )


def test_gradients_reach_state_flow_current_and_every_parameter():
    torch.manual_seed(0)
    alignment = FlowGuidedDeformableAlignment(CHANNELS, deform_scales=(1, 2))
    for parameter in alignment.parameters():
        torch.nn.init.normal_(parameter, std=0.05)
    feats = [f.requires_grad_() for f in pyramid()]
    current = [c.requires_grad_() for c in pyramid(seed=1)]
    flow = (torch.randn(2, 2, 32, 32) * 2).requires_grad_()
    sum(a.square().sum() for a in alignment(feats, flow, current)).backward()
    assert flow.grad.abs().sum() > 0
    assert all(f.grad.abs().sum() > 0 for f in feats)
    assert current[0].grad is None or current[0].grad.abs().sum() == 0  # scale 0: plain warp
    assert current[1].grad.abs().sum() > 0 and current[2].grad.abs().sum() > 0
    assert all(p.grad.abs().sum() > 0 for p in alignment.parameters())


def test_matches_flow_warp_of_multiscale_at_plain_scales_with_bicubic():
    feats, current = pyramid(), pyramid(seed=1)
    flow = torch.randn(2, 2, 32, 32)
    aligned = FlowGuidedDeformableAlignment(CHANNELS, mode="bicubic")(feats, flow, current)
    torch.testing.assert_close(aligned[0], flow_warp(feats[0], flow, mode="bicubic"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"deform_scales": (3,)}, "deform_scales must be distinct scale indices in 0..2"),
        ({"deform_scales": ()}, "deform_scales must be distinct scale indices"),
        ({"deform_scales": (2, 2)}, "deform_scales must be distinct scale indices"),
        ({"group_channels": 3}, "group_channels=3 must divide the channels of scale 2"),
        ({"max_residue": 0.0}, "max_residue must be > 0"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FlowGuidedDeformableAlignment(CHANNELS, **kwargs)


def test_missing_or_mismatched_current_is_refused():
    alignment = FlowGuidedDeformableAlignment(CHANNELS)
    feats, flow = pyramid(), torch.zeros(2, 2, 32, 32)
    with pytest.raises(ValueError, match="current must be the current frame's features"):
        alignment(feats, flow)
    current = pyramid(seed=1)
    current[2] = current[2][:, :8]
    with pytest.raises(ValueError, match=r"current\[2\] has shape"):
        alignment(feats, flow, current)
