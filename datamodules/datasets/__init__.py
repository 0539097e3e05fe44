"""Scanners for the official dataset layouts, and the rules they share.

Each module here has one ``scan_<name>(root, ..., min_len=1, skip_bad=False) -> list[Sequence]``
for one layout (see the project's DATASETS.md). Scanning checks the layout at set-up, cheaply
(file existence, image headers, video packet indices), and raises ``DatasetLayoutError`` naming
the file or folder and what was expected. With ``skip_bad=True`` a bad sequence is logged as a
warning and dropped instead; a scan that keeps no sequence at all is still an error.

This package file holds only the shared helpers; import a scanner from its module
(``datamodules.datasets.vimeo.scan_vimeo``), which is also what the Hydra configs name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from datamodules.frame_sources import (
    DatasetLayoutError,
    ImageFiles,
    MissingDataError,
    check_pair,
    list_frames,
)
from datamodules.natural_sort import natural_sorted
from datamodules.sequence import Sequence

__all__ = [
    "DatasetLayoutError",
    "MissingDataError",
    "collect_sequences",
    "find_child",
    "find_level_holding",
    "image_sequence",
    "require_dir",
    "scan_paired_subfolders",
    "subfolders",
]

log = logging.getLogger(__name__)

#: After this many individual "dropped" warnings, further drops are only counted.
MAX_DROP_WARNINGS = 10

SequenceBuilder = tuple[str, Callable[[], Sequence]]


def require_dir(path: str | Path, what: str, expected: str) -> Path:
    """``path`` as a Path, or ``MissingDataError`` naming it, what it is and what it holds."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise MissingDataError(f"{what} not found: {path} (expected {expected})")
    return path


def find_child(folder: Path, names: Iterable[str]) -> Path | None:
    """The first subfolder of ``folder`` whose name equals one of ``names``, ignoring case
    (``Train``/``train``, ``gt``/``GT``); None when there is none."""
    if not folder.is_dir():
        return None
    children = {child.name.lower(): child for child in sorted(folder.iterdir()) if child.is_dir()}
    for name in names:
        if name.lower() in children:
            return children[name.lower()]
    return None


def subfolders(folder: Path) -> list[Path]:
    """Immediate subfolders of ``folder`` in natural order, hidden ones (``.``) excluded."""
    return natural_sorted(
        child for child in folder.iterdir() if child.is_dir() and not child.name.startswith(".")
    )


def find_level_holding(
    root: Path, split: str | None, holding: str, also_root_subfolders: bool = False
) -> Path | None:
    """The first folder holding a ``holding/`` subfolder among ``root/<split>``,
    ``root/*/<split>``, ``root`` and (with ``also_root_subfolders``) ``root/*``; split and
    folder names match case-insensitively. None when there is none."""
    candidates: list[Path | None] = []
    if split:
        candidates.append(find_child(root, [split]))
        candidates += [find_child(child, [split]) for child in subfolders(root)]
    candidates.append(root)
    if also_root_subfolders:
        candidates += subfolders(root)
    for candidate in candidates:
        if candidate is not None and find_child(candidate, [holding]) is not None:
            return candidate
    return None


def image_sequence(name: str, gt_dir: Path | None = None, lq_dir: Path | None = None) -> Sequence:
    """A sequence from folders of frames: clean ``gt_dir`` and/or degraded ``lq_dir``.

    With both, frames are paired by file stem (``00001.jpg`` ↔ ``00001.JPG``): each degraded
    frame needs a clean frame of the same name (the missing one is named), the counts and the
    frame sizes must agree.
    """
    if gt_dir is None and lq_dir is None:
        raise ValueError(f"sequence {name!r}: give gt_dir, lq_dir or both")
    gt_frames = list_frames(gt_dir) if gt_dir is not None else None
    lq_frames = list_frames(lq_dir) if lq_dir is not None else None
    if gt_frames is not None and lq_frames is not None:
        gt_by_stem = {path.stem: path for path in gt_frames}
        for lq_path in lq_frames:
            if lq_path.stem not in gt_by_stem:
                raise MissingDataError(
                    f"sequence {name!r}: degraded frame {lq_path} has no clean frame "
                    f"{gt_dir / lq_path.name} (pairs are matched by file name)"
                )
        if len(gt_frames) == len(lq_frames):
            gt_frames = [gt_by_stem[path.stem] for path in lq_frames]
    gt = ImageFiles(gt_frames) if gt_frames is not None else None
    lq = ImageFiles(lq_frames) if lq_frames is not None else None
    if gt is not None and lq is not None:
        check_pair(gt, lq, name)
    return Sequence(name=name, gt=gt, lq=lq)


def collect_sequences(
    builders: Iterable[SequenceBuilder], *, dataset: str, root: Path, min_len: int, skip_bad: bool
) -> list[Sequence]:
    """Build every ``(name, build)`` candidate, keeping those at least ``min_len`` frames long.

    A ``DatasetLayoutError`` from a builder (or a too-short sequence) is raised as is, or, with
    ``skip_bad``, logged as a warning and the sequence dropped. Raises ``DatasetLayoutError``
    when nothing is left, naming ``dataset`` and ``root``.
    """
    if min_len < 1:
        raise ValueError(f"min_len must be >= 1, got {min_len}")
    sequences: list[Sequence] = []
    dropped: list[str] = []
    for name, build in builders:
        try:
            sequence = build()
            if len(sequence) < min_len:
                where = sequence.gt if sequence.gt is not None else sequence.lq
                raise DatasetLayoutError(
                    f"sequence {name!r} in {getattr(where, 'location', root)} has {len(sequence)} "
                    f"frames but at least {min_len} are required (the clip length)"
                )
        except DatasetLayoutError as error:
            if not skip_bad:
                raise
            dropped.append(name)
            if len(dropped) <= MAX_DROP_WARNINGS:
                log.warning("%s: dropping sequence %s: %s", dataset, name, error)
            continue
        sequences.append(sequence)
    if dropped:
        log.warning(
            "%s: skip_bad dropped %d of %d sequences under %s (first: %s); kept %d",
            dataset,
            len(dropped),
            len(dropped) + len(sequences),
            root,
            ", ".join(dropped[:3]),
            len(sequences),
        )
    if not sequences:
        raise DatasetLayoutError(
            f"{dataset}: no usable sequence under {root}"
            + (f" ({len(dropped)} dropped as bad)" if dropped else "")
        )
    return sequences


def scan_paired_subfolders(
    level: Path,
    *,
    lq_name: str,
    gt_names: Iterable[str],
    adjective: str,
    item: str,
    placeholder: str,
    pair_key: str,
    dataset: str,
    root: Path,
    min_len: int,
    skip_bad: bool,
) -> list[Sequence]:
    """One degraded/clean pair per ``level/<lq_name>/<x>`` folder, with ``<gt>/<x>`` where
    ``<gt>`` is the first of ``gt_names`` present in ``level`` (see ``collect_sequences``).

    The words name the layout in errors: ``{adjective} {item}`` for a degraded folder
    (``rainy sequence``), ``{lq_name}/{placeholder}/`` for the expected folders
    (``input/<id>/``), ``pair_key`` for what pairs them (``sequence id``).
    """
    gt_names = tuple(gt_names)
    lq_root = find_child(level, [lq_name])
    gt_root = find_child(level, gt_names)
    if gt_root is None:
        expected = " or ".join(f"{level}/{name}/" for name in gt_names)
        raise MissingDataError(f"no clean-frame folder beside {lq_root}: expected {expected}")
    lq_folders = subfolders(lq_root)
    if not lq_folders:
        raise MissingDataError(
            f"no {item} folders in {lq_root} (expected {lq_name}/{placeholder}/)"
        )

    def builder(lq: Path) -> SequenceBuilder:
        def build() -> Sequence:
            gt = gt_root / lq.name
            if not gt.is_dir():
                raise MissingDataError(
                    f"{adjective} {item} {lq} has no clean folder {gt} (pairs share the {pair_key})"
                )
            return image_sequence(lq.name, gt_dir=gt, lq_dir=lq)

        return lq.name, build

    return collect_sequences(
        (builder(lq) for lq in lq_folders),
        dataset=dataset,
        root=root,
        min_len=min_len,
        skip_bad=skip_bad,
    )
