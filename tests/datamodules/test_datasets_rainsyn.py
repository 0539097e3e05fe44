"""RainSynLight25/Complex25: input/<id> pairs with processed/<id> or gt/<id>."""

from pathlib import Path

import hydra
import numpy as np
import pytest
from PIL import Image

from datamodules.datasets import MissingDataError
from datamodules.datasets.rainsyn import scan_rainsyn
from tests.datamodules.dataset_helpers import check_datamodule_keys, data_config


def write_frames(folder: Path, count: int, value: int) -> None:
    folder.mkdir(parents=True)
    for index in range(count):
        Image.fromarray(np.full((6, 8, 3), value + index, np.uint8)).save(folder / f"{index}.png")


@pytest.mark.parametrize("gt_name", ["processed", "gt"])
def test_split_level_and_both_gt_names(tmp_path, gt_name):
    level = tmp_path / "RainSynComplex25" / "video_rain_heavy" / "test"
    for seq in ("1", "2", "10"):
        write_frames(level / "input" / seq, 3, value=100)
        write_frames(level / gt_name / seq, 3, value=0)
    write_frames(tmp_path / "RainSynComplex25" / "video_rain_heavy" / "train" / "input" / "5", 3, 0)
    sequences = scan_rainsyn(tmp_path / "RainSynComplex25", split="test")
    assert [s.name for s in sequences] == ["1", "2", "10"]
    lq, gt = sequences[0].lq.read([2]), sequences[0].gt.read([2])
    assert round(float(lq[0, 0, 0, 0]) * 255) == 102 and round(float(gt[0, 0, 0, 0]) * 255) == 2


def test_without_split_level(tmp_path):
    write_frames(tmp_path / "input" / "a", 2, value=50)
    write_frames(tmp_path / "gt" / "a", 2, value=0)
    (sequence,) = scan_rainsyn(tmp_path, split="test")  # the level is optional
    assert sequence.name == "a" and len(sequence) == 2


def test_missing_gt_folder_is_named(tmp_path):
    write_frames(tmp_path / "train" / "input" / "7", 2, value=0)
    with pytest.raises(MissingDataError, match=r"train/processed/ or .*train/gt/"):
        scan_rainsyn(tmp_path, split="train")
    write_frames(tmp_path / "train" / "processed" / "8", 2, value=0)
    with pytest.raises(MissingDataError, match=r"input/7 has no clean folder .*processed/7"):
        scan_rainsyn(tmp_path, split="train")


def test_config_splits(tmp_path):
    config = data_config("rainsyn", tmp_path)
    level = tmp_path / "RainSynComplex25" / "video_rain_heavy"
    for split in ("train", "test"):
        write_frames(level / split / "input" / f"{split}1", 7, value=50)
        write_frames(level / split / "processed" / f"{split}1", 7, value=0)
    check_datamodule_keys(config)
    assert [s.name for s in hydra.utils.instantiate(config.train_sequences)()] == ["train1"]
    assert [s.name for s in hydra.utils.instantiate(config.test_sequences)()] == ["test1"]
    assert (config.task, config.metric_space) == ("derain", "y")
