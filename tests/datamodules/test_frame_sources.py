"""ImageFiles / VideoFrames read the right pixels in the right order; check_pair and
list_frames enforce the set-up contract; natural sorting orders unpadded frame numbers."""

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.frame_sources import (
    DatasetLayoutError,
    ImageFiles,
    MissingDataError,
    VideoFrames,
    check_pair,
    list_frames,
)
from datamodules.natural_sort import natural_key, natural_sorted


def frame_pixels(index: int, height: int = 12, width: int = 16) -> np.ndarray:
    """A deterministic uint8 (H, W, 3) frame that differs per index."""
    rng = np.random.default_rng(index)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def write_png_frames(folder: Path, names: list[str], height: int = 12, width: int = 16):
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(names):
        Image.fromarray(frame_pixels(index, height, width)).save(folder / name)
    return [folder / name for name in names]


def write_video(path: Path, frames: list[np.ndarray], codec: str = "libx264", gop: int = 4):
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p" if codec == "libx264" else "bgr0"  # ffv1 + bgr0: lossless RGB
        stream.gop_size = gop
        if codec == "libx264":
            stream.options = {"crf": "0"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def smooth_frame(index: int, height: int = 32, width: int = 48) -> np.ndarray:
    """Smooth content (gradients + a moving bar) that survives 4:2:0 chroma subsampling."""
    y, x = np.mgrid[0:height, 0:width]
    frame = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 40 + 5 * index)], -1)
    frame[:, (2 * index) % width : (2 * index) % width + 6] = 230
    return frame.astype(np.uint8)


# --- natural order -------------------------------------------------------------------------


def test_natural_sort_orders_unpadded_numbers_numerically():
    names = ["frame_10.jpg", "frame_2.jpg", "frame_1.jpg", "frame_9.jpg"]
    assert natural_sorted(names) == ["frame_1.jpg", "frame_2.jpg", "frame_9.jpg", "frame_10.jpg"]
    assert natural_sorted(["10.png", "9.png", "01.png"]) == ["01.png", "9.png", "10.png"]
    assert natural_sorted([Path("a/x10.png"), Path("b/x2.png")]) == [
        Path("b/x2.png"),
        Path("a/x10.png"),
    ]


def test_natural_key_is_total_on_mixed_text_and_numbers():
    names = ["a", "a1", "A2", "a10", "1", "01", "b", "frame_0_hazy.jpg"]
    ordered = natural_sorted(names)
    assert ordered == sorted(names, key=natural_key)  # no TypeError, deterministic
    assert ordered.index("a1") < ordered.index("A2") < ordered.index("a10")


# --- ImageFiles ----------------------------------------------------------------------------


def test_image_files_read_exact_pixels_in_requested_order(tmp_path):
    paths = write_png_frames(tmp_path, ["00000.png", "00001.png", "00002.png"])
    source = ImageFiles(paths)
    clip = source.read([2, 0, 2])
    assert clip.shape == (3, 3, 12, 16) and clip.dtype == torch.float32
    expected = torch.from_numpy(frame_pixels(2)).permute(2, 0, 1).float() / 255
    assert torch.equal(clip[0], expected) and torch.equal(clip[2], expected)
    assert torch.equal(clip[1], torch.from_numpy(frame_pixels(0)).permute(2, 0, 1).float() / 255)
    assert source.frame_size == (12, 16)
    assert source.describe(1) == str(paths[1])
    assert len(source) == 3


def test_image_files_convert_gray_palette_and_16bit_to_rgb(tmp_path):
    gray = np.arange(12 * 16, dtype=np.uint8).reshape(12, 16)
    Image.fromarray(gray, mode="L").save(tmp_path / "0.png")
    Image.fromarray(gray, mode="L").convert("P").save(tmp_path / "1.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "2.png")
    clip = ImageFiles([tmp_path / f"{i}.png" for i in range(3)]).read([0, 1, 2])
    expected = torch.from_numpy(gray).float() / 255
    for frame in clip:
        for channel in frame:
            torch.testing.assert_close(channel, expected, atol=1e-6, rtol=0)


def test_16bit_colour_pngs_keep_their_16_bits_and_channel_order(tmp_path):
    """PIL cuts 48/64-bit PNGs to 8 bits; the reader must not (values that differ only in the
    low byte stay different)."""
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 65536, size=(12, 16, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "0.png"), rgb[:, :, ::-1])  # OpenCV writes BGR
    rgba = np.concatenate([rgb[:, :, ::-1], np.full((12, 16, 1), 65535, np.uint16)], axis=2)
    cv2.imwrite(str(tmp_path / "1.png"), rgba)
    clip = ImageFiles([tmp_path / "0.png", tmp_path / "1.png"]).read([0, 1])
    expected = torch.from_numpy(rgb.astype(np.float32) / 65535).permute(2, 0, 1)
    for frame in clip:
        torch.testing.assert_close(frame, expected, atol=1e-7, rtol=0)


def test_image_files_reject_bad_indices_and_empty_list(tmp_path):
    source = ImageFiles(write_png_frames(tmp_path, ["0.png", "1.png"]))
    with pytest.raises(IndexError, match="frame index 2 out of range"):
        source.read([0, 2])
    with pytest.raises(ValueError, match="empty"):
        ImageFiles([])


def test_list_frames_natural_order_and_extension_case(tmp_path):
    write_png_frames(tmp_path, ["frame_10.PNG", "frame_9.png", "frame_2.png"])
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / "sub").mkdir()
    names = [path.name for path in list_frames(tmp_path, check_contiguous=False)]
    assert names == ["frame_2.png", "frame_9.png", "frame_10.PNG"]


def test_list_frames_names_the_missing_frame_in_a_gap(tmp_path):
    write_png_frames(tmp_path, ["00001.jpg", "00002.jpg", "00004.jpg"])
    with pytest.raises(MissingDataError, match="missing frame .*00003.jpg"):
        list_frames(tmp_path)
    unpadded = tmp_path / "unpadded"
    write_png_frames(unpadded, ["frame_8_hazy.png", "frame_9_hazy.png", "frame_11_hazy.png"])
    with pytest.raises(MissingDataError, match="frame_10_hazy.png"):
        list_frames(unpadded)


# --- check_pair ----------------------------------------------------------------------------


def test_check_pair_accepts_matching_and_names_both_folders_on_mismatch(tmp_path):
    gt = ImageFiles(write_png_frames(tmp_path / "gt", ["1.png", "2.png"]))
    lq = ImageFiles(write_png_frames(tmp_path / "lq", ["1.png", "2.png"]))
    check_pair(gt, lq, "seq")
    short = ImageFiles(write_png_frames(tmp_path / "short", ["1.png"]))
    with pytest.raises(DatasetLayoutError, match=r"1 degraded frames in .*short.*2 clean.*gt"):
        check_pair(gt, short, "seq")
    big = ImageFiles(write_png_frames(tmp_path / "big", ["1.png", "2.png"], height=14))
    with pytest.raises(DatasetLayoutError, match=r"big are 16x14 .*gt are 16x12"):
        check_pair(gt, big, "seq")


# --- VideoFrames ---------------------------------------------------------------------------


def test_video_frames_count_and_pixels_close_to_source(tmp_path):
    frames = [smooth_frame(i) for i in range(11)]
    path = tmp_path / "clip.mp4"
    write_video(path, frames)
    video = VideoFrames(path)
    assert len(video) == 11
    assert video.frame_size == (32, 48)
    assert video.describe(3) == f"{path}#3"
    clip = video.read(list(range(11)))
    reference = torch.stack([torch.from_numpy(f).permute(2, 0, 1).float() / 255 for f in frames])
    assert clip.shape == (11, 3, 32, 48)
    # lossless luma (crf 0) but 4:2:0 chroma: colours stay within a few levels
    assert (clip - reference).abs().mean() < 0.01
    assert (clip - reference).abs().max() < 0.1


def test_video_frames_random_access_matches_sequential_decode(tmp_path):
    frames = [smooth_frame(i) for i in range(13)]
    path = tmp_path / "clip.mkv"
    write_video(path, frames, codec="ffv1")  # lossless: exact comparison
    video = VideoFrames(path)
    everything = video.read(list(range(13)))
    reference = torch.stack([torch.from_numpy(f).permute(2, 0, 1).float() / 255 for f in frames])
    torch.testing.assert_close(everything, reference, atol=1e-6, rtol=0)
    for start in (0, 5, 9):  # contiguous clips starting between key frames
        torch.testing.assert_close(
            video.read(range(start, start + 4)), everything[start : start + 4]
        )
    torch.testing.assert_close(video.read([12, 0, 7, 7]), everything[[12, 0, 7, 7]])


def test_video_frames_pair_with_image_files_of_the_same_size(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, [smooth_frame(i) for i in range(3)])
    images = ImageFiles(write_png_frames(tmp_path / "gt", ["1.png", "2.png", "3.png"], 32, 48))
    check_pair(images, VideoFrames(path), "clip")
