"""Synthetic flow pairs: exact backward flow, validity mask, determinism, inputs, bad sources."""

import functools

import pytest
import torch

from datamodules.datasets.davis import scan_davis
from datamodules.degradations import build_degradation
from datamodules.flow_pairs import (
    EllipseShape,
    Layer,
    SyntheticFlowPairs,
    motion_matrix,
    render_layers,
)
from datamodules.sample import TensorFrames, load_photo, scan_sample
from datamodules.sequence import Sequence
from lightning_modules.stages.warp import flow_warp

# Frame 2 is an exact bilinear sample of the layer texture at P(q), q = p + flow(p); warping
# frame 1 re-interpolates that texture between the four frame-1 pixels around q, which the mask
# guarantees show the same layer. The only error left is bilinear interpolation of a texture
# magnified 1-2x (texture_scale 0.5-1): measured <= 0.0071 per item (mean 0.0027) over 60
# 256x256 items. A wrong flow or mask costs ~0.1-0.3 on every affected pixel, so 0.01 per item
# and 0.005 on average keep a 1.4-2x margin and still fail when a few % of pixels are wrong.
PER_ITEM_WARP_BOUND = 0.01
MEAN_WARP_BOUND = 0.005


def warp_error(item: dict) -> tuple[float, float]:
    """(mean |frame2 − warp(frame1, flow)| on valid pixels, valid fraction) of a clean pair."""
    gt, valid = item["gt"], item["valid"][0] > 0
    warped = flow_warp(gt[:1], item["flow"][None])[0]
    error = (warped - gt[1]).abs().mean(0)
    return error[valid].mean().item(), valid.float().mean().item()


def background(texture: torch.Tensor, motion: torch.Tensor) -> Layer:
    """A background layer showing ``texture`` 1:1 from its corner, moved by ``motion``."""
    return Layer(texture=texture[None], placement=torch.eye(3, dtype=torch.float64), motion=motion)


@pytest.fixture(scope="module")
def moving_items():
    dataset = SyntheticFlowPairs(size=(128, 160), length=24, seed=5, zero_motion_prob=0.0)
    return [dataset[i] for i in range(len(dataset))]


def test_item_contract(moving_items):
    item = moving_items[0]
    assert set(item) == {"lq", "gt", "flow", "valid", "sigma", "name"}
    assert item["lq"].shape == item["gt"].shape == (2, 3, 128, 160)
    assert item["flow"].shape == (2, 128, 160) and item["valid"].shape == (1, 128, 160)
    for key in ("lq", "gt", "flow", "valid", "sigma"):
        assert item[key].dtype == torch.float32, key
    assert item["sigma"].shape == () and item["sigma"] == 0  # no degradations configured
    assert item["gt"].min() >= 0 and item["gt"].max() <= 1
    assert set(item["valid"].unique().tolist()) <= {0.0, 1.0}
    assert item["name"].startswith("flowpairs-5/000000_photo:")


def test_warping_frame1_by_the_flow_gives_frame2_on_valid_pixels(moving_items):
    errors = []
    for item in moving_items:
        error, valid_fraction = warp_error(item)
        assert valid_fraction > 0.3, item["name"]  # the check is not vacuous
        assert error < PER_ITEM_WARP_BOUND, item["name"]
        errors.append(error)
    assert sum(errors) / len(errors) < MEAN_WARP_BOUND
    # The same check fails for a wrong flow: the largest motions warped by zero or negated flow.
    largest = max(moving_items, key=lambda item: item["flow"].abs().mean())
    assert largest["flow"].abs().mean() > 3
    for wrong in (torch.zeros_like(largest["flow"]), -largest["flow"]):
        assert warp_error({**largest, "flow": wrong})[0] > 5 * PER_ITEM_WARP_BOUND


def test_pure_translation_gives_constant_flow_and_a_border_mask():
    height, width, shift = 96, 128, (3.25, -5.5)
    texture = load_photo("astronaut")
    motion = motion_matrix(((width - 1) / 2, (height - 1) / 2), translation=shift)
    pair = render_layers([background(texture, motion)], (height, width))
    expected = torch.tensor(shift).view(2, 1, 1).expand(2, height, width)
    torch.testing.assert_close(pair.flow, expected, atol=1e-4, rtol=0)
    # Frame 2 shows frame 1 moved by −shift: p + shift must lie inside frame 1.
    xs, ys = torch.arange(width), torch.arange(height)
    inside_x = (xs + shift[0] >= 0) & (xs + shift[0] <= width - 1)
    inside_y = (ys + shift[1] >= 0) & (ys + shift[1] <= height - 1)
    assert torch.equal(pair.valid[0] > 0, inside_y[:, None] & inside_x[None, :])
    # Identity placement: frame 1 is the photograph itself.
    torch.testing.assert_close(pair.frames[0], texture[:, :height, :width])
    error, _ = warp_error({"gt": pair.frames, "flow": pair.flow, "valid": pair.valid})
    assert error < PER_ITEM_WARP_BOUND


def test_dataset_without_rotation_zoom_or_layers_gives_constant_nonzero_flows():
    dataset = SyntheticFlowPairs(
        size=(64, 80),
        length=6,
        seed=2,
        layers_range=(0, 0),
        max_rotation=0.0,
        max_zoom=0.0,
        max_shear=0.0,
        max_perspective=0.0,
        zero_motion_prob=0.0,
    )
    for index in range(len(dataset)):
        flow = dataset[index]["flow"]
        constant = flow[:, :1, :1].expand_as(flow)
        torch.testing.assert_close(flow, constant, atol=1e-4, rtol=0)
        assert flow[:, 0, 0].abs().max() > 0
        # Bounded by max_translation (0.12) of the crop size.
        assert flow[0, 0, 0].abs() <= 0.12 * 80 and flow[1, 0, 0].abs() <= 0.12 * 64


def test_mask_marks_disoccluded_background_and_keeps_far_background_and_object():
    height, width, shift = 96, 128, (12.25, 0.5)
    shape = EllipseShape(center=(64.0, 48.0), axes=(24.0, 16.0), angle=0.0)
    layers = [
        background(load_photo("coffee"), torch.eye(3, dtype=torch.float64)),  # static
        Layer(
            texture=load_photo("astronaut")[None],
            placement=torch.eye(3, dtype=torch.float64),
            motion=motion_matrix(shape.center, translation=shift),  # object moves by −shift
            shape=shape,
            softness=2.0,
        ),
    ]
    pair = render_layers(layers, (height, width))
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32),
        torch.arange(width, dtype=torch.float32),
        indexing="ij",
    )
    sdf_frame1 = shape.sdf(xs, ys)
    sdf_frame2 = shape.sdf(xs + shift[0], ys + shift[1])
    valid = pair.valid[0] > 0
    disoccluded = (sdf_frame1 > 2) & (sdf_frame2 < -2)  # background uncovered in frame 2
    assert disoccluded.sum() > 100
    assert not valid[disoccluded].any()
    assert (pair.flow[:, disoccluded] == 0).all()  # background flow
    far = (sdf_frame1 < -20) & (sdf_frame2 < -20)
    assert valid[far].all()
    assert (pair.flow[:, far] == 0).all()
    object_core = sdf_frame2 > 3  # well inside the object in frame 2, and in frame 1
    assert valid[object_core].all()
    assert (pair.flow[0, object_core] == shift[0]).all()
    assert (pair.flow[1, object_core] == shift[1]).all()
    edge = sdf_frame2.abs() < 1  # soft edge: a mixture, never valid
    assert not valid[edge].any()
    # Every valid object pixel reads only opaque object pixels of frame 1 (all four bilinear
    # neighbours of q = p + flow): the mask is eroded exactly as much as the warp needs.
    on_object = valid & (pair.flow[0] != 0)
    qx, qy = xs[on_object] + shift[0], ys[on_object] + shift[1]
    for nx in (qx.floor(), qx.ceil()):
        for ny in (qy.floor(), qy.ceil()):
            assert (shape.sdf(nx, ny) >= 1.0).all()  # alpha = 1/2 + sdf/softness >= 1


def test_same_seed_and_index_give_the_same_item_and_others_differ():
    kwargs = dict(size=(48, 64), length=4, degradations=[build_degradation("noise")])
    first, again = SyntheticFlowPairs(seed=7, **kwargs), SyntheticFlowPairs(seed=7, **kwargs)
    other_seed = SyntheticFlowPairs(seed=8, **kwargs)
    item = first[1]
    for key, value in again[1].items():
        assert torch.equal(value, item[key]) if key != "name" else value == item[key], key
    for different in (first[2], other_seed[1]):
        assert not torch.equal(different["gt"], item["gt"])
        assert not torch.equal(different["flow"], item["flow"])


def test_zero_motion_pairs_occur_with_exactly_zero_flow():
    dataset = SyntheticFlowPairs(size=(48, 64), length=10, seed=0, zero_motion_prob=1.0)
    for index in range(len(dataset)):
        item = dataset[index]
        assert torch.equal(item["flow"], torch.zeros_like(item["flow"]))
        assert torch.equal(item["gt"][0], item["gt"][1])
    # The default mix: zero, small and large motions in the stated proportions.
    default = SyntheticFlowPairs(size=(48, 64), length=1)
    draws = torch.tensor(
        [default.motion_scale(torch.Generator().manual_seed(i)) for i in range(2000)]
    )
    assert abs((draws == 0).float().mean() - 0.1) < 0.025
    moving = draws[draws > 0]
    assert moving.min() >= 0.01 and moving.max() <= 1
    assert abs((moving < 0.1).float().mean() - 0.5) < 0.05  # log-uniform over 2 decades


def test_degradations_touch_only_the_inputs():
    noise = build_degradation("noise", fixed_sigma=30)  # 0-255 scale, as in configs
    dataset = SyntheticFlowPairs(
        size=(64, 64),
        length=2,
        degradations=[noise],
        clean_prob=0.0,
        jitter_prob=0.0,
        blur_prob=0.0,
    )
    item = dataset[0]
    assert item["sigma"].item() == pytest.approx(30 / 255)
    residual = item["lq"] - item["gt"]
    for frame in residual:
        assert frame.std().item() == pytest.approx(30 / 255, rel=0.05)
    # i.i.d. per frame: the two frames' noise is uncorrelated.
    correlation = torch.corrcoef(residual.flatten(1))[0, 1]
    assert correlation.abs() < 0.05
    assert item["gt"].min() >= 0 and item["gt"].max() <= 1
    rain = SyntheticFlowPairs(
        size=(64, 64),
        length=1,
        degradations=[build_degradation("rain")],
        clean_prob=0.0,
        jitter_prob=0.0,
        blur_prob=0.0,
    )[0]
    assert rain["sigma"] == 0 and (rain["lq"] >= rain["gt"] - 1e-6).all()
    assert (rain["lq"] - rain["gt"]).abs().max() > 0.1


def test_jitter_changes_frames_independently():
    dataset = SyntheticFlowPairs(size=(48, 64), length=8, seed=1, jitter_prob=1.0, jitter=0.2)
    gains = []
    for index in range(len(dataset)):
        item = dataset[index]
        gains.append((item["lq"].mean((1, 2, 3)) - item["gt"].mean((1, 2, 3))).tolist())
    differences = [abs(a - b) for a, b in gains]
    assert max(differences) > 0.01  # frames of a pair jittered differently


def test_sequences_and_scanner_partials_are_texture_sources():
    sequences = scan_sample("train", num_sequences=2, num_frames=3, size=(64, 80), seed=0)
    from_list = SyntheticFlowPairs(size=(48, 64), length=2, source=sequences)
    assert from_list[0]["name"].split("_", 1)[1].startswith("sample-train/")
    partial = functools.partial(scan_sample, "train", num_sequences=1, num_frames=2, size=(64, 80))
    item = SyntheticFlowPairs(size=(48, 64), length=2, source=partial, zero_motion_prob=0)[0]
    assert warp_error(item)[0] < PER_ITEM_WARP_BOUND


def test_shared_davis_frames_as_textures(shared_data):
    scanner = functools.partial(scan_davis, root=shared_data / "davis2017_480p", split=None)
    dataset = SyntheticFlowPairs(size=(128, 128), length=2, seed=3, source=scanner)
    for index in range(len(dataset)):
        item = dataset[index]
        assert item["name"].split("_", 1)[1].split("#")[0] in {
            "blackswan",
            "bmx-trees",
            "car-roundabout",
        }
        assert warp_error(item)[0] < PER_ITEM_WARP_BOUND
    with pytest.raises(ValueError, match=r"scan_davis.*'blackswan'.*480x854.*crop 500x500"):
        SyntheticFlowPairs(size=(500, 500), source=scanner)


def test_too_small_frames_name_the_source_and_both_sizes():
    with pytest.raises(ValueError, match=r"photograph 'coffee' is 400x600 .*crop 512x512"):
        SyntheticFlowPairs(size=(512, 512))
    small = Sequence(name="tiny-clip", gt=TensorFrames(torch.rand(3, 3, 32, 48), "tiny-clip"))
    with pytest.raises(ValueError, match=r"sequence 'tiny-clip'.*32x48 \(HxW\).*crop 40x40"):
        SyntheticFlowPairs(size=(40, 40), source=[small])


def test_fewer_than_two_frames_is_an_error_naming_the_source():
    with pytest.raises(ValueError, match=r"photographs \['chelsea'\].*at least 2 frames.*got 1"):
        SyntheticFlowPairs(size=(64, 64), source=["chelsea"])
    partial = functools.partial(scan_sample, "val", num_sequences=1, num_frames=1, size=(64, 64))
    with pytest.raises(ValueError, match=r"scan_sample\(.*at least 2 frames.*got 1"):
        SyntheticFlowPairs(size=(32, 32), source=partial)
    with pytest.raises(ValueError, match=r"list of 0 sequences.*got 0"):
        SyntheticFlowPairs(size=(32, 32), source=[])
    with pytest.raises(TypeError, match="expected None, a list of photograph names"):
        SyntheticFlowPairs(size=(32, 32), source=lambda: "not sequences")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": (8, 8)}, "size"),
        ({"length": 0}, "length"),
        ({"zero_motion_prob": 1.5}, "zero_motion_prob"),
        ({"layers_range": (3, 1)}, "layers_range"),
        ({"max_translation": -1.0}, "max_translation"),
        ({"texture_scale": (0.0, 1.0)}, "texture_scale"),
        ({"degradations": ["noise"]}, "degradations"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticFlowPairs(**kwargs)
