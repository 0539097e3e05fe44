"""Alignment hint: where the flow explains the current frame, measured for the fusion gates.

Between the current degraded frame x_t and the previous one brought onto it by the flow,

    d²  = mean over a k×k window and the channels of (x_t − warp(x_{t−1}, v̂_t))²
    e²  = max(d² − 2σ², 0)
    h   = log(1 + e² / (2σ² + c²))        misalignment, 0 where the past agrees with the present
    o   = 1 − in_bounds(v̂_t)              1 where the warp read outside the frame

Both frames carry independent noise of level σ, so E[(x_t − warp(x_{t−1}))²] = δ² + 2σ² with δ
the misalignment (flow error, occlusion, change): e² estimates δ² whatever the noise, as the
excess-energy detector of ``temporal_blend`` does against the restored previous frame.

Why the fusion needs it: its spatial gate is one linear 3x3 conv over [E_t, P_t] followed by a
sigmoid, so it cannot compare the current features with the warped ones (that takes a product)
and cannot tell aligned from misaligned features by itself. The hint ``[h, o]`` (B, 2, H, W)
hands it that measurement; coarser scales average-pool it to their size. The flow is detached:
the hint measures the alignment, it does not train the motion refinement.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_modules.stages.warp import flow_warp, in_bounds_mask

HINT_CHANNELS = 2
"""Channels of the hint: misalignment h and out-of-frame o."""


def window_mean(x: Tensor, window: int) -> Tensor:
    """Mean of ``x`` (B, C, H, W) over a ``window``×``window`` neighbourhood (replicated border)."""
    pad = window // 2
    return F.avg_pool2d(F.pad(x, (pad, pad, pad, pad), mode="replicate"), window, stride=1)


def alignment_hint(
    current: Tensor,
    previous: Tensor,
    flow: Tensor,
    noise_level: Tensor | None,
    window: int = 5,
    offset: float = 0.02,
) -> Tensor:
    """``[h, o]`` (B, 2, H, W) of the module docstring; ``noise_level`` (B,) σ in [0, 1] units
    (None: σ = 0), ``offset`` c, the disagreement tolerated without noise (image units)."""
    if current.shape != previous.shape or current.ndim != 4:
        raise ValueError(
            f"alignment_hint: current {tuple(current.shape)} and previous "
            f"{tuple(previous.shape)} must be the same (B, C, H, W) shape"
        )
    flow = flow.detach()
    difference = current - flow_warp(previous, flow)
    energy = window_mean(difference.square().mean(1, keepdim=True), window)
    noise_energy = current.new_zeros(current.shape[0], 1, 1, 1)
    if noise_level is not None:
        noise_energy = 2 * noise_level.reshape(-1, 1, 1, 1).to(current).square()
    excess = (energy - noise_energy).clamp(min=0.0)
    misalignment = torch.log1p(excess / (noise_energy + offset**2))
    outside = 1.0 - in_bounds_mask(flow).to(current.dtype)
    return torch.cat([misalignment, outside], dim=1)


def hint_pyramid(hint: Tensor | None, sizes: list[tuple[int, int]], like: Tensor) -> list[Tensor]:
    """The hint average-pooled to each (h, w) of ``sizes``; zeros (no past) when ``hint`` is
    None, shaped (B, HINT_CHANNELS, h, w) with ``like``'s batch, dtype and device."""
    if hint is None:
        return [like.new_zeros(like.shape[0], HINT_CHANNELS, *size) for size in sizes]
    return [
        hint if tuple(hint.shape[2:]) == tuple(size) else F.adaptive_avg_pool2d(hint, size)
        for size in sizes
    ]
