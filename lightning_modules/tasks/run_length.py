"""How many optimizer steps a run will make, when ``trainer.max_time`` may end it first.

Lightning knows a run's length in steps only from its step or epoch bounds
(``trainer.estimated_stepping_batches``; inf for a run that only ``max_time`` ends). Step
schedules that must finish inside the run (the rate term's delay and warm-up) then need an
estimate from the measured time per step:

    total ≈ s + remaining / ((t − t_0) / (s − s_0))

with (s_0, t_0) the global step and the Timer's elapsed training time at the first batch end of
the fit (the first step, slower than the rest, is left out), and (s, t) the same at least
``measure_steps`` optimizer steps later; ``remaining`` is the Timer's time left. Validation
inside those steps is counted like training time. The estimate is made once per fit, so a
schedule fitted to it does not move afterwards.
"""

from __future__ import annotations

from typing import Any

from pytorch_lightning.callbacks import Timer

MEASURE_STEPS = 20


def time_budget_timer(trainer: Any) -> Timer | None:
    """The trainer's Timer callback when it has a duration (``trainer.max_time``), else None."""
    for callback in getattr(trainer, "callbacks", []):
        if isinstance(callback, Timer) and callback.time_remaining() is not None:
            return callback
    return None


class TimeBudgetSteps:
    """One estimate per fit of the steps a time-bounded run will make (module docstring)."""

    def __init__(self, measure_steps: int = MEASURE_STEPS) -> None:
        if not isinstance(measure_steps, int) or measure_steps < 1:
            raise ValueError(
                f"TimeBudgetSteps: measure_steps must be an int >= 1, got {measure_steps!r}"
            )
        self.measure_steps = measure_steps
        self.reset()

    def reset(self) -> None:
        """Forget the measurement (call at the start of every fit)."""
        self._start: tuple[int, float] | None = None
        self.done = False

    def observe(self, step: int, elapsed: float, remaining: float) -> float | None:
        """Feed the global step and the Timer's elapsed / remaining seconds after a training
        batch; returns the estimated total steps once, when the measurement is complete."""
        if self.done:
            return None
        if self._start is None:
            self._start = (step, elapsed)
            return None
        start_step, start_time = self._start
        steps = step - start_step
        if steps < self.measure_steps:
            return None
        self.done = True
        seconds_per_step = max(elapsed - start_time, 1e-9) / steps
        return step + max(remaining, 0.0) / seconds_per_step
