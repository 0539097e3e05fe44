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
    collect_sequences,
    find_child,
    image_sequence,
    require_dir,
    subfolders,
)
from datamodules.sequence import Sequence

GT_FOLDER_NAMES = ("processed", "gt")


def find_pair_level(root: Path, split: str | None) -> Path:
    """The folder holding ``input/``: ``root/<split>``, ``root/*/<split>``, ``root`` or
    ``root/*`` (first match, split names case-insensitive)."""
    candidates: list[Path | None] = []
    if split:
        candidates.append(find_child(root, [split]))
        candidates += [find_child(child, [split]) for child in subfolders(root)]
    candidates.append(root)
    candidates += subfolders(root)
    for candidate in candidates:
        if candidate is not None and find_child(candidate, ["input"]) is not None:
            return candidate
    raise MissingDataError(
        f"no input/ folder for split {split!r} under RainSyn root {root} (expected "
        f"[video_rain_*/]{split or '<split>'}/input/<id>/ beside processed/<id>/ or gt/<id>/)"
    )


def scan_rainsyn(
    root: str | Path,
    split: str | None = "test",
    min_len: int = 1,
    skip_bad: bool = False,
) -> list[Sequence]:
    """One rainy/clean pair per ``input/<id>`` folder of ``split`` (``train``/``test``)."""
    root = require_dir(root, "RainSyn root", "[video_rain_*/]<split>/{input,processed}/<id>/")
    level = find_pair_level(root, split)
    rain_root = find_child(level, ["input"])
    gt_root = find_child(level, GT_FOLDER_NAMES)
    if gt_root is None:
        raise MissingDataError(
            f"no clean-frame folder beside {rain_root}: expected {level}/processed/ or {level}/gt/"
        )
    rain_folders = subfolders(rain_root)
    if not rain_folders:
        raise MissingDataError(f"no sequence folders in {rain_root} (expected input/<id>/)")

    def builder(rain: Path):
        def build() -> Sequence:
            gt = gt_root / rain.name
            if not gt.is_dir():
                raise MissingDataError(
                    f"rainy sequence {rain} has no clean folder {gt} (pairs share the sequence id)"
                )
            return image_sequence(rain.name, gt_dir=gt, lq_dir=rain)

        return rain.name, build

    return collect_sequences(
        (builder(rain) for rain in rain_folders),
        dataset=f"RainSyn ({level.name})",
        root=root,
        min_len=min_len,
        skip_bad=skip_bad,
    )
