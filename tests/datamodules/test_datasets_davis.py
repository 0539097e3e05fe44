"""DAVIS-2017 480p: ImageSets split files when present, every folder otherwise."""

from pathlib import Path

import hydra
import numpy as np
import pytest
from PIL import Image

from datamodules.datasets import MissingDataError
from datamodules.datasets.davis import scan_davis
from tests.datamodules.dataset_helpers import check_datamodule_keys, data_config


def write_sequence(root: Path, name: str, frames: int = 3) -> None:
    folder = root / "JPEGImages" / "480p" / name
    folder.mkdir(parents=True)
    for index in range(frames):
        Image.fromarray(np.full((8, 12, 3), 10 * index, np.uint8)).save(folder / f"{index:05d}.jpg")


def write_image_sets(root: Path, **lists: list[str]) -> None:
    folder = root / "ImageSets" / "2017"
    folder.mkdir(parents=True)
    for split, names in lists.items():
        (folder / f"{split}.txt").write_text("".join(f"{name}\n" for name in names))


def test_shared_sample_three_sequences_of_twenty(shared_data):
    sequences = scan_davis(shared_data / "davis2017_480p")
    assert [s.name for s in sequences] == ["blackswan", "bmx-trees", "car-roundabout"]
    assert [len(s) for s in sequences] == [20, 20, 20]
    assert sequences[0].gt.frame_size == (480, 854)
    assert Path(sequences[0].gt.describe(19)).name == "00019.jpg"


def test_without_image_sets_every_folder_is_a_sequence(tmp_path):
    for name in ("cows", "bear", "dog-10", "dog-2"):
        write_sequence(tmp_path, name)
    names = [s.name for s in scan_davis(tmp_path, split="train")]
    assert names == ["bear", "cows", "dog-2", "dog-10"]  # natural order


def test_image_sets_select_the_split_and_trainval_joins_both(tmp_path):
    for name in ("bear", "cows", "dog", "unlisted"):
        write_sequence(tmp_path, name)
    write_image_sets(tmp_path, train=["bear", "cows"], val=["dog"])
    assert [s.name for s in scan_davis(tmp_path, split="train")] == ["bear", "cows"]
    assert [s.name for s in scan_davis(tmp_path, split="val")] == ["dog"]
    assert [s.name for s in scan_davis(tmp_path, split="trainval")] == ["bear", "cows", "dog"]
    assert len(scan_davis(tmp_path, split=None)) == 4


def test_test_dev_root_with_its_own_list(tmp_path):
    write_sequence(tmp_path, "carousel", frames=5)
    write_image_sets(tmp_path, **{"test-dev": ["carousel"]})
    (sequence,) = scan_davis(tmp_path, split="test-dev", min_len=5)
    assert (sequence.name, len(sequence)) == ("carousel", 5)
    with pytest.raises(MissingDataError, match=r"ImageSets/2017/train.txt"):
        scan_davis(tmp_path, split="trainval")


def test_config_scanners(shared_data):
    config = data_config("davis", shared_data)
    config.root = str(shared_data / "davis2017_480p")
    check_datamodule_keys(config)
    assert len(hydra.utils.instantiate(config.train_sequences)()) == 3
    assert config.test_sequences.root == f"{shared_data}/DAVIS-test-dev"
    assert (config.task, config.degradation) == ("denoise", "noise")
