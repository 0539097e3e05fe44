"""What the image callbacks draw: the first validation clip, run through the model by the callback.

Callbacks only read the model: ``clip_visuals(pl_module, batch)`` runs the module's network (a
restoration task's ``net`` with ``return_maps=True``, or a flow task's ``flow`` on consecutive
frames) on the first clip of ``batch`` without gradients, and returns a ``ClipVisuals``. The
result is kept for the current (module, global step), so several image callbacks on the same
validation batch share one forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytorch_lightning as pl
import torch

from lightning_modules.tasks.network_inputs import flow_inputs, network_inputs


@dataclass
class ClipVisuals:
    """One clip, detached, float32, on the CPU.

    ``lq``/``gt``/``restored``: (T, 3, H, W) (``gt`` None without targets, ``restored`` None for
    a flow task); ``maps``: one dict per frame of (C, h, w) maps, keys ``flow``,
    ``flow_refined`` (2, H, W) and, with a codec, ``q``, ``mu``, ``sigma``, ``bits``.
    """

    name: str
    lq: torch.Tensor
    gt: torch.Tensor | None = None
    restored: torch.Tensor | None = None
    maps: list[dict[str, torch.Tensor]] = field(default_factory=list)


def _cpu(x: torch.Tensor) -> torch.Tensor:
    return x[0].detach().float().cpu()


def _first_clip(batch: dict[str, Any]) -> dict[str, Any]:
    """The batch cut to its first clip (tensors sliced to length 1, names to one)."""
    return {k: v[:1] if isinstance(v, (torch.Tensor, list)) else v for k, v in batch.items()}


@torch.no_grad()
def _restoration_visuals(net: torch.nn.Module, batch: dict[str, Any]) -> ClipVisuals:
    lq, noise_level = network_inputs(batch, net)
    out = net(lq, noise_level, return_maps=True, **flow_inputs(batch, net))
    gt = batch.get("gt")
    return ClipVisuals(
        name=(batch.get("name") or [""])[0],
        lq=_cpu(lq),
        gt=_cpu(gt) if gt is not None else None,
        restored=_cpu(out.restored),
        maps=[{k: _cpu(v) for k, v in frame.items()} for frame in out.maps],
    )


@torch.no_grad()
def _flow_visuals(flow: torch.nn.Module, batch: dict[str, Any]) -> ClipVisuals:
    """Flow of every frame towards its predecessor (frame 0 has none), on the clean clip."""
    clip = batch["gt"] if batch.get("gt") is not None else batch["lq"]
    current, previous = clip[:, 1:].flatten(0, 1), clip[:, :-1].flatten(0, 1)
    flows = flow(current, previous) if clip.shape[1] > 1 else clip.new_zeros(0, 2, 1, 1)
    return ClipVisuals(
        name=(batch.get("name") or [""])[0],
        lq=_cpu(clip),
        gt=_cpu(clip),
        maps=[{}] + [{"flow": f.float().cpu()} for f in flows],
    )


_SHARED: dict[tuple, ClipVisuals | None] = {}


def clip_visuals(pl_module: pl.LightningModule, batch: dict[str, Any]) -> ClipVisuals | None:
    """Visuals of the first clip of ``batch``; None when the module has neither ``net`` nor
    ``flow``. Computed once per (module, global step)."""
    key = (id(pl_module), pl_module.global_step, pl_module.current_epoch)
    if key not in _SHARED:
        _SHARED.clear()
        clip = _first_clip(batch)
        net, flow = getattr(pl_module, "net", None), getattr(pl_module, "flow", None)
        if net is not None:
            _SHARED[key] = _restoration_visuals(net, clip)
        elif flow is not None:
            _SHARED[key] = _flow_visuals(flow, clip)
        else:
            _SHARED[key] = None
    return _SHARED[key]
