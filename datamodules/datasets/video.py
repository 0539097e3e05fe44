"""Video files (mp4, mkv, avi, …) as sequences, read with PyAV through ``VideoFrames``.

For inference (``restore.py``: the video is the degraded input), for paired evaluation (with
``gt_path``), and for training on a user's clean footage (``clean=True``: the video is the
ground truth and the datamodule synthesizes the degradation).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from datamodules.datasets import MissingDataError, collect_sequences
from datamodules.frame_sources import VIDEO_EXTENSIONS, VideoFrames, check_pair
from datamodules.natural_sort import natural_sorted
from datamodules.sequence import Sequence


def video_paths(paths: str | Path | Iterable[str | Path], role: str) -> list[Path]:
    """Video files from a file, a folder (every video file in it, natural order) or a list."""
    if isinstance(paths, str | Path):
        paths = [paths]
    found: list[Path] = []
    for path in map(Path, paths):
        path = path.expanduser()
        if path.is_dir():
            videos = natural_sorted(
                child
                for child in path.iterdir()
                if child.is_file() and child.suffix.lower() in VIDEO_EXTENSIONS
            )
            if not videos:
                extensions = ", ".join(sorted(VIDEO_EXTENSIONS))
                raise MissingDataError(f"no video files ({extensions}) in {role} folder {path}")
            found += videos
        else:
            found.append(path)  # existence is checked by VideoFrames, naming the file
    if not found:
        raise ValueError(f"scan_video: {role} is an empty list; give at least one video file")
    return found


def scan_video(
    path: str | Path | Iterable[str | Path],
    gt_path: str | Path | Iterable[str | Path] | None = None,
    clean: bool = False,
    min_len: int = 1,
    skip_bad: bool = False,
) -> list[Sequence]:
    """One sequence per video, named after the file stem.

    ``gt_path`` (same number of videos as ``path``, matched in order) makes each a
    degraded/clean pair with equal frame counts and sizes. Without it the videos are degraded
    inputs, or clean frames when ``clean`` is true.
    """
    videos = video_paths(path, "path")
    clean_videos = video_paths(gt_path, "gt_path") if gt_path is not None else None
    if clean_videos is not None and clean:
        raise ValueError("scan_video: give gt_path or clean=True, not both")
    if clean_videos is not None and len(clean_videos) != len(videos):
        raise ValueError(
            f"scan_video: {len(videos)} degraded videos but {len(clean_videos)} clean videos "
            "in gt_path; they are paired in order, so the counts must match"
        )
    names = [video.stem for video in videos]

    def builder(index: int):
        name = names[index] if names.count(names[index]) == 1 else f"{names[index]}_{index}"

        def build() -> Sequence:
            frames = VideoFrames(videos[index])
            if clean:
                return Sequence(name=name, gt=frames)
            gt = VideoFrames(clean_videos[index]) if clean_videos is not None else None
            if gt is not None:
                check_pair(gt, frames, name)
            return Sequence(name=name, gt=gt, lq=frames)

        return name, build

    return collect_sequences(
        (builder(index) for index in range(len(videos))),
        dataset="video",
        root=videos[0].parent,
        min_len=min_len,
        skip_bad=skip_bad,
    )
