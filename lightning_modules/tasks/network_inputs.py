"""The one translation from a batch (docs/ARCHITECTURE.md, "Batches") to the network's inputs.

``lq, noise_level = network_inputs(batch, net)``: ``lq`` is ``batch["lq"]`` (B, T, 3, H, W);
``noise_level`` is ``batch["sigma"]`` as a (B,) tensor in [0, 1] units on ``lq``'s device when
the network takes a σ map (``net.noise_channel``), else None. Tasks and callbacks both call it,
so every caller feeds the network the same way.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def network_inputs(
    batch: dict[str, Any], net: nn.Module
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(lq, noise_level)`` for ``net(lq, noise_level)``; clear errors for a malformed batch."""
    lq = batch.get("lq")
    if not isinstance(lq, torch.Tensor) or lq.dim() != 5 or lq.shape[2] != 3:
        got = tuple(lq.shape) if isinstance(lq, torch.Tensor) else type(lq).__name__
        raise ValueError(f"batch['lq'] must be a (B, T, 3, H, W) tensor, got {got}")
    if not getattr(net, "noise_channel", False):
        return lq, None
    if batch.get("sigma") is None:
        raise KeyError(
            "the network takes a noise level (net.noise_channel=True) but the batch has no "
            "'sigma' key"
        )
    noise_level = torch.as_tensor(batch["sigma"], dtype=lq.dtype, device=lq.device).reshape(-1)
    return lq, noise_level
