"""StepTiming: steady-state steps/s, clips/s and the share of time spent waiting for data."""

import time

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from callbacks.step_timing import StepTiming
from tests.lightning_helpers import one_intra_op_thread, tiny_trainer  # noqa: F401


class SlowClips(Dataset):
    """Clips of 2 frames that take ``delay`` seconds each to 'read'."""

    def __init__(self, delay: float, length: int = 12) -> None:
        self.delay, self.length = delay, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        time.sleep(self.delay)
        return {"lq": torch.rand(2, 3, 8, 8)}


class TinyModel(pl.LightningModule):
    def __init__(self, step_delay: float = 0.0) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 3)
        self.step_delay = step_delay

    def training_step(self, batch, batch_idx):
        time.sleep(self.step_delay)
        return self.layer(batch["lq"].mean(dim=(1, 3, 4))).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit(tmp_path, delay: float, step_delay: float, epochs: int = 2) -> StepTiming:
    timing = StepTiming(log_every_n_steps=2, skip_steps=2)
    trainer = tiny_trainer(tmp_path, max_epochs=epochs, callbacks=[timing], log_every_n_steps=1)
    loader = DataLoader(SlowClips(delay), batch_size=2, num_workers=0)
    trainer.fit(TinyModel(step_delay), loader)
    return timing


def test_waiting_for_slow_data_shows_in_the_share(tmp_path):
    slow_data = fit(tmp_path, delay=0.02, step_delay=0.0).summary()
    slow_step = fit(tmp_path, delay=0.0, step_delay=0.04).summary()
    # 6 batches per epoch, 2 epochs: the first 2 batches and each epoch's first are left out
    assert slow_data["steps"] == slow_step["steps"] == 12 - 2 - 1
    assert slow_data["data_wait_share"] > 0.8  # 40 ms reading per batch, ~1 ms computing
    assert slow_step["data_wait_share"] < 0.2
    assert slow_step["step_s"] == pytest.approx(0.04, abs=0.03)
    assert slow_step["clips_per_s"] == pytest.approx(2 * slow_step["steps_per_s"])
    assert slow_step["steps_per_s"] == pytest.approx(
        1 / (slow_step["step_s"] + slow_step["wait_s"])
    )


def test_nothing_measured_gives_zeros_and_bad_arguments_raise(tmp_path):
    assert StepTiming().summary()["steps"] == 0
    with pytest.raises(ValueError, match="log_every_n_steps must be >= 1"):
        StepTiming(log_every_n_steps=0)
    with pytest.raises(ValueError, match="skip_steps >= 0"):
        StepTiming(skip_steps=-1)
