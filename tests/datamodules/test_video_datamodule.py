"""VideoDataModule over the sample scanners, and conf/data/sample.yaml through Hydra."""

from functools import partial
from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import OmegaConf

from datamodules.sample import scan_sample
from datamodules.video_datamodule import VideoDataModule
from lightning_modules.run.resolvers import register_resolvers

CONF = Path(__file__).resolve().parents[2] / "conf" / "data" / "sample.yaml"
KEYS = {"lq", "gt", "sigma", "name", "frame_idx"}


def _datamodule(**overrides):
    small = partial(scan_sample, num_frames=4, size=(24, 32))
    args = {
        "train_sequences": partial(small, "train", num_sequences=2),
        "val_sequences": partial(small, "val", num_sequences=2),
        "test_sequences": partial(small, "test", num_sequences=1),
        "clip_len": 3,
        "patch_size": 16,
        "batch_size": 2,
        "val_batch_size": 2,
        "test_sigmas": [10, 30],
    }
    return VideoDataModule(**{**args, **overrides})


def test_batches_follow_the_documented_contract():
    datamodule = _datamodule()
    assert (datamodule.task, datamodule.metric_space) == ("denoise", "rgb")
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert set(batch) == KEYS
    assert batch["lq"].shape == batch["gt"].shape == (2, 3, 3, 16, 16)
    assert batch["frame_idx"].shape == (2, 3) and batch["frame_idx"].dtype == torch.long
    assert (
        batch["sigma"].shape == (2,)
        and ((batch["sigma"] >= 0) & (batch["sigma"] <= 50 / 255)).all()
    )
    assert len(batch["name"]) == 2 and batch["name"][0].startswith("sample-train/")
    val = next(iter(datamodule.val_dataloader()))
    assert val["lq"].shape == (2, 4, 3, 24, 32)  # whole sequence, full frame
    torch.testing.assert_close(val["sigma"], torch.full((2,), 25 / 255))
    datamodule.setup("test")
    test = [b for b in datamodule.test_dataloader()]
    sigmas = torch.cat([b["sigma"] for b in test]) * 255
    torch.testing.assert_close(sigmas, torch.tensor([10.0, 30.0]))


def test_training_batches_repeat_with_the_seeds():
    def first_batch(seed):
        datamodule = _datamodule(seed=seed)
        datamodule.setup("fit")
        torch.manual_seed(0)
        return next(iter(datamodule.train_dataloader()))

    a, b, c = first_batch(0), first_batch(0), first_batch(1)
    assert torch.equal(a["lq"], b["lq"]) and a["name"] == b["name"]
    assert not torch.equal(a["lq"], c["lq"])


def test_rain_and_haze_datamodules():
    for degradation, task in (("rain", "derain"), ("haze", "dehaze")):
        datamodule = _datamodule(degradation=degradation)
        assert datamodule.task == task
        datamodule.setup("test")
        batch = next(iter(datamodule.test_dataloader()))
        assert (batch["sigma"] == 0).all() and len(datamodule.datasets["test"]) == 1
        assert (batch["lq"] - batch["gt"]).abs().mean() > 0.01


def test_loader_options_and_val_subsets():
    datamodule = _datamodule(num_workers=2, max_val_clips=1)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    assert loader.persistent_workers and loader.num_workers == 2 and loader.worker_init_fn
    assert len(datamodule.datasets["val"]) == 1
    no_val = _datamodule(val_sequences=None)
    no_val.setup("fit")
    assert no_val.val_dataloader() == []


def test_bad_configuration_errors():
    with pytest.raises(ValueError, match="degradation must be one of noise, rain, haze, none"):
        _datamodule(degradation="snow")
    with pytest.raises(ValueError, match="makes a derain set but task is 'denoise'"):
        _datamodule(degradation="rain", task="denoise")
    with pytest.raises(ValueError, match="task must be given"):
        _datamodule(degradation="none")
    with pytest.raises(ValueError, match="metric_space"):
        _datamodule(metric_space="lab")
    with pytest.raises(ValueError, match="batch_size"):
        _datamodule(batch_size=0)
    with pytest.raises(ValueError, match="stage 'fit' needs train_sequences"):
        _datamodule(train_sequences=None).setup("fit")
    with pytest.raises(ValueError, match="the val scanner .* returned no sequences"):
        _datamodule(val_sequences=lambda: []).setup("validate")
    with pytest.raises(RuntimeError, match="call setup"):
        _datamodule().train_dataloader()


def test_sample_yaml_instantiates_and_switches_degradation():
    register_resolvers()  # the task follows the degradation through ${task_of:...}
    cfg = OmegaConf.load(CONF)
    for split in ("train_sequences", "val_sequences", "test_sequences"):
        cfg[split].num_frames = 4
    cfg.train_sequences.num_sequences = 2
    cfg.merge_with_dotlist(["degradation=haze", "clip_len=3", "batch_size=2"])
    datamodule = hydra.utils.instantiate(cfg)
    assert isinstance(datamodule, VideoDataModule) and datamodule.task == "dehaze"
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert set(batch) == KEYS and batch["lq"].shape == (2, 3, 3, 64, 64)


def test_data_config_anchors_are_accepted():
    datamodule = _datamodule(root="/datasets/x", train_list="a.txt", test_list="b.txt")
    assert (datamodule.root, datamodule.train_list, datamodule.test_list) == (
        "/datasets/x",
        "a.txt",
        "b.txt",
    )
    with pytest.raises(TypeError, match="bach_size"):
        _datamodule(bach_size=2)
