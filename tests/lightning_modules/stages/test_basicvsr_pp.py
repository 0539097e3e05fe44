"""BasicVSR++ baseline: the network contract, its flow convention, gradients to every part."""

import pytest
import torch

from lightning_modules.run.compose import build_network
from lightning_modules.stages.basicvsr_pp import BasicVSRPlusPlus
from lightning_modules.stages.network import NetworkOutput
from lightning_modules.stages.warp import flow_warp
from lightning_modules.stages.zero_flow import ZeroFlow

TINY = [
    "model.channels=8",
    "model.extract_blocks=1",
    "model.propagation_blocks=1",
    "model.reconstruction_blocks=1",
    "model.deform_groups=4",
]


@pytest.fixture(scope="module")
def tiny_net():
    torch.manual_seed(0)
    return build_network("basicvsr_pp", TINY)


def test_presets_build_from_conf_with_the_published_sizes():
    net = build_network("basicvsr_pp")
    assert net.channels == 64 and len(net.propagate["forward_2"]) == 2 + 7
    assert net.align["backward_1"].deform_groups == 16
    assert type(net.flow).__name__ == "DISFlow"  # the project's flow group, not a SPyNet
    small = build_network("basicvsr_pp_small")
    assert small.channels == 28
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("size", [(16, 20), (13, 18)])  # a multiple of 4, and padded/cropped
def test_output_contract_shapes_and_zero_rate(tiny_net, size):
    lq = torch.rand(2, 3, 3, *size)
    with torch.no_grad():
        out = tiny_net(lq, torch.tensor([0.1, 0.2]), return_maps=True)
    assert isinstance(out, NetworkOutput)
    assert out.restored.shape == lq.shape and torch.isfinite(out.restored).all()
    assert float(out.bpp) == float(out.bits_y) == float(out.bits_z) == 0.0
    assert len(out.maps) == 3 and out.maps[1]["flow"].shape == (2, 2, *size)
    assert out.maps[0]["flow"].abs().max() == 0  # no predecessor


def test_untrained_net_starts_near_the_input_and_a_single_frame_works(tiny_net):
    lq = torch.rand(1, 1, 3, 16, 16)
    with torch.no_grad():
        out = tiny_net(lq, torch.tensor([0.1]))
    assert out.restored.shape == lq.shape
    assert (out.restored - lq).abs().mean() < 0.5  # output = input + a residual


def test_noise_level_is_checked():
    net = BasicVSRPlusPlus(ZeroFlow(), 8, 0, 0, 0, 4, noise_channel=True)
    with pytest.raises(ValueError, match=r"noise_level: required"):
        net(torch.rand(1, 2, 3, 8, 8), None)
    with pytest.raises(ValueError, match=r"noise_level: expected a tensor of shape \(1,\)"):
        net(torch.rand(1, 2, 3, 8, 8), torch.tensor([0.1, 0.2]))
    blind = BasicVSRPlusPlus(ZeroFlow(), 8, 0, 0, 0, 4, noise_channel=False)
    with pytest.raises(ValueError, match="noise_level must be None"):
        blind(torch.rand(1, 2, 3, 8, 8), torch.tensor([0.1]))
    with pytest.raises(ValueError, match="deform_groups"):
        BasicVSRPlusPlus(ZeroFlow(), 8, deform_groups=3)


def test_gradients_reach_every_parameter_group(tiny_net):
    """After one step in which the offset heads' zero-initialised last convs have moved,
    every parameter (extraction, all four branches' alignment and propagation, reconstruction,
    upsampling) gets a gradient."""
    torch.manual_seed(0)  # fixed init: the test is about wiring, not about a lucky draw
    net = build_network("basicvsr_pp", [*TINY, "model/flow=spynet", "model.flow.num_levels=2"])
    lq = torch.rand(1, 4, 3, 16, 16)
    level = torch.tensor([0.1])
    net(lq, level).restored.square().mean().backward()
    with torch.no_grad():  # a plain SGD step moves the zero-initialised offset convs
        for p in net.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad.sign()
    net.zero_grad()
    net(lq, level).restored.square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing


def test_flow_direction_aligns_a_shifted_clip():
    """With a perfect flow stage and a clip translating by 4 px a frame, the backward branch's
    first alignment (pure flow warping at init) lands the next frame's features on the current
    frame: the flow fed to the alignment follows flow_warp(supp, flow(ref, supp)) ≈ ref."""

    class ShiftFlow(torch.nn.Module):
        """Per pair, the constant flow of ±4 px in x that best satisfies the contract
        flow_warp(supp, flow) ≈ ref."""

        def forward(self, ref, supp):
            candidates = []
            for dx in (4.0, -4.0):
                flow = torch.zeros(ref.shape[0], 2, *ref.shape[2:])
                flow[:, 0] = dx
                error = (flow_warp(supp, flow) - ref)[..., 4:-4].abs().mean((1, 2, 3))
                candidates.append((error, flow))
            (e1, f1), (e2, f2) = candidates
            return torch.where((e1 < e2).view(-1, 1, 1, 1), f1, f2)

    net = BasicVSRPlusPlus(ShiftFlow(), 8, 0, 0, 0, 4, noise_channel=False)
    base = torch.rand(1, 3, 32, 48)
    frame0, frame1 = base[..., 8:40], base[..., 4:36]  # frame1[x] = frame0[x - 4]: moves right
    lq = torch.stack([frame0, frame1], 1)
    backward, forward = net._flows(lq, (8, 8))
    assert torch.allclose(backward[:, 0, 0], torch.full((1, 8, 8), 1.0))  # +4 px / 4 = +1
    assert torch.allclose(forward[:, 0, 0], torch.full((1, 8, 8), -1.0))
