"""Where training time goes: time inside the training step versus waiting between steps.

For each training batch i the callback records

    step_i = t(on_train_batch_end_i) − t(on_train_batch_start_i)     forward, backward, optimizer
    wait_i = t(on_train_batch_start_i) − t(on_train_batch_end_{i−1})  fetching the next batch
                                                                       and the loop's own work

and logs, every ``log_every_n_steps`` steps, ``train/steps_per_s`` = n / Σ(step + wait) and
``train/data_wait_share`` = Σ wait / Σ(step + wait) over those n steps. The first ``skip_steps``
batches of the fit (start-up: worker spawn, allocator warm-up, compilation) and the first batch of
every epoch (its wait includes the epoch's worker start) are left out of ``summary()``.
On CUDA the step's end is taken after ``torch.cuda.synchronize()`` only when ``synchronize`` is
true (it costs one host sync per step: off by default, on in ``bench/train_speed.py``).
Lightning's ``ThroughputMonitor`` reports samples/s but not the share spent waiting for data.
"""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
import torch


class StepTiming(pl.Callback):
    """Per-step compute and wait times; ``summary()`` gives steady-state figures."""

    def __init__(
        self, log_every_n_steps: int = 50, skip_steps: int = 5, synchronize: bool = False
    ) -> None:
        if log_every_n_steps < 1 or skip_steps < 0:
            raise ValueError(
                "StepTiming: log_every_n_steps must be >= 1 and skip_steps >= 0, got "
                f"{log_every_n_steps}, {skip_steps}"
            )
        self.log_every_n_steps = log_every_n_steps
        self.skip_steps = skip_steps
        self.synchronize = synchronize
        self.steps: list[tuple[float, float, int]] = []  # (wait s, step s, clips) after skip
        self._window: list[tuple[float, float]] = []
        self._seen = 0
        self._last_end: float | None = None
        self._start = 0.0
        self._wait = 0.0

    def _sync(self, pl_module: pl.LightningModule) -> None:
        if self.synchronize and pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_end = None  # the first wait of an epoch includes the workers' start

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._sync(pl_module)
        self._start = time.perf_counter()
        self._wait = -1.0 if self._last_end is None else self._start - self._last_end

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self._sync(pl_module)
        self._last_end = time.perf_counter()
        self._seen += 1
        if self._wait < 0 or self._seen <= self.skip_steps:
            return
        step = self._last_end - self._start
        clips = int(batch["lq"].shape[0]) if isinstance(batch, dict) and "lq" in batch else 0
        self.steps.append((self._wait, step, clips))
        self._window.append((self._wait, step))
        if len(self._window) >= self.log_every_n_steps:
            wait = sum(w for w, _ in self._window)
            total = wait + sum(s for _, s in self._window)
            pl_module.log("train/steps_per_s", len(self._window) / total, on_step=True)
            pl_module.log("train/data_wait_share", wait / total, on_step=True)
            self._window.clear()

    def summary(self) -> dict[str, float]:
        """Steady-state figures over the recorded steps: steps/s, clips/s, wait share, mean step
        and wait seconds, and the number of steps measured (zeros when none were)."""
        if not self.steps:
            return {"steps": 0, "steps_per_s": 0.0, "clips_per_s": 0.0, "data_wait_share": 0.0}
        wait = sum(w for w, _, _ in self.steps)
        step = sum(s for _, s, _ in self.steps)
        clips = sum(c for _, _, c in self.steps)
        return {
            "steps": len(self.steps),
            "steps_per_s": len(self.steps) / (wait + step),
            "clips_per_s": clips / (wait + step),
            "data_wait_share": wait / (wait + step),
            "step_s": step / len(self.steps),
            "wait_s": wait / len(self.steps),
        }
