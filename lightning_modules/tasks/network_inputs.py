"""The one translation from a batch (docs/ARCHITECTURE.md, "Batches") to the network's inputs.

``lq, noise_level = network_inputs(batch, net)``: ``lq`` is ``batch["lq"]`` (B, T, 3, H, W);
``noise_level`` is ``batch["sigma"]`` as a (B,) tensor in [0, 1] units on ``lq``'s device when
the network takes a σ map (``net.noise_channel``), else None. Tasks and callbacks both call it,
so every caller feeds the network the same way.

``net(lq, noise_level, **flow_inputs(batch, net))``: ``{"flows": batch["flow"]}`` (B, T, 2, H, W;
the data loader's flow on full frames, ``ClipDataset(flow_estimator=...)``), or ``{}`` when the
batch has none, so networks without given-flow support are called as before.
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


def flow_inputs(batch: dict[str, Any], net: nn.Module) -> dict[str, torch.Tensor]:
    """``{"flows": batch["flow"]}`` on ``batch["lq"]``'s device, or ``{}`` without one. Errors
    when the network's flow stage has trainable weights: given flows would bypass (and never
    train) it."""
    flows = batch.get("flow")
    if flows is None:
        return {}
    flow_stage = getattr(net, "flow", None)
    trainable = [n for n, p in getattr(flow_stage, "named_parameters", list)() if p.requires_grad]
    if trainable:
        raise ValueError(
            f"the batch carries flow from the data loader (data.flow_estimator) but the "
            f"network's flow stage {type(flow_stage).__name__} has trainable weights "
            f"({trainable[0]}, ...), which given flows would bypass; use it with a flow stage "
            f"without weights (model/flow=dis) or set data.flow_estimator=null"
        )
    return {"flows": torch.as_tensor(flows).to(batch["lq"].device)}
