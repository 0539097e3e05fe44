"""Warm-up + cosine factors and the total_steps fill-in of build_scheduler."""

import functools
import math

import pytest
import torch

from lightning_modules.tasks.lr_schedules import (
    build_scheduler,
    check_optimizer_arguments,
    configure_optimizer_and_scheduler,
    lightning_optimizer_config,
    warmup_cosine,
)


def _optimizer(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _lrs(optimizer, scheduler, steps):
    values = []
    for _ in range(steps):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return values


def test_warmup_cosine_known_values():
    opt = _optimizer(2.0)
    lrs = _lrs(opt, warmup_cosine(opt, warmup_steps=2, total_steps=6, min_lr_ratio=0.1), 8)
    cosine = [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(5)]
    expected = [0.5, 1.0] + cosine + [0.1]
    assert lrs == pytest.approx([2.0 * f for f in expected])


def test_build_scheduler_fills_missing_total_steps_only():
    opt = _optimizer()
    scheduler = build_scheduler(functools.partial(warmup_cosine, warmup_steps=0), opt, 4)
    assert _lrs(opt, scheduler, 5)[-1] == pytest.approx(0.0)
    opt = _optimizer()
    bound = functools.partial(warmup_cosine, warmup_steps=0, total_steps=2)
    assert _lrs(opt, build_scheduler(bound, opt, 100), 3)[-1] == pytest.approx(0.0)
    opt = _optimizer()
    step_partial = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1)
    step_lr = build_scheduler(step_partial, opt, 9)
    assert isinstance(step_lr, torch.optim.lr_scheduler.StepLR)


def test_warmup_longer_than_the_run_is_shortened_with_a_warning():
    opt = _optimizer()
    with pytest.warns(UserWarning, match="using 1 warm-up steps"):
        scheduler = warmup_cosine(opt, warmup_steps=20, total_steps=4)
    lrs = _lrs(opt, scheduler, 4)
    assert lrs[0] == pytest.approx(1.0)  # one warm-up step (factor 1/1), then the decay
    assert lrs[0] >= lrs[1] > lrs[2] > lrs[3]


def test_schedule_errors_and_lightning_config():
    with pytest.raises(ValueError, match="total_steps must be >= 1"):
        warmup_cosine(_optimizer(), warmup_steps=5, total_steps=0)
    with pytest.raises(ValueError, match="total_steps is None"):
        warmup_cosine(_optimizer())
    with pytest.raises(ValueError, match="min_lr_ratio"):
        warmup_cosine(_optimizer(), total_steps=5, min_lr_ratio=2.0)
    opt = _optimizer()
    assert lightning_optimizer_config(opt, None) == {"optimizer": opt}
    config = lightning_optimizer_config(opt, "sched", interval="epoch")
    assert config["lr_scheduler"]["interval"] == "epoch"
    with pytest.raises(ValueError, match="scheduler_interval"):
        lightning_optimizer_config(opt, "sched", interval="batch")


def test_task_argument_checks_name_the_owner():
    sgd = functools.partial(torch.optim.SGD, lr=0.1)
    check_optimizer_arguments("SomeTask", sgd, "epoch")  # valid: no error
    with pytest.raises(ValueError, match=r"SomeTask: scheduler_interval must be one of"):
        check_optimizer_arguments("SomeTask", sgd, "batch")
    with pytest.raises(TypeError, match=r"SomeTask: optimizer must be a callable.*got str"):
        check_optimizer_arguments("SomeTask", "adam", "step")


def test_configure_reads_trainer_steps_only_with_a_scheduler():
    class Trainer:
        reads = 0

        @property
        def estimated_stepping_batches(self) -> int:
            Trainer.reads += 1
            return 10

    opt = _optimizer()
    assert configure_optimizer_and_scheduler(opt, None, Trainer()) == {"optimizer": opt}
    assert Trainer.reads == 0
    bound = functools.partial(warmup_cosine, warmup_steps=0)
    config = configure_optimizer_and_scheduler(opt, bound, Trainer(), interval="epoch")
    assert Trainer.reads == 1
    assert config["lr_scheduler"]["interval"] == "epoch"
    lrs = _lrs(opt, config["lr_scheduler"]["scheduler"], 11)
    assert lrs[0] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.0)  # total_steps = 10


def test_an_unbounded_run_keeps_the_peak_rate_after_the_warm_up():
    opt = _optimizer()
    with pytest.warns(UserWarning, match="no step bound"):
        scheduler = build_scheduler(
            functools.partial(warmup_cosine, warmup_steps=2, total_steps=None), opt, math.inf
        )
    assert _lrs(opt, scheduler, 5) == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0])
