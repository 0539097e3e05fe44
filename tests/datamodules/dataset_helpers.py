"""Helpers shared by the dataset-scanner tests (tests/datamodules/test_datasets_*.py).

Import as ``from tests.datamodules.dataset_helpers import ...`` (pytest puts the repository
root on ``sys.path`` through ``pythonpath`` in pyproject.toml).
"""

import inspect
from pathlib import Path

from omegaconf import OmegaConf

from datamodules.video_datamodule import VideoDataModule

REPO_ROOT = Path(__file__).resolve().parents[2]


def data_config(name: str, data_dir: Path):
    """conf/data/<name>.yaml with paths.data_dir set, as the train config composes it."""
    config = OmegaConf.load(REPO_ROOT / "conf" / "data" / f"{name}.yaml")
    return OmegaConf.create({"paths": {"data_dir": str(data_dir)}, "data": config}).data


def check_datamodule_keys(config) -> None:
    """Every key but the layout ones (read by the scanners) is a VideoDataModule argument."""
    accepted = set(inspect.signature(VideoDataModule).parameters)
    layout_keys = {"_target_", "root", "train_list", "test_list"}
    assert set(config) - layout_keys <= accepted, set(config) - layout_keys - accepted
