"""Learning-rate schedules usable as Hydra ``_partial_`` targets, and their hand-off to Lightning.

Hydra example::

    scheduler:
      _target_: lightning_modules.tasks.lr_schedules.warmup_cosine
      _partial_: true
      warmup_steps: 1000
      total_steps: null      # null: filled in from trainer.estimated_stepping_batches
      min_lr_ratio: 0.01
"""

import inspect
import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

SCHEDULER_INTERVALS = ("step", "epoch")


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    warmup_steps: int = 0,
    total_steps: int | None = None,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """Linear warm-up then cosine decay, as a multiplier of every param group's base lr.

    factor(s) = (s + 1) / warmup_steps                                  for s < warmup_steps
              = m + (1 - m) · ½ (1 + cos(π · (s - warmup_steps) / (total_steps - warmup_steps)))
                                                                        for s ≤ total_steps
              = m                                                       afterwards
    with m = ``min_lr_ratio``. The first step already trains (factor 1 / warmup_steps, not 0).
    ``total_steps`` None is only allowed through :func:`build_scheduler`, which fills it in.
    A warm-up as long as the run or longer is shortened to a quarter of the run (one warning),
    so short runs (``trainer.max_steps=4``) work with the presets' warm-up. An unbounded run
    (``total_steps`` = inf: only ``trainer.max_time`` ends it) keeps the peak rate after the
    warm-up (one warning).
    """
    if total_steps is None:
        raise ValueError(
            "warmup_cosine: total_steps is None; pass it, or build the scheduler "
            "through lr_schedules.build_scheduler which takes it from the trainer"
        )
    if warmup_steps < 0:
        raise ValueError(f"warmup_cosine: warmup_steps must be >= 0, got {warmup_steps}")
    if total_steps < 1:
        raise ValueError(f"warmup_cosine: total_steps must be >= 1, got {total_steps}")
    if math.isinf(total_steps):
        warnings.warn(
            "warmup_cosine: the run has no step bound (set trainer.max_steps for a cosine "
            "decay); the learning rate stays at its peak after the warm-up",
            stacklevel=2,
        )
        return LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / max(warmup_steps, 1)))
    if total_steps <= warmup_steps:
        shortened = total_steps // 4
        warnings.warn(
            f"warmup_cosine: the warm-up ({warmup_steps} steps) is not shorter than the run "
            f"({total_steps} steps); using {shortened} warm-up steps",
            stacklevel=2,
        )
        warmup_steps = shortened
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"warmup_cosine: min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
    decay_steps = total_steps - warmup_steps

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / decay_steps)
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def build_scheduler(
    factory: Callable[..., Any],
    optimizer: torch.optim.Optimizer,
    total_steps: int,
) -> Any:
    """Call a scheduler partial on ``optimizer``; fill its ``total_steps`` when left None.

    ``total_steps`` (e.g. ``trainer.estimated_stepping_batches``) is passed only when the
    factory accepts such an argument and its bound value is missing or None.
    """
    try:
        params = inspect.signature(factory).parameters  # a partial's bound keywords are defaults
    except (TypeError, ValueError):  # some builtins have no signature
        params = {}
    if "total_steps" in params and params["total_steps"].default in (None, inspect.Parameter.empty):
        total = float(total_steps)
        return factory(optimizer, total_steps=total if math.isinf(total) else int(total))
    return factory(optimizer)


def check_optimizer_arguments(owner: str, optimizer: Any, scheduler_interval: str) -> None:
    """Raise one clear error, naming the ``owner`` task, when ``optimizer`` is not a callable
    ``params -> Optimizer`` or ``scheduler_interval`` is not one of :data:`SCHEDULER_INTERVALS`."""
    if scheduler_interval not in SCHEDULER_INTERVALS:
        raise ValueError(
            f"{owner}: scheduler_interval must be one of "
            f"{SCHEDULER_INTERVALS}, got {scheduler_interval!r}"
        )
    if not callable(optimizer):
        raise TypeError(
            f"{owner}: optimizer must be a callable params -> Optimizer "
            f"(a Hydra `_partial_: true` target), got {type(optimizer).__name__}"
        )


def lightning_optimizer_config(
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None,
    interval: str = "step",
    monitor: str | None = None,
) -> dict[str, Any]:
    """The dict ``configure_optimizers`` returns: optimizer and (optional) scheduler config.

    ``interval``: ``"step"`` (scheduler stepped after every optimizer step) or ``"epoch"``.
    ``monitor`` is needed only for ``ReduceLROnPlateau``.
    """
    if interval not in SCHEDULER_INTERVALS:
        raise ValueError(
            f"scheduler_interval must be one of {SCHEDULER_INTERVALS}, got {interval!r}"
        )
    if scheduler is None:
        return {"optimizer": optimizer}
    config: dict[str, Any] = {"scheduler": scheduler, "interval": interval, "frequency": 1}
    if monitor is not None:
        config["monitor"] = monitor
    return {"optimizer": optimizer, "lr_scheduler": config}


def configure_optimizer_and_scheduler(
    optimizer: torch.optim.Optimizer,
    scheduler_factory: Callable[..., Any] | None,
    trainer: Any,
    interval: str = "step",
) -> dict[str, Any]:
    """``configure_optimizers``' return for ``optimizer`` and an optional scheduler partial,
    built by :func:`build_scheduler` with ``trainer.estimated_stepping_batches`` as its
    ``total_steps`` (read only when there is a scheduler)."""
    scheduler = None
    if scheduler_factory is not None:
        scheduler = build_scheduler(
            scheduler_factory, optimizer, trainer.estimated_stepping_batches
        )
    return lightning_optimizer_config(optimizer, scheduler, interval)
