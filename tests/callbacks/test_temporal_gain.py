"""TemporalGain: recurrent minus zero-state PSNR, known answers with stand-in nets."""

import functools

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from callbacks import TemporalGain
from lightning_modules.stages.network import NetworkOutput
from lightning_modules.tasks.metrics import frame_psnr_ssim
from lightning_modules.tasks.restoration_task import RestorationTask
from tests.lightning_helpers import one_intra_op_thread, tiny_trainer  # noqa: F401 (autouse)


class RunningMean(nn.Module):
    """Frame t restored as the mean of frames 0..t when recurrent (a perfect static denoiser's
    recurrence), or as the frame itself when ``use_past`` is False."""

    noise_channel = False

    def __init__(self, use_past: bool = True) -> None:
        super().__init__()
        self.use_past = use_past
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, lq, noise_level=None, return_maps=False):
        steps = torch.arange(1, lq.shape[1] + 1, dtype=lq.dtype).view(1, -1, 1, 1, 1)
        restored = lq.cumsum(dim=1) / steps if self.use_past else lq
        zero = (self.scale * 0).reshape(())
        return NetworkOutput(restored * self.scale, zero, zero, zero, zero, zero)


class StaticNoisyClips(Dataset):
    """A static scene with independent noise per frame: averaging frames removes noise."""

    def __init__(self, count=2, frames=4, size=16):
        gen = torch.Generator().manual_seed(0)
        scene = torch.rand(count, 1, 3, size, size, generator=gen).expand(-1, frames, -1, -1, -1)
        self.gt = scene.contiguous()
        self.lq = self.gt + 0.1 * torch.randn(self.gt.shape, generator=gen)

    def __len__(self):
        return len(self.gt)

    def __getitem__(self, i):
        return {"lq": self.lq[i], "gt": self.gt[i], "sigma": torch.tensor(0.1)}


def test_gain_is_the_psnr_difference_between_recurrent_and_zero_state():
    data = StaticNoisyClips()
    batch = {"lq": data.lq, "gt": data.gt}
    gain = TemporalGain().gain(RunningMean(), batch, "rgb")
    averaged = data.lq.cumsum(1)[:, 1:] / torch.arange(2, 5).view(1, -1, 1, 1, 1)
    expected = (
        frame_psnr_ssim(averaged, data.gt[:, 1:])[0].mean()
        - frame_psnr_ssim(data.lq[:, 1:], data.gt[:, 1:])[0].mean()
    )
    assert gain == pytest.approx(expected.item(), abs=1e-4)
    assert gain > 3.0  # averaging 2-4 noisy frames clearly helps
    assert TemporalGain().gain(RunningMean(use_past=False), batch, "rgb") == 0.0
    assert TemporalGain().gain(RunningMean(), {"lq": data.lq}, "rgb") is None  # no gt
    assert (
        TemporalGain().gain(RunningMean(), {"lq": data.lq[:, :1], "gt": data.gt[:, :1]}, "rgb")
        is None
    )


@pytest.mark.parametrize("use_past", [True, False])
def test_logged_in_a_validation_run(tmp_path, use_past):
    task = RestorationTask(RunningMean(use_past), functools.partial(torch.optim.SGD, lr=0.0))
    trainer = tiny_trainer(tmp_path, callbacks=[TemporalGain()], max_epochs=1)
    trainer.validate(task, DataLoader(StaticNoisyClips(), batch_size=2), verbose=False)
    gain = trainer.callback_metrics[TemporalGain.key].item()
    assert (gain > 3.0) if use_past else (gain == 0.0)


def test_bad_schedule_raises():
    with pytest.raises(ValueError, match="every_n_epochs must be >= 1"):
        TemporalGain(every_n_epochs=0)
