"""The full network: runs the stages frame by frame over a clip (docs/ARCHITECTURE.md).

``out = net(lq, noise_level=None, return_maps=False)`` with ``lq`` (B, T, 3, H, W) and
``noise_level`` (B,) in [0, 1] units (required iff ``noise_channel``). Per frame t, with the
temporal state S_{t-1} (decoder features at scales 1, 1/2, 1/4; zeros at t = 0):

    v_t     = flow(lq_t, lq_{t-1})                 (zero at t = 0)
    v̂_t     = mv_refine(v_t, lq_t, lq_{t-1})        (optional)
    G_t     = warp(out_{t-1}, v̂_t)                  (guide_frame / blend; zeros at t = 0)
    N_t, m_t = warp(lq_{t-1}, v̂_t)·m_t, in_bounds(v̂_t)  (previous_input; zeros at t = 0)
    x̃_t, α_t = blend(lq_t, G_t, σ)                 (optional; lq_t and 0 at t = 0)
    E_t     = restoration.encode(x̃_t, [σ map, G_t, N_t, m_t, α_t])
    A_t     = alignment(S_{t-1}, v̂_t, E_t)          warped state, 3 scales (E_t: deformable)
    P_t     = codec(A_t, context=E_t[2])            purified features + bits (optional; zeros
                                                    and 0 bits at t = 0: no past to send)
    H_t     = alignment_hint(lq_t, lq_{t-1}, v̂_t)    (alignment_hint; zeros at t = 0)
    F_t[s]  = fusion[s](E_t[s], [P_t[s]], [H_t[s]])  attention (or plain concat) per scale
    out_t, S_t = restoration.decode(F_t, x̃_t)        out_t = x̃_t + residual
    out_t   = output_filter(out_t, out_{t-1}, v̂_t)    (optional; out_{t-1} already filtered)

With ``guide_frame`` the previous restored frame, aligned, joins the encoder's input (3 more
channels after the σ map), and with ``blend`` (``temporal_blend.TemporalBlend``) it is averaged
into the frame to restore where it agrees with it: clean pixel-level evidence of the current
frame, next to the feature-level state the codec purifies. With ``previous_input`` the previous
*degraded* frame, aligned, joins the encoder's input with its in-bounds mask (4 channels): its
noise is independent of the current frame's, so the U-Net can average the two where they agree
(what multi-frame denoisers such as FastDVDnet learn from), and the mask is 0 where the warp read
outside the frame and at t = 0. With ``alignment_hint`` the fusion gates also get H_t, how much
of the difference between lq_t and the aligned lq_{t-1} the noise cannot explain, and where the
warp read outside the frame (``alignment_hint.py``), pooled to each scale. With
``output_filter`` (``output_filter.RecursiveOutputFilter``) the restored frame is averaged with the
aligned previous (filtered) output where the two agree: a recursive average of the restored
frames that leaves the frame the U-Net restores untouched.

Bidirectional: a backward recurrence (t = T-1 .. 0, flow towards lq_{t+1}, its own fusion,
shared stages, its own guide frames) first gives purified backward features Q_t; the forward
pass then fuses ``[P_t, Q_t]``. Rates: bits_y/bits_z sum -log2 p over every quantized value of
both passes; ``bpp = (bits_y + bits_z) / (B·T·H·W)``.

Without autograd (``torch.no_grad``) and without maps, the forward recursion keeps only the
current state and writes each restored frame into a preallocated output, so memory does not
grow with T (the bidirectional mode must keep T backward features).

Given flows: ``net(lq, noise_level, flows=v)`` with v (B, T, 2, H, W) uses v_t in place of the
flow stage's estimate (v_0 is ignored; motion refinement still applies), e.g. flow the data
loader estimated on the crop grown by a margin of context (``ClipDataset(flow_estimator=...)``).
Forward-recurrent nets only. With autograd on (training) and no given flows, the flow stage runs
once per direction on all of the clip's pairs (``_clip_flows``; it never sees the state), which
equals one call per frame.

Streaming (forward-recurrent nets): ``state = net.init_state()``, then per frame
``restored, state = net.step(lq_t, noise_level, state)``; ``forward`` loops over the same step,
so the frames equal the whole-clip pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from lightning_modules.stages.alignment_hint import HINT_CHANNELS, alignment_hint, hint_pyramid
from lightning_modules.stages.attention import TemporalAttentionFusion
from lightning_modules.stages.restoration import RestorationUNet
from lightning_modules.stages.warp import flow_warp, in_bounds_mask

# fusion(channels, num_temporal) -> module fusing current features with temporal ones per scale
FusionFactory = Callable[..., nn.Module]


def check_clip(lq: Tensor) -> None:
    """Errors unless ``lq`` is a (B, T, 3, H, W) clip batch with T, H, W >= 1."""
    if not isinstance(lq, Tensor) or lq.ndim != 5 or lq.shape[2] != 3:
        got = tuple(lq.shape) if isinstance(lq, Tensor) else type(lq).__name__
        raise ValueError(f"lq: expected a clip batch of shape (B, T, 3, H, W), got {got}")
    if lq.shape[1] < 1 or lq.shape[3] < 1 or lq.shape[4] < 1:
        raise ValueError(f"lq: T, H and W must be >= 1, got shape {tuple(lq.shape)}")


def noise_map(lq: Tensor, noise_level: Tensor | None, noise_channel: bool) -> Tensor | None:
    """(B, 1, H, W) constant σ map of a (B, T, 3, H, W) clip, or None without a noise channel;
    errors on a missing, unexpected or ill-shaped σ (a (B,) tensor in [0, 1] units)."""
    batch, _, _, height, width = lq.shape
    if not noise_channel:
        if noise_level is not None:
            raise ValueError(
                "noise_level: this network was built with noise_channel=False, so "
                "noise_level must be None"
            )
        return None
    if noise_level is None:
        raise ValueError(
            "noise_level: required (a (B,) tensor of σ in [0, 1] units) because the "
            "network was built with noise_channel=True"
        )
    if not isinstance(noise_level, Tensor) or tuple(noise_level.shape) != (batch,):
        got = tuple(noise_level.shape) if isinstance(noise_level, Tensor) else noise_level
        raise ValueError(f"noise_level: expected a tensor of shape ({batch},), got {got}")
    level = noise_level.to(device=lq.device, dtype=lq.dtype)
    return level.view(batch, 1, 1, 1).expand(batch, 1, height, width)


def noise_level_of(noise_map: Tensor | None) -> Tensor | None:
    """The (B,) σ a constant σ map (B, 1, H, W) holds; None without one."""
    return None if noise_map is None else noise_map[:, 0, 0, 0]


def extra_input_channels(
    noise_channel: bool, guide_frame: bool, blend: bool, previous_input: bool
) -> int:
    """Channels the U-Net reads beside the frame: 1 for the σ map, 3 for the aligned previous
    output, 4 for the aligned previous input and its mask, 1 for the blend weight."""
    return int(noise_channel) + 3 * int(guide_frame) + 4 * int(previous_input) + int(blend)


@dataclass
class NetworkOutput:
    """Restored clip, rates (scalar tensors), on request per-frame detached maps, and with
    autograd on the forward recurrence's refined flows v̂ (B, T, 2, H, W; v̂_0 = 0) with their
    graph (the alignment loss of ``RestorationTask`` trains motion refinement with them)."""

    restored: Tensor
    bits_y: Tensor
    bits_z: Tensor
    bpp: Tensor
    bpp_y: Tensor
    bpp_z: Tensor
    maps: list[dict[str, Tensor]] = field(default_factory=list)
    flows: Tensor | None = None


@dataclass
class _Purified:
    """What one temporal step yields: purified features (3 scales), bits, codec maps (and the
    output filter's weight w_t, added after decoding), and the aligned 1/4-scale features the
    codec received."""

    features: list[Tensor]
    bits_y: Tensor
    bits_z: Tensor
    maps: dict[str, Tensor]
    aligned: Tensor


@dataclass
class StreamState:
    """The forward recurrence between frames t-1 and t: the state S_{t-1} (decoder features,
    3 scales), out_{t-1} and lq_{t-1}; all None before the first frame."""

    features: list[Tensor] | None = None
    previous_out: Tensor | None = None
    previous_lq: Tensor | None = None


def aligned_previous_input(
    current: Tensor, previous_lq: Tensor | None, flow: Tensor
) -> tuple[Tensor, Tensor]:
    """(warp(previous_lq, flow)·m, m), m = in_bounds(flow) (B, 1, H, W): the previous degraded
    frame brought onto ``current``, 0 where the warp reads outside the frame; zeros when there is
    no previous frame."""
    if previous_lq is None:
        return torch.zeros_like(current), current.new_zeros(current.shape[0], 1, *current.shape[2:])
    mask = in_bounds_mask(flow).to(current.dtype)
    return flow_warp(previous_lq, flow) * mask, mask


class VideoRestorationNet(nn.Module):
    """Recurrent video restoration from swappable stages; see the module docstring.

    The presets (``conf/model/*.yaml``) are the only place the stages are put together;
    ``fusion`` is a factory ``(channels, num_temporal) -> nn.Module`` called once per scale
    (``TemporalAttentionFusion`` or ``ConcatFusion``).
    """

    def __init__(
        self,
        flow: nn.Module,
        restoration: RestorationUNet,
        alignment: nn.Module,
        codec: nn.Module | None = None,
        mv_refine: nn.Module | None = None,
        fusion: FusionFactory = TemporalAttentionFusion,
        bidirectional: bool = False,
        noise_channel: bool = True,
        guide_frame: bool = False,
        blend: nn.Module | None = None,
        previous_input: bool = False,
        alignment_hint: bool = False,
        output_filter: nn.Module | None = None,
    ):
        super().__init__()
        expected_extra = extra_input_channels(
            noise_channel, guide_frame, blend is not None, previous_input
        )
        if getattr(restoration, "extra_channels", None) != expected_extra:
            raise ValueError(
                f"restoration: noise_channel={noise_channel}, guide_frame={guide_frame}, "
                f"blend={blend is not None} and previous_input={previous_input} need a U-Net "
                f"with extra_channels={expected_extra}, got "
                f"{getattr(restoration, 'extra_channels', None)}"
            )
        self.flow = flow
        self.mv_refine = mv_refine
        self.alignment = alignment
        self.codec = codec
        self.restoration = restoration
        self.bidirectional = bidirectional
        self.noise_channel = noise_channel
        self.guide_frame = guide_frame
        self.blend = blend
        self.previous_input = previous_input
        self.alignment_hint = alignment_hint
        self.output_filter = output_filter
        num_temporal = 2 if bidirectional else 1
        hint = {"hint_channels": HINT_CHANNELS} if alignment_hint else {}
        self.fusion = nn.ModuleList(
            fusion(channels=c, num_temporal=num_temporal, **hint) for c in restoration.channels
        )
        self.backward_fusion = (
            nn.ModuleList(fusion(channels=c, num_temporal=1, **hint) for c in restoration.channels)
            if bidirectional
            else None
        )

    # ------------------------------------------------------------------ input checks
    def _noise_map(self, lq: Tensor, noise_level: Tensor | None) -> Tensor | None:
        return noise_map(lq, noise_level, self.noise_channel)

    # ------------------------------------------------------------------ one temporal step
    def _clip_flows(self, lq: Tensor, reverse: bool = False) -> Tensor:
        """v_t (B, T, 2, H, W) for every frame towards the one before it in the recurrence's
        order (t - 1; t + 1 when ``reverse``), zeros for the first frame of that order, from
        one call of the flow stage on all B·(T-1) pairs. The flow sees the two frames only,
        never the state, so this equals one call per frame (DIS exactly, tested): one host
        round trip and one thread pool for DIS instead of one per frame, and larger kernels for
        a learned flow (issue 9)."""
        batch, num_frames = lq.shape[:2]
        current, neighbour = (lq[:, :-1], lq[:, 1:]) if reverse else (lq[:, 1:], lq[:, :-1])
        flow = self.flow(current.flatten(0, 1), neighbour.flatten(0, 1))
        flow = flow.view(batch, num_frames - 1, *flow.shape[1:])
        zero = flow.new_zeros(batch, 1, *flow.shape[2:])
        return torch.cat([flow, zero] if reverse else [zero, flow], dim=1)

    def _motion(
        self,
        state: list[Tensor] | None,
        current: Tensor,
        neighbour: Tensor | None,
        given: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """(flow, refined flow) towards ``neighbour``; zero when there is no state yet.
        ``given``: a flow to use instead of the flow stage's estimate."""
        if state is None:
            flow = current.new_zeros(current.shape[0], 2, *current.shape[2:])
            return flow, flow
        flow = self.flow(current, neighbour) if given is None else given.to(current.dtype)
        refined = flow if self.mv_refine is None else self.mv_refine(flow, current, neighbour)
        return flow, refined

    def _encode(
        self,
        current: Tensor,
        noise_map: Tensor | None,
        previous_out: Tensor | None,
        refined: Tensor,
        previous_lq: Tensor | None = None,
    ) -> tuple[Tensor, list[Tensor]]:
        """(the frame the U-Net restores, E_t): ``current``, or its blend with the aligned
        previous output G_t (``blend``); E_t from it, the σ map, G_t (``guide_frame``), the
        aligned previous input and its in-bounds mask (``previous_input``) and the blend
        weight α (``blend``); the temporal inputs are 0 without a past."""
        needs_guide = self.guide_frame or self.blend is not None
        guide = None
        if needs_guide:
            guide = (
                torch.zeros_like(current)
                if previous_out is None
                else flow_warp(previous_out, refined)
            )
        frame = current
        extra = [] if noise_map is None else [noise_map]
        if self.guide_frame:
            extra.append(guide)
        if self.previous_input:
            extra.extend(aligned_previous_input(current, previous_lq, refined))
        if self.blend is not None:
            weight = current.new_zeros(current.shape[0], 1, *current.shape[2:])
            if previous_out is not None:
                frame, weight = self.blend(current, guide, noise_level_of(noise_map))
            extra.append(weight)
        encoded = self.restoration.encode(frame, torch.cat(extra, 1) if extra else None)
        return frame, encoded

    def _hints(
        self,
        current: Tensor,
        neighbour: Tensor | None,
        refined: Tensor,
        noise_map: Tensor | None,
        encoded: list[Tensor],
    ) -> list[Tensor | None]:
        """H_t at each scale of ``encoded`` (zeros without a neighbour), or one None per scale
        without ``alignment_hint``."""
        if not self.alignment_hint:
            return [None] * len(encoded)
        hint = None
        if neighbour is not None:
            hint = alignment_hint(current, neighbour, refined, noise_level_of(noise_map))
        return hint_pyramid(hint, [tuple(e.shape[2:]) for e in encoded], current)

    def _purify(
        self,
        state: list[Tensor] | None,
        refined: Tensor,
        encoded: list[Tensor],
        with_rate: bool = True,
    ) -> _Purified:
        """Align the state by the refined flow, then the codec. Without a state (the first
        frame) there is nothing to send: the temporal features are zeros, the codec does not run
        (0 bits, no codec maps), as without a codec. ``with_rate=False``: the codec skips its
        likelihoods (0 bits, same features)."""
        zero = refined.new_zeros(())
        if state is None:
            aligned = [torch.zeros_like(e) for e in encoded]
            return _Purified(aligned, zero, zero, {}, aligned[2])
        aligned = self.alignment(state, refined, encoded)
        if self.codec is None:
            return _Purified(list(aligned), zero, zero, {}, aligned[2])
        context = encoded[2] if getattr(self.codec, "context_channels", 1) else None
        coded = self.codec(aligned, context, with_rate=with_rate)
        return _Purified(list(coded.features), coded.bits_y, coded.bits_z, coded.maps, aligned[2])

    def _backward_features(
        self, lq: Tensor, noise_map: Tensor | None, flows: Tensor | None = None
    ) -> tuple[list[list[Tensor]], list[list[Tensor | None]], Tensor, Tensor]:
        """Purified backward features Q_t for every frame, their alignment hints per scale
        (None without ``alignment_hint``), and the bits they cost. ``flows``: v_t towards
        lq_{t+1} (``_clip_flows(lq, reverse=True)``), or None to estimate them frame by frame."""
        num_frames = lq.shape[1]
        purified_backward: list[list[Tensor]] = [[] for _ in range(num_frames)]
        backward_hints: list[list[Tensor | None]] = [[] for _ in range(num_frames)]
        bits_y = bits_z = lq.new_zeros(())
        state = previous_out = None
        for t in reversed(range(num_frames)):
            current = lq[:, t]
            neighbour = lq[:, t + 1] if t + 1 < num_frames else None
            given = None if flows is None else flows[:, t]
            _, refined = self._motion(state, current, neighbour, given)
            frame, encoded = self._encode(current, noise_map, previous_out, refined, neighbour)
            step = self._purify(state, refined, encoded)
            bits_y, bits_z = bits_y + step.bits_y, bits_z + step.bits_z
            purified_backward[t] = step.features
            hints = self._hints(current, neighbour, refined, noise_map, encoded)
            backward_hints[t] = hints
            fused = [
                fuse(e, [p], None if h is None else [h])
                for fuse, e, p, h in zip(self.backward_fusion, encoded, step.features, hints)
            ]
            previous_out, state = self.restoration.decode(fused, frame)
        return purified_backward, backward_hints, bits_y, bits_z

    # ------------------------------------------------------------------ forward recurrence
    def init_state(self) -> StreamState:
        """The forward recurrence's state before the first frame (no past)."""
        return StreamState()

    def _forward_step(
        self,
        current: Tensor,
        noise_map: Tensor | None,
        state: StreamState,
        backward: list[Tensor] | None = None,
        with_rate: bool = True,
        given_flow: Tensor | None = None,
        backward_hints: list[Tensor | None] | None = None,
    ) -> tuple[Tensor, StreamState, _Purified, Tensor, Tensor]:
        """One forward step t (module docstring): (out_t, state after t, purified step, flow,
        refined flow). ``backward``: Q_t of a bidirectional net, ``backward_hints`` its alignment
        hints per scale; ``with_rate``: see _purify; ``given_flow``: v_t to use instead of the
        flow stage's."""
        flow, refined = self._motion(state.features, current, state.previous_lq, given_flow)
        frame, encoded = self._encode(
            current, noise_map, state.previous_out, refined, state.previous_lq
        )
        purified = self._purify(state.features, refined, encoded, with_rate)
        temporal = [[p] for p in purified.features]
        if backward is not None:
            temporal = [[p, q] for p, q in zip(purified.features, backward)]
        hints = self._hints(current, state.previous_lq, refined, noise_map, encoded)
        temporal_hints: list[list[Tensor] | None] = [None if h is None else [h] for h in hints]
        if backward_hints is not None and self.alignment_hint:
            temporal_hints = [[h, g] for h, g in zip(hints, backward_hints)]
        fused = [
            fuse(e, tf, h) for fuse, e, tf, h in zip(self.fusion, encoded, temporal, temporal_hints)
        ]
        restored, features = self.restoration.decode(fused, frame)
        if self.output_filter is not None and state.previous_out is not None:
            restored, weight = self.output_filter(
                restored, state.previous_out, refined, noise_level_of(noise_map)
            )
            purified.maps["filter_weight"] = weight
        return restored, StreamState(features, restored, current), purified, flow, refined

    def step(
        self,
        frame: Tensor,
        noise_level: Tensor | None = None,
        state: StreamState | None = None,
        with_rate: bool = False,
    ) -> tuple[Tensor, StreamState]:
        """Restore one frame (B, 3, H, W) given the state after the previous one (None or
        ``init_state()`` for the first): ``(restored (B, 3, H, W), new state)``. Looping ``step``
        over a clip gives ``forward``'s frames (both run ``_forward_step``); memory does not grow
        with the number of frames. The rate is not returned, so the codec skips its likelihoods
        unless ``with_rate`` (a forward hook on the codec that reads its bits, e.g. the latent
        file writer, needs them). Forward-recurrent nets only: a bidirectional net needs the
        future frames, so it runs ``forward`` on windows."""
        if self.bidirectional:
            raise ValueError(
                "step: this network is bidirectional (it needs future frames); run forward on "
                "a window of frames instead"
            )
        if not isinstance(frame, Tensor) or frame.ndim != 4:
            got = tuple(frame.shape) if isinstance(frame, Tensor) else type(frame).__name__
            raise ValueError(f"frame: expected a frame batch of shape (B, 3, H, W), got {got}")
        check_clip(frame[:, None])
        noise_map = self._noise_map(frame[:, None], noise_level)
        restored, new_state, *_ = self._forward_step(
            frame, noise_map, state or StreamState(), with_rate=with_rate
        )
        return restored, new_state

    # ------------------------------------------------------------------ whole clip
    def _check_given_flows(self, lq: Tensor, flows: Tensor | None) -> None:
        """Errors unless ``flows`` is None or (B, T, 2, H, W) for ``lq`` of a forward net."""
        if flows is None:
            return
        expected = (*lq.shape[:2], 2, *lq.shape[3:])
        if not isinstance(flows, Tensor) or tuple(flows.shape) != expected:
            got = tuple(flows.shape) if isinstance(flows, Tensor) else type(flows).__name__
            raise ValueError(f"flows: expected shape {expected} (B, T, 2, H, W), got {got}")
        if self.bidirectional:
            raise ValueError(
                "flows: given flows are forward flows only (towards frame t-1); a "
                "bidirectional network estimates its own"
            )

    def forward(
        self,
        lq: Tensor,
        noise_level: Tensor | None = None,
        return_maps: bool = False,
        flows: Tensor | None = None,
    ) -> NetworkOutput:
        check_clip(lq)
        noise_map = self._noise_map(lq, noise_level)
        self._check_given_flows(lq, flows)
        batch, num_frames, _, height, width = lq.shape
        keep_graph = torch.is_grad_enabled()

        # Training keeps every frame's graph anyway, so it estimates the clip's flows at once;
        # inference estimates them frame by frame, so memory does not grow with T.
        batch_flows = keep_graph and num_frames > 1
        if flows is None and batch_flows:
            flows = self._clip_flows(lq)
        bits_y = bits_z = lq.new_zeros(())
        backward: list[list[Tensor]] | None = None
        backward_hints: list[list[Tensor | None]] | None = None
        if self.bidirectional:
            backward_flows = self._clip_flows(lq, reverse=True) if batch_flows else None
            backward, backward_hints, bits_y, bits_z = self._backward_features(
                lq, noise_map, backward_flows
            )

        restored_frames: list[Tensor] = []
        restored_out = None if keep_graph else torch.empty_like(lq)
        maps: list[dict[str, Tensor]] = []
        refined_flows: list[Tensor] = []
        state = self.init_state()
        for t in range(num_frames):
            restored, state, step, flow, refined = self._forward_step(
                lq[:, t],
                noise_map,
                state,
                None if backward is None else backward[t],
                given_flow=None if flows is None else flows[:, t],
                backward_hints=None if backward_hints is None else backward_hints[t],
            )
            if backward is not None:
                backward[t] = backward_hints[t] = []
            bits_y, bits_z = bits_y + step.bits_y, bits_z + step.bits_z
            if restored_out is None:
                restored_frames.append(restored)
                refined_flows.append(refined)
            else:
                restored_out[:, t] = restored
            if return_maps:
                frame_maps = {k: v.detach() for k, v in step.maps.items()}
                frame_maps.update(flow=flow.detach(), flow_refined=refined.detach())
                frame_maps.update(aligned=step.aligned.detach(), purified=step.features[2].detach())
                maps.append(frame_maps)
            del step

        restored_clip = torch.stack(restored_frames, dim=1) if keep_graph else restored_out
        pixels = batch * num_frames * height * width
        return NetworkOutput(
            restored=restored_clip,
            bits_y=bits_y,
            bits_z=bits_z,
            bpp=(bits_y + bits_z) / pixels,
            bpp_y=bits_y / pixels,
            bpp_z=bits_z / pixels,
            maps=maps,
            flows=torch.stack(refined_flows, dim=1) if keep_graph else None,
        )
