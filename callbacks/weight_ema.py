"""An exponential moving average of the weights, with a warm-up for short runs.

After every optimizer step n (counting from 0) the average θ̄ moves towards the weights θ:

    θ̄ ← θ̄ + (1 − d_n)(θ − θ̄),    d_n = min(decay, (1 + n) / (10 + n))

(the first update copies θ), so the average follows the weights closely at first (d_1 = 2/11)
and reaches ``decay`` after about 9 / (1 − decay) steps: a 1200-step CPU run ends with
d ≈ 0.993, i.e. an average over its last ~130 steps. Lightning's ``EMAWeightAveraging`` uses a
fixed ``decay``: with 0.999, a 1000-step run's average would still weigh its first, untrained
weights by e⁻¹. That warm-up (the form of TensorFlow's ExponentialMovingAverage with
``num_updates``) is why this subclass exists. Everything else is Lightning's ``WeightAveraging``:
validation runs with the average, the average replaces the weights when training ends, and
checkpoints hold the average as ``state_dict`` (so eval.py and restore.py use it) with the
raw weights under ``current_model_state`` for resuming. Two changes to it:
- a checkpoint loaded to test or validate (``trainer.test(ckpt_path="best")`` after fit) keeps its
  average; Lightning's callback would put the raw weights back because its average model still
  exists from the fit;
- the raw weights at the end of training are kept (``final_weights``: to compare with the
  average, and as ``current_model_state`` of a checkpoint written after training, where
  Lightning's callback would store the average twice).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import WeightAveraging
from pytorch_lightning.trainer.states import TrainerFn


def warmup_ema_update(
    averaged: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor, decay: float
) -> None:
    """The multi-tensor update θ̄ ← θ̄ + (1 − d_n)(θ − θ̄) with d_n as in the module docstring;
    ``n`` is AveragedModel's ``n_averaged`` (an integer tensor, already on the averaged model's
    device). A module-level function (bound to ``decay`` with functools.partial), so the
    callback pickles for spawned DDP processes."""
    n = n.float()
    weight = 1 - torch.clamp((1 + n) / (10 + n), max=decay)
    deltas = torch._foreach_sub(current, averaged)
    torch._foreach_mul_(deltas, weight)
    torch._foreach_add_(averaged, deltas)


class WarmupEMA(WeightAveraging):
    """Lightning's weight averaging with the warm-up EMA above; ``decay`` in (0, 1)."""

    def __init__(self, decay: float = 0.999, **kwargs) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"callbacks.ema.decay: expected a value in (0, 1), got {decay}")
        self.final_weights: dict[str, torch.Tensor] | None = None
        super().__init__(multi_avg_fn=partial(warmup_ema_update, decay=decay), **kwargs)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.final_weights = None
        super().setup(trainer, pl_module, stage)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Keeps a copy of the raw weights, then puts the average in their place."""
        self.final_weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        super().on_train_end(trainer, pl_module)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        if self.final_weights is not None and "current_model_state" in checkpoint:
            checkpoint["current_model_state"] = self.final_weights

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Resuming a fit restores both weight sets; any other stage keeps ``state_dict``."""
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
