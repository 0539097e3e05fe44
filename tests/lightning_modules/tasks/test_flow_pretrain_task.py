"""FlowPretrainTask on a real photograph moving by a known shift.

The flow module here is a learnable global translation, so the test checks the task (losses,
warping direction, masks, ratio, checkpoint), not a flow network.
"""

import functools

import numpy as np
import pytest
import torch
from skimage import data
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightning_modules.stages.warp import in_bounds_mask
from lightning_modules.tasks.flow_pretrain_task import FlowPretrainTask
from tests.lightning_helpers import one_intra_op_thread, tiny_trainer  # noqa: F401 (autouse)

SHIFT = 2  # pixels per frame: frame_t(p) = frame_{t-1}(p + (SHIFT, 0)), backward flow = +SHIFT


class TranslationFlow(nn.Module):
    """flow(ref, supp) = a learnable global (dx, dy), zero at init."""

    def __init__(self) -> None:
        super().__init__()
        self.translation = nn.Parameter(torch.zeros(2))

    def forward(self, ref, supp):
        b, _, h, w = ref.shape
        return self.translation.view(1, 2, 1, 1).expand(b, 2, h, w)


class MovingCrop(Dataset):
    """One clip of 3 frames cut from skimage's astronaut, moving left by SHIFT px per frame."""

    def __init__(self, size=32):
        image = torch.from_numpy(data.astronaut().astype(np.float32) / 255).permute(2, 0, 1)
        image = torch.nn.functional.avg_pool2d(image.unsqueeze(0), 2).squeeze(0)  # smoother
        top, left = 60, 80
        frames = [
            image[:, top : top + size, left + SHIFT * t : left + SHIFT * t + size] for t in range(3)
        ]
        self.clip = torch.stack(frames)

    def __len__(self):
        return 1

    def __getitem__(self, i):
        return {
            "lq": self.clip + 0.05,
            "gt": self.clip,
            "sigma": torch.tensor(0.0),
            "name": "astronaut",
            "frame_idx": torch.arange(3),
        }


@pytest.mark.parametrize("photometric", ["charbonnier", "census"])
def test_training_recovers_the_shift_and_lowers_the_photometric_error(tmp_path, photometric):
    torch.manual_seed(0)
    task = FlowPretrainTask(
        TranslationFlow(),
        functools.partial(torch.optim.Adam, lr=0.1),
        supervision="photometric",
        photometric=photometric,
        smooth_weight=0.1,
    )
    loader = DataLoader(MovingCrop(), batch_size=1)
    trainer = tiny_trainer(tmp_path, max_steps=30, limit_val_batches=1)
    trainer.validate(task, loader, verbose=False)
    before = trainer.callback_metrics["val/flow_error"].item()
    assert trainer.callback_metrics["val/flow_error_ratio"].item() == pytest.approx(1.0)
    trainer.fit(task, loader)
    trainer.validate(task, loader, verbose=False)
    after = trainer.callback_metrics["val/flow_error"].item()
    assert after < 0.5 * before
    assert trainer.callback_metrics["val/flow_error_ratio"].item() < 0.5
    dx, dy = task.flow.translation.tolist()
    assert dx == pytest.approx(SHIFT, abs=0.2) and abs(dy) < 0.2


class KnownShiftPairs(Dataset):
    """Synthetic-supervision batches: degraded pairs of MovingCrop with their exact flow."""

    def __len__(self):
        return 2

    def __getitem__(self, i):
        clip = MovingCrop().clip[i : i + 2]
        noise = torch.Generator().manual_seed(i)
        return {
            "lq": clip + 0.05 * torch.randn(clip.shape, generator=noise),
            "gt": clip,
            "flow": torch.tensor([float(SHIFT), 0.0]).view(2, 1, 1).expand(2, *clip.shape[-2:]),
            "valid": torch.ones(1, *clip.shape[-2:]),
        }


def test_synthetic_supervision_learns_the_known_flow_from_degraded_pairs(tmp_path):
    torch.manual_seed(0)
    task = FlowPretrainTask(TranslationFlow(), functools.partial(torch.optim.Adam, lr=0.1))
    loader = DataLoader(KnownShiftPairs(), batch_size=2)
    trainer = tiny_trainer(tmp_path, max_steps=40, limit_val_batches=1)
    trainer.validate(task, loader, verbose=False)
    assert trainer.callback_metrics["val/flow_error"].item() == pytest.approx(SHIFT, rel=1e-3)
    trainer.fit(task, loader)
    trainer.validate(task, loader, verbose=False)
    assert trainer.callback_metrics["val/flow_error_ratio"].item() < 0.1
    assert task.flow.translation.tolist() == pytest.approx([SHIFT, 0.0], abs=0.2)


def test_pyramid_levels_are_each_supervised():
    from lightning_modules.stages.spynet import SpyNet

    torch.manual_seed(0)
    task = FlowPretrainTask(SpyNet(num_levels=3), functools.partial(torch.optim.Adam))
    batch = next(iter(DataLoader(KnownShiftPairs(), batch_size=2)))
    terms = task._synthetic_terms(batch)
    # zero flow at init: every level's EPE is the shift at that level's scale (2, 1, 0.5 px)
    assert terms["final"].item() == pytest.approx(SHIFT, rel=1e-3)
    assert terms["levels"].item() == pytest.approx(SHIFT * (1 + 0.5 + 0.25), rel=1e-2)
    terms["loss"].backward()
    for level, module in enumerate(task.flow.basic_module):
        assert module.basic_module[-1].weight.grad.abs().sum() > 0, level
    with pytest.raises(ValueError, match="use data=flow_pairs"):
        task._synthetic_terms({"lq": torch.zeros(1, 3, 3, 8, 8)})


def test_uses_clean_frames_unless_told_otherwise():
    task = FlowPretrainTask(TranslationFlow(), functools.partial(torch.optim.Adam, lr=0.1))
    batch = DataLoader(MovingCrop(), batch_size=1).__iter__().__next__()
    assert torch.equal(task._clip(batch), batch["gt"])
    task_lq = FlowPretrainTask(TranslationFlow(), functools.partial(torch.optim.Adam), use_gt=False)
    assert torch.equal(task_lq._clip(batch), batch["lq"])
    assert torch.equal(task._clip({"lq": batch["lq"]}), batch["lq"])
    with pytest.raises(ValueError, match="T>=2"):
        task._clip({"gt": batch["gt"][:, :1]})


def test_in_bounds_mask():
    flow = torch.zeros(1, 2, 4, 5)
    assert in_bounds_mask(flow).sum() == 20
    flow[:, 0] = 2.0  # samples x + 2: the last two columns read outside
    mask = in_bounds_mask(flow)
    assert mask[..., :3].sum() == 12 and mask[..., 3:].sum() == 0


def test_bad_arguments():
    adam = functools.partial(torch.optim.Adam)
    with pytest.raises(ValueError, match="photometric"):
        FlowPretrainTask(TranslationFlow(), adam, photometric="ssim")
    with pytest.raises(ValueError, match="smooth_weight"):
        FlowPretrainTask(TranslationFlow(), adam, smooth_weight=-1)
    with pytest.raises(ValueError, match="supervision must be one of"):
        FlowPretrainTask(TranslationFlow(), adam, supervision="teacher")


def test_the_task_checkpoint_loads_into_spynet(tmp_path):
    """The one route for flow weights: SpyNet.load_pretrained reads this task's checkpoint."""
    from lightning_modules.stages.spynet import SpyNet

    torch.manual_seed(0)
    task = FlowPretrainTask(SpyNet(num_levels=3), functools.partial(torch.optim.Adam, lr=1e-3))
    frames = MovingCrop().clip
    trainer = tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0)
    trainer.fit(task, DataLoader(KnownShiftPairs(), batch_size=2))
    trainer.save_checkpoint(tmp_path / "flow.ckpt")
    fresh = SpyNet(num_levels=3, pretrained=str(tmp_path / "flow.ckpt"))
    with torch.no_grad():
        expected = task.flow(frames[1:], frames[:-1])
        assert torch.equal(fresh(frames[1:], frames[:-1]), expected)
