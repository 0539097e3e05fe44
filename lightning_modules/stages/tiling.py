"""Spatial tiling for inference on frames too large for memory (``restore.py tile=``).

``tile_boxes`` covers an (H, W) frame with tiles of at most ``tile`` pixels a side that overlap
by at least ``overlap``; ``blend_weights`` gives each a weight that rises smoothly (raised
cosine) over its overlap with a neighbour and is 1 elsewhere (also along the frame's border), so
the normalized sum ``Σ w·y / Σ w`` has no seams. A recurrent model keeps one state per box.
"""

from __future__ import annotations

import math

import torch

Box = tuple[slice, slice]


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    count = math.ceil((size - overlap) / (tile - overlap))
    step = (size - tile) / (count - 1)
    return [round(i * step) for i in range(count)]


def tile_boxes(height: int, width: int, tile: int, overlap: int) -> list[Box]:
    """Tiles (row slice, column slice) covering the frame, evenly spread, neighbours overlapping
    by >= ``overlap``; one box when the frame fits in a tile. ``ValueError`` unless
    ``tile > 2·overlap >= 0``."""
    if overlap < 0 or tile <= 2 * overlap:
        raise ValueError(f"tile: expected tile > 2 * overlap >= 0, got tile={tile}, {overlap=}")
    return [
        (slice(top, min(top + tile, height)), slice(left, min(left + tile, width)))
        for top in _starts(height, tile, overlap)
        for left in _starts(width, tile, overlap)
    ]


def _ramp(length: int, start: int, stop: int, size: int, overlap: int) -> torch.Tensor:
    """1-D weight of a tile spanning [start, stop) of ``size``: raised cosine over the first /
    last ``overlap`` samples where a neighbour overlaps, 1 elsewhere."""
    weight = torch.ones(length)
    if overlap == 0:
        return weight
    rise = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(overlap) + 0.5) / overlap)
    if start > 0:
        weight[:overlap] = rise
    if stop < size:
        weight[-overlap:] = torch.minimum(weight[-overlap:], rise.flip(0))
    return weight


def blend_weights(box: Box, height: int, width: int, overlap: int) -> torch.Tensor:
    """(h, w) blending weight of ``box`` in an (height, width) frame (module docstring)."""
    rows, cols = box
    return torch.outer(
        _ramp(rows.stop - rows.start, rows.start, rows.stop, height, overlap),
        _ramp(cols.stop - cols.start, cols.start, cols.stop, width, overlap),
    )


def run_tiled(fn, frame: torch.Tensor, tile: int | None, overlap: int) -> torch.Tensor:
    """``fn(index, crop) -> restored crop`` over the tiles of ``frame`` (..., H, W), blended
    back into (..., H, W); ``fn(0, frame)`` when ``tile`` is None or the frame fits a tile."""
    height, width = frame.shape[-2:]
    if tile is None or (height <= tile and width <= tile):
        return fn(0, frame)
    out = total = None
    for index, box in enumerate(tile_boxes(height, width, tile, overlap)):
        restored = fn(index, frame[(..., *box)])
        if out is None:
            out = restored.new_zeros(*restored.shape[:-2], height, width)
            total = restored.new_zeros(height, width)
        weight = blend_weights(box, height, width, overlap).to(restored)
        out[(..., *box)] += restored * weight
        total[box] += weight
    return out / total
