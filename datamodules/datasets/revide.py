"""REVIDE (Zhang et al., CVPR 2021): real indoor hazy/clear video pairs for dehazing.

Layout (``REVIDE_indoor``)::

    <root>/Train/hazy/<video>/00001.JPG, …    # '{:05d}.JPG', upper-case extension
    <root>/Train/gt/<video>/00001.JPG, …      # same video and frame names
    <root>/Test/hazy/<video>/…  and  <root>/Test/gt/<video>/…

Mirrors name the clean folder ``clear/`` and the splits ``train``/``test`` (lower case), and
may use ``.jpg``: all are accepted (frames pair by file stem). ``meta_info_GT.txt`` is not
needed. The frames are large (about 2708x1800): resolution handling differs between papers,
so crops/resizes are the datamodule's job, not the scanner's.
"""

from __future__ import annotations

from pathlib import Path

from datamodules.datasets import (
    MissingDataError,
    collect_sequences,
    find_child,
    image_sequence,
    require_dir,
    subfolders,
)
from datamodules.sequence import Sequence

GT_FOLDER_NAMES = ("gt", "clear")


def find_split_level(root: Path, split: str | None) -> Path:
    """The folder holding ``hazy/``: ``root/<split>``, ``root/*/<split>`` or ``root``."""
    candidates: list[Path | None] = []
    if split:
        candidates.append(find_child(root, [split]))
        candidates += [find_child(child, [split]) for child in subfolders(root)]
    candidates.append(root)
    for candidate in candidates:
        if candidate is not None and find_child(candidate, ["hazy"]) is not None:
            return candidate
    raise MissingDataError(
        f"no hazy/ folder for split {split!r} under REVIDE root {root} (expected "
        f"{split or '<split>'}/hazy/<video>/ beside gt/<video>/ or clear/<video>/, split "
        "folder Train/Test or train/test)"
    )


def scan_revide(
    root: str | Path,
    split: str | None = "Train",
    min_len: int = 1,
    skip_bad: bool = False,
) -> list[Sequence]:
    """One hazy/clear pair per ``hazy/<video>`` folder of ``split`` (``Train``/``Test``,
    case-insensitive; None when ``root`` holds ``hazy/`` directly)."""
    root = require_dir(root, "REVIDE root", "Train/ and Test/ folders with hazy/ and gt/")
    level = find_split_level(root, split)
    hazy_root = find_child(level, ["hazy"])
    gt_root = find_child(level, GT_FOLDER_NAMES)
    if gt_root is None:
        raise MissingDataError(
            f"no clean-frame folder beside {hazy_root}: expected {level}/gt/ or {level}/clear/"
        )
    hazy_folders = subfolders(hazy_root)
    if not hazy_folders:
        raise MissingDataError(f"no video folders in {hazy_root} (expected hazy/<video>/)")

    def builder(hazy: Path):
        def build() -> Sequence:
            gt = gt_root / hazy.name
            if not gt.is_dir():
                raise MissingDataError(
                    f"hazy video {hazy} has no clean folder {gt} (pairs share the video name)"
                )
            return image_sequence(hazy.name, gt_dir=gt, lq_dir=hazy)

        return hazy.name, build

    return collect_sequences(
        (builder(hazy) for hazy in hazy_folders),
        dataset=f"REVIDE ({level.name})",
        root=root,
        min_len=min_len,
        skip_bad=skip_bad,
    )
