"""Atomic outputs: a file or folder is either the old one or the complete new one.

``atomic_output(path)`` yields a hidden temporary path beside ``path`` (same folder, hence the
same file system), which becomes ``path`` -- after an fsync of its data, by ``os.replace``, then
an fsync of the folder so the rename itself is durable -- only when the block succeeds; a
failure removes it, and what a killed write left (``stale_temps``) is removed by the next write
of the same name. Used for checkpoints (``atomic_checkpoint_io.py``) and for the outputs of
``eval.py`` and ``restore.py``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _fsync(path: Path) -> None:
    if os.name != "posix":  # folders cannot be opened for fsync on Windows
        return
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def temp_prefix(path: Path) -> str:
    """Name prefix of the temporary files/folders written for ``path`` (hidden, same folder)."""
    return f".{path.name}.partial-"


def stale_temps(path: Path) -> list[Path]:
    """What interrupted writes of ``path`` left beside it (``temp_prefix`` names)."""
    return sorted(path.parent.glob(f"{temp_prefix(path)}*"))


def remove_stale_temps(path: Path) -> None:
    """Remove what killed writes of ``path`` left beside it (``temp_prefix`` names)."""
    for stale in stale_temps(path):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


def make_temp(path: Path, folder: bool = False, suffix: str | None = None) -> Path:
    """Create the hidden temporary file (or folder) that ``commit`` later renames onto ``path``.

    It keeps ``path``'s suffix (writers pick the format from it) unless ``suffix`` is given.
    Creating it is the real test that the output folder is writable (``os.access`` says yes to
    root on a read-only mount)."""
    if folder:
        temp = Path(tempfile.mkdtemp(prefix=temp_prefix(path), dir=path.parent))
    else:
        descriptor, name = tempfile.mkstemp(
            prefix=temp_prefix(path),
            suffix=path.suffix if suffix is None else suffix,
            dir=path.parent,
        )
        os.close(descriptor)
        temp = Path(name)
    umask = os.umask(0)  # tempfile makes private (0600/0700) entries; outputs get the usual mode
    os.umask(umask)
    temp.chmod((0o777 if folder else 0o666) & ~umask)
    return temp


def commit(temp: Path, path: Path) -> None:
    """fsync ``temp`` (a file, or a folder and its files) and rename it onto ``path``; an
    existing ``path`` of the same kind is replaced (a folder by moving it aside first)."""
    for item in [*temp.iterdir(), temp] if temp.is_dir() else [temp]:
        _fsync(item)
    if temp.is_dir() and path.exists():
        old = Path(tempfile.mkdtemp(prefix=temp_prefix(path), dir=path.parent))
        os.replace(path, old / path.name)
        os.replace(temp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(temp, path)
    _fsync(path.parent)


def discard(temp: Path | None) -> None:
    """Remove a temporary output (file or folder) that will not be committed."""
    if temp is None:
        return
    if temp.is_dir():
        shutil.rmtree(temp, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


@contextlib.contextmanager
def atomic_output(
    path: str | Path, folder: bool = False, suffix: str | None = None
) -> Iterator[Path]:
    """Yield a temporary path (file, or folder with ``folder=True``) beside ``path``; it
    replaces ``path`` when the block succeeds and is removed when it fails."""
    path = Path(path)
    temp = make_temp(path, folder, suffix)
    try:
        yield temp
    except BaseException:
        discard(temp)
        raise
    commit(temp, path)
