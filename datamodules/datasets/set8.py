"""Set8 (FastDVDnet's test set): 8 clean sequences, one folder each, test only.

Layout::

    <root>/<seq>/<frames>     # tractor, touchdown, park_joy, sunflower (Derf 480p),
                              # hypersmooth, motorbike, rafting, snowboard (GoPro 960x540)

Frame names differ between copies (``00000.png`` in BasicSR/VRT, ``01.png`` in others,
``frame_2.jpg`` …), so frames are taken in natural order whatever their naming. There is no
split file; papers often use only the first frames of each sequence (``max_frames``).
"""

from __future__ import annotations

from pathlib import Path

from datamodules.datasets import (
    MissingDataError,
    collect_sequences,
    require_dir,
    subfolders,
)
from datamodules.frame_sources import ImageFiles, list_frames
from datamodules.sequence import Sequence


def scan_set8(
    root: str | Path,
    sequences: list[str] | None = None,
    max_frames: int | None = None,
    min_len: int = 1,
    skip_bad: bool = False,
) -> list[Sequence]:
    """One clean sequence per folder under ``root`` (or only the named ``sequences``), each
    cut to its first ``max_frames`` frames when given."""
    root = require_dir(root, "Set8 root", "one folder of frames per sequence, e.g. hypersmooth/")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"scan_set8: max_frames must be >= 1 or None, got {max_frames}")
    if sequences is None:
        folders = subfolders(root)
        if not folders:
            raise MissingDataError(
                f"no sequence folders in Set8 root {root} (expected one folder of frames per "
                "sequence, e.g. hypersmooth/00000.png)"
            )
    else:
        folders = [root / name for name in sequences]

    def builder(folder: Path):
        def build() -> Sequence:
            if not folder.is_dir():
                raise MissingDataError(f"Set8 sequence folder not found: {folder}")
            frames = list_frames(folder)
            return Sequence(name=folder.name, gt=ImageFiles(frames[:max_frames]))

        return folder.name, build

    return collect_sequences(
        (builder(folder) for folder in folders),
        dataset="Set8",
        root=root,
        min_len=min_len,
        skip_bad=skip_bad,
    )
