"""finite_steps: a NaN/inf loss or gradient never reaches the weights, the optimizer state, a
checkpoint or the "best" score; N bad steps in a row stop training with one clear message."""

from __future__ import annotations

import copy
import functools
import os
import subprocess
import sys

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightning_modules.stages.network import NetworkOutput
from lightning_modules.tasks.finite_steps import (
    FiniteModelCheckpoint,
    FiniteStepGuard,
    NonFiniteTrainingError,
    check_finite_state,
)
from lightning_modules.tasks.flow_pretrain_task import FlowPretrainTask
from lightning_modules.tasks.restoration_task import RestorationTask
from tests.conftest_config import CONF_DIR, DATA_TINY, TRAINER_TINY, model_tiny
from tests.lightning_helpers import one_intra_op_thread, tiny_trainer  # noqa: F401 (autouse)


class ConvNet(nn.Module):
    """restored = lq + conv(lq), a learnable rate: the VideoRestorationNet contract, tiny."""

    noise_channel = False

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 3, 3, padding=1)
        self.log_rate = nn.Parameter(torch.zeros(()))

    def forward(self, lq, noise_level=None, return_maps=False):
        b, t, c, h, w = lq.shape
        restored = lq + self.body(lq.flatten(0, 1)).view(b, t, c, h, w)
        bpp = torch.exp(self.log_rate)
        return NetworkOutput(restored, bpp, bpp * 0, bpp, bpp, bpp * 0)


class Clips(Dataset):
    """Tiny clean/noisy clips; the items in ``bad`` have a NaN in their input."""

    def __init__(self, count: int, bad: set[int] = frozenset()) -> None:
        generator = torch.Generator().manual_seed(0)
        self.gt = torch.rand(count, 2, 3, 8, 8, generator=generator)
        self.bad = bad

    def __len__(self) -> int:
        return len(self.gt)

    def __getitem__(self, i: int) -> dict:
        lq = self.gt[i] + 0.1
        if i in self.bad:
            lq = lq.clone()
            lq[0, 0, 0, 0] = float("nan")
        return {"lq": lq, "gt": self.gt[i], "sigma": torch.tensor(0.0)}


def _task(max_bad_steps: int = 10, lr: float = 1e-2) -> RestorationTask:
    torch.manual_seed(0)
    optimizer = functools.partial(torch.optim.AdamW, lr=lr, weight_decay=0.1)
    return RestorationTask(ConvNet(), optimizer, max_bad_steps=max_bad_steps)


class Snapshots(pl.Callback):
    """Weights and optimizer state before and after every training batch."""

    def __init__(self) -> None:
        self.before: dict[int, tuple] = {}
        self.after: dict[int, tuple] = {}

    @staticmethod
    def _state(trainer, module) -> tuple:
        optimizer = trainer.optimizers[0].state_dict()
        return copy.deepcopy(module.state_dict()), copy.deepcopy(optimizer)

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.before[batch_idx] = self._state(trainer, module)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.after[batch_idx] = self._state(trainer, module)


def _same(a, b) -> bool:
    """Bit-identical nested dicts/lists of tensors and numbers."""
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_a_nan_batch_leaves_weights_and_adamw_state_bit_identical_and_is_counted(tmp_path):
    task, snapshots = _task(), Snapshots()
    trainer = tiny_trainer(tmp_path, max_steps=5, limit_val_batches=0, callbacks=[snapshots])
    trainer.fit(task, DataLoader(Clips(5, bad={1, 3}), batch_size=1))
    for step in (1, 3):  # skipped: nothing moved, no Adam moment or step count, no weight decay
        assert _same(snapshots.before[step], snapshots.after[step])
    for step in (0, 2, 4):  # trained
        assert not _same(snapshots.before[step][0], snapshots.after[step][0])
    assert task.finite_steps.skipped == 2 and task.finite_steps.consecutive == 0
    assert float(trainer.callback_metrics["train/skipped_steps"]) == 2.0
    assert trainer.global_step == 5  # skipped steps still count as trainer steps
    assert all(torch.isfinite(p).all() for p in task.parameters())


def test_max_bad_steps_in_a_row_stop_training_with_one_clear_message(tmp_path):
    task = _task(max_bad_steps=3)
    trainer = tiny_trainer(tmp_path, max_steps=10, limit_val_batches=0)
    with pytest.raises(NonFiniteTrainingError) as caught:
        trainer.fit(task, DataLoader(Clips(10, bad={2, 3, 4, 5, 6}), batch_size=1))
    message = str(caught.value)
    assert "\n" not in message
    for part in (
        "step 4",
        "3 consecutive",
        "model.max_bad_steps=3",
        "last finite loss: 0.",
        "model.lr",
    ):
        assert part in message, (part, message)
    assert task.finite_steps.skipped == 3
    assert all(torch.isfinite(p).all() for p in task.parameters())


def test_a_good_step_resets_the_run_of_bad_steps(tmp_path):
    task = _task(max_bad_steps=2)
    trainer = tiny_trainer(tmp_path, max_steps=6, limit_val_batches=0)
    trainer.fit(task, DataLoader(Clips(6, bad={1, 3, 5}), batch_size=1))  # never 2 in a row
    assert task.finite_steps.skipped == 3 and trainer.global_step == 6


def test_nan_weights_are_never_written_to_a_checkpoint(tmp_path):
    task = _task()
    trainer = tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(task, DataLoader(Clips(1), batch_size=1))
    trainer.save_checkpoint(tmp_path / "good.ckpt")
    with torch.no_grad():
        task.net.body.weight[0, 0, 0, 0] = float("inf")
    with pytest.raises(NonFiniteTrainingError, match=r"weight 'net\.body\.weight' has NaN/inf"):
        trainer.save_checkpoint(tmp_path / "bad.ckpt")
    assert not (tmp_path / "bad.ckpt").exists()
    check_finite_state({"a": torch.ones(2), "steps": torch.tensor([1])})  # finite: no error


def test_the_flow_task_skips_a_non_finite_step_too():
    flow = nn.Conv2d(6, 2, 3, padding=1)
    task = FlowPretrainTask(flow, functools.partial(torch.optim.AdamW, lr=1e-3))
    for value, kept in ((float("nan"), False), (1.0, True)):
        flow.weight.grad = torch.ones_like(flow.weight)
        task.finite_steps.observe_loss(torch.tensor(value))
        task.on_before_optimizer_step(torch.optim.SGD(flow.parameters(), lr=1.0))
        assert (flow.weight.grad is not None) == kept
    flow.weight.grad = torch.full_like(flow.weight, float("inf"))  # finite loss, inf gradient
    task.finite_steps.observe_loss(torch.tensor(1.0))
    task.on_before_optimizer_step(torch.optim.SGD(flow.parameters(), lr=1.0))
    assert flow.weight.grad is None and task.finite_steps.skipped == 2


def test_max_bad_steps_must_be_a_positive_int():
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(ValueError, match="model.max_bad_steps"):
            FiniteStepGuard(bad)


def test_a_nan_or_infinite_score_is_never_the_best_checkpoint(tmp_path):
    trainer = tiny_trainer(tmp_path)
    callback = FiniteModelCheckpoint(dirpath=tmp_path, monitor="val/psnr", mode="max")
    for score in (float("nan"), float("-inf"), float("inf")):
        assert not callback.check_monitor_top_k(trainer, torch.tensor(score))
    assert callback.check_monitor_top_k(trainer, torch.tensor(20.0))  # empty top-k: kept
    assert not callback.check_monitor_top_k(trainer, None)


def test_train_py_with_a_huge_learning_rate_ends_with_the_message(tmp_path):
    """``model.lr=1e4`` (issue 12: NaN from step 1, then a segfault or a -inf "best"): now one
    error line naming model.lr, a non-zero exit, and no checkpoint with NaN weights."""
    overrides = [
        "model=no_codec",
        "logger=csv",
        f"paths.output_dir={tmp_path}",
        f"paths.log_dir={tmp_path}/logs",
        *DATA_TINY,
        *[o for o in TRAINER_TINY if not o.startswith("trainer.limit_train_batches")],
        *[o for o in model_tiny("no_codec")],
        "model.lr=1e4",
        "model.max_bad_steps=3",
        "trainer.max_steps=12",
        "trainer.max_epochs=-1",
        "trainer.limit_val_batches=0",
        "callbacks.model_checkpoint.monitor=null",
        "test=false",
    ]
    result = subprocess.run(
        [sys.executable, "train.py", *overrides],
        cwd=CONF_DIR.parent,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "consecutive steps" in errors[0] and "model.lr" in errors[0], errors[0]
    for checkpoint in tmp_path.rglob("*.ckpt"):
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
