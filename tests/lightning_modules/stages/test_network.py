"""Tests for the full network (propagation over a clip) and the variant presets."""

import dataclasses

import pytest
import torch

from lightning_modules.stages.attention import ConcatFusion, TemporalAttentionFusion
from lightning_modules.stages.network import NetworkOutput, VideoRestorationNet
from lightning_modules.stages.quantizers import AdaptiveQuantizer, ChannelQuantizer, FixedQuantizer
from lightning_modules.stages.restoration import RestorationUNet
from tests.conftest_config import tiny_network

B, T, H, W = 1, 3, 32, 48
LATENT = 8
CODEC_KEYS = {"q", "mu", "sigma", "bits"}
FLOW_KEYS = {"flow", "flow_refined", "aligned", "purified"}


def tiny(variant="adaptive_q", *overrides):
    """A preset's network from conf/, small (N = 16, C_y = 8) so a 3-frame clip runs in well
    under a second; ``overrides`` are config overrides such as ``model.bidirectional=true``."""
    torch.manual_seed(0)
    small = ["model.restoration.num_blocks=[1,1,1]"]
    if variant != "no_codec":
        small.append(f"model.codec.latent_channels={LATENT}")
    return tiny_network(variant, [*small, *overrides])


def clip(b=B, t=T, h=H, w=W, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, 3, h, w, generator=gen)


def sigma(b=B):
    return torch.full((b,), 25 / 255)


NO_NOISE_INPUT = "model.noise_channel=false"
GRADIENT_CASES = [
    ("adaptive_q", []),
    ("channel_q", []),
    ("fixed_q", []),
    ("no_codec", []),
    ("adaptive_q", ["model/mv_refine=none", "model/fusion=concat"]),
    ("adaptive_q", ["model.bidirectional=true"]),
    ("fixed_q", [NO_NOISE_INPUT, "model.codec.likelihood=laplace"]),
    ("adaptive_q", ["model.codec.context_channels=0"]),  # μ, σ, q from ẑ alone
    ("adaptive_q", ["model.previous_input=true"]),
    ("no_codec", ["model.previous_input=true", "model.bidirectional=true"]),
    ("adaptive_q", ["model.alignment_hint=true"]),
    ("no_codec", ["model.alignment_hint=true", "model.bidirectional=true", "model/fusion=concat"]),
    ("adaptive_q", ["model/alignment=deformable"]),
    ("no_codec", ["model/alignment=deformable", "model.bidirectional=true"]),
]


@pytest.mark.parametrize(("variant", "overrides"), GRADIENT_CASES)
def test_every_parameter_gets_a_finite_gradient(variant, overrides):
    net = tiny(variant, *overrides).train()
    noise = None if NO_NOISE_INPUT in overrides else sigma()
    out = net(clip(), noise)
    assert isinstance(out, NetworkOutput)
    assert out.restored.shape == (B, T, 3, H, W)
    (out.restored.mean() + out.bpp).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
    bad = [n for n, p in net.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad}"
    # The U-Net, the fusion and (when present) the codec must really learn, not get zeros.
    for prefix in ("restoration.", "fusion.", "codec."):
        grads = [p.grad.abs().sum() for n, p in net.named_parameters() if n.startswith(prefix)]
        if grads:
            assert sum(grads) > 0, prefix


@pytest.mark.parametrize("variant", ["adaptive_q", "channel_q", "fixed_q", "no_codec"])
def test_rates_and_bpp(variant):
    net = tiny(variant).eval()
    with torch.no_grad():
        out = net(clip(b=2), sigma(2))
    pixels = 2 * T * H * W
    torch.testing.assert_close(out.bpp, (out.bits_y + out.bits_z) / pixels)
    torch.testing.assert_close(out.bpp_y, out.bits_y / pixels)
    torch.testing.assert_close(out.bpp_z, out.bits_z / pixels)
    assert out.bits_y.ndim == 0 and out.bits_z.ndim == 0
    if variant == "no_codec":
        assert out.bits_y.item() == 0 and out.bits_z.item() == 0 and out.bpp.item() == 0
    else:
        assert out.bits_y.item() > 0 and out.bits_z.item() > 0
    assert torch.isfinite(out.restored).all()


def test_rate_is_the_sum_of_the_codec_bit_maps():
    """bits_y must be the sum of the per-frame "bits" maps: an honest, complete rate."""
    net = tiny("adaptive_q").eval()
    with torch.no_grad():
        out = net(clip(), sigma(), return_maps=True)
    assert "bits" not in out.maps[0]  # t = 0: nothing is coded
    total = sum(m["bits"].sum() for m in out.maps[1:])
    torch.testing.assert_close(out.bits_y, total, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_forward_mode_is_causal_and_bidirectional_is_not(bidirectional):
    """d restored_0 / d lq_{1,2} is exactly zero forward, non-zero bidirectional.

    Gradients (straight-through through the quantizer) rather than perturbing the input: a
    small perturbation of a later frame can round away inside the codec.
    """
    net = tiny("adaptive_q", f"model.bidirectional={str(bidirectional).lower()}").train()
    lq = clip().requires_grad_(True)
    restored = net(lq, sigma()).restored
    (grad,) = torch.autograd.grad(restored[:, 0].sum(), lq)
    later = grad[:, 1:].abs().sum()
    if bidirectional:
        assert later > 0
    else:
        assert later == 0
    assert grad[:, 0].abs().sum() > 0
    (grad_last,) = torch.autograd.grad(net(lq, sigma()).restored[:, 2].sum(), lq)
    assert grad_last[:, 0].abs().sum() > 0  # and the last frame sees the first one


def test_temporal_state_is_used():
    """The second frame's output depends on the first frame (propagation happens)."""
    net = tiny("no_codec").eval()
    lq = clip()
    changed = lq.clone()
    changed[:, 0] += 0.5
    with torch.no_grad():
        a = net(lq, sigma()).restored
        b = net(changed, sigma()).restored
    assert not torch.allclose(a[:, 1], b[:, 1])


@pytest.mark.parametrize("hint", [False, True])
def test_inference_path_matches_autograd_path(hint):
    net = tiny("channel_q", "model.bidirectional=true", f"model.alignment_hint={hint}").eval()
    lq = clip(h=13, w=21)  # sizes not divisible by 4 run too
    with torch.no_grad():
        fast = net(lq, sigma())
    slow = net(lq, sigma())
    assert slow.restored.requires_grad and not fast.restored.requires_grad
    torch.testing.assert_close(fast.restored, slow.restored.detach())
    torch.testing.assert_close(fast.bits_y, slow.bits_y.detach())


@pytest.mark.parametrize("variant", ["adaptive_q", "no_codec"])
def test_maps_only_when_asked(variant):
    net = tiny(variant).eval()  # latent stride 4 (the default)
    with torch.no_grad():
        assert net(clip(), sigma()).maps == []
    out = net(clip(), sigma(), return_maps=True)  # grad enabled: maps must still be detached
    assert len(out.maps) == T
    expected_keys = FLOW_KEYS | (CODEC_KEYS if variant != "no_codec" else set())
    expected_keys |= {"filter_weight"}  # the presets' output filter, from t = 1 on
    assert set(out.maps[0]) == FLOW_KEYS  # t = 0: no past, the codec does not run
    assert (out.maps[0]["purified"] == 0).all()
    for frame_maps in out.maps[1:]:
        assert set(frame_maps) == expected_keys
        assert all(not m.requires_grad for m in frame_maps.values())
        assert frame_maps["flow"].shape == (B, 2, H, W)
        assert frame_maps["flow_refined"].shape == (B, 2, H, W)
        assert frame_maps["filter_weight"].shape == (B, 1, H, W)
        assert 0 <= frame_maps["filter_weight"].min() <= frame_maps["filter_weight"].max() <= 0.5
        if variant != "no_codec":
            for key in CODEC_KEYS:
                assert frame_maps[key].shape == (B, LATENT, H // 4, W // 4), key
            assert (frame_maps["q"] >= 0.5).all()
        assert frame_maps["aligned"].shape == frame_maps["purified"].shape == (B, 16, 8, 12)
        codec_changes_them = not torch.equal(frame_maps["aligned"], frame_maps["purified"])
        assert codec_changes_them == (variant != "no_codec")
    assert (out.maps[0]["flow"] == 0).all()  # no previous frame at t = 0
    assert (out.maps[0]["aligned"] == 0).all()  # nor a state


def test_single_frame_clip():
    net = tiny("adaptive_q").eval()
    with torch.no_grad():
        out = net(clip(t=1), sigma())
    assert out.restored.shape == (B, 1, 3, H, W)
    assert out.bits_y.item() == 0 and out.bits_z.item() == 0  # nothing to send without a past


@pytest.mark.parametrize("bidirectional", [False, True])
def test_the_codec_runs_only_for_frames_with_a_past(bidirectional):
    """Without a past there are no temporal features to send: one codec call per frame but the
    first of each pass, and frame 0's output is the same with the codec as with a zero codec."""
    net = tiny("adaptive_q", f"model.bidirectional={str(bidirectional).lower()}").eval()
    calls = []
    handle = net.codec.register_forward_hook(lambda m, args, out: calls.append(out.bits_y))
    with torch.no_grad():
        out = net(clip(), sigma())
    handle.remove()
    assert len(calls) == (T - 1) * (2 if bidirectional else 1)
    torch.testing.assert_close(out.bits_y, sum(calls))
    if not bidirectional:  # frame 0 sees no codec output: changing the codec cannot change it
        net.codec.register_forward_hook(
            lambda m, args, out: dataclasses.replace(
                out, features=[torch.ones_like(f) for f in out.features]
            )
        )
        with torch.no_grad():
            changed = net(clip(), sigma()).restored
        torch.testing.assert_close(changed[:, 0], out.restored[:, 0], rtol=0, atol=0)
        assert not torch.allclose(changed[:, 1], out.restored[:, 1])


def test_bad_inputs_raise_clear_errors():
    net = tiny("no_codec")
    with pytest.raises(ValueError, match=r"lq: expected .*\(B, T, 3, H, W\)"):
        net(clip()[:, 0], sigma())
    with pytest.raises(ValueError, match="lq: expected"):
        net(torch.rand(B, T, 1, H, W), sigma())
    with pytest.raises(ValueError, match="noise_level: required"):
        net(clip())
    with pytest.raises(ValueError, match=r"noise_level: expected a tensor of shape \(1,\)"):
        net(clip(), torch.full((1, 1), 0.1))
    plain = tiny("no_codec", NO_NOISE_INPUT)
    with pytest.raises(ValueError, match="noise_level must be None"):
        plain(clip(), sigma())
    with pytest.raises(ValueError, match="multiple of 4"):
        tiny("no_codec", "model.channels=30")
    with pytest.raises(ValueError, match="extra_channels=0"):
        VideoRestorationNet(
            flow=net.flow,
            restoration=RestorationUNet(extra_channels=1, channels=(4, 8, 16)),
            alignment=net.alignment,
            noise_channel=False,
        )


def test_presets_pick_the_stages_they_name():
    expected = {
        "adaptive_q": AdaptiveQuantizer,
        "channel_q": ChannelQuantizer,
        "fixed_q": FixedQuantizer,
    }
    for variant, quantizer in expected.items():
        assert isinstance(tiny(variant).codec.quantizer, quantizer)
    plain = tiny(
        "no_codec",
        "model/mv_refine=none",
        "model/fusion=concat",
        NO_NOISE_INPUT,
        "model.guide_frame=false",
    )
    assert plain.codec is None and plain.mv_refine is None
    assert all(isinstance(f, ConcatFusion) for f in plain.fusion)
    assert plain.restoration.extra_channels == 0 and not plain.guide_frame
    guided = tiny("no_codec", "model.guide_frame=true")
    assert guided.restoration.extra_channels == 1 + 3  # σ map + guide frame
    previous = tiny("no_codec", "model.previous_input=true")
    assert previous.restoration.extra_channels == 1 + 4  # σ map + previous input and its mask
    blended = tiny("no_codec", "model/blend=recursive")
    assert blended.restoration.extra_channels == 1 + 1  # σ map + blend weight
    both = tiny("adaptive_q", "model.bidirectional=true")
    assert all(isinstance(f, TemporalAttentionFusion) for f in both.fusion)
    assert [f.num_temporal for f in both.fusion] == [2, 2, 2]
    assert [f.channels for f in both.backward_fusion] == [4, 8, 16]


def _spy_on_encoder_inputs(net):
    """Record (frame, extra inputs) of every encoder call (extra channel 0: the σ map)."""
    seen = []
    encode = net.restoration.encode

    def spy(frame, extra):
        seen.append((frame.clone(), extra.clone()))
        return encode(frame, extra)

    net.restoration.encode = spy
    return seen


def test_the_guide_is_the_previous_output_aligned_by_the_flow():
    """With zero flow and no refinement the guide of frame t is exactly the output of t-1."""
    net = tiny("no_codec", "model/flow=zero", "model/mv_refine=none", "model.guide_frame=true")
    net.eval()
    seen = _spy_on_encoder_inputs(net)
    with torch.no_grad():
        out = net(clip(), sigma())
    guides = [extra[:, 1:] for _, extra in seen]
    assert len(guides) == T and torch.equal(guides[0], torch.zeros_like(guides[0]))
    for t in range(1, T):
        torch.testing.assert_close(guides[t], out.restored[:, t - 1])


def test_the_previous_input_is_the_previous_degraded_frame_aligned_by_the_flow():
    """Flow (+2, -1) px: channels 1-3 are lq_{t-1} read at (x + 2, y - 1), channel 4 marks where
    that lies inside the frame; both are 0 at t = 0."""
    net = tiny("no_codec", "model/mv_refine=none", "model.previous_input=true").eval()
    shift = torch.tensor([2.0, -1.0]).view(1, 1, 2, 1, 1).expand(B, T, 2, H, W)
    calls = _spy_on_encoder_inputs(net)
    lq = clip()
    with torch.no_grad():
        net(lq, sigma(), flows=shift.contiguous())
    seen = [extra for _, extra in calls]
    assert len(seen) == T
    assert torch.equal(seen[0][:, 1:], torch.zeros_like(seen[0][:, 1:]))
    for t in range(1, T):
        warped, mask = seen[t][:, 1:4], seen[t][:, 4:5]
        inside = torch.zeros(B, 1, H, W)
        inside[:, :, 1:, : W - 2] = 1
        assert torch.equal(mask, inside)
        torch.testing.assert_close(warped[:, :, 1:, : W - 2], lq[:, t - 1, :, :-1, 2:])
        assert torch.equal(warped * (1 - mask), torch.zeros_like(warped))


def test_the_previous_input_follows_the_refined_flow_and_trains_the_refinement():
    """The warp of lq_{t-1} uses v̂_t, so the restoration loss reaches the motion refinement
    through it (even with no recurrent state to align: the state's own path is cut here)."""
    net = tiny("no_codec", "model/flow=zero", "model.previous_input=true").train()
    net.alignment.forward = lambda state, flow, current: [torch.zeros_like(s) for s in state]
    net(clip(), sigma()).restored[:, 1:].sum().backward()
    grads = [p.grad for p in net.mv_refine.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


def test_the_blend_restores_the_current_frame_averaged_with_the_aligned_past():
    net = tiny("no_codec", "model/flow=zero", "model/mv_refine=none", "model/blend=recursive")
    net.eval()
    calls = _spy_on_encoder_inputs(net)
    lq = clip()
    with torch.no_grad():
        out = net(lq, sigma())
        frames = [frame for frame, _ in calls]
        assert torch.equal(frames[0], lq[:, 0])  # no past at t = 0
        for t in range(1, T):
            expected, _ = net.blend(lq[:, t], out.restored[:, t - 1], sigma())
            torch.testing.assert_close(frames[t], expected)
            assert not torch.equal(frames[t], lq[:, t])


class _ReturnsGiven(torch.nn.Module):
    """A flow stage returning preset flows one call after another."""

    def __init__(self, flows):
        super().__init__()
        self.flows = list(flows)

    def forward(self, current, neighbour):
        return self.flows.pop(0)


def test_given_flows_replace_the_flow_stage():
    """net(lq, σ, flows=v) equals the same net whose flow stage returns v_1, v_2, ..."""
    net = tiny("no_codec").eval()  # at init a codec's eval rounding hides its input
    flows = 3.0 * torch.randn(B, T, 2, H, W, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        given = net(clip(), sigma(), flows=flows)
        net.flow = _ReturnsGiven(flows[:, t] for t in range(1, T))
        estimated = net(clip(), sigma())
        net.flow = _ReturnsGiven([torch.zeros(B, 2, H, W)] * (T - 1))
        unmoved = net(clip(), sigma())
    torch.testing.assert_close(given.restored, estimated.restored)
    assert not torch.allclose(given.restored[:, 1:], unmoved.restored[:, 1:])
    torch.testing.assert_close(given.restored[:, 0], unmoved.restored[:, 0])  # v_0 is ignored


def test_given_flows_bad_shape_or_bidirectional_net():
    with pytest.raises(ValueError, match=r"flows: expected shape \(1, 3, 2, 32, 48\)"):
        tiny("no_codec")(clip(), sigma(), flows=torch.zeros(B, T, 2, H, W + 1))
    with pytest.raises(ValueError, match="bidirectional network estimates its own"):
        tiny("no_codec", "model.bidirectional=true")(
            clip(), sigma(), flows=torch.zeros(B, T, 2, H, W)
        )


@pytest.mark.parametrize("bidirectional", [False, True])
def test_the_alignment_hint_reaches_the_gates_only_where_the_past_disagrees(bidirectional):
    """On a static noiseless clip (zero flow explains every frame) the hint is 0, so the hint's
    gate weights change nothing; on a clip whose frames differ they change the output."""
    overrides = ["model/flow=zero", "model/mv_refine=none", "model.alignment_hint=true"]
    net = tiny("no_codec", *overrides, f"model.bidirectional={str(bidirectional).lower()}")
    net.eval()
    static = clip()[:, :1].expand(B, T, 3, H, W).contiguous()
    moving = clip()
    fusions = [*net.fusion, *(net.backward_fusion or [])]
    with torch.no_grad():
        before_static, before_moving = (net(x, sigma()).restored for x in (static, moving))
        for fusion in fusions:  # weights on the hint inputs: the last 2 per temporal map
            num_hint_inputs = 2 * fusion.num_temporal
            fusion.spatial_gate.weight[:, -num_hint_inputs:].normal_(0.0, 5.0)
        after_static, after_moving = (net(x, sigma()).restored for x in (static, moving))
    torch.testing.assert_close(after_static, before_static)
    assert not torch.allclose(after_moving[:, 1:], before_moving[:, 1:])
    if not bidirectional:  # forward, frame 0 has no past (bidirectional: frame 1 is its past)
        torch.testing.assert_close(after_moving[:, 0], before_moving[:, 0])


class _CountsCalls(torch.nn.Module):
    """Wraps a flow stage and records the batch size of every call."""

    def __init__(self, flow):
        super().__init__()
        self.flow, self.batches = flow, []

    def forward(self, current, neighbour):
        self.batches.append(current.shape[0])
        return self.flow(current, neighbour)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_training_estimates_the_clip_flows_in_one_call_with_the_per_frame_result(bidirectional):
    """With autograd on, the flow stage runs once per direction on all B·(T-1) pairs, with the
    result of one call per frame (DIS: bitwise). Without autograd it runs per frame (memory
    flat in T)."""
    net = tiny("adaptive_q", *(["model.bidirectional=true"] if bidirectional else []))
    lq = clip(b=2, t=4, h=64, w=64)
    net.flow = _CountsCalls(net.flow)

    def run(**given):
        torch.manual_seed(5)  # the codec's training noise
        return net(lq, sigma(2), **given)

    batched = run()
    assert net.flow.batches == [2 * 3] * (2 if bidirectional else 1)
    assert batched.flows.abs().amax() > 0.5  # DIS finds motion in this clip
    net.flow.batches.clear()
    net._clip_flows = lambda *args, **kwargs: None  # back to one flow call per frame
    per_frame = run()
    assert net.flow.batches == [2] * 3 * (2 if bidirectional else 1)
    assert torch.equal(per_frame.restored, batched.restored)
    assert torch.equal(per_frame.flows, batched.flows)
    del net._clip_flows
    net.flow.batches.clear()
    with torch.no_grad():
        net(lq, sigma(2))
    assert net.flow.batches == [2] * 3 * (2 if bidirectional else 1)
