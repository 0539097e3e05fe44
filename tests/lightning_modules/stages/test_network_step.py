"""The step API (``init_state`` / ``step``): streaming one frame at a time equals ``forward``."""

import pytest
import torch

from tests.conftest_config import tiny_network

T, H, W = 4, 32, 48


def tiny(variant, *overrides):
    torch.manual_seed(0)
    small = ["model.restoration.num_blocks=[1,1,1]"]
    if variant != "no_codec":
        small.append("model.codec.latent_channels=8")
    return tiny_network(variant, [*small, *overrides]).eval()


def clip(seed=1):
    return torch.rand(1, T, 3, H, W, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("variant", "overrides"),
    [
        ("adaptive_q", []),
        ("no_codec", ["model/blend=recursive"]),
        ("no_codec", ["model.previous_input=true"]),
        ("adaptive_q", ["model.alignment_hint=true"]),
        ("adaptive_q", ["model/alignment=deformable"]),
        ("adaptive_q", ["model/output_filter=none"]),
        ("fixed_q", ["model.noise_channel=false"]),
    ],
)
def test_stepping_frame_by_frame_equals_the_whole_clip_forward(variant, overrides):
    net = tiny(variant, *overrides)
    lq = clip()
    sigma = torch.full((1,), 25 / 255) if net.noise_channel else None
    with torch.no_grad():
        whole = net(lq, sigma).restored
        state = net.init_state()
        streamed = []
        for t in range(T):
            frame, state = net.step(lq[:, t], sigma, state)
            streamed.append(frame)
    torch.testing.assert_close(torch.stack(streamed, 1), whole, rtol=1e-5, atol=1e-5)
    assert torch.equal(state.previous_lq, lq[:, T - 1])


def test_the_state_carries_the_past():
    """Restarting the recurrence (a fresh state) changes the frame: the state is used."""
    net = tiny("adaptive_q")
    lq, sigma = clip(), torch.full((1,), 25 / 255)
    with torch.no_grad():
        _, state = net.step(lq[:, 0], sigma)
        carried, _ = net.step(lq[:, 1], sigma, state)
        fresh, _ = net.step(lq[:, 1], sigma, net.init_state())
    assert not torch.allclose(carried, fresh)


def test_step_refuses_bidirectional_nets_and_bad_frames():
    net = tiny("adaptive_q", "model.bidirectional=true")
    with pytest.raises(ValueError, match="step: this network is bidirectional"):
        net.step(clip()[:, 0], torch.full((1,), 0.1))
    net = tiny("adaptive_q")
    with pytest.raises(ValueError, match=r"frame: expected .*\(B, 3, H, W\), got \(1, 4, 3"):
        net.step(clip(), torch.full((1,), 0.1))
    with pytest.raises(ValueError, match="noise_level: required"):
        net.step(clip()[:, 0])
