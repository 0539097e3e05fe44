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
    find_level_holding,
    require_dir,
    scan_paired_subfolders,
)
from datamodules.sequence import Sequence

GT_FOLDER_NAMES = ("gt", "clear")


def find_split_level(root: Path, split: str | None) -> Path:
    """The folder holding ``hazy/``: ``root/<split>``, ``root/*/<split>`` or ``root``."""
    level = find_level_holding(root, split, "hazy")
    if level is None:
        raise MissingDataError(
            f"no hazy/ folder for split {split!r} under REVIDE root {root} (expected "
            f"{split or '<split>'}/hazy/<video>/ beside gt/<video>/ or clear/<video>/, split "
            "folder Train/Test or train/test)"
        )
    return level


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
    return scan_paired_subfolders(
        level,
        lq_name="hazy",
        gt_names=GT_FOLDER_NAMES,
        adjective="hazy",
        item="video",
        placeholder="<video>",
        pair_key="video name",
        dataset=f"REVIDE ({level.name})",
        root=root,
        min_len=min_len,
        skip_bad=skip_bad,
    )
