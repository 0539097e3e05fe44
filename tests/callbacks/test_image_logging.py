"""log_images to CSV, TensorBoard and wandb loggers, and image conversion."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger, WandbLogger

from callbacks.image_logging import log_images, to_uint8_hwc


class RecordingWandbLogger(WandbLogger):
    """A WandbLogger that records log_image calls instead of starting a run."""

    def __init__(self):
        super().__init__(offline=True)
        self.calls = []

    def log_image(self, key, images, step=None, **kwargs):
        self.calls.append((key, images, step, kwargs))


def test_to_uint8_hwc_layouts():
    chw = torch.zeros(3, 4, 5)
    chw[0] = 1.0
    out = to_uint8_hwc(chw)
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [255, 0, 0]
    assert to_uint8_hwc(np.full((4, 5), 0.5)).shape == (4, 5, 3)
    assert to_uint8_hwc(np.array([[float("nan"), 2.0]])).tolist() == [[[0] * 3, [255] * 3]]
    assert to_uint8_hwc(np.full((2, 2, 3), 7, dtype=np.uint8))[0, 0, 0] == 7
    with pytest.raises(ValueError, match="channels"):
        to_uint8_hwc(np.zeros((5, 4, 2)))


def test_log_images_to_every_logger(tmp_path):
    csv = CSVLogger(tmp_path, name="csv")
    tensorboard = TensorBoardLogger(tmp_path, name="tb")
    wandb = RecordingWandbLogger()
    trainer = SimpleNamespace(loggers=[csv, tensorboard, wandb])
    images = {"a": torch.rand(3, 6, 8), "b": np.zeros((6, 8, 3), dtype=np.uint8)}
    log_images(trainer, "val/demo", images, step=12)

    png = tmp_path / "csv" / "version_0" / "images" / "val" / "demo" / "a_step0000012.png"
    assert png.is_file()
    assert np.asarray(Image.open(png)).shape == (6, 8, 3)
    tensorboard.experiment.flush()
    assert list((tmp_path / "tb").rglob("events.out.tfevents*"))
    key, arrays, step, kwargs = wandb.calls[0]
    assert key == "val/demo" and step == 12 and kwargs["caption"] == ["a", "b"]
    assert [a.shape for a in arrays] == [(6, 8, 3), (6, 8, 3)]


def test_log_images_ignores_empty_and_no_loggers(tmp_path):
    log_images(SimpleNamespace(loggers=[]), "val/x", {"a": np.zeros((2, 2))}, step=0)
    log_images(SimpleNamespace(loggers=[CSVLogger(tmp_path)]), "val/x", {}, step=0)
    assert not list(tmp_path.rglob("*.png"))
