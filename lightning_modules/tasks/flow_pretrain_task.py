"""FlowPretrainTask: pre-training of the optical-flow stage on its own.

Two supervisions (``supervision``):

- ``synthetic`` (default): pairs with exact ground truth (``datamodules.flow_pairs``): batches
  ``{"lq" (B, 2, 3, H, W) degraded [x_{t-1}, x_t], "flow" (B, 2, H, W), "valid" (B, 1, H, W)}``;
  ``v = flow(lq_t, lq_{t-1})`` (backward flow, docs/ARCHITECTURE.md) and

      loss = EPE_ε(v, v_gt; valid) + level_weight · Σ_k EPE_ε(V_k, v_gt↓k; valid↓k)

  with EPE_ε the robust end-point error ``sqrt(‖Δ‖² + ε²)`` and, for a pyramid network
  (``flow.pyramid_flows``, e.g. SpyNet), V_k the flow after level k against the ground truth
  resized to that level (vectors rescaled; a pixel is valid there only where all it covers is).
  The inputs are degraded, the targets exact: the flow learns to work on degraded frames.
  Validation error: the end-point error on the degraded held-out pairs.
- ``photometric``: self-supervised on real clips ``{"gt" or "lq": (B, T, 3, H, W)}``:
  ``loss = photometric(x_t, warp(x_{t-1}, v); in-bounds) + smooth_weight · S(v, x_t)`` with a
  Charbonnier or census photometric term and first-order edge-aware smoothness S (e.g. a
  fine-tuning phase on the target data). Validation error: the photometric error of the warped
  previous frame.

Validation logs ``val/flow_error`` (the error of the supervision), ``val/zero_flow_error`` (the
same error of a zero flow) and ``val/flow_error_ratio`` (< 1: the flow explains motion).

The restoration presets read the trained weights from this task's checkpoint through
``model.flow.pretrained=<checkpoint>`` (``SpyNet.load_pretrained``).
"""

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from lightning_modules.stages.warp import flow_warp, in_bounds_mask, resize_flow
from lightning_modules.tasks.finite_steps import STATE_KEY, FiniteStepGuard, check_finite_state
from lightning_modules.tasks.losses import (
    census_loss,
    charbonnier,
    edge_aware_smoothness,
    endpoint_error,
)
from lightning_modules.tasks.lr_schedules import (
    check_optimizer_arguments,
    configure_optimizer_and_scheduler,
)

PHOTOMETRIC_LOSSES = ("charbonnier", "census")
SUPERVISIONS = ("synthetic", "photometric")


def resize_valid(valid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A validity mask (B, 1, H, W) at ``size``: 1 where every input pixel it covers is valid."""
    if tuple(valid.shape[-2:]) == tuple(size):
        return valid
    return (F.interpolate(valid.float(), size=size, mode="area") > 0.999).to(valid.dtype)


class FlowPretrainTask(pl.LightningModule):
    """Training of a flow module ``flow(ref, supp) -> (B, 2, H, W)``; see the module docstring.

    Args:
        flow: the flow network (e.g. SpyNet); ``flow_warp(supp, flow(ref, supp)) ≈ ref``.
        optimizer: partial ``params -> Optimizer`` (Hydra ``_partial_: true``).
        scheduler: partial ``optimizer -> LR scheduler`` or None (``total_steps`` left None is
            filled from the trainer, see ``lr_schedules.build_scheduler``).
        supervision: ``"synthetic"`` (known flow) or ``"photometric"`` (real clips).
        level_weight: weight of the per-level terms of a pyramid network (synthetic).
        epe_eps: ε of the robust end-point error (synthetic).
        photometric: ``"charbonnier"`` or ``"census"`` (photometric).
        smooth_weight: weight of the edge-aware smoothness term (photometric).
        edge_alpha: α in the smoothness edge weight ``exp(-α |∇I|)`` (photometric).
        use_gt: train on ``batch["gt"]`` (clean) when present, else ``batch["lq"]`` (photometric).
        charbonnier_eps: ε of the Charbonnier photometric loss.
        census_patch: window size of the census transform.
        scheduler_interval: ``"step"`` or ``"epoch"``.
        max_bad_steps: a step with a NaN/inf loss or gradient is skipped (``train/skipped_steps``);
            this many in a row stop training (``lightning_modules/tasks/finite_steps.py``).
    """

    def __init__(
        self,
        flow: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
        supervision: str = "synthetic",
        level_weight: float = 0.5,
        epe_eps: float = 0.01,
        photometric: str = "charbonnier",
        smooth_weight: float = 0.1,
        edge_alpha: float = 10.0,
        use_gt: bool = True,
        charbonnier_eps: float = 1e-3,
        census_patch: int = 7,
        scheduler_interval: str = "step",
        max_bad_steps: int = 10,
    ) -> None:
        super().__init__()
        self.finite_steps = FiniteStepGuard(max_bad_steps, "FlowPretrainTask")
        if supervision not in SUPERVISIONS:
            raise ValueError(
                f"FlowPretrainTask: supervision must be one of {SUPERVISIONS}, got {supervision!r}"
            )
        if photometric not in PHOTOMETRIC_LOSSES:
            raise ValueError(
                f"FlowPretrainTask: photometric must be one of {PHOTOMETRIC_LOSSES}, "
                f"got {photometric!r}"
            )
        for name, value in (
            ("level_weight", level_weight),
            ("epe_eps", epe_eps),
            ("smooth_weight", smooth_weight),
            ("edge_alpha", edge_alpha),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"FlowPretrainTask: {name} must be a number >= 0, got {value!r}")
        check_optimizer_arguments("FlowPretrainTask", optimizer, scheduler_interval)
        # Partials stay out of the checkpoint (see RestorationTask: weights_only loading).
        self.save_hyperparameters(ignore=["flow", "optimizer", "scheduler"])
        self.flow = flow
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.val_error = MeanMetric()
        self.val_zero_flow_error = MeanMetric()

    def forward(self, ref: torch.Tensor, supp: torch.Tensor) -> torch.Tensor:
        return self.flow(ref, supp)

    # ------------------------------------------------------------------ synthetic pairs
    @staticmethod
    def _pair_batch(batch: dict[str, Any]) -> tuple[torch.Tensor, ...]:
        """(current, previous, flow, valid) of a synthetic-pair batch; clear errors otherwise."""
        lq, target, valid = batch.get("lq"), batch.get("flow"), batch.get("valid")
        if not isinstance(lq, torch.Tensor) or lq.dim() != 5 or lq.shape[1] != 2:
            got = tuple(lq.shape) if isinstance(lq, torch.Tensor) else type(lq).__name__
            raise ValueError(
                f"FlowPretrainTask (synthetic): batch['lq'] must be pairs (B, 2, 3, H, W), got "
                f"{got}; use data=flow_pairs, or model.supervision=photometric for video clips"
            )
        if not isinstance(target, torch.Tensor) or target.shape != (
            lq.shape[0],
            2,
            *lq.shape[-2:],
        ):
            raise ValueError(
                "FlowPretrainTask (synthetic): batch['flow'] must be the known flow (B, 2, H, W) "
                "of the pairs; use data=flow_pairs"
            )
        if valid is None:
            valid = torch.ones_like(target[:, :1])
        return lq[:, 1], lq[:, 0], target, valid

    def _synthetic_terms(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        current, previous, target, valid = self._pair_batch(batch)
        eps = self.hparams.epe_eps
        pyramid = getattr(self.flow, "pyramid_flows", None)
        levels = pyramid(current, previous) if callable(pyramid) else []
        if levels:
            flow = resize_flow(levels[-1], tuple(target.shape[-2:]))
        else:
            flow = self.flow(current, previous)
        terms = {"final": endpoint_error(flow, target, valid, eps)}
        level_terms = [
            endpoint_error(
                level,
                resize_flow(target, tuple(level.shape[-2:])),
                resize_valid(valid, tuple(level.shape[-2:])),
                eps,
            )
            for level in levels
        ]
        levels_loss = torch.stack(level_terms).sum() if level_terms else flow.new_zeros(())
        terms["levels"] = levels_loss
        terms["loss"] = terms["final"] + self.hparams.level_weight * levels_loss
        terms["epe"] = endpoint_error(flow.detach(), target, valid)
        terms["zero_flow_epe"] = endpoint_error(torch.zeros_like(target), target, valid)
        return terms

    # ------------------------------------------------------------------ real clips
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

    def _photometric_terms(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Flow, warp and loss terms for all consecutive pairs, batched as B·(T-1) images."""
        clip = self._clip(batch)
        current = clip[:, 1:].flatten(0, 1)
        previous = clip[:, :-1].flatten(0, 1)
        flow = self.flow(current, previous)
        warped = flow_warp(previous, flow)
        photometric = self.photometric_error(current, warped, in_bounds_mask(flow.detach()))
        smoothness = edge_aware_smoothness(flow, current, alpha=self.hparams.edge_alpha)
        return {
            "loss": photometric + self.hparams.smooth_weight * smoothness,
            "photometric": photometric,
            "smoothness": smoothness,
            "warp_photometric": self.photometric_error(current, warped.detach()),
            "zero_flow_photometric": self.photometric_error(current, previous),
        }

    # ------------------------------------------------------------------ Lightning hooks
    def _terms(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if self.hparams.supervision == "synthetic":
            return self._synthetic_terms(batch)
        return self._photometric_terms(batch)

    def _error_keys(self) -> tuple[str, str]:
        """(this flow's error, zero flow's error): what validation compares."""
        if self.hparams.supervision == "synthetic":
            return "epe", "zero_flow_epe"
        return "warp_photometric", "zero_flow_photometric"

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        terms = self._terms(batch)
        batch_size = batch["lq"].shape[0] if "lq" in batch else batch["gt"].shape[0]
        for key, value in terms.items():
            self.log(
                f"train/{key}",
                value.detach(),
                on_step=True,
                on_epoch=False,
                sync_dist=True,
                prog_bar=key == "loss",
                batch_size=batch_size,
            )
        self.finite_steps.observe_loss(terms["loss"])
        return terms["loss"]

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Skip (drop the gradients of) a step with a NaN/inf loss or gradient; see
        ``finite_steps.FiniteStepGuard``."""
        self.finite_steps.check(self, optimizer)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_finite_state(checkpoint["state_dict"], "FlowPretrainTask")
        checkpoint[STATE_KEY] = self.finite_steps.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.finite_steps.load_state_dict(checkpoint.get(STATE_KEY, {}))

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        terms = self._terms(batch)
        error, zero = self._error_keys()
        self.val_error.update(terms[error])
        self.val_zero_flow_error.update(terms[zero])
        batch_size = batch["lq"].shape[0] if "lq" in batch else batch["gt"].shape[0]
        self.log("val/loss", terms["loss"], on_epoch=True, sync_dist=True, batch_size=batch_size)

    def on_validation_epoch_end(self) -> None:
        """Log the epoch's error, zero-flow error and their ratio (synced means)."""
        if self.val_error.update_count == 0:
            return
        error = self.val_error.compute()
        zero = self.val_zero_flow_error.compute()
        # compute() already reduced over ranks, so every rank holds the same value; sync_dist
        # keeps it that way (a mean of equal values) and marks the epoch metric as synced.
        self.log("val/flow_error", error, prog_bar=True, sync_dist=True)
        self.log("val/zero_flow_error", zero, sync_dist=True)
        self.log("val/flow_error_ratio", error / zero.clamp_min(1e-12), sync_dist=True)
        self.val_error.reset()
        self.val_zero_flow_error.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.optimizer_factory([p for p in self.flow.parameters() if p.requires_grad])
        return configure_optimizer_and_scheduler(
            optimizer, self.scheduler_factory, self.trainer, self.hparams.scheduler_interval
        )
