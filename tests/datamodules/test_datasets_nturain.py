"""NTURain: <seq>_Rain pairs with <seq>_GT by file name; real rain has no GT."""

from pathlib import Path

import hydra
import numpy as np
import pytest
from PIL import Image

from datamodules.datasets import MissingDataError
from datamodules.datasets.nturain import scan_nturain
from tests.datamodules.dataset_helpers import check_datamodule_keys, data_config


def write_frames(folder: Path, count: int, value: int) -> None:
    folder.mkdir(parents=True)
    for index in range(1, count + 1):
        pixels = np.full((6, 8, 3), value + index, np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:05d}.png")


def test_shared_a1_pair_and_ra1_real_rain(shared_data):
    root = shared_data / "nturain"
    (paired,) = scan_nturain(root)
    assert paired.name == "a1" and len(paired) == 20
    for index in (0, 19):
        assert Path(paired.lq.describe(index)).name == Path(paired.gt.describe(index)).name
        assert Path(paired.lq.describe(index)).parent.name == "a1_Rain"
        assert Path(paired.gt.describe(index)).parent.name == "a1_GT"
    (real,) = scan_nturain(root, unpaired="only")
    assert (real.name, real.gt, len(real)) == ("ra1", None, 20)
    assert real.lq.frame_size == (480, 640)
    assert {s.name for s in scan_nturain(root, unpaired="include")} == {"a1", "ra1"}


def test_training_renderings_share_one_gt(tmp_path):
    root = tmp_path / "Dataset_Training_Synthetic"
    write_frames(root / "t1_GT", 4, value=0)
    write_frames(root / "t1_Rain_01", 4, value=100)
    write_frames(root / "t1_Rain_02", 4, value=150)
    write_frames(root / "t1_spacCNN", 4, value=200)  # a method's output: ignored
    sequences = scan_nturain(tmp_path)
    assert [s.name for s in sequences] == ["t1_01", "t1_02"]
    first, second = sequences
    assert first.gt.paths == second.gt.paths
    assert round(float(second.lq.read([0])[0, 0, 0, 0]) * 255) == 151
    assert round(float(second.gt.read([0])[0, 0, 0, 0]) * 255) == 1


def test_rain_frame_without_gt_frame_is_named(tmp_path):
    write_frames(tmp_path / "b1_Rain", 3, value=0)
    write_frames(tmp_path / "b1_GT", 3, value=0)
    (tmp_path / "b1_GT" / "00003.png").unlink()  # last clean frame gone
    with pytest.raises(MissingDataError, match=r"00003.png has no clean frame .*b1_GT/00003.png"):
        scan_nturain(tmp_path)
    (tmp_path / "b1_GT" / "00002.png").rename(tmp_path / "b1_GT" / "00003.png")  # now a gap
    with pytest.raises(MissingDataError, match=r"missing frame .*b1_GT/00002.png"):
        scan_nturain(tmp_path)


def test_bad_unpaired_mode_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unpaired must be one of"):
        scan_nturain(tmp_path, unpaired="yes")


def test_config_pairs_and_metric_space(tmp_path):
    config = data_config("nturain", tmp_path)
    write_frames(tmp_path / "NTURain" / "Dataset_Training_Synthetic" / "t1_GT", 7, value=0)
    write_frames(tmp_path / "NTURain" / "Dataset_Training_Synthetic" / "t1_Rain_01", 7, value=9)
    write_frames(tmp_path / "NTURain" / "Dataset_Testing_Synthetic" / "a1_GT", 3, value=0)
    write_frames(tmp_path / "NTURain" / "Dataset_Testing_Synthetic" / "a1_Rain", 3, value=9)
    check_datamodule_keys(config)
    assert [s.name for s in hydra.utils.instantiate(config.train_sequences)()] == ["t1_01"]
    assert [s.name for s in hydra.utils.instantiate(config.test_sequences)()] == ["a1"]
    assert (config.task, config.metric_space, config.degradation) == ("derain", "y", "none")
