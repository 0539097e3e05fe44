"""Natural ("human") ordering of file names: ``frame_2.jpg`` < ``frame_10.jpg``.

Plain string sorting puts ``10.png`` before ``2.png``; frame folders named without zero padding
(``frame_0_hazy.jpg … frame_61_hazy.jpg``) need their digit runs compared as integers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

_DIGIT_RUNS = re.compile(r"(\d+)")


def natural_key(name: str | Path) -> tuple:
    """Sort key: the name split into text and integer parts, text compared case-insensitively.

    ``natural_key("frame_10.jpg") == (("frame_", 10, ".jpg"), "frame_10.jpg")``. Ties between
    names that differ only in zero padding or case (``01.png`` / ``1.png``) are broken by the
    raw name, so the order is total and deterministic.
    """
    text = name.name if isinstance(name, Path) else str(name)
    parts = _DIGIT_RUNS.split(text)
    key = tuple(int(part) if index % 2 else part.lower() for index, part in enumerate(parts))
    return (key, text)


def natural_sorted(names: Iterable[str | Path]) -> list:
    """``names`` sorted in natural order (by the final path component for paths)."""
    return sorted(names, key=natural_key)
