"""Every documented bad-data case raises DatasetLayoutError naming the file or folder, at
set-up where it can be seen cheaply, otherwise when the frame is read; skip_bad drops and logs."""

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datamodules.datasets import DatasetLayoutError, MissingDataError
from datamodules.datasets.davis import scan_davis
from datamodules.datasets.folder import scan_folder
from datamodules.datasets.nturain import scan_nturain
from datamodules.datasets.rainsyn import scan_rainsyn
from datamodules.datasets.revide import scan_revide
from datamodules.datasets.set8 import scan_set8
from datamodules.datasets.video import scan_video
from datamodules.datasets.vimeo import scan_vimeo
from datamodules.frame_sources import ImageFiles, VideoFrames


def write_frames(folder: Path, names: list[str], height: int = 6, width: int = 8) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name)
    return [folder / name for name in names]


def numbered(count: int, extension: str = ".png") -> list[str]:
    return [f"{index:05d}{extension}" for index in range(1, count + 1)]


def write_vimeo_clip(root: Path, clip: str) -> Path:
    return write_frames(root / "sequences" / clip, [f"im{i}.png" for i in range(1, 8)])[0].parent


@pytest.mark.parametrize(
    "scan",
    [
        lambda root: scan_vimeo(root),
        lambda root: scan_davis(root),
        lambda root: scan_set8(root),
        lambda root: scan_nturain(root),
        lambda root: scan_rainsyn(root),
        lambda root: scan_revide(root),
        lambda root: scan_folder(gt_root=root),
        lambda root: scan_folder(lq_root=root),
    ],
)
def test_missing_root_is_named(tmp_path, scan):
    missing = tmp_path / "not_downloaded"
    with pytest.raises(MissingDataError, match=r"not found: .*not_downloaded") as caught:
        scan(missing)
    assert isinstance(caught.value, FileNotFoundError)


def test_missing_list_file(tmp_path):
    write_vimeo_clip(tmp_path, "00001/0001")
    with pytest.raises(MissingDataError, match=r"list file not found: .*sep_testlist.txt"):
        scan_vimeo(tmp_path, list_file="sep_testlist.txt")
    write_frames(tmp_path / "davis" / "JPEGImages" / "480p" / "bear", numbered(2, ".jpg"))
    (tmp_path / "davis" / "ImageSets" / "2017").mkdir(parents=True)
    with pytest.raises(MissingDataError, match=r"list file not found: .*2017/val.txt"):
        scan_davis(tmp_path / "davis", split="val")


def test_malformed_list_line_is_named(tmp_path):
    write_vimeo_clip(tmp_path, "00001/0001")
    (tmp_path / "sep_trainlist.txt").write_text("00001/0001\n../../etc\n")
    with pytest.raises(DatasetLayoutError, match=r"sep_trainlist.txt, line 2: '\.\./\.\./etc'"):
        scan_vimeo(tmp_path)


def test_listed_clip_missing(tmp_path):
    write_vimeo_clip(tmp_path, "00001/0001")
    (tmp_path / "sep_trainlist.txt").write_text("00001/0001\n00001/0002\n")
    with pytest.raises(MissingDataError, match=r"clip 00001/0002 listed in sep_trainlist.txt"):
        scan_vimeo(tmp_path)
    davis = tmp_path / "davis"
    write_frames(davis / "JPEGImages" / "480p" / "bear", numbered(2, ".jpg"))
    (davis / "ImageSets" / "2017").mkdir(parents=True)
    (davis / "ImageSets" / "2017" / "train.txt").write_text("bear\ncows\n")
    with pytest.raises(MissingDataError, match=r"'cows' listed in .*train.txt not found"):
        scan_davis(davis, split="train")


def test_missing_frame_inside_a_clip(tmp_path):
    clip = write_vimeo_clip(tmp_path, "00001/0001")
    (clip / "im4.png").unlink()
    (tmp_path / "sep_trainlist.txt").write_text("00001/0001\n")
    with pytest.raises(MissingDataError, match=r"missing frame .*00001/0001/im4.png"):
        scan_vimeo(tmp_path)
    seq = tmp_path / "set8" / "tractor"
    write_frames(seq, numbered(5))
    (seq / "00003.png").unlink()
    with pytest.raises(MissingDataError, match=r"missing frame .*tractor/00003.png"):
        scan_set8(tmp_path / "set8")


def test_frame_deleted_after_setup_is_named_on_read(tmp_path):
    paths = write_frames(tmp_path, numbered(3))
    source = ImageFiles(paths)
    paths[1].unlink()
    with pytest.raises(MissingDataError, match=r"frame file not found: .*00002.png"):
        source.read([0, 1])


def test_garbage_image_is_named_at_setup_and_on_read(tmp_path):
    lq = write_frames(tmp_path / "lq" / "seq", numbered(3))
    write_frames(tmp_path / "gt" / "seq", numbered(3))
    lq[0].write_bytes(b"this is not a PNG file at all")
    with pytest.raises(DatasetLayoutError, match=r"cannot decode frame .*lq/seq/00001.png"):
        scan_folder(gt_root=tmp_path / "gt", lq_root=tmp_path / "lq")  # header read at set-up
    source = ImageFiles(write_frames(tmp_path / "other", numbered(3)))
    source.paths[2].write_bytes(b"\x89PNG garbage")
    with pytest.raises(DatasetLayoutError, match=r"cannot decode frame .*other/00003.png"):
        source.read([0, 1, 2])


def test_truncated_png_is_named_on_read(tmp_path):
    paths = write_frames(tmp_path, numbered(2), height=64, width=64)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) // 2])
    source = ImageFiles(paths)
    assert source.read([0]).shape == (1, 3, 64, 64)
    with pytest.raises(DatasetLayoutError, match=r"cannot decode frame .*00002.png.*truncated"):
        source.read([1])


def test_frame_of_another_size_inside_a_sequence(tmp_path):
    paths = write_frames(tmp_path, numbered(2))
    write_frames(tmp_path, ["00003.png"], height=7)
    source = ImageFiles([*paths, tmp_path / "00003.png"])
    with pytest.raises(DatasetLayoutError, match=r"frame .*00003.png is 8x7 .*00001.png is 8x6"):
        source.read([0, 2])


def test_lq_gt_count_mismatch(tmp_path):
    write_frames(tmp_path / "input" / "1", numbered(3))
    write_frames(tmp_path / "processed" / "1", numbered(4))  # clean 00004 has no partner
    with pytest.raises(DatasetLayoutError, match=r"3 degraded frames in .*input/1 but 4 clean"):
        scan_rainsyn(tmp_path, split=None)


def test_lq_gt_size_mismatch(tmp_path):
    write_frames(tmp_path / "Test" / "hazy" / "W002", numbered(2, ".JPG"), height=6)
    write_frames(tmp_path / "Test" / "gt" / "W002", numbered(2, ".JPG"), height=12)
    with pytest.raises(DatasetLayoutError, match=r"hazy/W002 are 8x6 .*gt/W002 are 8x12"):
        scan_revide(tmp_path, split="Test")


def test_sequence_shorter_than_clip_length(tmp_path):
    write_frames(tmp_path / "a1_Rain", numbered(4))
    write_frames(tmp_path / "a1_GT", numbered(4))
    assert len(scan_nturain(tmp_path, min_len=4)) == 1
    with pytest.raises(DatasetLayoutError, match=r"'a1' in .*a1.* has 4 frames but at least 5"):
        scan_nturain(tmp_path, min_len=5)


def test_unreadable_and_missing_video(tmp_path):
    garbage = tmp_path / "broken.mp4"
    garbage.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\xff" * 200)
    with pytest.raises(DatasetLayoutError, match=r"cannot read video .*broken.mp4"):
        scan_video(garbage)
    with pytest.raises(DatasetLayoutError, match=r"cannot read video .*broken.mp4"):
        VideoFrames(garbage)
    with pytest.raises(MissingDataError, match=r"video file not found: .*absent.mp4"):
        scan_video(tmp_path / "absent.mp4")


def test_skip_bad_drops_and_logs_each_bad_sequence(tmp_path, caplog):
    write_frames(tmp_path / "lq" / "good", numbered(3))
    write_frames(tmp_path / "gt" / "good", numbered(3))
    write_frames(tmp_path / "lq" / "short", numbered(2))
    write_frames(tmp_path / "gt" / "short", numbered(2))
    write_frames(tmp_path / "lq" / "unpaired", numbered(3))
    write_frames(tmp_path / "lq" / "sizes", numbered(3))
    write_frames(tmp_path / "gt" / "sizes", numbered(3), height=9)
    roots = {"gt_root": tmp_path / "gt", "lq_root": tmp_path / "lq"}
    with pytest.raises(DatasetLayoutError):
        scan_folder(**roots, min_len=3)
    with caplog.at_level(logging.WARNING, logger="datamodules.datasets"):
        kept = scan_folder(**roots, min_len=3, skip_bad=True)
    assert [s.name for s in kept] == ["good"]
    for name in ("short", "unpaired", "sizes"):
        assert f"dropping sequence {name}" in caplog.text
    assert "dropped 3 of 4 sequences" in caplog.text


def test_skip_bad_with_nothing_left_is_still_an_error(tmp_path):
    write_frames(tmp_path / "seq", numbered(2))
    with pytest.raises(DatasetLayoutError, match=r"no usable sequence .*\(1 dropped as bad\)"):
        scan_set8(tmp_path, min_len=3, skip_bad=True)
