"""FlowPretrainTask: self-supervised pre-training of the optical-flow stage on clean clips.

For consecutive frames (x_{t-1}, x_t) of a clip, ``v = flow(x_t, x_{t-1})`` (backward flow,
docs/ARCHITECTURE.md) and

    loss = photometric(x_t, warp(x_{t-1}, v); in-bounds mask) + smooth_weight · S(v, x_t)

with photometric = Charbonnier or census, and S the first-order edge-aware smoothness. Validation
also logs the unmasked warp error against the zero-flow error (``val/photometric_ratio`` < 1 means
the flow explains motion). The restoration presets read the trained weights from this task's
checkpoint through ``model.flow.pretrained=<checkpoint>`` (``SpyNet.load_pretrained``).
"""

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanMetric

from lightning_modules.stages.warp import flow_warp
from lightning_modules.tasks.losses import census_loss, charbonnier, edge_aware_smoothness
from lightning_modules.tasks.lr_schedules import (
    check_optimizer_arguments,
    configure_optimizer_and_scheduler,
)

PHOTOMETRIC_LOSSES = ("charbonnier", "census")


def in_bounds_mask(flow: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) mask: 1 where ``p + flow[p]`` lies inside the image (no padded samples)."""
    _, _, h, w = flow.shape
    xs = torch.arange(w, device=flow.device, dtype=flow.dtype).view(1, 1, w)
    ys = torch.arange(h, device=flow.device, dtype=flow.dtype).view(1, h, 1)
    x = xs + flow[:, 0]
    y = ys + flow[:, 1]
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    return inside.unsqueeze(1).to(flow.dtype)


class FlowPretrainTask(pl.LightningModule):
    """Photometric + smoothness training of a flow module ``flow(ref, supp) -> (B, 2, H, W)``.

    Args:
        flow: the flow network (e.g. SpyNet); ``flow_warp(supp, flow(ref, supp)) ≈ ref``.
        optimizer: partial ``params -> Optimizer`` (Hydra ``_partial_: true``).
        scheduler: partial ``optimizer -> LR scheduler`` or None (``total_steps`` left None is
            filled from the trainer, see ``lr_schedules.build_scheduler``).
        photometric: ``"charbonnier"`` or ``"census"``.
        smooth_weight: weight of the edge-aware smoothness term.
        edge_alpha: α in the smoothness edge weight ``exp(-α |∇I|)``.
        use_gt: train on ``batch["gt"]`` (clean) when present; ``batch["lq"]`` otherwise.
        charbonnier_eps: ε of the Charbonnier photometric loss.
        census_patch: window size of the census transform.
        scheduler_interval: ``"step"`` or ``"epoch"``.
    """

    def __init__(
        self,
        flow: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
        photometric: str = "charbonnier",
        smooth_weight: float = 0.1,
        edge_alpha: float = 10.0,
        use_gt: bool = True,
        charbonnier_eps: float = 1e-3,
        census_patch: int = 7,
        scheduler_interval: str = "step",
    ) -> None:
        super().__init__()
        if photometric not in PHOTOMETRIC_LOSSES:
            raise ValueError(
                f"FlowPretrainTask: photometric must be one of {PHOTOMETRIC_LOSSES}, "
                f"got {photometric!r}"
            )
        if smooth_weight < 0:
            raise ValueError(f"FlowPretrainTask: smooth_weight must be >= 0, got {smooth_weight}")
        if edge_alpha < 0:
            raise ValueError(f"FlowPretrainTask: edge_alpha must be >= 0, got {edge_alpha}")
        check_optimizer_arguments("FlowPretrainTask", optimizer, scheduler_interval)
        # Partials stay out of the checkpoint (see RestorationTask: weights_only loading).
        self.save_hyperparameters(ignore=["flow", "optimizer", "scheduler"])
        self.flow = flow
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.val_warp_error = MeanMetric()
        self.val_zero_flow_error = MeanMetric()

    def forward(self, ref: torch.Tensor, supp: torch.Tensor) -> torch.Tensor:
        return self.flow(ref, supp)

    def _clip(self, batch: dict[str, Any]) -> torch.Tensor:
        key = "gt" if self.hparams.use_gt and batch.get("gt") is not None else "lq"
        clip = batch.get(key)
        if not isinstance(clip, torch.Tensor) or clip.dim() != 5 or clip.shape[1] < 2:
            got = tuple(clip.shape) if isinstance(clip, torch.Tensor) else type(clip).__name__
            raise ValueError(
                f"FlowPretrainTask: batch[{key!r}] must be a clip (B, T>=2, C, H, W), got {got}"
            )
        return clip

    def photometric_error(
        self, frame: torch.Tensor, warped: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.hparams.photometric == "census":
            return census_loss(frame, warped, mask=mask, patch_size=self.hparams.census_patch)
        return charbonnier(frame, warped, eps=self.hparams.charbonnier_eps, mask=mask)

    def _pairs(self, clip: torch.Tensor) -> dict[str, torch.Tensor]:
        """Flow, warp and loss terms for all consecutive pairs, batched as B·(T-1) images."""
        current = clip[:, 1:].flatten(0, 1)
        previous = clip[:, :-1].flatten(0, 1)
        flow = self.flow(current, previous)
        warped = flow_warp(previous, flow)
        mask = in_bounds_mask(flow.detach())
        photometric = self.photometric_error(current, warped, mask)
        smoothness = edge_aware_smoothness(flow, current, alpha=self.hparams.edge_alpha)
        loss = photometric + self.hparams.smooth_weight * smoothness
        return {
            "loss": loss,
            "photometric": photometric,
            "smoothness": smoothness,
            "flow": flow,
            "warped": warped,
            "current": current,
            "previous": previous,
        }

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        clip = self._clip(batch)
        terms = self._pairs(clip)
        for key in ("loss", "photometric", "smoothness"):
            self.log(
                f"train/{key}",
                terms[key].detach(),
                on_step=True,
                on_epoch=False,
                sync_dist=True,
                prog_bar=key == "loss",
                batch_size=clip.shape[0],
            )
        return terms["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        clip = self._clip(batch)
        batch_size, num_frames = clip.shape[:2]
        terms = self._pairs(clip)
        warp_error = self.photometric_error(terms["current"], terms["warped"])
        zero_flow_error = self.photometric_error(terms["current"], terms["previous"])
        self.val_warp_error.update(warp_error)
        self.val_zero_flow_error.update(zero_flow_error)
        for key in ("loss", "photometric", "smoothness"):
            self.log(
                f"val/{key}",
                terms[key],
                on_step=False,
                on_epoch=True,
                sync_dist=True,
                prog_bar=key == "loss",
                batch_size=batch_size,
            )

    def on_validation_epoch_end(self) -> None:
        """Log the epoch's warp error, zero-flow error and their ratio (synced means)."""
        if self.val_warp_error.update_count == 0:
            return
        warp_error = self.val_warp_error.compute()
        zero_flow_error = self.val_zero_flow_error.compute()
        self.log("val/warp_photometric", warp_error)
        self.log("val/zero_flow_photometric", zero_flow_error)
        self.log("val/photometric_ratio", warp_error / zero_flow_error.clamp_min(1e-12))
        self.val_warp_error.reset()
        self.val_zero_flow_error.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.optimizer_factory([p for p in self.flow.parameters() if p.requires_grad])
        return configure_optimizer_and_scheduler(
            optimizer, self.scheduler_factory, self.trainer, self.hparams.scheduler_interval
        )
