"""Flow-guided deformable alignment of the state (issue 8: let the network correct the flow).

``FlowGuidedDeformableAlignment(channels, deform_scales)(feats, flow, current)[s]`` is, at a
scale s in ``deform_scales`` (feature map S = feats[s], current-frame features E = current[s],
flow v_s = the flow resized to scale 1/2**s with its vectors divided by 2**s):

    W      = warp(S, v_s)                                   the plain flow warp (alignment.py)
    o, m   = head_s([W, E, v_s])                            a small CNN: 2·G·9 offsets, G·9 masks
    Δ      = v_s (as (dy, dx)) + r · tanh(o)                offsets around the flow, |residue| < r
    A[s]   = W + DCN_s(S; Δ, sigmoid(m))                    modulated deformable 3x3 conv (DCNv2)

and the plain flow warp at the other scales. This is BasicVSR++'s flow-guided deformable
alignment (Chan et al., CVPR 2022) made residual: the DCN's weights and the head's last conv
start at zero, so at initialisation A equals ``MultiScaleAlignment`` exactly and training only
adds what helps. The DCN reads G = C / ``group_channels`` offset groups, each sampling the state
at 9 learned positions per pixel with a learned weight: it can take a feature from where the
flow is off by a few pixels, or from several places where one vector cannot explain the motion
(occlusion edges, the forward-moving camera of Set8 hypersmooth).

Cost at 854x480 with the default (scale 1/4 only, C = 64, G = 8, hidden 32): head 5.6 GFLOPs,
DCN 1.9 GFLOPs, 72 bilinear samples of 8 channels per pixel at 1/4 resolution.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_modules.stages.alignment import MultiScaleAlignment
from lightning_modules.stages.deform_conv import ModulatedDeformConv2d

TAPS = 9  # a 3x3 deformable kernel


class _DeformableScale(nn.Module):
    """Offset/mask head and DCN of one scale (``channels`` C, ``groups`` G offset groups)."""

    def __init__(self, channels: int, groups: int, hidden: int, max_residue: float):
        super().__init__()
        self.groups = groups
        self.max_residue = max_residue
        self.head = nn.Sequential(
            nn.Conv2d(2 * channels + 2, hidden, 3, padding=1),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(hidden, 3 * TAPS * groups, 3, padding=1),  # (dy, dx) x 9 taps, then masks
        )
        self.dcn = ModulatedDeformConv2d(channels, channels, 3, padding=1, deform_groups=groups)
        for parameter in (self.head[-1].weight, self.head[-1].bias, self.dcn.weight):
            nn.init.zeros_(parameter)

    def forward(self, state: Tensor, warped: Tensor, current: Tensor, flow: Tensor) -> Tensor:
        head = self.head(torch.cat([warped, current, flow.to(warped.dtype)], dim=1))
        offsets = 2 * TAPS * self.groups
        residue = self.max_residue * head[:, :offsets].tanh()
        mask = head[:, offsets:].sigmoid()
        # DCN offsets are (dy, dx) per group and tap; the flow is (x, y)
        offset = residue + flow.flip(1).repeat(1, TAPS * self.groups, 1, 1)
        return warped + self.dcn(state, offset, mask)


class FlowGuidedDeformableAlignment(MultiScaleAlignment):
    """Flow warp at every scale plus a residual deformable correction at ``deform_scales``."""

    def __init__(
        self,
        channels: tuple[int, ...] = (16, 32, 64),
        deform_scales: tuple[int, ...] = (2,),
        group_channels: int = 8,
        hidden_ratio: float = 0.5,
        max_residue: float = 3.0,
        mode: str = "bilinear",
    ):
        channels, deform_scales = tuple(channels), tuple(deform_scales)
        super().__init__(num_scales=len(channels), mode=mode)
        if (
            not deform_scales
            or len(set(deform_scales)) != len(deform_scales)
            or any(not isinstance(s, int) or not 0 <= s < len(channels) for s in deform_scales)
        ):
            raise ValueError(
                f"FlowGuidedDeformableAlignment: deform_scales must be distinct scale indices in "
                f"0..{len(channels) - 1}, got {list(deform_scales)}"
            )
        for s in deform_scales:
            if group_channels < 1 or channels[s] % group_channels:
                raise ValueError(
                    f"FlowGuidedDeformableAlignment: group_channels={group_channels} must divide "
                    f"the channels of scale {s} ({channels[s]})"
                )
        if not hidden_ratio > 0 or not max_residue > 0:
            raise ValueError(
                f"FlowGuidedDeformableAlignment: hidden_ratio and max_residue must be > 0, "
                f"got {hidden_ratio}, {max_residue}"
            )
        self.channels = channels
        self.deform_scales = deform_scales
        self.deform = nn.ModuleDict(
            {
                str(s): _DeformableScale(
                    channels[s],
                    channels[s] // group_channels,
                    max(1, round(channels[s] * hidden_ratio)),
                    max_residue,
                )
                for s in deform_scales
            }
        )

    def forward(
        self, feats: list[Tensor], flow: Tensor, current: list[Tensor] | None = None
    ) -> list[Tensor]:
        """Aligned features, one per scale; ``current``: E_t, the current frame's features at
        the same scales (the offset heads' condition)."""
        if current is None or len(current) != len(feats):
            got = None if current is None else f"{len(current)} tensors"
            raise ValueError(
                f"FlowGuidedDeformableAlignment: current must be the current frame's features at "
                f"the {len(feats)} scales, got {got}"
            )
        flows = self.scaled_flows(feats, flow)
        aligned = self.warp(feats, flows)
        for s in self.deform_scales:
            if current[s].shape != feats[s].shape:
                raise ValueError(
                    f"FlowGuidedDeformableAlignment: current[{s}] has shape "
                    f"{tuple(current[s].shape)}, the state {tuple(feats[s].shape)}"
                )
            aligned[s] = self.deform[str(s)](feats[s], aligned[s], current[s], flows[s])
        return aligned
