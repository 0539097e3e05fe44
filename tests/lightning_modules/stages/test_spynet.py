"""SpyNet: output size for any input, the pyramid recursion, learning a real shift, weights I/O."""

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_modules.stages.spynet import SpyNet
from lightning_modules.stages.warp import flow_warp

SHIFT_DX, SHIFT_DY = 3, -2  # known motion of the training pair, in pixels


def randomized_spynet(num_levels=6, seed=0):
    """A SpyNet whose zero-initialised output convs are given random weights too."""
    torch.manual_seed(seed)
    net = SpyNet(num_levels=num_levels)
    with torch.no_grad():
        for module in net.basic_module:
            module.basic_module[-1].weight.normal_(0, 0.01)
            module.basic_module[-1].bias.normal_(0, 0.1)
    return net


@pytest.mark.parametrize(("scale", "internal"), [(1.0, (64, 96)), (0.25, (32, 32))])
def test_flow_has_input_size_for_sizes_not_divisible_by_32(scale, internal):
    net = randomized_spynet()
    net.scale = scale
    torch.manual_seed(1)
    ref, supp = torch.rand(2, 3, 50, 70), torch.rand(2, 3, 50, 70)
    flow = net(ref, supp)
    assert flow.shape == (2, 2, 50, 70)
    assert torch.isfinite(flow).all()
    assert net.internal_size(50, 70) == internal


def test_default_scale_quarter_on_480p_estimates_on_small_frames():
    net = SpyNet(scale=0.25)
    assert net.internal_size(480, 854) == (128, 224)


def test_untrained_spynet_returns_zero_flow():
    torch.manual_seed(0)
    flow = SpyNet()(torch.rand(1, 3, 40, 40), torch.rand(1, 3, 40, 40))
    assert torch.equal(flow, torch.zeros_like(flow))


def test_recursion_doubles_coarse_flow_and_rescales_to_input_size():
    """With G_k = constant b_k, V = sum_k 2**(L-1-k) b_k, then x scaled by W / W_internal."""
    net = SpyNet(num_levels=3)
    biases = [(1.0, 0.0), (0.0, 0.25), (0.5, -1.0)]
    with torch.no_grad():
        for module, (bx, by) in zip(net.basic_module, biases):
            module.basic_module[-1].bias.copy_(torch.tensor([bx, by]))
    frames = torch.rand(1, 3, 50, 70)
    flow = net(frames, frames)
    assert net.internal_size(50, 70) == (52, 72)
    expected_x = (4 * 1.0 + 2 * 0.0 + 0.5) * 70 / 72
    expected_y = (4 * 0.0 + 2 * 0.25 - 1.0) * 50 / 52
    torch.testing.assert_close(flow[:, 0], torch.full((1, 50, 70), expected_x))
    torch.testing.assert_close(flow[:, 1], torch.full((1, 50, 70), expected_y))


def test_batch_items_are_independent():
    net = randomized_spynet(num_levels=4)
    torch.manual_seed(2)
    ref, supp = torch.rand(3, 3, 24, 40), torch.rand(3, 3, 24, 40)
    batched = net(ref, supp)
    single = net(ref[1:2], supp[1:2])
    torch.testing.assert_close(batched[1:2], single, atol=1e-5, rtol=1e-5)


def shifted_pair(image, size=64, top=200, left=300):
    """(ref, supp) crops of ``image`` (H, W, 3 uint8) with supp[p + d] = ref[p], d = SHIFT."""
    frame = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255)
    ref = frame[:, top : top + size, left : left + size]
    supp = frame[
        :, top - SHIFT_DY : top - SHIFT_DY + size, left - SHIFT_DX : left - SHIFT_DX + size
    ]
    return ref[None], supp[None]


def interior_warp_error(ref, supp, flow, margin=4):
    error = (flow_warp(supp, flow) - ref).abs()
    return error[..., margin:-margin, margin:-margin].mean().item()


def train_on_pair(ref, supp, steps=60):
    """Adam on the Charbonnier photometric loss of one pair; returns the trained flow."""
    torch.manual_seed(0)
    net = SpyNet()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(steps):
        residual = flow_warp(supp, net(ref, supp)) - ref
        loss = torch.sqrt(residual.square() + 1e-6).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return net(ref, supp)


def check_learned_shift(ref, supp):
    zero_error = interior_warp_error(ref, supp, torch.zeros(1, 2, *ref.shape[2:]))
    flow = train_on_pair(ref, supp)
    assert interior_warp_error(ref, supp, flow) < 0.5 * zero_error
    mean_flow = flow.mean(dim=(0, 2, 3))
    torch.testing.assert_close(
        mean_flow, torch.tensor([SHIFT_DX, SHIFT_DY]).float(), atol=0.3, rtol=0
    )


def test_learns_known_shift_on_real_davis_frame(shared_data):
    path = shared_data / "davis2017_480p/JPEGImages/480p/blackswan/00000.jpg"
    check_learned_shift(*shifted_pair(Image.open(path).convert("RGB")))


def test_learns_known_shift_on_skimage_astronaut():
    skimage_data = pytest.importorskip("skimage.data")
    check_learned_shift(*shifted_pair(skimage_data.astronaut(), top=180, left=200))


def to_basicsr(state):
    return {"params": dict(state)}


def to_mmagic(state, prefix="generator.spynet."):
    """mmagic names: ConvModules numbered 0..4 with a .conv child, inside a full-model dict."""
    renamed = {}
    for key, value in state.items():
        level, _, seq_index, kind = key.split(".")[1:]
        renamed[f"{prefix}basic_module.{level}.basic_module.{int(seq_index) // 2}.conv.{kind}"] = (
            value
        )
    renamed[f"{prefix}mean"] = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    renamed[f"{prefix}std"] = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    renamed["generator.conv_last.weight"] = torch.zeros(3, 64, 3, 3)  # rest of a BasicVSR
    return {"meta": {"epoch": 1}, "state_dict": renamed}


@pytest.mark.parametrize("to_format", [to_basicsr, to_mmagic], ids=["basicsr", "mmagic"])
def test_checkpoint_round_trips_exactly(tmp_path, to_format):
    source = randomized_spynet(seed=3)
    path = tmp_path / "spynet.pth"
    torch.save(to_format(source.state_dict()), path)
    loaded = SpyNet(pretrained=str(path))
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    frames = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    assert torch.equal(loaded(*frames), source(*frames))


def test_bare_mmagic_state_dict_loads(tmp_path):
    source = randomized_spynet(seed=4)
    checkpoint = to_mmagic(source.state_dict(), prefix="")["state_dict"]
    del checkpoint["generator.conv_last.weight"]
    path = tmp_path / "bare.pth"
    torch.save(checkpoint, path)
    net = SpyNet()
    net.load_pretrained(path)
    assert torch.equal(
        net.basic_module[5].basic_module[8].bias, source.basic_module[5].basic_module[8].bias
    )


def test_wrong_checkpoints_name_file_and_keys(tmp_path):
    state = dict(randomized_spynet().state_dict())

    missing = dict(state)
    del missing["basic_module.2.basic_module.4.weight"]
    torch.save({"params": missing}, tmp_path / "missing.pth")
    with pytest.raises(
        ValueError, match=r"missing\.pth.*missing keys: basic_module\.2\.basic_module\.4\.weight"
    ):
        SpyNet(pretrained=str(tmp_path / "missing.pth"))

    extra = dict(state, **{"basic_module.6.basic_module.0.weight": torch.zeros(1)})
    torch.save({"params": extra}, tmp_path / "extra.pth")
    with pytest.raises(
        ValueError, match=r"unexpected keys: basic_module\.6\.basic_module\.0\.weight"
    ):
        SpyNet().load_pretrained(tmp_path / "extra.pth")

    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match=r"list\.pth must be a dict.*got list"):
        SpyNet().load_pretrained(tmp_path / "list.pth")

    wrong_shape = dict(state, **{"basic_module.0.basic_module.0.bias": torch.zeros(5)})
    torch.save({"params": wrong_shape}, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match=r"(?s)shape\.pth.*basic_module\.0\.basic_module\.0\.bias"):
        SpyNet().load_pretrained(tmp_path / "shape.pth")

    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"garbage\.pth"):
        SpyNet().load_pretrained(tmp_path / "garbage.pth")

    with pytest.raises(FileNotFoundError, match=r"nowhere\.pth"):
        SpyNet(pretrained=str(tmp_path / "nowhere.pth"))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="scale"):
        SpyNet(scale=0.0)
    with pytest.raises(ValueError, match="num_levels"):
        SpyNet(num_levels=0)
    net = SpyNet(num_levels=2)
    with pytest.raises(ValueError, match="differ in shape"):
        net(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 10))
    with pytest.raises(ValueError, match=r"ref must be a \(B, 3, H, W\)"):
        net(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))


@pytest.mark.parametrize("prefix", ["flow.", "net.flow."], ids=["flow_task", "restoration_task"])
def test_lightning_checkpoint_of_our_tasks_loads(tmp_path, prefix):
    """A Lightning checkpoint of FlowPretrainTask (flow.*) or RestorationTask (net.flow.*)."""
    source = randomized_spynet(seed=5)
    state = {prefix + key: value for key, value in source.state_dict().items()}
    state["net.restoration.head.weight"] = torch.zeros(4, 4, 3, 3)  # other stages are ignored
    path = tmp_path / "task.ckpt"
    torch.save({"epoch": 3, "global_step": 10, "state_dict": state}, path)
    loaded = SpyNet(pretrained=str(path))
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_half_of_the_first_filters_start_on_the_temporal_difference():
    from lightning_modules.stages.spynet import SpyNetBasicModule

    first = SpyNetBasicModule().basic_module[0].weight
    half = first.shape[0] // 2
    torch.testing.assert_close(first[:half, 3:6], -first[:half, 0:3])
    assert not torch.allclose(first[half:, 3:6], -first[half:, 0:3])
