"""RainSynLight25 / RainSynComplex25 (Liu et al., CVPR 2018, J4R-Net): synthetic rain pairs.

Layout as used by the ESTINet/RTRWNet family (PNG frames)::

    RainSynComplex25/video_rain_heavy/{train,test}/input/<id>/<frame>.png       # rainy
    RainSynComplex25/video_rain_heavy/{train,test}/processed/<id>/<frame>.png   # clean GT

Other preprocessing names the clean folder ``gt/`` instead of ``processed/``, and the
``train``/``test`` level may be absent. ``root`` may be the dataset folder, the
``video_rain_*`` folder, the split folder or the folder holding ``input/`` directly.
``input/<id>/<frame>`` pairs with ``<gt>/<id>/<frame>`` by sequence id and frame name.
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

GT_FOLDER_NAMES = ("processed", "gt")


def find_pair_level(root: Path, split: str | None) -> Path:
    """The folder holding ``input/``: ``root/<split>``, ``root/*/<split>``, ``root`` or
    ``root/*`` (first match, split names case-insensitive)."""
    level = find_level_holding(root, split, "input", also_root_subfolders=True)
    if level is None:
        raise MissingDataError(
            f"no input/ folder for split {split!r} under RainSyn root {root} (expected "
            f"[video_rain_*/]{split or '<split>'}/input/<id>/ beside processed/<id>/ or gt/<id>/)"
        )
    return level


def scan_rainsyn(
    root: str | Path,
    split: str | None = "test",
    min_len: int = 1,
    skip_bad: bool = False,
) -> list[Sequence]:
    """One rainy/clean pair per ``input/<id>`` folder of ``split`` (``train``/``test``)."""
    root = require_dir(root, "RainSyn root", "[video_rain_*/]<split>/{input,processed}/<id>/")
    level = find_pair_level(root, split)
    return scan_paired_subfolders(
        level,
        lq_name="input",
        gt_names=GT_FOLDER_NAMES,
        adjective="rainy",
        item="sequence",
        placeholder="<id>",
        pair_key="sequence id",
        dataset=f"RainSyn ({level.name})",
        root=root,
        min_len=min_len,
        skip_bad=skip_bad,
    )
