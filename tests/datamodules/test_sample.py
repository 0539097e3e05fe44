"""Embedded sample set: real bundled photographs moved by a smooth virtual camera."""

import math

import pytest
import torch

from datamodules.sample import (
    SPLIT_PHOTOS,
    TensorFrames,
    camera_path,
    load_photo,
    render_clip,
    scan_sample,
)
from datamodules.sequence import Sequence


@pytest.fixture(scope="module")
def train_sequences():
    return scan_sample("train", num_sequences=4, num_frames=6, size=(48, 64), seed=0)


def test_scan_returns_clean_in_memory_sequences(train_sequences):
    assert len(train_sequences) == 4
    names = [s.name for s in train_sequences]
    assert names == [f"sample-train/{i:02d}_{p}" for i, p in enumerate(SPLIT_PHOTOS["train"])]
    for sequence in train_sequences:
        assert isinstance(sequence, Sequence) and sequence.lq is None and len(sequence) == 6
        frames = sequence.gt.read(list(range(6)))
        assert frames.shape == (6, 3, 48, 64) and frames.dtype == torch.float32
        assert frames.min() >= 0 and frames.max() <= 1


def test_frames_are_photographs_with_smooth_motion(train_sequences):
    for sequence in train_sequences:
        frames = sequence.gt.frames
        # A photograph, not noise: textured, yet neighbouring pixels strongly correlated.
        assert frames.std() > 0.1
        left, right = frames[..., :-1].flatten(), frames[..., 1:].flatten()
        assert torch.corrcoef(torch.stack([left, right]))[0, 1] > 0.8
        # Moving: adjacent frames differ a little, and the motion accumulates over the clip.
        steps = (frames[1:] - frames[:-1]).abs().mean(dim=(1, 2, 3))
        assert (steps > 1e-3).all() and (steps < 0.1).all()
        assert (frames[-1] - frames[0]).abs().mean() > steps.mean()


def test_render_translation_is_an_exact_shift():
    torch.manual_seed(0)
    photo = torch.rand(3, 40, 50)
    # Two frames, the camera moves one pixel right: content moves one pixel left.
    path = torch.tensor(
        [[[1.0, 0, 0], [0, 1.0, 0]], [[1.0, 0, 1.0], [0, 1.0, 0]]], dtype=torch.float64
    )
    frames = render_clip(photo, path, (16, 20))
    torch.testing.assert_close(frames[1, ..., :-1], frames[0, ..., 1:], atol=1e-5, rtol=0)


def test_no_border_shows_even_with_large_motion():
    white = torch.ones(3, 60, 80)
    generator = torch.Generator().manual_seed(0)
    path = camera_path(12, generator, max_shift=6.0, max_rotation=3.0, max_zoom=0.05)
    frames = render_clip(white, path, (32, 48))
    assert frames.min() > 1 - 1e-4  # any zero padding would pull a pixel towards black


def test_camera_path_is_smooth_and_bounded():
    generator = torch.Generator().manual_seed(1)
    path = camera_path(30, generator, max_shift=1.5, max_rotation=0.5, max_zoom=0.01)
    shift = path[:, :, 2]
    assert (shift[1:] - shift[:-1]).abs().max() <= 1.5 + 1e-9
    theta = torch.atan2(path[:, 1, 0], path[:, 0, 0])
    assert (theta[1:] - theta[:-1]).abs().max() <= math.radians(0.5) + 1e-9
    zoom = torch.linalg.det(path[:, :, :2]).sqrt()
    assert (zoom[1:] / zoom[:-1]).sub(1).abs().max() <= 0.01 + 1e-9
    second_difference = shift[2:] - 2 * shift[1:-1] + shift[:-2]
    assert second_difference.abs().max() < 0.5  # smooth: no jumps in velocity


def test_deterministic_and_split_specific():
    a = scan_sample("val", num_sequences=1, num_frames=3, size=(32, 32), seed=0)[0].gt.frames
    b = scan_sample("val", num_sequences=1, num_frames=3, size=(32, 32), seed=0)[0].gt.frames
    c = scan_sample("val", num_sequences=1, num_frames=3, size=(32, 32), seed=1)[0].gt.frames
    test = scan_sample("test", num_sequences=1, num_frames=3, size=(32, 32), seed=0)[0].gt.frames
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, test)
    assert set(SPLIT_PHOTOS["train"]).isdisjoint(SPLIT_PHOTOS["val"] + SPLIT_PHOTOS["test"])


def test_load_photo_and_bad_arguments():
    photo = load_photo("chelsea")
    assert photo.shape == (3, 300, 451) and photo.max() <= 1
    with pytest.raises(ValueError, match="split must be one of"):
        scan_sample("holdout")
    with pytest.raises(ValueError, match="unknown scikit-image photograph 'nope'"):
        scan_sample("train", num_sequences=1, photos=["nope"])
    with pytest.raises(ValueError, match="num_frames >= 1"):
        scan_sample("train", num_frames=0)
    source = TensorFrames(torch.rand(2, 3, 4, 4), "x")
    assert source.describe(1) == "x#1"
    with pytest.raises(IndexError, match=r"frame index 2 out of range \[0, 2\) for 'x'"):
        source.read([2])
