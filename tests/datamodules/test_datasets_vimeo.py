"""Vimeo-90K septuplet: clips come only from the list file, 7 frames each, in order."""

import logging
from pathlib import Path

import hydra
import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.datasets import MissingDataError
from datamodules.datasets.vimeo import scan_vimeo
from tests.datamodules.dataset_helpers import check_datamodule_keys, data_config


def write_clip(root: Path, clip: str, folder: str = "sequences", value: int = 0) -> None:
    clip_dir = root / folder / clip
    clip_dir.mkdir(parents=True)
    for index in range(1, 8):
        pixels = np.full((8, 12, 3), value + index, dtype=np.uint8)
        Image.fromarray(pixels).save(clip_dir / f"im{index}.png")


def test_shared_subset_lists_give_exactly_the_listed_clips(shared_data):
    root = shared_data / "vimeo90k_septuplet"
    train = scan_vimeo(root, list_file="subset_trainlist.txt")
    assert [s.name for s in train] == [f"00001/000{i}" for i in range(1, 7)]
    assert all(len(s) == 7 and s.lq is None for s in train)
    test = scan_vimeo(root, list_file="subset_testlist.txt")
    assert [s.name for s in test] == ["00002/0004"]
    clip = test[0].gt.read(range(7))
    assert clip.shape == (7, 3, 256, 448)
    assert [Path(test[0].gt.describe(i)).name for i in range(7)] == [
        f"im{i}.png" for i in range(1, 8)
    ]


def test_official_list_names_first_missing_clip_or_keeps_present_ones(shared_data, caplog):
    root = shared_data / "vimeo90k_septuplet"
    with pytest.raises(MissingDataError, match=r"clip 00001/0007 listed in sep_trainlist.txt"):
        scan_vimeo(root)  # the sample holds 6 of the 64,612 listed clips
    with caplog.at_level(logging.WARNING):
        kept = scan_vimeo(root, skip_bad=True)
    assert [s.name for s in kept] == [f"00001/000{i}" for i in range(1, 7)]
    assert "dropped 64606 of 64612" in caplog.text


def test_unlisted_folder_is_not_picked_up(tmp_path):
    for clip in ("00001/0001", "00001/0002", "00003/0010"):
        write_clip(tmp_path, clip)
    (tmp_path / "sep_trainlist.txt").write_text("00001/0002\n\n00003/0010\n")
    sequences = scan_vimeo(tmp_path)
    assert [s.name for s in sequences] == ["00001/0002", "00003/0010"]


def test_frames_are_im1_to_im7_in_order(tmp_path):
    write_clip(tmp_path, "00001/0001", value=10)
    (tmp_path / "my_list.txt").write_text("00001/0001 7 (256,448,3)\n")  # BasicSR meta format
    (sequence,) = scan_vimeo(tmp_path, list_file=tmp_path / "my_list.txt")
    clip = sequence.gt.read(range(7))
    values = clip[:, 0, 0, 0] * 255
    torch.testing.assert_close(values, torch.arange(11, 18, dtype=torch.float32))


def test_degraded_tree_pairs_with_clean_clips(tmp_path):
    write_clip(tmp_path, "00001/0001", value=0)
    write_clip(tmp_path, "00001/0001", folder="input", value=100)
    (tmp_path / "sep_testlist.txt").write_text("00001/0001\n")
    (sequence,) = scan_vimeo(tmp_path, list_file="sep_testlist.txt", lq_dir="input")
    assert sequence.lq.read([0])[0, 0, 0, 0] * 255 == pytest.approx(101)
    assert sequence.gt.read([0])[0, 0, 0, 0] * 255 == pytest.approx(1)


def test_config_scanners_follow_root_and_lists(shared_data):
    config = data_config("vimeo", shared_data)
    assert config.root == f"{shared_data}/vimeo_septuplet"
    config.root = str(shared_data / "vimeo90k_septuplet")  # the sample's folder name
    config.train_list, config.test_list = "subset_trainlist.txt", "subset_testlist.txt"
    check_datamodule_keys(config)
    train = hydra.utils.instantiate(config.train_sequences)()
    assert len(train) == 6 and config.train_sequences.min_len == config.clip_len
    assert [s.name for s in hydra.utils.instantiate(config.test_sequences)()] == ["00002/0004"]
