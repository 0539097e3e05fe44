"""Paired clip transforms: one crop/flip for every frame and both clips; temporal windows."""

import pytest
import torch

from datamodules.clip_transforms import (
    SpatialParams,
    apply_spatial,
    apply_spatial_flow,
    as_patch_size,
    centre_spatial_params,
    check_clip,
    draw_spatial_params,
    draw_temporal_window,
    frame_window,
    pan_clip,
    window_span,
)
from lightning_modules.stages.warp import flow_warp, in_bounds_mask


def _coded_clip(frames=3, height=6, width=8):
    """Pixel value = 1000·t + 10·y + x, so any crop/flip is identifiable."""
    t = torch.arange(frames).view(frames, 1, 1, 1) * 1000.0
    y = torch.arange(height).view(1, 1, height, 1) * 10.0
    x = torch.arange(width).view(1, 1, 1, width) * 1.0
    return (t + y + x).expand(frames, 3, height, width).clone()


def test_apply_spatial_crops_flips_and_transposes_exactly():
    clip = _coded_clip()
    crop = apply_spatial(clip, SpatialParams(top=1, left=2, height=4, width=4))
    assert torch.equal(crop, clip[..., 1:5, 2:6])
    hflip = apply_spatial(clip, SpatialParams(1, 2, 4, 4, hflip=True))
    assert torch.equal(hflip, clip[..., 1:5, 2:6].flip(-1))
    vflip = apply_spatial(clip, SpatialParams(1, 2, 4, 4, vflip=True))
    assert torch.equal(vflip, clip[..., 1:5, 2:6].flip(-2))
    transposed = apply_spatial(clip, SpatialParams(1, 2, 4, 4, transpose=True))
    assert torch.equal(transposed, clip[..., 1:5, 2:6].transpose(-1, -2))


def test_same_params_keep_pair_and_frames_aligned():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(3)
    gt = torch.rand(4, 3, 20, 24)
    lq = gt + torch.arange(4.0).view(4, 1, 1, 1)  # frame t offset by t
    for _ in range(20):
        params = draw_spatial_params((20, 24), (8, 8), generator, vflip=True, transpose=True)
        out_gt, out_lq = apply_spatial(gt, params), apply_spatial(lq, params)
        assert out_gt.shape == (4, 3, 8, 8)
        offset = torch.arange(4.0).view(4, 1, 1, 1).expand_as(out_gt)
        torch.testing.assert_close(out_lq - out_gt, offset)


def test_draw_spatial_params_is_reproducible_and_covers_positions():
    def draws(seed):
        generator = torch.Generator().manual_seed(seed)
        return [draw_spatial_params((10, 12), (4, 4), generator) for _ in range(300)]

    first, again, other = draws(0), draws(0), draws(1)
    assert first == again
    assert first != other
    tops = {p.top for p in first}
    lefts = {p.left for p in first}
    assert tops == set(range(7)) and lefts == set(range(9))  # every valid corner, none outside
    flips = sum(p.hflip for p in first)
    assert 110 < flips < 190  # probability 1/2
    assert not any(p.vflip or p.transpose for p in first)  # off unless asked


def test_full_frame_and_centre_crop():
    generator = torch.Generator().manual_seed(0)
    full = draw_spatial_params((10, 12), None, generator, hflip=False)
    assert (full.top, full.left, full.height, full.width) == (0, 0, 10, 12)
    centre = centre_spatial_params((10, 13), (4, 6))
    assert (centre.top, centre.left, centre.height, centre.width) == (3, 3, 4, 6)
    assert not (centre.hflip or centre.vflip or centre.transpose)


def test_patch_larger_than_frame_names_sizes():
    generator = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=r"sequence 'a'.*10x12.*patch_size 16x16"):
        draw_spatial_params((10, 12), (16, 16), generator, where="sequence 'a'")
    with pytest.raises(ValueError, match="square"):
        draw_spatial_params((10, 12), (4, 6), generator, transpose=True)
    with pytest.raises(ValueError, match="patch_size"):
        as_patch_size(0, "patch_size")
    assert as_patch_size(5, "p") == (5, 5) and as_patch_size([4, 6], "p") == (4, 6)


def test_temporal_windows():
    assert frame_window(2, 4, stride=2) == [2, 4, 6, 8]
    assert frame_window(2, 3, reverse=True) == [4, 3, 2]
    assert window_span(5, 2) == 9
    generator = torch.Generator().manual_seed(0)
    seen_strides, reversed_count = set(), 0
    for _ in range(200):
        indices = draw_temporal_window(10, 4, 6, (1, 2), 0.5, generator)
        steps = {b - a for a, b in zip(indices, indices[1:])}
        assert len(steps) == 1 and abs(steps.pop()) in (1, 2)
        assert min(indices) >= 0 and max(indices) <= 9  # start moved back to fit
        seen_strides.add(abs(indices[1] - indices[0]))
        reversed_count += indices[0] > indices[-1]
    assert seen_strides == {1, 2}
    assert 60 < reversed_count < 140
    # A stride that does not fit the sequence is never drawn.
    assert all(
        abs(w[1] - w[0]) == 1
        for w in (draw_temporal_window(5, 4, 0, (1, 3), 0.0, generator) for _ in range(20))
    )
    with pytest.raises(ValueError, match="needs at least 7 frames, the sequence has 5"):
        draw_temporal_window(5, 4, 0, (2,), 0.0, generator)


def test_check_clip_rejects_bad_input():
    check_clip(torch.zeros(2, 3, 4, 4), "x")
    with pytest.raises(ValueError, match=r"lq: expected a clip of shape \(T, 3, H, W\)"):
        check_clip(torch.zeros(3, 4, 4), "lq")
    with pytest.raises(TypeError, match="float"):
        check_clip(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), "lq")
    with pytest.raises(TypeError, match="torch.Tensor"):
        check_clip([1, 2], "lq")


@pytest.mark.parametrize("hflip", [False, True])
@pytest.mark.parametrize("vflip", [False, True])
@pytest.mark.parametrize("transpose", [False, True])
def test_transformed_flow_warps_the_transformed_frames(hflip, vflip, transpose):
    """Warping commutes with the transform: T(warp(x, v)) == warp(T(x), T_flow(v)), exactly for
    an integer translation (border padding is symmetric under flips)."""
    from lightning_modules.stages.warp import flow_warp

    frames = torch.rand(2, 3, 10, 10, generator=torch.Generator().manual_seed(0))
    flow = torch.zeros(2, 2, 10, 10)
    flow[:, 0], flow[:, 1] = 2.0, -1.0
    params = SpatialParams(0, 0, 10, 10, hflip=hflip, vflip=vflip, transpose=transpose)
    moved = flow_warp(apply_spatial(frames, params), apply_spatial_flow(flow, params))
    torch.testing.assert_close(moved, apply_spatial(flow_warp(frames, flow), params))


def test_transformed_flow_is_cropped_like_the_frames():
    flow = torch.stack([_coded_clip(1)[0, 0], -_coded_clip(1)[0, 0]])[None]  # (1, 2, 6, 8)
    crop = apply_spatial_flow(flow, SpatialParams(top=1, left=2, height=4, width=4))
    assert torch.equal(crop, flow[..., 1:5, 2:6])
    flipped = apply_spatial_flow(flow, SpatialParams(1, 2, 4, 4, hflip=True, transpose=True))
    expected = torch.stack([flow[0, 1], -flow[0, 0]])[None][..., 1:5, 2:6].flip(-1)
    assert torch.equal(flipped, expected.transpose(-1, -2))


def test_transformed_flow_needs_two_channels():
    with pytest.raises(ValueError, match=r"\(\.\.\., 2, H, W\)"):
        apply_spatial_flow(torch.zeros(1, 3, 4, 4), SpatialParams(0, 0, 4, 4))


@pytest.mark.parametrize("shift", [(2, -1), (0, 3), (-4, 0)])
def test_pan_clip_has_the_constant_backward_flow_it_was_given(shift):
    frame = torch.rand(3, 20, 24)
    clip = pan_clip(frame, 4, shift)
    assert clip.shape == (4, 3, 20 - 3 * abs(shift[1]), 24 - 3 * abs(shift[0]))
    flow = torch.tensor(shift, dtype=torch.float32).view(1, 2, 1, 1).expand(3, 2, *clip.shape[-2:])
    warped = flow_warp(clip[:-1], flow.contiguous())
    inside = in_bounds_mask(flow.contiguous()).bool().expand_as(warped)
    assert inside.any()
    torch.testing.assert_close(warped[inside], clip[1:][inside])
    with pytest.raises(ValueError, match="cannot pan 4 frames"):
        pan_clip(frame, 4, (9, 0))
