"""Any folders of frames: paired degraded/clean sequences, clean only, or degraded only.

Each root is either a folder of sequence folders (``<root>/<seq>/<frames>``) or a single
folder of frames (= one sequence, named after the folder)::

    scan_folder(gt_root="clean", lq_root="noisy")  # noisy/<seq>/f ↔ clean/<seq>/f, by name
    scan_folder(gt_root="my_footage")              # clean only: the datamodule degrades it
    scan_folder(lq_root="hazy_frames")             # degraded only: inference

Frames are in natural order (``frame_9`` before ``frame_10``) and pair by file stem.
"""

from __future__ import annotations

from pathlib import Path

from datamodules.datasets import (
    MissingDataError,
    collect_sequences,
    image_sequence,
    require_dir,
    subfolders,
)
from datamodules.frame_sources import is_image_file
from datamodules.sequence import Sequence


def _holds_frames(folder: Path) -> bool:
    return any(is_image_file(child) for child in folder.iterdir())


def _sequence_folders(root: Path, role: str) -> list[Path]:
    """``[root]`` for a folder of frames, else its sequence subfolders."""
    if _holds_frames(root):
        return [root]
    folders = subfolders(root)
    if not folders:
        raise MissingDataError(
            f"{role} root {root} holds neither image frames nor sequence folders (expected "
            f"{root}/<frames> or {root}/<seq>/<frames>)"
        )
    return folders


def scan_folder(
    gt_root: str | Path | None = None,
    lq_root: str | Path | None = None,
    min_len: int = 1,
    skip_bad: bool = False,
) -> list[Sequence]:
    """Sequences from ``lq_root`` paired with ``gt_root`` (same sequence folder names), or
    from one of them alone. Two single folders of frames make one pair."""
    if gt_root is None and lq_root is None:
        raise ValueError("scan_folder needs gt_root (clean frames), lq_root (degraded) or both")
    expected = "a folder of frames or of sequence folders"
    gt_root = require_dir(gt_root, "clean-frame root (gt_root)", expected) if gt_root else None
    lq_root = require_dir(lq_root, "degraded-frame root (lq_root)", expected) if lq_root else None
    main_root = lq_root if lq_root is not None else gt_root
    folders = _sequence_folders(main_root, "lq_root" if lq_root is not None else "gt_root")
    single = folders == [main_root]

    if gt_root is not None and lq_root is not None and single != _holds_frames(gt_root):
        raise MissingDataError(
            f"lq_root {lq_root} and gt_root {gt_root} must both be folders of frames or both "
            "folders of sequence folders"
        )

    def builder(folder: Path):
        def build() -> Sequence:
            if gt_root is None or lq_root is None:
                role = "gt_dir" if lq_root is None else "lq_dir"
                return image_sequence(folder.name, **{role: folder})
            gt = gt_root if single else gt_root / folder.name
            if not gt.is_dir():
                raise MissingDataError(
                    f"degraded sequence {folder} has no clean folder {gt} (pairs share the "
                    "sequence folder name)"
                )
            return image_sequence(folder.name, gt_dir=gt, lq_dir=folder)

        return folder.name, build

    return collect_sequences(
        (builder(folder) for folder in folders),
        dataset="folder",
        root=main_root,
        min_len=min_len,
        skip_bad=skip_bad,
    )
