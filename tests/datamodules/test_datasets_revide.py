"""REVIDE: Train/Test (any case), hazy/ with gt/ or clear/, .JPG or .jpg frames."""

from pathlib import Path

import hydra
import numpy as np
import pytest
from PIL import Image

from datamodules.datasets import MissingDataError
from datamodules.datasets.revide import scan_revide
from tests.datamodules.dataset_helpers import check_datamodule_keys, data_config


def write_frames(folder: Path, count: int, value: int, extension: str) -> None:
    folder.mkdir(parents=True)
    for index in range(1, count + 1):
        pixels = np.full((6, 8, 3), value + 10 * index, np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:05d}{extension}", format="PNG")


@pytest.mark.parametrize(
    ("split_folder", "gt_name", "hazy_ext", "gt_ext"),
    [
        ("Train", "gt", ".JPG", ".JPG"),
        ("train", "clear", ".jpg", ".jpg"),
        ("Test", "gt", ".JPG", ".jpg"),  # mixed case still pairs by stem
    ],
)
def test_layout_variants(tmp_path, split_folder, gt_name, hazy_ext, gt_ext):
    level = tmp_path / "REVIDE_indoor" / split_folder
    for video in ("W002", "E005"):
        write_frames(level / "hazy" / video, 3, value=100, extension=hazy_ext)
        write_frames(level / gt_name / video, 3, value=0, extension=gt_ext)
    split = "test" if split_folder.lower() == "test" else "train"
    sequences = scan_revide(tmp_path / "REVIDE_indoor", split=split)
    assert [s.name for s in sequences] == ["E005", "W002"]
    hazy, clear = sequences[1].lq.read([0, 2]), sequences[1].gt.read([0, 2])
    assert [round(float(v) * 255) for v in hazy[:, 0, 0, 0]] == [110, 130]
    assert [round(float(v) * 255) for v in clear[:, 0, 0, 0]] == [10, 30]


def test_train_and_test_are_kept_apart(tmp_path):
    for split, video in (("Train", "A"), ("Test", "B")):
        write_frames(tmp_path / split / "hazy" / video, 2, 0, ".JPG")
        write_frames(tmp_path / split / "gt" / video, 2, 0, ".JPG")
    assert [s.name for s in scan_revide(tmp_path, split="Train")] == ["A"]
    assert [s.name for s in scan_revide(tmp_path, split="Test")] == ["B"]


def test_missing_split_is_named(tmp_path):
    write_frames(tmp_path / "Train" / "hazy" / "A", 2, 0, ".JPG")
    with pytest.raises(MissingDataError, match=r"no hazy/ folder for split 'Test'"):
        scan_revide(tmp_path, split="Test")
    with pytest.raises(MissingDataError, match=r"Train/gt/ or .*Train/clear/"):
        scan_revide(tmp_path, split="Train")


def test_config_splits(tmp_path):
    config = data_config("revide", tmp_path)
    for split, video in (("Train", "A"), ("Test", "B")):
        write_frames(tmp_path / "REVIDE_indoor" / split / "hazy" / video, 7, 0, ".JPG")
        write_frames(tmp_path / "REVIDE_indoor" / split / "gt" / video, 7, 0, ".JPG")
    check_datamodule_keys(config)
    assert [s.name for s in hydra.utils.instantiate(config.train_sequences)()] == ["A"]
    assert [s.name for s in hydra.utils.instantiate(config.test_sequences)()] == ["B"]
    assert (config.task, config.degradation) == ("dehaze", "none")
