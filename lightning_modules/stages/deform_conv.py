"""Modulated deformable convolution (DCNv2, Zhu et al. 2019) in plain PyTorch, for CPUs.

``deform_conv2d(x, offset, mask, weight, bias, stride, padding, dilation)`` computes

    out[b, o, p] = bias[o] + Σ_c Σ_k weight[o, c, k] · mask[b, g(c), k, p]
                             · bilinear(x[b, c], p·stride − padding + dilation·k + Δ[b, g(c), k, p])

for every output pixel p, kernel tap k (row-major over kh × kw) and input channel c, whose offset
group is ``g(c) = c // (C_in / G)``. Layouts (the ones of ``torchvision.ops.deform_conv2d``, so
weights and offset heads written for it keep their meaning):

- ``offset`` (B, 2·G·K, H_out, W_out): channels ``2·(g·K + k)`` and ``2·(g·K + k) + 1`` are the
  **(dy, dx)** of group g, tap k, in pixels. A flow field (ch0 = x, ch1 = y) becomes offsets with
  ``flow.flip(1)``.
- ``mask`` (B, G·K, H_out, W_out): channel ``g·K + k``, any real value (DCNv2 passes a sigmoid).

Bilinear sampling treats pixels outside the image as zero. It is done with
``torch.nn.functional.grid_sample`` (``align_corners=False`` with the normalisation
``(2·x + 1) / W − 1``, which maps pixel coordinate x exactly, for any W): torchvision's compiled
op cannot be used here (``docs/ARCHITECTURE.md``), and grid_sample gives the bilinear weights and
their gradients (to x and to the offsets) without a hand-written kernel. The sampled columns are
then contracted with the weight by one matmul (im2col).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def deform_conv2d(
    x: Tensor,
    offset: Tensor,
    mask: Tensor | None,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
) -> Tensor:
    """Modulated deformable convolution; see the module docstring for the formula and layouts.

    ``x`` (B, C_in, H, W), ``weight`` (C_out, C_in, kh, kw); the number of offset groups G is
    read from ``offset.shape[1] / (2·kh·kw)`` and must divide C_in. ``mask=None`` is an all-ones
    mask (DCNv1). Returns (B, C_out, H_out, W_out).
    """
    batch, in_channels, height, width = x.shape
    out_channels, weight_in, kh, kw = weight.shape
    if weight_in != in_channels:
        raise ValueError(
            f"deform_conv2d: weight {tuple(weight.shape)} expects {weight_in} input channels, "
            f"x has {in_channels}"
        )
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    out_h = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    taps = kh * kw
    if offset.shape[1] % (2 * taps) or offset.shape[0] != batch:
        raise ValueError(
            f"deform_conv2d: offset {tuple(offset.shape)} must be (B={batch}, 2·G·{taps}, "
            f"{out_h}, {out_w})"
        )
    groups = offset.shape[1] // (2 * taps)
    if in_channels % groups or tuple(offset.shape[2:]) != (out_h, out_w):
        raise ValueError(
            f"deform_conv2d: {groups} offset groups must divide C_in={in_channels} and offset "
            f"{tuple(offset.shape)} must be {out_h}x{out_w}"
        )
    if mask is not None and tuple(mask.shape) != (batch, groups * taps, out_h, out_w):
        raise ValueError(
            f"deform_conv2d: mask {tuple(mask.shape)} must be ({batch}, {groups * taps}, "
            f"{out_h}, {out_w})"
        )

    # Sampling positions (pixels) of every (group, tap, output pixel): regular grid + offset.
    dtype = offset.dtype if offset.is_floating_point() else x.dtype
    rows = torch.arange(out_h, device=x.device, dtype=dtype) * sh - ph
    cols = torch.arange(out_w, device=x.device, dtype=dtype) * sw - pw
    tap_y = (torch.arange(kh, device=x.device, dtype=dtype) * dh).repeat_interleave(kw)
    tap_x = (torch.arange(kw, device=x.device, dtype=dtype) * dw).repeat(kh)
    offset = offset.view(batch, groups, taps, 2, out_h, out_w)
    pos_y = rows.view(1, 1, 1, out_h, 1) + tap_y.view(1, 1, taps, 1, 1) + offset[:, :, :, 0]
    pos_x = cols.view(1, 1, 1, 1, out_w) + tap_x.view(1, 1, taps, 1, 1) + offset[:, :, :, 1]
    grid = torch.stack(((2 * pos_x + 1) / width - 1, (2 * pos_y + 1) / height - 1), dim=-1)
    grid = grid.view(batch * groups, taps * out_h, out_w, 2).to(x.dtype)

    per_group = in_channels // groups
    sampled = F.grid_sample(
        x.reshape(batch * groups, per_group, height, width),
        grid,
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    ).view(batch, groups, per_group, taps, out_h, out_w)
    if mask is not None:
        sampled = sampled * mask.view(batch, groups, 1, taps, out_h, out_w).to(x.dtype)
    columns = sampled.reshape(batch, in_channels * taps, out_h * out_w)  # (c, k) as weight
    out = torch.matmul(weight.reshape(out_channels, in_channels * taps), columns)
    out = out.view(batch, out_channels, out_h, out_w)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


class ModulatedDeformConv2d(nn.Module):
    """A DCNv2 layer: weights and bias of a ``kernel_size`` convolution; ``forward(x, offset,
    mask)`` takes the offsets and mask from outside (``deform_groups`` offset groups)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        dilation: int = 1,
        deform_groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if in_channels % deform_groups:
            raise ValueError(
                f"ModulatedDeformConv2d: deform_groups={deform_groups} must divide "
                f"in_channels={in_channels}"
            )
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.deform_groups = deform_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv2d's default init

    def forward(self, x: Tensor, offset: Tensor, mask: Tensor | None) -> Tensor:
        return deform_conv2d(
            x, offset, mask, self.weight, self.bias, self.stride, self.padding, self.dilation
        )
