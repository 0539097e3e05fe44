"""DAVIS-2017 (Pont-Tuset et al.): clean 480p JPEG sequences, the denoising train/test pool.

Layout (``DAVIS-2017-trainval-480p.zip``; ``DAVIS-2017-test-dev-480p.zip`` unpacks to a folder
of the same name, so keep it as its own root)::

    <root>/JPEGImages/480p/<seq>/00000.jpg, 00001.jpg, …    # 854x480
    <root>/ImageSets/2017/train.txt, val.txt, test-dev.txt   # one sequence name per line

With ``ImageSets/<year>/`` present, the split's list file selects the sequences (``trainval``
= train + val, the 90-video denoising training set); without that folder every sequence folder
is used. Denoising papers train on trainval and test on test-dev (30 sequences).
"""

from __future__ import annotations

import logging
from pathlib import Path

from datamodules.datasets import (
    MissingDataError,
    collect_sequences,
    require_dir,
    subfolders,
)
from datamodules.frame_sources import ImageFiles, list_frames
from datamodules.sequence import Sequence

log = logging.getLogger(__name__)

#: Splits made of several list files.
COMBINED_SPLITS = {"trainval": ("train", "val")}


def _listed_names(list_path: Path) -> list[str]:
    return [line.strip() for line in list_path.read_text().splitlines() if line.strip()]


def davis_sequence_names(
    root: Path, frames_root: Path, split: str | None, year: str
) -> list[tuple[str, str]]:
    """(sequence name, where it was listed) for ``split``; every folder when no ImageSets."""
    image_sets = root / "ImageSets" / year
    if split is None or split == "all" or not image_sets.is_dir():
        if split not in (None, "all"):
            log.info("DAVIS: no %s; using every sequence folder in %s", image_sets, frames_root)
        return [(folder.name, str(frames_root)) for folder in subfolders(frames_root)]
    names: list[tuple[str, str]] = []
    for part in COMBINED_SPLITS.get(split, (split,)):
        list_path = image_sets / f"{part}.txt"
        if not list_path.is_file():
            raise MissingDataError(
                f"DAVIS list file not found: {list_path} (split {split!r} needs "
                f"{', '.join(p + '.txt' for p in COMBINED_SPLITS.get(split, (split,)))} in "
                f"{image_sets}; use split=null to take every sequence folder)"
            )
        names += [(name, str(list_path)) for name in _listed_names(list_path)]
    return names


def scan_davis(
    root: str | Path,
    split: str | None = "trainval",
    resolution: str = "480p",
    year: str = "2017",
    min_len: int = 1,
    skip_bad: bool = False,
) -> list[Sequence]:
    """One clean sequence per DAVIS video of ``split`` (``train``, ``val``, ``trainval``,
    ``test-dev``, …; None or ``all``: every folder), frames in natural order."""
    root = require_dir(root, "DAVIS root", "the DAVIS folder holding JPEGImages/480p/<seq>/")
    frames_root = require_dir(
        root / "JPEGImages" / resolution,
        "DAVIS frame folder",
        f"JPEGImages/{resolution}/<seq>/00000.jpg … inside {root}",
    )
    names = davis_sequence_names(root, frames_root, split, year)

    def builder(name: str, listed_in: str):
        def build() -> Sequence:
            folder = frames_root / name
            if not folder.is_dir():
                raise MissingDataError(
                    f"DAVIS sequence {name!r} listed in {listed_in} not found: expected folder "
                    f"{folder} of frames 00000.jpg, 00001.jpg, …"
                )
            return Sequence(name=name, gt=ImageFiles(list_frames(folder)))

        return name, build

    return collect_sequences(
        (builder(name, listed_in) for name, listed_in in names),
        dataset=f"DAVIS ({split or 'all'})",
        root=root,
        min_len=min_len,
        skip_bad=skip_bad,
    )
