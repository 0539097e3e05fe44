"""NTURain (Chen et al., CVPR 2018, SPAC-CNN): rainy/clean JPEG sequences paired by name.

Layout (one RAR per sequence in the official repository, each a folder of ``00001.jpg`` …)::

    Dataset_Training_Synthetic/  t1_GT, t1_Rain_01, t1_Rain_02, …    # several renderings per GT
    Dataset_Testing_Synthetic/   a1_GT, a1_Rain, a1_spacCNN, … b4_*  # a: slow, b: fast camera
    Dataset_Testing_RealRain/    ra1_Rain, … rb3_Rain                # real rain, no GT

``<seq>_Rain`` and ``<seq>_Rain_<k>`` pair with ``<seq>_GT`` in the same folder, frame by frame
with identical file names. ``*_spacCNN`` folders (SPAC-CNN's output) are ignored. Sequence
folders are looked for in ``root`` and one level below it, so ``root`` may be one of the
folders above or a folder holding several of them.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from datamodules.datasets import (
    MissingDataError,
    collect_sequences,
    image_sequence,
    require_dir,
    subfolders,
)
from datamodules.sequence import Sequence

log = logging.getLogger(__name__)

_RAIN_FOLDER = re.compile(r"^(?P<seq>.+?)_Rain(?:_(?P<rendering>\d+))?$")
UNPAIRED_MODES = ("skip", "include", "only")


def _rain_folders(root: Path) -> list[tuple[Path, re.Match]]:
    candidates = [root, *subfolders(root)]
    found = []
    for parent in candidates:
        for folder in subfolders(parent):
            match = _RAIN_FOLDER.match(folder.name)
            if match:
                found.append((folder, match))
    return found


def scan_nturain(
    root: str | Path,
    unpaired: str = "skip",
    min_len: int = 1,
    skip_bad: bool = False,
) -> list[Sequence]:
    """Rainy sequences under ``root`` with their clean pair.

    ``unpaired`` says what to do with rain folders that have no ``<seq>_GT`` (real rain):
    ``skip`` them (training and paired evaluation), ``include`` them as degraded-only
    sequences, or take ``only`` them (inference on real rain). Names: ``a1``, ``ra1``,
    ``t1_01`` for ``t1_Rain_01``; prefixed by their parent folder if two would clash.
    """
    if unpaired not in UNPAIRED_MODES:
        raise ValueError(
            f"scan_nturain: unpaired must be one of {UNPAIRED_MODES}, got {unpaired!r}"
        )
    root = require_dir(root, "NTURain root", "folders such as a1_Rain/ and a1_GT/")
    rain_folders = _rain_folders(root)
    if not rain_folders:
        raise MissingDataError(
            f"no <seq>_Rain folders under NTURain root {root} or its subfolders (expected e.g. "
            "a1_Rain/00001.jpg with a1_GT/00001.jpg, or t1_Rain_01/ with t1_GT/)"
        )
    entries = []
    for folder, match in rain_folders:
        gt_folder = folder.parent / f"{match['seq']}_GT"
        paired = gt_folder.is_dir()
        if (unpaired == "skip" and not paired) or (unpaired == "only" and paired):
            continue
        name = match["seq"] + (f"_{match['rendering']}" if match["rendering"] else "")
        entries.append((name, folder, gt_folder if paired else None))
    skipped = len(rain_folders) - len(entries)
    if skipped:
        log.info(
            "NTURain: %d rain folders left out (unpaired=%r) under %s", skipped, unpaired, root
        )
    names = [name for name, _, _ in entries]
    entries = [
        (f"{folder.parent.name}/{name}" if names.count(name) > 1 else name, folder, gt)
        for name, folder, gt in entries
    ]

    def builder(name: str, rain: Path, gt: Path | None):
        return name, lambda: image_sequence(name, gt_dir=gt, lq_dir=rain)

    return collect_sequences(
        (builder(*entry) for entry in entries),
        dataset=f"NTURain (unpaired={unpaired})",
        root=root,
        min_len=min_len,
        skip_bad=skip_bad,
    )
