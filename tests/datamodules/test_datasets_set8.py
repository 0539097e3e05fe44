"""Set8: one folder per sequence, frames in natural order whatever their naming."""

from pathlib import Path

import hydra
import numpy as np
import pytest
from PIL import Image

from datamodules.datasets.set8 import scan_set8
from tests.datamodules.dataset_helpers import check_datamodule_keys, data_config


def write_frames(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True)
    for index, name in enumerate(names):
        Image.fromarray(np.full((6, 8, 3), index, np.uint8)).save(folder / name)


def frame_values(sequence) -> list[int]:
    clip = sequence.gt.read(range(len(sequence)))
    return [round(float(v) * 255) for v in clip[:, 0, 0, 0]]


def test_shared_hypersmooth_ten_frames_in_natural_order(shared_data):
    (sequence,) = scan_set8(shared_data / "set8")
    assert sequence.name == "hypersmooth" and len(sequence) == 10
    names = [Path(sequence.gt.describe(i)).name for i in range(10)]
    assert names == [f"{i:02d}.png" for i in range(1, 11)]
    assert sequence.gt.frame_size == (540, 960)


@pytest.mark.parametrize(
    "names",
    [
        [f"{i:02d}.png" for i in range(1, 11)],
        [f"{i:05d}.png" for i in range(0, 12)],
        [f"frame_{i}.jpg" for i in range(1, 12)],
    ],
)
def test_any_naming_is_read_in_natural_order(tmp_path, names):
    shuffled = list(reversed(names))  # creation order must not matter
    write_frames(tmp_path / "seq", shuffled)
    (sequence,) = scan_set8(tmp_path)
    read_names = [Path(sequence.gt.describe(i)).name for i in range(len(sequence))]
    assert read_names == names
    # frame written k-th (value k) sits at its natural position
    assert frame_values(sequence) == [shuffled.index(name) for name in names]


def test_sequences_and_max_frames_select(tmp_path):
    write_frames(tmp_path / "tractor", [f"{i:05d}.png" for i in range(6)])
    write_frames(tmp_path / "rafting", [f"{i:05d}.png" for i in range(4)])
    sequences = scan_set8(tmp_path, max_frames=5)
    assert [(s.name, len(s)) for s in sequences] == [("rafting", 4), ("tractor", 5)]
    (only,) = scan_set8(tmp_path, sequences=["tractor"])
    assert len(only) == 6


def test_config_is_test_only(shared_data):
    config = data_config("set8", shared_data)
    config.root = str(shared_data / "set8")
    check_datamodule_keys(config)
    assert config.train_sequences is None
    (sequence,) = hydra.utils.instantiate(config.test_sequences)()
    assert sequence.name == "hypersmooth"
