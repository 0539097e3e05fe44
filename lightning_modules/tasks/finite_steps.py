"""Non-finite training steps never reach the weights, a checkpoint or the "best" score.

Used by both training tasks (``RestorationTask``, ``FlowPretrainTask``):

- ``FiniteStepGuard.check(module, optimizer)``, called from ``on_before_optimizer_step`` (after
  backward, before gradient clipping and the optimizer step): when the step's loss (recorded by
  ``observe_loss`` in ``training_step``) or the global gradient norm is NaN/inf, every gradient
  is set to None, so the torch optimizer skips every parameter (no update, no weight decay, no
  Adam moments or step count). The step is counted and the running total is logged as
  ``train/skipped_steps``. After ``max_bad_steps`` consecutive bad steps training stops with a
  ``NonFiniteTrainingError`` that says what happened, the last finite loss and to lower
  ``model.lr``. A skipped step still counts as a trainer step (global step, LR schedule).
- Under DDP the gradients are all-reduced before this hook, so every rank sees the same
  gradients; the skip decision is also reduced across ranks (any rank bad -> all skip), so all
  ranks skip together and the replicas never diverge.
- With a fp16 ``GradScaler`` (``precision=16-mixed``) inf gradients are the scaler's own signal
  (it skips the step and lowers the scale), so only a non-finite loss counts there.
- ``check_finite_state(state_dict)`` refuses (raises) to write a checkpoint whose weights are
  not finite (the tasks call it from ``on_save_checkpoint``).
- ``FiniteModelCheckpoint``: Lightning's ``ModelCheckpoint`` that never keeps a NaN/±inf score as
  a best checkpoint (Lightning keeps the first score whatever it is and maps NaN to -inf).
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

STATE_KEY = "finite_steps"


class NonFiniteTrainingError(ValueError):
    """Training stopped: too many consecutive steps had a non-finite loss or gradient."""


def _gradients(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [
        p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None
    ]


def gradients_finite(optimizer: torch.optim.Optimizer) -> bool:
    """True when every gradient of ``optimizer``'s parameters is finite (one device sync).

    The global 2-norm is NaN/inf exactly when an element is NaN/inf (or the norm overflows
    float32, a step that clipping could not save either)."""
    grads = _gradients(optimizer)
    if not grads:
        return True
    return bool(torch.isfinite(torch.nn.utils.get_total_norm(grads, 2.0)))


def _uses_grad_scaler(trainer: pl.Trainer | None) -> bool:
    return getattr(getattr(trainer, "precision_plugin", None), "scaler", None) is not None


class FiniteStepGuard:
    """Skips, counts and finally stops on non-finite training steps (see the module docstring).

    Args:
        max_bad_steps: consecutive bad steps after which training stops (>= 1).
        owner: the task's name, for messages.
    """

    def __init__(self, max_bad_steps: int = 10, owner: str = "task") -> None:
        if (
            isinstance(max_bad_steps, bool)
            or not isinstance(max_bad_steps, int)
            or max_bad_steps < 1
        ):
            raise ValueError(
                f"{owner}: max_bad_steps (model.max_bad_steps) must be an int >= 1, "
                f"got {max_bad_steps!r}"
            )
        self.max_bad_steps = max_bad_steps
        self.owner = owner
        self.skipped = 0  # bad steps in the whole run
        self.consecutive = 0  # bad steps since the last good one
        self.last_finite_loss: float | None = None
        self._loss: torch.Tensor | None = None

    def observe_loss(self, loss: torch.Tensor) -> None:
        """Record the loss of the current step (call from ``training_step``)."""
        self._loss = loss.detach()

    def check(self, module: pl.LightningModule, optimizer: torch.optim.Optimizer) -> bool:
        """Call from ``on_before_optimizer_step``: True when the step may go on; False when it
        was skipped (gradients dropped); raises ``NonFiniteTrainingError`` after
        ``max_bad_steps`` consecutive skips."""
        trainer = module._trainer  # None outside a Trainer (plain unit use)
        loss = self._loss
        self._loss = None
        loss_finite = loss is None or bool(torch.isfinite(loss).all())
        scaler = _uses_grad_scaler(trainer)
        bad = not loss_finite or (not scaler and not gradients_finite(optimizer))
        if trainer is not None:
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            self.consecutive = 0
            if loss is not None:
                self.last_finite_loss = float(loss)
        else:
            for group in optimizer.param_groups:
                for param in group["params"]:
                    param.grad = None
            self.skipped += 1
            self.consecutive += 1
        if trainer is not None:
            module.log("train/skipped_steps", float(self.skipped), on_step=True, on_epoch=False)
        if self.consecutive >= self.max_bad_steps:
            step = trainer.global_step if trainer is not None else "?"
            last = "none yet" if self.last_finite_loss is None else f"{self.last_finite_loss:.6g}"
            raise NonFiniteTrainingError(
                f"{self.owner}: training stopped at step {step}: the loss or a gradient was "
                f"NaN/inf in {self.consecutive} consecutive steps (model.max_bad_steps="
                f"{self.max_bad_steps}; {self.skipped} skipped in all; last finite loss: {last}); "
                f"the weights were not updated by those steps. Lower the learning rate "
                f"(model.lr), or check the data for NaN/inf values."
            )
        return not bad

    # ------------------------------------------------------------------ checkpoint state
    def state_dict(self) -> dict[str, Any]:
        return {
            "skipped": self.skipped,
            "consecutive": self.consecutive,
            "last_finite_loss": self.last_finite_loss,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.skipped = int(state.get("skipped", 0))
        self.consecutive = int(state.get("consecutive", 0))
        last = state.get("last_finite_loss")
        self.last_finite_loss = None if last is None else float(last)


def check_finite_state(state_dict: dict[str, torch.Tensor], owner: str = "task") -> None:
    """Raise ``NonFiniteTrainingError`` naming the first floating tensor with a NaN/inf value
    (called before a checkpoint is written: such weights are never saved)."""
    for name, tensor in state_dict.items():
        if (
            isinstance(tensor, torch.Tensor)
            and tensor.is_floating_point()
            and not bool(torch.isfinite(tensor).all())
        ):
            raise NonFiniteTrainingError(
                f"{owner}: refusing to write a checkpoint: weight '{name}' has NaN/inf values "
                f"(the previous checkpoint is kept). Lower the learning rate (model.lr)."
            )


class FiniteModelCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that never chooses a NaN/±inf monitored score as a best checkpoint
    (``last.ckpt`` is still written, from finite weights only: see ``check_finite_state``), and
    writes nothing at all under ``fast_dev_run``."""

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning 2.6 writes last.ckpt here even under fast_dev_run, which promises no
        # checkpoints (debug=fdr left a 27 MB file behind).
        if trainer.fast_dev_run:
            return
        super().on_train_end(trainer, pl_module)

    def check_monitor_top_k(self, trainer: pl.Trainer, current: torch.Tensor | None = None) -> bool:
        if current is None:
            return False
        # decided on all ranks together, so a rank never waits alone in the collective below
        if not trainer.strategy.reduce_boolean_decision(math.isfinite(float(current)), all=True):
            return False
        return super().check_monitor_top_k(trainer, current)
