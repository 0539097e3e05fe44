"""Generic folders: paired sequence folders, clean only, degraded only, a single folder."""

import shutil
from pathlib import Path

import hydra
import numpy as np
import pytest
from PIL import Image

from datamodules.datasets import MissingDataError
from datamodules.datasets.folder import scan_folder
from tests.datamodules.dataset_helpers import check_datamodule_keys, data_config


def write_frames(folder: Path, names: list[str], value: int = 0) -> None:
    folder.mkdir(parents=True)
    for index, name in enumerate(names):
        Image.fromarray(np.full((6, 8, 3), value + index, np.uint8)).save(folder / name)


def test_shared_tennis_pair(shared_data):
    root = shared_data / "tennis_videnn"
    (sequence,) = scan_folder(gt_root=root / "original", lq_root=root / "noisy")
    assert len(sequence) == 10
    assert Path(sequence.lq.describe(9)).name == Path(sequence.gt.describe(9)).name == "0010.png"
    lq, gt = sequence.lq.read([0]), sequence.gt.read([0])
    noise_std = float((lq - gt).std() * 255)
    assert 25 < noise_std < 45  # the documented AWGN pair (sigma about 40, clipped)


def test_shared_hazy_frames_natural_order_frame_10_after_frame_9(shared_data, tmp_path):
    source = shared_data / "gopro_hazy_real" / "input_video_frame"
    (sequence,) = scan_folder(lq_root=source)
    assert [Path(sequence.lq.describe(i)).name for i in range(10)] == [
        f"frame_{i}_hazy.jpg" for i in range(10)
    ]
    folder = tmp_path / "hazy"
    folder.mkdir()
    for index in range(10):
        (folder / f"frame_{index}_hazy.jpg").symlink_to(source / f"frame_{index}_hazy.jpg")
    shutil.copy(source / "frame_0_hazy.jpg", folder / "frame_10_hazy.jpg")
    (sequence,) = scan_folder(lq_root=folder)
    names = [Path(sequence.lq.describe(i)).name for i in range(11)]
    assert names[9:] == ["frame_9_hazy.jpg", "frame_10_hazy.jpg"]
    assert sequence.gt is None


def test_paired_sequence_folders(tmp_path):
    for name in ("walk", "run"):
        write_frames(tmp_path / "lq" / name, ["1.png", "2.png"], value=100)
        write_frames(tmp_path / "gt" / name, ["1.png", "2.png"], value=0)
    write_frames(tmp_path / "gt" / "extra", ["1.png"])  # clean-only extra folder: ignored
    sequences = scan_folder(gt_root=tmp_path / "gt", lq_root=tmp_path / "lq")
    assert [s.name for s in sequences] == ["run", "walk"]
    assert all(s.gt is not None and s.lq is not None for s in sequences)


def test_clean_only_sequences(tmp_path):
    write_frames(tmp_path / "a", ["x1.png", "x2.png", "x3.png"])
    write_frames(tmp_path / "b", ["x1.png", "x2.png"])
    sequences = scan_folder(gt_root=tmp_path, min_len=2)
    assert [(s.name, len(s), s.lq) for s in sequences] == [("a", 3, None), ("b", 2, None)]


def test_mixed_single_and_nested_roots_are_rejected(tmp_path):
    write_frames(tmp_path / "lq", ["1.png"])
    write_frames(tmp_path / "gt" / "seq", ["1.png"])
    with pytest.raises(MissingDataError, match="must both be folders of frames"):
        scan_folder(gt_root=tmp_path / "gt", lq_root=tmp_path / "lq")
    with pytest.raises(ValueError, match="needs gt_root"):
        scan_folder()


def test_config_train_test_pairs(tmp_path):
    config = data_config("folder", tmp_path)
    for split in ("train", "test"):
        names = [f"{i}.png" for i in range(7)]
        write_frames(tmp_path / "folder" / split / "lq" / "seq", names, value=9)
        write_frames(tmp_path / "folder" / split / "gt" / "seq", names)
    check_datamodule_keys(config)
    (train,) = hydra.utils.instantiate(config.train_sequences)()
    assert train.lq is not None and train.gt is not None
    config.train_sequences.lq_root = None  # clean only: the datamodule degrades it
    (clean,) = hydra.utils.instantiate(config.train_sequences)()
    assert clean.lq is None
