"""MultiScaleAlignment: each scale is warped by the flow resized to it and divided by 2**s."""

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.stages.alignment import MultiScaleAlignment
from lightning_modules.stages.warp import flow_warp, resize_flow


def feature_pyramid(batch, height, width, channels=(4, 8, 16), ceil=False):
    sizes = []
    for s in range(len(channels)):
        factor = 2**s
        if ceil:
            sizes.append((-(-height // factor), -(-width // factor)))
        else:
            sizes.append((height // factor, width // factor))
    return [torch.rand(batch, c, h, w) for c, (h, w) in zip(channels, sizes)]


def test_each_scale_equals_flow_warp_with_scaled_flow():
    torch.manual_seed(0)
    feats = feature_pyramid(2, 32, 48)
    flow = torch.randn(2, 2, 32, 48) * 3
    aligned = MultiScaleAlignment(num_scales=3)(feats, flow)
    for s, (feat, out) in enumerate(zip(feats, aligned)):
        assert out.shape == feat.shape
        scaled = resize_flow(flow, tuple(feat.shape[2:]), vector_scale=(2.0**-s, 2.0**-s))
        # Exact halving sizes: that is also the plain per-axis size ratio.
        torch.testing.assert_close(scaled, resize_flow(flow, tuple(feat.shape[2:])))
        torch.testing.assert_close(out, flow_warp(feat, scaled))
    torch.testing.assert_close(aligned[0], flow_warp(feats[0], flow))


def test_constant_flow_shifts_scale_s_by_flow_over_2_pow_s():
    torch.manual_seed(0)
    feats = feature_pyramid(1, 32, 32)
    flow = torch.zeros(1, 2, 32, 32)
    flow[:, 0], flow[:, 1] = 8.0, -4.0  # scale 1: (8, -4); 1/2: (4, -2); 1/4: (2, -1)
    aligned = MultiScaleAlignment()(feats, flow)
    for s, (feat, out) in enumerate(zip(feats, aligned)):
        dx, dy = 8 // 2**s, -4 // 2**s
        size = feat.shape[-1]
        interior = out[..., -dy:, : size - dx]
        torch.testing.assert_close(interior, feat[..., : size + dy, dx:], atol=1e-5, rtol=0)


def test_ceil_rounded_sizes_use_exact_power_of_two_vectors():
    torch.manual_seed(0)
    feats = feature_pyramid(1, 45, 37, ceil=True)  # (45, 37), (23, 19), (12, 10)
    flow = torch.zeros(1, 2, 45, 37)
    flow[:, 0], flow[:, 1] = 2.0, 1.0
    aligned = MultiScaleAlignment()(feats, flow)
    for s, (feat, out) in enumerate(zip(feats, aligned)):
        scaled = torch.zeros(1, 2, *feat.shape[2:])
        scaled[:, 0], scaled[:, 1] = 2.0 / 2**s, 1.0 / 2**s
        torch.testing.assert_close(out, flow_warp(feat, scaled))


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_gradients_reach_features_and_flow(mode):
    torch.manual_seed(0)
    feats = [f.requires_grad_(True) for f in feature_pyramid(1, 16, 16)]
    flow = (torch.randn(1, 2, 16, 16)).requires_grad_(True)
    sum(out.square().sum() for out in MultiScaleAlignment(mode=mode)(feats, flow)).backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in feats)
    assert flow.grad is not None and flow.grad.abs().sum() > 0


def test_wrong_inputs_raise():
    alignment = MultiScaleAlignment(num_scales=3)
    feats = feature_pyramid(1, 16, 16)
    flow = torch.zeros(1, 2, 16, 16)
    with pytest.raises(ValueError, match="list of 3 tensors.*got 2"):
        alignment(feats[:2], flow)
    with pytest.raises(ValueError, match=r"feats\[2\].*1/4"):
        alignment([feats[0], feats[1], torch.rand(1, 16, 8, 8)], flow)
    with pytest.raises(ValueError, match="flow must be"):
        alignment(feats, torch.zeros(2, 16, 16))
    with pytest.raises(ValueError, match="num_scales"):
        MultiScaleAlignment(num_scales=0)
    with pytest.raises(
        ValueError, match=r"mode must be one of \('bilinear', 'bicubic'\), got 'nearest'"
    ):
        MultiScaleAlignment(mode="nearest")


def test_bicubic_keeps_more_detail_than_bilinear_over_repeated_warps():
    """A texture moved by half a pixel and back four times (eight resamplings, as a recurrent
    state carried over eight frames): bilinear low-passes it at every step, bicubic much less;
    whole-pixel shifts are exact in both."""
    torch.manual_seed(0)  # a texture with detail down to 2 px (features are not white noise)
    texture = F.interpolate(torch.rand(1, 4, 24, 24), size=(48, 48), mode="bilinear")
    half = torch.zeros(1, 2, 48, 48)
    half[:, 0] = 0.5
    errors = {}
    for mode in ("bilinear", "bicubic"):
        alignment = MultiScaleAlignment(num_scales=1, mode=mode)
        moved = texture
        for _ in range(4):
            moved = alignment([alignment([moved], half)[0]], -half)[0]
        inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))
        errors[mode] = (moved - texture)[inner].abs().mean().item()
        whole = alignment([texture], 2 * half)[0]
        torch.testing.assert_close(whole[..., :-1], texture[..., 1:])
    assert errors["bicubic"] < 0.5 * errors["bilinear"]  # measured 0.37
