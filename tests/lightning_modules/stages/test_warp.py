"""flow_warp: identity, exact shifts, border padding, gradients, errors; resize_flow: scaling.

"Exact" means up to float32 rounding of the sampling coordinates (a normalised float32 grid
resolves about 1e-6 of the image width), so comparisons use atol 1e-5: an interpolation blur
between neighbours would show errors of order 0.1 on these random images.
"""

import pytest
import torch

from lightning_modules.stages.warp import flow_warp, resize_flow


def constant_flow(batch, height, width, dx, dy, dtype=torch.float32):
    flow = torch.empty(batch, 2, height, width, dtype=dtype)
    flow[:, 0] = dx
    flow[:, 1] = dy
    return flow


def test_zero_flow_is_identity():
    torch.manual_seed(0)
    x = torch.rand(2, 5, 9, 13)
    out = flow_warp(x, torch.zeros(2, 2, 9, 13))
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("dx", "dy"), [(2, 0), (0, -3), (-1, 2), (3, 1)])
def test_integer_flow_is_exact_shift(dx, dy):
    torch.manual_seed(0)
    x = torch.rand(1, 3, 12, 16)
    out = flow_warp(x, constant_flow(1, 12, 16, dx, dy))
    height, width = 12, 16
    # out[i, j] = x[i + dy, j + dx] wherever that pixel exists.
    rows = slice(max(0, -dy), height - max(0, dy))
    cols = slice(max(0, -dx), width - max(0, dx))
    src_rows = slice(rows.start + dy, rows.stop + dy)
    src_cols = slice(cols.start + dx, cols.stop + dx)
    torch.testing.assert_close(out[..., rows, cols], x[..., src_rows, src_cols], atol=1e-5, rtol=0)


def test_half_pixel_flow_averages_neighbours():
    x = torch.arange(6.0).view(1, 1, 1, 6).repeat(1, 1, 3, 1)
    out = flow_warp(x, constant_flow(1, 3, 6, 0.5, 0.0))
    torch.testing.assert_close(out[..., :5], x[..., :5] + 0.5)


def test_border_padding_repeats_edge_and_zeros_padding_gives_zero():
    torch.manual_seed(0)
    x = torch.rand(1, 2, 6, 8)
    flow = constant_flow(1, 6, 8, 3, 0)
    out = flow_warp(x, flow)  # border is the default
    # Columns 5..7 read columns 8..10, past the right edge: they repeat column 7.
    torch.testing.assert_close(out[..., 5:], x[..., 7:8].expand(-1, -1, -1, 3))
    zeros = flow_warp(x, flow, padding_mode="zeros")
    assert torch.all(zeros[..., 5:] == 0)


def test_gradients_reach_input_and_flow():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    flow = (torch.rand(1, 2, 8, 8) - 0.5).requires_grad_(True)
    flow_warp(x, flow).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert flow.grad is not None and flow.grad.abs().sum() > 0


def test_flow_gradient_points_to_the_right_shift():
    """One step of gradient descent on the flow moves it toward the true sub-pixel shift."""
    x = torch.linspace(0, 1, 10).view(1, 1, 1, 10).repeat(1, 1, 4, 1)
    target = flow_warp(x, constant_flow(1, 4, 10, 0.7, 0.0))
    flow = constant_flow(1, 4, 10, 0.2, 0.0).requires_grad_(True)
    (flow_warp(x, flow) - target)[..., :8].square().sum().backward()
    assert flow.grad[0, 0, :, :8].mean() < 0  # descent increases dx toward 0.7


def test_keeps_input_dtype_and_computes_in_float32_at_least():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 6, 300, dtype=torch.bfloat16)
    out = flow_warp(x, constant_flow(1, 6, 300, 5.0, 0.0, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out[..., :295], x[..., 5:])  # a bf16 grid would miss by pixels


def test_bad_inputs_raise_clear_errors():
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        flow_warp(x, torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"must match x"):
        flow_warp(x, torch.zeros(1, 2, 8, 9))
    with pytest.raises(ValueError, match=r"x must be a \(B, C, H, W\)"):
        flow_warp(torch.rand(3, 8, 8), torch.zeros(1, 2, 8, 8))
    with pytest.raises(ValueError, match="padding_mode"):
        flow_warp(x, torch.zeros(1, 2, 8, 8), padding_mode="wrap")
    with pytest.raises(ValueError, match="mode"):
        flow_warp(x, torch.zeros(1, 2, 8, 8), mode="area")
    with pytest.raises(ValueError, match="size"):
        resize_flow(torch.zeros(1, 2, 8, 8), (4,))


def test_resize_flow_scales_vectors_per_axis():
    flow = constant_flow(2, 16, 24, 3.0, -2.0)
    small = resize_flow(flow, (8, 6))  # y halves, x quarters
    assert small.shape == (2, 2, 8, 6)
    torch.testing.assert_close(small[:, 0], torch.full((2, 8, 6), 0.75))
    torch.testing.assert_close(small[:, 1], torch.full((2, 8, 6), -1.0))
    large = resize_flow(flow, (32, 72))
    torch.testing.assert_close(large[:, 0], torch.full((2, 32, 72), 9.0))
    torch.testing.assert_close(large[:, 1], torch.full((2, 32, 72), -4.0))
    same = resize_flow(flow, (16, 24))
    torch.testing.assert_close(same, flow)


def test_resize_flow_vector_scale_override_and_interpolates_values():
    torch.manual_seed(0)
    flow = constant_flow(1, 9, 9, 4.0, 2.0)
    out = resize_flow(flow, (5, 5), vector_scale=(0.5, 0.5))
    torch.testing.assert_close(out[:, 0], torch.full((1, 5, 5), 2.0))
    torch.testing.assert_close(out[:, 1], torch.full((1, 5, 5), 1.0))
    # A linear ramp stays a ramp after 2x upsampling (interior, align_corners=False).
    ramp = torch.arange(8.0).view(1, 1, 1, 8).repeat(1, 2, 4, 1)
    up = resize_flow(ramp, (8, 16), vector_scale=(1.0, 1.0))
    expected = (torch.arange(16.0) + 0.5) / 2 - 0.5
    torch.testing.assert_close(up[0, 0, 0, 1:-1], expected[1:-1])
