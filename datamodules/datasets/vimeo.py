"""Vimeo-90K septuplet (Xue et al., "TOFlow"): clips chosen ONLY through a list file.

Layout (``vimeo_septuplet.zip``)::

    <root>/sequences/<xxxxx>/<yyyy>/im1.png … im7.png     # 448x256 RGB
    <root>/sep_trainlist.txt                               # "00001/0001" per line (64,612)
    <root>/sep_testlist.txt                                # 7,824 lines

``sequences/`` holds folders that are in neither list, so it is never globbed. The degraded
test zips (``vimeo_denoising_test.zip`` …) keep the same ``<xxxxx>/<yyyy>`` tree under another
folder; pass it as ``lq_dir`` to pair it with the clean clips. Lines in BasicSR's meta-info
format (``00001/0625 7 (256,448,3)``) are accepted: only the first field is used.
"""

from __future__ import annotations

import re
from pathlib import Path

from datamodules.datasets import (
    DatasetLayoutError,
    MissingDataError,
    collect_sequences,
    require_dir,
)
from datamodules.frame_sources import ImageFiles, check_pair
from datamodules.sequence import Sequence

_CLIP_ID = re.compile(r"^[^/\s.][^/\s]*/[^/\s]+$")


def read_clip_list(list_path: Path) -> list[tuple[int, str]]:
    """(line number, clip id) for every non-empty, non-comment line of a Vimeo list file."""
    if not list_path.is_file():
        raise MissingDataError(
            f"Vimeo-90K list file not found: {list_path} (expected one clip id such as "
            "00001/0001 per line; the official files are sep_trainlist.txt and sep_testlist.txt "
            "in the vimeo_septuplet root)"
        )
    clips = []
    for number, line in enumerate(list_path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if not _CLIP_ID.match(fields[0]):
            raise DatasetLayoutError(
                f"{list_path}, line {number}: {line!r} is not a clip id of the form 00001/0001"
            )
        clips.append((number, fields[0]))
    return clips


def _clip_frames(folder: Path, clip: str, where: str, frames_per_clip: int) -> ImageFiles:
    if not folder.is_dir():
        raise MissingDataError(
            f"clip {clip} listed in {where} not found: expected folder {folder} holding "
            f"im1.png … im{frames_per_clip}.png"
        )
    paths = [folder / f"im{index}.png" for index in range(1, frames_per_clip + 1)]
    for path in paths:
        if not path.is_file():
            raise MissingDataError(
                f"clip {clip} listed in {where}: missing frame {path} "
                f"(each clip has im1.png … im{frames_per_clip}.png)"
            )
    return ImageFiles(paths)


def scan_vimeo(
    root: str | Path,
    list_file: str | Path = "sep_trainlist.txt",
    min_len: int = 1,
    skip_bad: bool = False,
    gt_dir: str | None = "sequences",
    lq_dir: str | None = None,
    frames_per_clip: int = 7,
) -> list[Sequence]:
    """One sequence per clip id in ``list_file`` (relative to ``root`` unless absolute).

    ``gt_dir``/``lq_dir`` are folders under ``root`` holding the clean/degraded clip trees
    (``lq_dir`` None: clean only, degradation synthesized later; ``gt_dir`` None: degraded
    only, for inference). Sequence names are the clip ids (``00001/0001``).
    """
    root = require_dir(root, "Vimeo-90K root", "the vimeo_septuplet folder with sequences/")
    if gt_dir is None and lq_dir is None:
        raise ValueError("scan_vimeo: gt_dir and lq_dir cannot both be None")
    list_path = Path(list_file) if Path(list_file).is_absolute() else root / list_file
    clips = read_clip_list(list_path)

    def builder(number: int, clip: str):
        def build() -> Sequence:
            where = f"{list_path.name} (line {number})"
            gt = (
                _clip_frames(root / gt_dir / clip, clip, where, frames_per_clip) if gt_dir else None
            )
            lq = (
                _clip_frames(root / lq_dir / clip, clip, where, frames_per_clip) if lq_dir else None
            )
            if gt is not None and lq is not None:
                check_pair(gt, lq, clip)
            return Sequence(name=clip, gt=gt, lq=lq)

        return clip, build

    return collect_sequences(
        (builder(number, clip) for number, clip in clips),
        dataset=f"Vimeo-90K ({list_path.name})",
        root=root,
        min_len=min_len,
        skip_bad=skip_bad,
    )
