"""WarmupEMA: the averaged weights follow θ̄ ← θ̄ + (1 − d_n)(θ − θ̄), d_n = min(decay,
(1 + n)/(10 + n)); validation, test and checkpoints use the average, resuming restores both."""

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from callbacks.weight_ema import WarmupEMA, warmup_ema_update
from tests.lightning_helpers import one_intra_op_thread, tiny_trainer  # noqa: F401


def test_update_known_answers():
    averaged, current = [torch.zeros(3)], [torch.ones(3)]
    warmup_ema_update(averaged, current, torch.tensor(1), decay=0.999)  # d_1 = 2/11
    assert torch.allclose(averaged[0], torch.full((3,), 9 / 11))
    averaged = [torch.zeros(2)]
    warmup_ema_update(averaged, [torch.ones(2)], torch.tensor(10_000), decay=0.9)  # d capped at 0.9
    assert torch.allclose(averaged[0], torch.full((2,), 0.1))


def test_bad_decay_is_refused():
    with pytest.raises(ValueError, match=r"callbacks\.ema\.decay.*\(0, 1\).*1\.5"):
        WarmupEMA(decay=1.5)


class Regression(pl.LightningModule):
    """y = w·x fitted by SGD; records w after every optimizer step and w seen in validation."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1, bias=False)
        self.trajectory: list[torch.Tensor] = []
        self.validated: list[torch.Tensor] = []
        self.tested: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.trajectory.append(self.layer.weight.detach().clone())

    def validation_step(self, batch, batch_idx):
        self.validated.append(self.layer.weight.detach().clone())

    def test_step(self, batch, batch_idx):
        self.tested.append(self.layer.weight.detach().clone())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader() -> DataLoader:
    """4 equal batches: the trajectory does not depend on where a resumed epoch restarts."""
    x = torch.tensor([[1.0, -0.5], [0.25, 1.0]]).repeat(4, 1)
    return DataLoader(TensorDataset(x, x @ torch.tensor([[2.0], [-3.0]])), batch_size=2)


def expected_average(trajectory: list[torch.Tensor], decay: float) -> torch.Tensor:
    """The warm-up EMA of the weights after each step, by hand (the first update copies)."""
    average = trajectory[0].clone()
    for n, weights in enumerate(trajectory[1:], start=1):
        d = min(decay, (1 + n) / (10 + n))
        average = d * average + (1 - d) * weights
    return average


def test_fit_validates_and_ends_with_the_average(tmp_path):
    torch.manual_seed(0)
    model = Regression()
    ema = WarmupEMA(decay=0.5)
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[ema])
    trainer.fit(model, loader(), loader())
    average = expected_average(model.trajectory, decay=0.5)
    assert len(model.trajectory) == 8
    assert not torch.allclose(model.trajectory[-1], average)  # the average is not the weights
    assert torch.allclose(model.layer.weight, average, atol=1e-6)
    # the second validation (after step 8) ran with the average of the 8 steps
    assert torch.allclose(model.validated[-1], average, atol=1e-6)
    assert torch.equal(ema.final_weights["layer.weight"], model.trajectory[-1])
    trainer.save_checkpoint(tmp_path / "after.ckpt")  # written after training: both weight sets
    saved = torch.load(tmp_path / "after.ckpt", weights_only=True)
    assert torch.allclose(saved["state_dict"]["layer.weight"], average, atol=1e-6)
    assert torch.equal(saved["current_model_state"]["layer.weight"], model.trajectory[-1])


def fit_with_checkpoints(tmp_path, max_steps: int, ckpt_path=None) -> tuple[Regression, str]:
    torch.manual_seed(0)
    model = Regression()
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = tiny_trainer(
        tmp_path,
        max_steps=max_steps,
        max_epochs=-1,
        enable_checkpointing=True,
        callbacks=[WarmupEMA(decay=0.9), checkpoint],
    )
    trainer.fit(model, loader(), ckpt_path=ckpt_path)
    return model, checkpoint.last_model_path


def test_checkpoints_hold_the_average_and_resume_continues_both(tmp_path):
    straight, _ = fit_with_checkpoints(tmp_path / "straight", max_steps=8)
    first, last = fit_with_checkpoints(tmp_path / "resumed", max_steps=4)
    saved = torch.load(last, weights_only=True)
    assert torch.allclose(saved["state_dict"]["layer.weight"], first.layer.weight)  # the average
    assert torch.allclose(
        saved["current_model_state"]["layer.weight"], first.trajectory[-1]
    )  # the raw weights
    resumed, _ = fit_with_checkpoints(tmp_path / "resumed", max_steps=8, ckpt_path=last)
    # resumed from the raw weights and the average: the same end as one uninterrupted fit
    assert torch.allclose(resumed.trajectory[-1], straight.trajectory[-1], atol=1e-6)
    assert torch.allclose(resumed.layer.weight, straight.layer.weight, atol=1e-6)


def test_testing_a_checkpoint_after_fit_uses_its_average(tmp_path):
    model, last = fit_with_checkpoints(tmp_path, max_steps=4)
    model.trainer.test(model, loader(), ckpt_path=last)
    saved = torch.load(last, weights_only=True)["state_dict"]["layer.weight"]
    assert not torch.allclose(saved, model.trajectory[-1])
    assert torch.allclose(model.tested[-1], saved)
