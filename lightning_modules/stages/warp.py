"""Backward warping by a dense flow field, and resizing of flow fields.

Contract (docs/ARCHITECTURE.md): flow is (B, 2, H, W) in pixels, channel 0 = x (width),
channel 1 = y (height), *backward*: ``flow_warp(x, flow)[p] = x[p + flow[p]]``.

Sampling uses ``torch.nn.functional.grid_sample`` with ``align_corners=True``, so pixel i sits
at coordinate i exactly: zero flow is the exact identity and an integer flow an exact shift.
We call grid_sample directly rather than ``kornia.geometry.transform.remap``: kornia has no
flow warp, its remap only normalises a pixel grid and calls grid_sample itself, and doing the
normalisation here keeps the coordinates in float32 or better whatever the input dtype (a bf16
grid would be off by pixels on a 854-wide frame). The align_corners=True convention is also the
one BasicSR/mmagic SPyNet weights were trained with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

WARP_MODES = ("bilinear", "nearest", "bicubic")
PADDING_MODES = ("border", "zeros", "reflection")


def _check_flow(flow: Tensor, name: str = "flow") -> None:
    if not isinstance(flow, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(flow).__name__}")
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(
            f"{name} must have shape (B, 2, H, W) (pixels; ch0 = x, ch1 = y), "
            f"got {tuple(flow.shape)}"
        )
    if not flow.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {flow.dtype}")


def flow_warp(
    x: Tensor, flow: Tensor, mode: str = "bilinear", padding_mode: str = "border"
) -> Tensor:
    """Backward-warp ``x`` (B, C, H, W) by ``flow`` (B, 2, H, W) in pixels.

    ``out[b, :, i, j] = x[b, :, i + flow[b, 1, i, j], j + flow[b, 0, i, j]]``, interpolated with
    ``mode``; samples outside the image follow ``padding_mode`` ("border" repeats the edge).
    The result has the dtype of ``x``; gradients reach both ``x`` and ``flow``.
    """
    if not isinstance(x, Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"flow_warp: x must be a (B, C, H, W) tensor, got {shape}")
    _check_flow(flow)
    if flow.shape[0] != x.shape[0] or flow.shape[2:] != x.shape[2:]:
        raise ValueError(
            f"flow_warp: flow {tuple(flow.shape)} must match x {tuple(x.shape)} in batch and "
            f"size, i.e. be ({x.shape[0]}, 2, {x.shape[2]}, {x.shape[3]})"
        )
    if mode not in WARP_MODES:
        raise ValueError(f"flow_warp: mode must be one of {WARP_MODES}, got {mode!r}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(
            f"flow_warp: padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}"
        )

    height, width = x.shape[2:]
    compute_dtype = torch.promote_types(torch.promote_types(x.dtype, flow.dtype), torch.float32)
    flow = flow.to(compute_dtype)
    xs = torch.arange(width, device=flow.device, dtype=compute_dtype)
    ys = torch.arange(height, device=flow.device, dtype=compute_dtype)
    # align_corners=True: pixel index i maps to -1 + 2 i / (size - 1). grid_sample reads a
    # size-1 axis at its only pixel whatever the grid says; max() only avoids dividing by 0.
    grid_x = (xs.view(1, 1, width) + flow[:, 0]) * (2.0 / max(width - 1, 1)) - 1.0
    grid_y = (ys.view(1, height, 1) + flow[:, 1]) * (2.0 / max(height - 1, 1)) - 1.0
    grid = torch.stack((grid_x, grid_y), dim=-1)
    out = F.grid_sample(
        x.to(compute_dtype), grid, mode=mode, padding_mode=padding_mode, align_corners=True
    )
    return out.to(x.dtype)


def in_bounds_mask(flow: Tensor) -> Tensor:
    """(B, 1, H, W) mask: 1 where ``p + flow[p]`` lies inside the image (no padded samples)."""
    _, _, h, w = flow.shape
    xs = torch.arange(w, device=flow.device, dtype=flow.dtype).view(1, 1, w)
    ys = torch.arange(h, device=flow.device, dtype=flow.dtype).view(1, h, 1)
    x = xs + flow[:, 0]
    y = ys + flow[:, 1]
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    return inside.unsqueeze(1).to(flow.dtype)


def resize_flow(
    flow: Tensor,
    size: tuple[int, int],
    vector_scale: tuple[float, float] | None = None,
) -> Tensor:
    """Resize a flow field (B, 2, H, W) to ``size = (h, w)`` and rescale its vectors.

    The field is resampled bilinearly (``align_corners=False``, antialiased when shrinking), then
    channel 0 (x) is multiplied by ``w / W`` and channel 1 (y) by ``h / H``, so a displacement
    keeps its meaning in the new pixel units. ``vector_scale = (sx, sy)`` overrides those factors
    (e.g. exactly 1/2**s for features at scale 1/2**s whose size was ceil-rounded).
    """
    _check_flow(flow)
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, int) and s > 0 for s in size)
    ):
        raise ValueError(f"resize_flow: size must be (h, w) with positive ints, got {size!r}")
    height, width = flow.shape[2:]
    new_h, new_w = int(size[0]), int(size[1])
    if vector_scale is None:
        scale_x, scale_y = new_w / width, new_h / height
    else:
        if len(vector_scale) != 2:
            raise ValueError(f"resize_flow: vector_scale must be (sx, sy), got {vector_scale!r}")
        scale_x, scale_y = float(vector_scale[0]), float(vector_scale[1])
    if (new_h, new_w) == (height, width):
        resized = flow
    else:
        shrinking = new_h < height or new_w < width
        resized = F.interpolate(
            flow, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=shrinking
        )
    factors = torch.tensor([scale_x, scale_y], device=flow.device, dtype=flow.dtype)
    return resized * factors.view(1, 2, 1, 1)
