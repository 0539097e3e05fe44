"""deform_conv2d against an explicit per-pixel loop, and the flow-to-offset convention."""

import math

import pytest
import torch

from lightning_modules.stages.deform_conv import ModulatedDeformConv2d, deform_conv2d
from lightning_modules.stages.warp import flow_warp


def _bilinear(image: torch.Tensor, y: float, x: float) -> float:
    """Value of ``image`` (H, W) at (y, x): bilinear over the 4 neighbours, zero outside."""
    height, width = image.shape
    y0, x0 = math.floor(y), math.floor(x)
    total = 0.0
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < height and 0 <= xx < width:
                total += wy * wx * float(image[yy, xx])
    return total


def _reference(x, offset, mask, weight, bias, stride, padding, dilation):
    """The DCNv2 formula pixel by pixel, tap by tap, channel by channel (torchvision layout)."""
    batch, cin, _, _ = x.shape
    cout, _, kh, kw = weight.shape
    out_h, out_w = offset.shape[2:]
    groups = offset.shape[1] // (2 * kh * kw)
    out = torch.zeros(batch, cout, out_h, out_w, dtype=torch.float64)
    for b in range(batch):
        for i in range(out_h):
            for j in range(out_w):
                for c in range(cin):
                    g = c // (cin // groups)
                    for ki in range(kh):
                        for kj in range(kw):
                            k = ki * kw + kj
                            dy = float(offset[b, 2 * (g * kh * kw + k), i, j])
                            dx = float(offset[b, 2 * (g * kh * kw + k) + 1, i, j])
                            m = float(mask[b, g * kh * kw + k, i, j])
                            y = i * stride - padding + ki * dilation + dy
                            xx = j * stride - padding + kj * dilation + dx
                            value = m * _bilinear(x[b, c], y, xx)
                            out[b, :, i, j] += weight[:, c, ki, kj].double() * value
        out[b] += bias.double().view(-1, 1, 1)
    return out


@pytest.mark.parametrize("stride,padding,dilation", [(1, 1, 1), (2, 1, 1), (1, 2, 2)])
def test_matches_the_per_pixel_reference(stride, padding, dilation):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 6, 5, generator=generator, dtype=torch.float64)
    weight = torch.randn(3, 4, 3, 3, generator=generator, dtype=torch.float64)
    bias = torch.randn(3, generator=generator, dtype=torch.float64)
    out_h = (6 + 2 * padding - 2 * dilation - 1) // stride + 1
    out_w = (5 + 2 * padding - 2 * dilation - 1) // stride + 1
    groups = 2
    # offsets up to ±3 px: many samples fall between pixels and some outside the image
    offset = 3 * torch.randn(2, 2 * groups * 9, out_h, out_w, generator=generator).double()
    mask = torch.rand(2, groups * 9, out_h, out_w, generator=generator).double()
    got = deform_conv2d(x, offset, mask, weight, bias, stride, padding, dilation)
    expected = _reference(x, offset, mask, weight, bias, stride, padding, dilation)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_zero_offsets_and_unit_mask_are_a_plain_convolution():
    x, weight, bias = torch.randn(1, 6, 9, 8), torch.randn(5, 6, 3, 3), torch.randn(5)
    offset, mask = torch.zeros(1, 2 * 3 * 9, 9, 8), torch.ones(1, 3 * 9, 9, 8)
    expected = torch.nn.functional.conv2d(x, weight, bias, padding=1)
    torch.testing.assert_close(deform_conv2d(x, offset, mask, weight, bias, 1, 1), expected)


def test_flow_flipped_into_offsets_warps_like_flow_warp():
    """The flow-guided convention of BasicVSR++: offset = flow.flip(1) (flow is (x, y), offsets
    are (dy, dx)), so a centre-tap kernel samples x[p + flow(p)] = flow_warp(x, flow)[p]."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 10, 12, generator=generator, dtype=torch.float64)
    flow = 2.5 * torch.randn(1, 2, 10, 12, generator=generator, dtype=torch.float64)
    weight = torch.zeros(2, 2, 3, 3, dtype=torch.float64)
    weight[0, 0, 1, 1] = weight[1, 1, 1, 1] = 1.0  # identity at the centre tap
    offset = flow.flip(1).repeat(1, 9, 1, 1)  # one (dy, dx) pair per tap, one group
    got = deform_conv2d(
        x, offset, torch.ones(1, 9, 10, 12, dtype=torch.float64), weight, None, 1, 1
    )
    torch.testing.assert_close(got, flow_warp(x, flow, padding_mode="zeros"))


def test_gradients_reach_input_offsets_mask_and_weights():
    layer = ModulatedDeformConv2d(4, 3, deform_groups=2).double()
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    offset = (0.7 * torch.randn(1, 36, 5, 5, dtype=torch.float64)).requires_grad_()
    mask = torch.rand(1, 18, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, o, m: layer(a, o, m), (x, offset, mask))
    layer(x, offset, mask).sum().backward()
    assert layer.weight.grad.abs().sum() > 0 and layer.bias.grad.abs().sum() > 0


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="offset groups must divide"):
        deform_conv2d(
            torch.zeros(1, 3, 4, 4),
            torch.zeros(1, 36, 4, 4),
            None,
            torch.zeros(1, 3, 3, 3),
            padding=1,
        )
    with pytest.raises(ValueError, match="mask"):
        deform_conv2d(
            torch.zeros(1, 2, 4, 4),
            torch.zeros(1, 18, 4, 4),
            torch.zeros(1, 2, 4, 4),
            torch.zeros(1, 2, 3, 3),
            padding=1,
        )
