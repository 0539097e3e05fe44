"""The full network: runs the stages frame by frame over a clip (docs/ARCHITECTURE.md).

``out = net(lq, noise_level=None, return_maps=False)`` with ``lq`` (B, T, 3, H, W) and
``noise_level`` (B,) in [0, 1] units (required iff ``noise_channel``). Per frame t, with the
temporal state S_{t-1} (decoder features at scales 1, 1/2, 1/4; zeros at t = 0):

    v_t     = flow(lq_t, lq_{t-1})                 (zero at t = 0)
    v̂_t     = mv_refine(v_t, lq_t, lq_{t-1})        (optional)
    A_t     = alignment(S_{t-1}, v̂_t)               warped state, 3 scales
    P_t     = codec(A_t, context=E_t[2])            purified features + bits (optional)
    E_t     = restoration.encode(lq_t, σ map)
    F_t[s]  = fusion[s](E_t[s], [P_t[s]])           attention (or plain concat) per scale
    out_t, S_t = restoration.decode(F_t, lq_t)

Bidirectional: a backward recurrence (t = T-1 .. 0, flow towards lq_{t+1}, its own fusion,
shared stages) first gives purified backward features Q_t; the forward pass then fuses
``[P_t, Q_t]``. Rates: bits_y/bits_z sum -log2 p over every quantized value of both passes;
``bpp = (bits_y + bits_z) / (B·T·H·W)``.

Without autograd (``torch.no_grad``) and without maps, the forward recursion keeps only the
current state and writes each restored frame into a preallocated output, so memory does not
grow with T (the bidirectional mode must keep T backward features).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from lightning_modules.stages.attention import TemporalAttentionFusion
from lightning_modules.stages.restoration import RestorationUNet

# fusion(channels, num_temporal) -> module fusing current features with temporal ones per scale
FusionFactory = Callable[..., nn.Module]


@dataclass
class NetworkOutput:
    """Restored clip, rates (scalar tensors) and, on request, per-frame detached maps."""

    restored: Tensor
    bits_y: Tensor
    bits_z: Tensor
    bpp: Tensor
    bpp_y: Tensor
    bpp_z: Tensor
    maps: list[dict[str, Tensor]] = field(default_factory=list)


@dataclass
class _Purified:
    """What one temporal step yields before fusion."""

    features: list[Tensor]
    bits_y: Tensor
    bits_z: Tensor
    maps: dict[str, Tensor]


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
    ):
        super().__init__()
        expected_extra = 1 if noise_channel else 0
        if getattr(restoration, "extra_channels", None) != expected_extra:
            raise ValueError(
                f"restoration: noise_channel={noise_channel} needs a U-Net with "
                f"extra_channels={expected_extra}, got "
                f"{getattr(restoration, 'extra_channels', None)}"
            )
        self.flow = flow
        self.mv_refine = mv_refine
        self.alignment = alignment
        self.codec = codec
        self.restoration = restoration
        self.bidirectional = bidirectional
        self.noise_channel = noise_channel
        num_temporal = 2 if bidirectional else 1
        self.fusion = nn.ModuleList(
            fusion(channels=c, num_temporal=num_temporal) for c in restoration.channels
        )
        self.backward_fusion = (
            nn.ModuleList(fusion(channels=c, num_temporal=1) for c in restoration.channels)
            if bidirectional
            else None
        )

    # ------------------------------------------------------------------ input checks
    def _noise_map(self, lq: Tensor, noise_level: Tensor | None) -> Tensor | None:
        """(B, 1, H, W) constant σ map, or None; errors on a missing/unexpected/ill-shaped σ."""
        batch, _, _, height, width = lq.shape
        if not self.noise_channel:
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

    @staticmethod
    def _check_clip(lq: Tensor) -> None:
        if not isinstance(lq, Tensor) or lq.ndim != 5 or lq.shape[2] != 3:
            got = tuple(lq.shape) if isinstance(lq, Tensor) else type(lq).__name__
            raise ValueError(f"lq: expected a clip batch of shape (B, T, 3, H, W), got {got}")
        if lq.shape[1] < 1 or lq.shape[3] < 1 or lq.shape[4] < 1:
            raise ValueError(f"lq: T, H and W must be >= 1, got shape {tuple(lq.shape)}")

    # ------------------------------------------------------------------ one temporal step
    def _purify(
        self,
        state: list[Tensor] | None,
        current: Tensor,
        neighbour: Tensor | None,
        encoded: list[Tensor],
        want_maps: bool,
    ) -> _Purified:
        """Flow -> refine -> align the state -> codec; zero state and flow when state is None."""
        batch, _, height, width = current.shape
        if state is None:
            flow = current.new_zeros(batch, 2, height, width)
            refined = flow
            aligned = [torch.zeros_like(e) for e in encoded]
        else:
            flow = self.flow(current, neighbour)
            refined = flow if self.mv_refine is None else self.mv_refine(flow, current, neighbour)
            aligned = self.alignment(state, refined)

        maps: dict[str, Tensor] = {}
        zero = current.new_zeros(())
        if self.codec is None:
            purified = _Purified(list(aligned), zero, zero, maps)
        else:
            coded = self.codec(aligned, encoded[2])
            purified = _Purified(list(coded.features), coded.bits_y, coded.bits_z, maps)
            if want_maps:
                maps.update({k: v.detach() for k, v in coded.maps.items()})
        if want_maps:
            maps["flow"] = flow.detach()
            maps["flow_refined"] = refined.detach()
        return purified

    def _backward_features(
        self, lq: Tensor, encoded: list[list[Tensor]]
    ) -> tuple[list[list[Tensor]], Tensor, Tensor]:
        """Purified backward features Q_t for every frame, and the bits they cost."""
        num_frames = lq.shape[1]
        purified_backward: list[list[Tensor]] = [[] for _ in range(num_frames)]
        bits_y = bits_z = lq.new_zeros(())
        state = None
        for t in reversed(range(num_frames)):
            neighbour = lq[:, t + 1] if t + 1 < num_frames else None
            step = self._purify(state, lq[:, t], neighbour, encoded[t], want_maps=False)
            bits_y, bits_z = bits_y + step.bits_y, bits_z + step.bits_z
            purified_backward[t] = step.features
            fused = [
                fuse(e, [p]) for fuse, e, p in zip(self.backward_fusion, encoded[t], step.features)
            ]
            _, state = self.restoration.decode(fused, lq[:, t])
        return purified_backward, bits_y, bits_z

    # ------------------------------------------------------------------ whole clip
    def forward(
        self, lq: Tensor, noise_level: Tensor | None = None, return_maps: bool = False
    ) -> NetworkOutput:
        self._check_clip(lq)
        noise_map = self._noise_map(lq, noise_level)
        batch, num_frames, _, height, width = lq.shape
        keep_graph = torch.is_grad_enabled()

        bits_y = bits_z = lq.new_zeros(())
        backward: list[list[Tensor]] | None = None
        encoded_all: list[list[Tensor]] | None = None
        if self.bidirectional:
            encoded_all = [self.restoration.encode(lq[:, t], noise_map) for t in range(num_frames)]
            backward, bits_y, bits_z = self._backward_features(lq, encoded_all)

        restored_frames: list[Tensor] = []
        restored_out = None if keep_graph else torch.empty_like(lq)
        maps: list[dict[str, Tensor]] = []
        state = None
        for t in range(num_frames):
            current = lq[:, t]
            if encoded_all is not None:
                encoded = encoded_all[t]
                encoded_all[t] = []  # not needed any more
            else:
                encoded = self.restoration.encode(current, noise_map)
            neighbour = lq[:, t - 1] if t > 0 else None
            step = self._purify(state, current, neighbour, encoded, want_maps=return_maps)
            bits_y, bits_z = bits_y + step.bits_y, bits_z + step.bits_z
            temporal = [[p] for p in step.features]
            if backward is not None:
                temporal = [[p, q] for p, q in zip(step.features, backward[t])]
                backward[t] = []
            fused = [fuse(e, tf) for fuse, e, tf in zip(self.fusion, encoded, temporal)]
            restored, state = self.restoration.decode(fused, current)
            if restored_out is None:
                restored_frames.append(restored)
            else:
                restored_out[:, t] = restored
            if return_maps:
                maps.append(step.maps)
            del encoded, step, temporal, fused, restored

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
        )
