"""The zero-flow stage: ``ZeroFlow()(ref, supp)`` is a (B, 2, H, W) field of zeros.

An ablation, not a default: with zero flow the previous state is used unaligned, so on moving
video the recurrence can only help where nothing moves (``model/flow=zero``; compare with the
pretrained SPyNet in ``bench/temporal_gain.py``). It has no parameters.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ZeroFlow(nn.Module):
    """Flow stage that reports no motion: ``forward(ref, supp) -> zeros (B, 2, H, W)``."""

    def forward(self, ref: Tensor, supp: Tensor) -> Tensor:
        for name, frame in (("ref", ref), ("supp", supp)):
            if not isinstance(frame, Tensor) or frame.dim() != 4:
                shape = tuple(frame.shape) if isinstance(frame, Tensor) else type(frame).__name__
                raise ValueError(f"ZeroFlow: {name} must be a (B, C, H, W) tensor, got {shape}")
        if ref.shape != supp.shape:
            raise ValueError(
                f"ZeroFlow: ref {tuple(ref.shape)} and supp {tuple(supp.shape)} differ in shape"
            )
        batch, _, height, width = ref.shape
        return torch.zeros(batch, 2, height, width, dtype=ref.dtype, device=ref.device)
