"""Video files as sequences: degraded input, clean footage, or a degraded/clean pair."""

from pathlib import Path

import av
import hydra
import numpy as np
import pytest
import torch

from datamodules.datasets import DatasetLayoutError
from datamodules.datasets.video import scan_video
from tests.datamodules.dataset_helpers import check_datamodule_keys, data_config


def write_video(path: Path, count: int, height: int = 16, width: int = 24, shift: int = 0) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.height, stream.width, stream.pix_fmt = height, width, "bgr0"
        for index in range(count):
            pixels = np.full((height, width, 3), 10 * index + shift, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_single_video_is_a_degraded_sequence(tmp_path):
    write_video(tmp_path / "street.mp4", 6)
    (sequence,) = scan_video(tmp_path / "street.mp4")
    assert (sequence.name, len(sequence), sequence.gt) == ("street", 6, None)
    values = sequence.lq.read(range(6))[:, 0, 0, 0] * 255
    torch.testing.assert_close(values, torch.arange(0, 60, 10, dtype=torch.float32))


def test_clean_footage_and_folder_of_videos(tmp_path):
    write_video(tmp_path / "clip_10.mkv", 3)
    write_video(tmp_path / "clip_2.mkv", 4)
    (tmp_path / "readme.txt").write_text("not a video")
    sequences = scan_video(tmp_path, clean=True)
    assert [(s.name, len(s), s.lq) for s in sequences] == [
        ("clip_2", 4, None),
        ("clip_10", 3, None),
    ]


def test_paired_videos(tmp_path):
    write_video(tmp_path / "noisy.mkv", 5, shift=5)
    write_video(tmp_path / "clean.mkv", 5)
    (sequence,) = scan_video(tmp_path / "noisy.mkv", gt_path=tmp_path / "clean.mkv")
    difference = sequence.lq.read([4]) - sequence.gt.read([4])
    torch.testing.assert_close(difference, torch.full_like(difference, 5 / 255))


def test_paired_videos_must_agree(tmp_path):
    write_video(tmp_path / "noisy.mkv", 5)
    write_video(tmp_path / "short.mkv", 4)
    write_video(tmp_path / "small.mkv", 5, height=8)
    with pytest.raises(DatasetLayoutError, match=r"5 degraded frames in .*noisy.mkv but 4 clean"):
        scan_video(tmp_path / "noisy.mkv", gt_path=tmp_path / "short.mkv")
    with pytest.raises(DatasetLayoutError, match=r"24x16 .*small.mkv are 24x8"):
        scan_video(tmp_path / "noisy.mkv", gt_path=tmp_path / "small.mkv")
    with pytest.raises(ValueError, match="counts must match"):
        scan_video([tmp_path / "noisy.mkv"] * 2, gt_path=tmp_path / "short.mkv")


def test_config_trains_on_clean_footage(tmp_path):
    config = data_config("video", tmp_path)
    (tmp_path / "videos").mkdir()
    write_video(tmp_path / "videos" / "mine.mkv", 8)
    check_datamodule_keys(config)
    (sequence,) = hydra.utils.instantiate(config.train_sequences)()
    assert (sequence.name, len(sequence), sequence.lq) == ("mine", 8, None)
