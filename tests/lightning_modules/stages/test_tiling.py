"""Spatial tiling (lightning_modules/stages/tiling.py): full cover, seamless blend."""

import pytest
import torch

from lightning_modules.stages.tiling import blend_weights, run_tiled, tile_boxes


@pytest.mark.parametrize(("height", "width", "tile", "overlap"), [(70, 45, 32, 8), (64, 64, 64, 8)])
def test_boxes_cover_the_frame_with_the_overlap(height, width, tile, overlap):
    boxes = tile_boxes(height, width, tile, overlap)
    covered = torch.zeros(height, width)
    for rows, cols in boxes:
        assert rows.stop - rows.start <= tile and cols.stop - cols.start <= tile
        covered[rows, cols] += 1
    assert covered.min() >= 1
    starts = sorted({rows.start for rows, _ in boxes})
    stops = sorted({rows.stop for rows, _ in boxes})
    assert all(stop - start >= overlap for start, stop in zip(starts[1:], stops))


def test_a_pointwise_function_is_reproduced_exactly_and_weights_are_smooth():
    frame = torch.rand(2, 3, 70, 45)
    out = run_tiled(lambda i, crop: crop * 2 + 1, frame, tile=32, overlap=8)
    torch.testing.assert_close(out, frame * 2 + 1)
    weight = blend_weights(tile_boxes(70, 45, 32, 8)[4], 70, 45, 8)
    assert weight.min() > 0 and weight.max() == 1
    assert (weight[:8, 16].diff() > 0).all()  # rises over the overlap with the tile above


def test_bad_tile_sizes_are_refused():
    with pytest.raises(ValueError, match="tile > 2 \\* overlap"):
        tile_boxes(100, 100, 16, 8)
