"""A video sequence as the datasets see it: named, with clean and/or degraded frame sources.

Scanners for the official layouts (``datamodules/datasets/*.py``) turn a root folder into a list of
``Sequence``; ``ClipDataset`` samples clips from them. A frame source only has to know its length
and how to read a set of frame indices as a float (T, 3, H, W) tensor in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


class FrameSource(Protocol):
    """Ordered frames of one sequence (image files, a video file, or frames in memory)."""

    def __len__(self) -> int: ...

    def read(self, indices: list[int]) -> torch.Tensor:
        """Frames at ``indices`` as float (T, 3, H, W) in [0, 1]; raises a clear error naming
        the file when one is missing, unreadable or of the wrong size."""
        ...

    def describe(self, index: int) -> str:
        """Human-readable location of frame ``index`` (a file path, or ``video.mp4#12``)."""
        ...


@dataclass(frozen=True)
class Sequence:
    """One sequence. ``gt`` is None for sets without ground truth; ``lq`` is None when the
    degraded frames are synthesized on the fly from ``gt``."""

    name: str
    gt: FrameSource | None
    lq: FrameSource | None = None

    def __post_init__(self) -> None:
        if self.gt is None and self.lq is None:
            raise ValueError(f"sequence {self.name!r} has neither clean nor degraded frames")

    def __len__(self) -> int:
        return len(self.gt if self.gt is not None else self.lq)
