"""The image callbacks in a real (tiny) Lightning run: PNGs from CSVLogger, TensorBoard events."""

import functools
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, Dataset

from callbacks import CodecMaps, FlowViews, RestorationStrips
from callbacks.validation_visuals import clip_visuals
from lightning_modules.stages.network import NetworkOutput
from lightning_modules.tasks.flow_pretrain_task import FlowPretrainTask
from lightning_modules.tasks.restoration_task import RestorationTask
from tests.lightning_helpers import one_intra_op_thread, tiny_trainer  # noqa: F401 (autouse)

H, W, T = 16, 24, 3


class TinyNet(nn.Module):
    """Stand-in for VideoRestorationNet: conv residual; latent maps at 1/4 size when has_codec."""

    noise_channel = False

    def __init__(self, has_codec: bool = True) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 3, 3, padding=1)
        self.flow = nn.Conv2d(3, 2, 3, padding=1)
        self.has_codec = has_codec
        self.return_maps_calls = 0

    def forward(self, lq, noise_level=None, return_maps=False):
        b, t = lq.shape[:2]
        frames = lq.flatten(0, 1)
        restored = (frames + self.body(frames)).view_as(lq)
        bpp = (self.body.weight**2).mean()
        maps = []
        if return_maps:
            self.return_maps_calls += 1
            flow = self.flow(frames).detach().view(b, t, 2, H, W)
            for i in range(t):
                frame_maps = {"flow": flow[:, i], "flow_refined": flow[:, i] * 0.5}
                if self.has_codec:
                    latent = torch.randn(b, 6, H // 4, W // 4)
                    frame_maps.update(
                        q=latent.abs() + 0.5,
                        mu=latent,
                        sigma=latent.abs() + 0.11,
                        bits=latent.abs() * 4,
                    )
                maps.append(frame_maps)
        zero = bpp * 0
        return NetworkOutput(restored, zero, zero, bpp, bpp, zero, maps)


class Clips(Dataset):
    def __init__(self, count=2):
        gen = torch.Generator().manual_seed(0)
        self.gt = torch.rand(count, T, 3, H, W, generator=gen)

    def __len__(self):
        return len(self.gt)

    def __getitem__(self, i):
        return {
            "lq": (self.gt[i] + 0.1).clamp(0, 1),
            "gt": self.gt[i],
            "sigma": 0.0,
            "name": f"clip{i}",
            "frame_idx": torch.arange(T),
        }


def _fit(tmp_path, module, callbacks, max_epochs=1):
    csv = CSVLogger(tmp_path, name="csv")
    tensorboard = TensorBoardLogger(tmp_path, name="tb")
    trainer = tiny_trainer(
        tmp_path,
        max_epochs=max_epochs,
        limit_train_batches=1,
        limit_val_batches=2,
        num_sanity_val_steps=1,
        logger=[csv, tensorboard],
        callbacks=callbacks,
    )
    loader = DataLoader(Clips(), batch_size=1)
    trainer.fit(module, loader, loader)
    return trainer, csv


def _pngs(csv: CSVLogger, key: str) -> dict[str, np.ndarray]:
    folder = Path(csv.log_dir, "images", *key.split("/"))
    return {p.name.split("_step")[0]: np.asarray(Image.open(p)) for p in folder.glob("*.png")}


def _task(net):
    return RestorationTask(net, functools.partial(torch.optim.Adam, lr=1e-3))


def test_strips_codec_maps_and_flow_views_are_logged(tmp_path):
    torch.manual_seed(0)
    net = TinyNet()
    callbacks = [RestorationStrips(max_frames=2), CodecMaps(), FlowViews()]
    _, csv = _fit(tmp_path, _task(net), callbacks)
    assert net.return_maps_calls == 1  # once per validation epoch, not during the sanity check

    strips = _pngs(csv, "val/strips")
    assert set(strips) == {"strip"}
    assert strips["strip"].shape == (2 * H, 3 * W, 3)  # 2 frames x (degraded|restored|clean)
    codec = _pngs(csv, "val/codec_maps")
    assert set(codec) == {"q", "mu", "sigma", "bits"}
    assert all(img.shape == (H, W, 3) for img in codec.values())
    assert all(img.std() > 0 for img in codec.values())  # random latents: not a flat image
    flow = _pngs(csv, "val/flow")
    assert set(flow) == {"flow", "flow_refined", "refinement"}
    assert all(img.shape == (H, W, 3) for img in flow.values())
    assert list((tmp_path / "tb").rglob("events.out.tfevents*"))


def test_strip_content_matches_the_clip(tmp_path):
    torch.manual_seed(0)
    net = TinyNet()
    task = _task(net)
    _, csv = _fit(tmp_path, task, [RestorationStrips(max_frames=5)])
    strip = _pngs(csv, "val/strips")["strip"]
    assert strip.shape == (T * H, 3 * W, 3)  # max_frames is capped by the clip length
    gt = Clips()[0]["gt"]
    expected = np.round(gt[1].permute(1, 2, 0).numpy() * 255)
    assert np.abs(strip[H : 2 * H, 2 * W :].astype(float) - expected).max() <= 1


def test_codec_maps_skip_codec_free_nets_and_schedule_is_respected(tmp_path):
    net = TinyNet(has_codec=False)
    _, csv = _fit(
        tmp_path,
        _task(net),
        [CodecMaps(every_n_epochs=2), FlowViews(every_n_epochs=2)],
        max_epochs=3,
    )
    assert _pngs(csv, "val/codec_maps") == {}
    steps = sorted(p.name for p in (tmp_path / "csv").rglob("flow_step*.png"))
    assert steps == ["flow_step0000001.png", "flow_step0000003.png"]  # epochs 0 and 2
    assert net.return_maps_calls == 2


def test_no_maps_are_computed_without_callbacks(tmp_path):
    net = TinyNet()
    _fit(tmp_path, _task(net), [])
    assert net.return_maps_calls == 0


def test_clip_visuals_of_the_first_clip_detached_on_cpu():
    net = TinyNet()
    task = _task(net)
    batch = next(iter(DataLoader(Clips(), batch_size=2)))
    visuals = clip_visuals(task, batch)
    assert visuals.lq.shape == visuals.restored.shape == visuals.gt.shape == (T, 3, H, W)
    assert visuals.name == "clip0" and visuals.restored.device.type == "cpu"
    assert not visuals.restored.requires_grad
    assert len(visuals.maps) == T and visuals.maps[0]["q"].shape == (6, H // 4, W // 4)
    assert clip_visuals(task, batch) is visuals and net.return_maps_calls == 1  # shared
    assert clip_visuals(pl.LightningModule(), batch) is None  # neither net nor flow


class Translation(nn.Module):
    def __init__(self):
        super().__init__()
        self.shift = nn.Parameter(torch.tensor([0.5, -0.25]))

    def forward(self, ref, supp):
        return self.shift.view(1, 2, 1, 1).expand(ref.shape[0], 2, *ref.shape[-2:])


def test_flow_views_work_with_the_flow_task(tmp_path):
    task = FlowPretrainTask(
        Translation(), functools.partial(torch.optim.Adam, lr=1e-3), supervision="photometric"
    )
    _, csv = _fit(tmp_path, task, [FlowViews(), RestorationStrips(), CodecMaps()])
    flow = _pngs(csv, "val/flow")
    assert set(flow) == {"flow"} and flow["flow"].shape == (H, W, 3)
    assert _pngs(csv, "val/strips") == {} and _pngs(csv, "val/codec_maps") == {}


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_bad_schedule(bad):
    with pytest.raises(ValueError, match="every_n_epochs"):
        RestorationStrips(every_n_epochs=bad)
