"""Frame sources on disk (image files, video files) and the set-up checks the scanners share.

A frame source (see ``datamodules.sequence.FrameSource``) reads frames by index as float
(T, 3, H, W) tensors in [0, 1]. Every failure is a ``DatasetLayoutError`` naming the file and
what was expected: a missing file (``MissingDataError``, also a ``FileNotFoundError``), a corrupt
or truncated image, an unreadable video, or a frame whose size differs from the first frame's.

Set-up checks are cheap on purpose: sizes come from image headers (PIL reads no pixels for
``Image.open(...).size``) and frame counts from the video container's packet index, so scanning
a whole dataset does not decode it. Pixel-level damage (a truncated PNG body) is reported when
the frame is first read.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from datamodules.natural_sort import natural_sorted

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".y4m", ".gif"}
)

# A numbered frame name: any prefix, one digit run, a suffix without digits (``frame_7_hazy``).
_NUMBERED_STEM = re.compile(r"^(?P<prefix>.*?)(?P<number>\d+)(?P<suffix>\D*)$")


class DatasetLayoutError(ValueError):
    """The data on disk does not match the layout or content the loader expects."""


class MissingDataError(DatasetLayoutError, FileNotFoundError):
    """A root folder, list file, clip folder or frame file that should exist does not."""


def is_image_file(path: Path) -> bool:
    """True for a regular file with a known image extension (case-insensitive: ``.JPG``)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()


def list_frames(folder: Path, check_contiguous: bool = True) -> list[Path]:
    """Image files directly inside ``folder`` in natural order (``2.png`` before ``10.png``).

    Raises ``MissingDataError`` when the folder is missing or holds no image, and, with
    ``check_contiguous``, when the frames are numbered alike (same prefix, suffix and extension)
    but a number inside the range is absent: that frame file is named. A missing first or last
    frame cannot be seen here; paired scanners catch it as a count mismatch.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingDataError(f"frame folder not found: {folder}")
    frames = natural_sorted(path for path in folder.iterdir() if is_image_file(path))
    if not frames:
        extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise MissingDataError(f"no image frames ({extensions}) in folder {folder}")
    if check_contiguous:
        _check_no_gap(frames)
    return frames


def _check_no_gap(frames: list[Path]) -> None:
    """Raise naming the first missing file when same-pattern numbered frames skip a number."""
    matches = [_NUMBERED_STEM.match(path.stem) for path in frames]
    if not all(matches):
        return
    patterns = {(m["prefix"], m["suffix"], path.suffix) for m, path in zip(matches, frames)}
    if len(patterns) != 1:
        return
    numbers = [int(m["number"]) for m in matches]
    widths = {len(m["number"]) for m in matches}
    for previous, current in zip(numbers, numbers[1:]):
        if current > previous + 1:
            prefix, suffix, extension = patterns.pop()
            width = widths.pop() if len(widths) == 1 else 0
            missing = f"{prefix}{previous + 1:0{width}d}{suffix}{extension}"
            raise MissingDataError(
                f"missing frame {frames[0].parent / missing}: the folder has "
                f"{frames[0].name} … {frames[-1].name} with a gap after {previous}"
            )


def _decode_error(path: Path, error: Exception) -> DatasetLayoutError:
    return DatasetLayoutError(
        f"cannot decode frame {path}: {error} (the file is corrupt or truncated; expected a "
        f"readable {path.suffix or 'image'} image)"
    )


def _is_16bit_color_png(path: Path) -> bool:
    """A PNG whose header says 16 bits per sample, RGB or RGBA (PIL would cut it to 8 bits)."""
    if path.suffix.lower() != ".png":
        return False
    with open(path, "rb") as file:
        header = file.read(26)  # signature (8), IHDR length + type (8), size (8), depth, colour
    return len(header) == 26 and header[24] == 16 and header[25] in (2, 6)


def _load_16bit_color_png(path: Path) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1] through OpenCV, which keeps the 16 bits (and drops alpha)."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.dtype != np.uint16 or image.ndim != 3:
        raise OSError("OpenCV could not read it as a 16-bit colour PNG")
    return np.ascontiguousarray(image[:, :, 2::-1], dtype=np.float32) / 65535.0


def _load_rgb(path: Path) -> np.ndarray:
    """One image as (H, W, 3): uint8, or float32 in [0, 1] for 16-bit PNGs (gray or colour)."""
    try:
        if _is_16bit_color_png(path):
            return _load_16bit_color_png(path)
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                gray = np.asarray(image, dtype=np.float32) / 65535.0
                return np.repeat(gray[:, :, None], 3, axis=2)
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError as error:
        raise MissingDataError(f"frame file not found: {path}") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise _decode_error(path, error) from error


def _to_chw_float(frames: list[np.ndarray], size: tuple[int, int]) -> torch.Tensor:
    """Stack (H, W, 3) frames (uint8, or float in [0, 1]) into float (T, 3, H, W) in [0, 1].

    The layout change and the cast are done in numpy: torch's multi-threaded strided copies
    are an order of magnitude slower on a busy CPU, and this runs once per loaded frame.
    """
    clip = np.empty((len(frames), 3, *size), dtype=np.float32)
    for slot, frame in enumerate(frames):
        clip[slot] = frame.transpose(2, 0, 1)
        if frame.dtype == np.uint8:
            np.divide(clip[slot], 255.0, out=clip[slot])
    return torch.from_numpy(clip)


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image from its header only (no pixel decoding)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError as error:
        raise MissingDataError(f"frame file not found: {path}") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise _decode_error(path, error) from error
    return height, width


def _check_indices(indices: list[int], length: int, location: str) -> None:
    for index in indices:
        if not 0 <= index < length:
            raise IndexError(f"frame index {index} out of range [0, {length}) for {location}")


class ImageFiles:
    """Frames stored as one image file each (PNG/JPG/…), in the given order.

    Frames are RGB float (3, H, W) in [0, 1]; gray or palette images are converted to RGB.
    Every frame must have the size of the first one (``frame_size``, read from its header).
    """

    def __init__(self, paths: list[Path]) -> None:
        if not paths:
            raise ValueError("ImageFiles needs at least one frame path, got an empty list")
        self.paths = [Path(path) for path in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"ImageFiles({self.location!r}, {len(self)} frames)"

    @property
    def location(self) -> str:
        """The folder of the first frame, for messages."""
        return str(self.paths[0].parent)

    @cached_property
    def frame_size(self) -> tuple[int, int]:
        """(H, W) of the first frame, from its header."""
        return image_size(self.paths[0])

    def describe(self, index: int) -> str:
        return str(self.paths[index])

    def read(self, indices: list[int]) -> torch.Tensor:
        """Frames at ``indices`` as float (T, 3, H, W) in [0, 1]."""
        indices = list(indices)
        _check_indices(indices, len(self), self.location)
        height, width = self.frame_size
        frames = []
        for index in indices:
            path = self.paths[index]
            frame = _load_rgb(path)
            if frame.shape[:2] != (height, width):
                raise DatasetLayoutError(
                    f"frame {path} is {frame.shape[1]}x{frame.shape[0]} (WxH) but the first frame "
                    f"{self.paths[0]} is {width}x{height}; every frame of a sequence must have "
                    "the same size"
                )
            frames.append(frame)
        return _to_chw_float(frames, (height, width))


class VideoFrames:
    """Frames of one video file (mp4, mkv, avi, …) decoded with PyAV (bundled FFmpeg).

    The frame count and each frame's presentation timestamp come from the container's packet
    index at construction (no decoding). ``read`` seeks to the key frame before each run of
    consecutive indices and decodes forward once, so a contiguous clip costs one seek.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise MissingDataError(f"video file not found: {self.path}")
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise DatasetLayoutError(f"no video stream in {self.path}")
                stream = container.streams.video[0]
                self._height = stream.codec_context.height
                self._width = stream.codec_context.width
                timestamps = [
                    packet.pts
                    for packet in container.demux(stream)
                    if packet.size > 0 and not packet.is_discard
                ]
        except av.FFmpegError as error:
            raise DatasetLayoutError(
                f"cannot read video {self.path}: {error} (expected a video file FFmpeg can open)"
            ) from error
        if None in timestamps:
            # Streams without timestamps (raw elementary streams): count by decoding once.
            self._timestamps = None
            self._length = sum(1 for _ in self._decode_from_start())
        else:
            self._timestamps = sorted(timestamps)
            self._length = len(self._timestamps)
        if self._length == 0:
            raise DatasetLayoutError(f"video {self.path} has no frames")

    def __len__(self) -> int:
        return self._length

    def __repr__(self) -> str:
        return f"VideoFrames({self.location!r}, {len(self)} frames)"

    @property
    def location(self) -> str:
        return str(self.path)

    @property
    def frame_size(self) -> tuple[int, int]:
        """(H, W) from the stream header."""
        return self._height, self._width

    def describe(self, index: int) -> str:
        return f"{self.path}#{index}"

    def read(self, indices: list[int]) -> torch.Tensor:
        """Frames at ``indices`` as float (T, 3, H, W) in [0, 1]."""
        indices = list(indices)
        _check_indices(indices, len(self), self.location)
        wanted = sorted(set(indices))
        try:
            frames = self._decode_runs(wanted) if self._timestamps is not None else {}
            if len(frames) < len(wanted):  # no timestamps, or a seek that landed too late
                wanted_set = set(wanted)
                frames = {
                    index: frame
                    for index, frame in enumerate(self._decode_from_start())
                    if index in wanted_set
                }
        except av.FFmpegError as error:
            raise DatasetLayoutError(f"cannot decode video {self.path}: {error}") from error
        missing = [index for index in wanted if index not in frames]
        if missing:
            raise DatasetLayoutError(
                f"video {self.path}: frame {missing[0]} could not be decoded "
                f"(the container lists {len(self)} frames; the file may be truncated)"
            )
        return _to_chw_float([frames[index] for index in indices], self.frame_size)

    def _decode_runs(self, wanted: list[int]) -> dict[int, np.ndarray]:
        index_of_pts = {pts: index for index, pts in enumerate(self._timestamps)}
        runs: list[list[int]] = []
        for index in wanted:
            if runs and index == runs[-1][-1] + 1:
                runs[-1].append(index)
            else:
                runs.append([index])
        frames: dict[int, np.ndarray] = {}
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for run in runs:
                first, last = run[0], run[-1]
                container.seek(self._timestamps[first], stream=stream, backward=True)
                for frame in container.decode(stream):
                    index = index_of_pts.get(frame.pts)
                    if index is None or index < first:
                        continue
                    if index <= last:
                        frames[index] = _frame_to_rgb(frame)
                    if index >= last:
                        break
        return frames

    def _decode_from_start(self):
        with av.open(str(self.path)) as container:
            for frame in container.decode(container.streams.video[0]):
                yield _frame_to_rgb(frame)


def _frame_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="rgb24")


def frame_size(source) -> tuple[int, int]:
    """(H, W) of a frame source: its ``frame_size`` when it has one, else its first frame's."""
    size = getattr(source, "frame_size", None)
    return tuple(size) if size is not None else tuple(source.read([0]).shape[-2:])


def location(source) -> str:
    """Where a frame source lives (folder or file), for messages."""
    return getattr(source, "location", None) or source.describe(0)


def check_pair(gt, lq, name: str) -> None:
    """Raise ``DatasetLayoutError`` unless clean ``gt`` and degraded ``lq`` have the same
    number of frames and the same frame size; the message names both locations."""
    if len(gt) != len(lq):
        raise DatasetLayoutError(
            f"sequence {name!r}: {len(lq)} degraded frames in {location(lq)} but {len(gt)} "
            f"clean frames in {location(gt)}; a pair needs the same frame count"
        )
    gt_size, lq_size = frame_size(gt), frame_size(lq)
    if gt_size != lq_size:
        raise DatasetLayoutError(
            f"sequence {name!r}: degraded frames in {location(lq)} are {lq_size[1]}x{lq_size[0]} "
            f"(WxH) but clean frames in {location(gt)} are {gt_size[1]}x{gt_size[0]}; a pair "
            "needs the same frame size"
        )
