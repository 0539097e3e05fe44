"""TimeBudgetSteps: the steps a time-bounded run will make, from the measured time per step."""

import pytest

from lightning_modules.tasks.run_length import TimeBudgetSteps, time_budget_timer


def test_estimate_leaves_out_the_first_step_and_is_made_once():
    estimate = TimeBudgetSteps(measure_steps=4)
    # step 1 took 10 s (start-up), then 2 s per step; 100 s of the budget left after step 5.
    assert estimate.observe(step=1, elapsed=10.0, remaining=190.0) is None
    for step in (2, 3, 4):
        assert estimate.observe(step, 10.0 + 2.0 * (step - 1), 190.0 - 2.0 * (step - 1)) is None
    assert estimate.observe(step=5, elapsed=18.0, remaining=182.0) == pytest.approx(5 + 91)
    assert estimate.done and estimate.observe(step=6, elapsed=20.0, remaining=180.0) is None
    estimate.reset()  # a new fit measures again
    assert not estimate.done and estimate.observe(step=6, elapsed=20.0, remaining=180.0) is None


def test_budget_already_spent_gives_the_current_step():
    estimate = TimeBudgetSteps(measure_steps=1)
    estimate.observe(step=3, elapsed=5.0, remaining=1.0)
    assert estimate.observe(step=4, elapsed=7.0, remaining=-0.5) == pytest.approx(4)


def test_bad_measure_steps_and_no_timer():
    with pytest.raises(ValueError, match="measure_steps must be an int >= 1, got 0"):
        TimeBudgetSteps(measure_steps=0)

    class NoTimer:
        callbacks = []

    assert time_budget_timer(NoTimer()) is None
