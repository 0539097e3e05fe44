"""BasicVSR++ (Chan et al., CVPR 2022) for same-resolution restoration: a baseline network.

Written from the paper for this project's network contract (``stages/network.py``):
``out = net(lq (B, T, 3, H, W), noise_level (B,) | None, return_maps) -> NetworkOutput`` with
bits = bpp = 0 (no codec), so ``RestorationTask``, eval, restore, callbacks and benchmarks use it
unchanged. As the paper does for deblurring and denoising (inputs at output resolution):

1. features: ``[lq_t, σ map]`` (the σ map only with ``noise_channel``) -> conv -> two stride-2
   convs (1/4 resolution) -> ``extract_blocks`` residual blocks;
2. flow between neighbouring input frames from the project's flow stage (``model/flow=...``,
   DIS by default: no weights, no download; the paper uses a pretrained SPyNet,
   ``model/flow=spynet model.flow.pretrained=...`` gives that), resized to 1/4 resolution;
3. bidirectional second-order grid propagation: four branches (backward, forward, backward,
   forward), each running over the clip; at frame t a branch aligns its features of the previous
   two steps with flow-guided deformable alignment, and adds ``propagation_blocks`` residual
   blocks of [spatial features, earlier branches' features at t, aligned features];
4. reconstruction: ``reconstruction_blocks`` residual blocks on all four branches' features, two
   pixel-shuffle x2 upsamplings, ``out_t = lq_t + residual``.

Flow-guided deformable alignment (second order): the features of steps n-1 and n-2 are warped by
the flow (n-2 by the composed flow ``f1 + warp(f2, f1)``); from [warped n-1, current, warped n-2,
f1, f2] a small CNN predicts offset *residuals* (bounded by ``max_residue_magnitude · tanh``) and
DCNv2 masks; offsets = residual + flow (``flow.flip(1)``: flow is (x, y), DCN offsets (dy, dx)),
and a modulated deformable convolution (``stages/deform_conv.py``, pure PyTorch) with
``deform_groups`` offset groups maps [n-1, n-2] (2C channels) to C aligned channels. The
first half of the offset groups reads the n-1 features with the f1-guided offsets and the second
half the n-2 features with the f2-guided ones. The offset head's last conv starts at zero, so
training starts from pure flow warping.

H and W are padded (edge replication) up to a multiple of 4 and the output is cropped back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.stages.deform_conv import ModulatedDeformConv2d
from lightning_modules.stages.network import NetworkOutput, check_clip, noise_map
from lightning_modules.stages.warp import flow_warp, resize_flow

BRANCHES = ("backward_1", "forward_1", "backward_2", "forward_2")


def _act() -> nn.Module:
    return nn.LeakyReLU(0.1, inplace=True)


class ResidualBlock(nn.Module):
    """``x + conv(relu(conv(x)))`` (the paper's residual block, no batch norm)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


def residual_trunk(in_channels: int, channels: int, num_blocks: int) -> nn.Sequential:
    """conv(in -> channels) + LeakyReLU, then ``num_blocks`` residual blocks."""
    layers = [nn.Conv2d(in_channels, channels, 3, padding=1), _act()]
    layers += [ResidualBlock(channels) for _ in range(num_blocks)]
    return nn.Sequential(*layers)


class SecondOrderDeformableAlignment(nn.Module):
    """Flow-guided DCNv2 alignment of the features of steps n-1 and n-2 (see module docstring).

    ``forward(features (B, 2C, h, w) = [n-1, n-2], condition (B, 3C, h, w), flow_1, flow_2)``
    -> (B, C, h, w).
    """

    def __init__(self, channels: int, deform_groups: int, max_residue_magnitude: float) -> None:
        super().__init__()
        if (2 * channels) % deform_groups or deform_groups % 2:
            raise ValueError(
                f"BasicVSR++: deform_groups={deform_groups} must be even and divide "
                f"2·channels={2 * channels}"
            )
        self.max_residue_magnitude = max_residue_magnitude
        self.deform_groups = deform_groups
        self.offset_head = nn.Sequential(
            nn.Conv2d(3 * channels + 4, channels, 3, padding=1),
            _act(),
            nn.Conv2d(channels, channels, 3, padding=1),
            _act(),
            nn.Conv2d(channels, channels, 3, padding=1),
            _act(),
            nn.Conv2d(channels, 27 * deform_groups, 3, padding=1),  # (dy, dx, mask) x 9 taps
        )
        nn.init.zeros_(self.offset_head[-1].weight)
        nn.init.zeros_(self.offset_head[-1].bias)
        self.dcn = ModulatedDeformConv2d(
            2 * channels, channels, 3, padding=1, deform_groups=deform_groups
        )

    def forward(
        self, features: Tensor, condition: Tensor, flow_1: Tensor, flow_2: Tensor
    ) -> Tensor:
        head = self.offset_head(torch.cat([condition, flow_1, flow_2], dim=1))
        taps = 9 * self.deform_groups
        residue = self.max_residue_magnitude * torch.tanh(head[:, : 2 * taps])
        mask = torch.sigmoid(head[:, 2 * taps :])
        half = taps  # offset channels of the first G/2 groups (n-1 features), then n-2
        repeats = half // 2
        offset = torch.cat(
            [
                residue[:, :half] + flow_1.flip(1).repeat(1, repeats, 1, 1),
                residue[:, half:] + flow_2.flip(1).repeat(1, repeats, 1, 1),
            ],
            dim=1,
        )
        return self.dcn(features, offset, mask)


class BasicVSRPlusPlus(nn.Module):
    """BasicVSR++ at output resolution; see the module docstring.

    Args:
        flow: the flow stage, ``flow(ref, supp) -> (B, 2, H, W)`` with
            ``flow_warp(supp, flow) ≈ ref`` (``conf/model/flow/*.yaml``).
        channels: feature channels C (the paper: 64).
        extract_blocks: residual blocks of the feature extractor (the paper: 5).
        propagation_blocks: residual blocks of each of the four propagation branches (the
            paper: 7).
        reconstruction_blocks: residual blocks of the reconstruction (the paper: 5).
        deform_groups: DCN offset groups (the paper: 16; must be even and divide 2C).
        max_residue_magnitude: bound of the learned offset residual around the flow, in pixels
            at 1/4 resolution (the paper: 10).
        noise_channel: the σ map joins the input (denoising).
    """

    def __init__(
        self,
        flow: nn.Module,
        channels: int = 64,
        extract_blocks: int = 5,
        propagation_blocks: int = 7,
        reconstruction_blocks: int = 5,
        deform_groups: int = 16,
        max_residue_magnitude: float = 10.0,
        noise_channel: bool = True,
    ) -> None:
        super().__init__()
        for name, value, smallest in (
            ("channels", channels, 1),
            ("extract_blocks", extract_blocks, 0),
            ("propagation_blocks", propagation_blocks, 0),
            ("reconstruction_blocks", reconstruction_blocks, 0),
            ("deform_groups", deform_groups, 2),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
                raise ValueError(
                    f"BasicVSR++: {name} must be an integer >= {smallest}, got {value!r}"
                )
        self.flow = flow
        self.noise_channel = noise_channel
        self.channels = channels
        in_channels = 3 + int(noise_channel)
        self.extract = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1),
            _act(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1),
            _act(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1),
            _act(),
            *[ResidualBlock(channels) for _ in range(extract_blocks)],
        )
        self.align = nn.ModuleDict(
            {
                b: SecondOrderDeformableAlignment(channels, deform_groups, max_residue_magnitude)
                for b in BRANCHES
            }
        )
        self.propagate = nn.ModuleDict(
            {
                b: residual_trunk((2 + i) * channels, channels, propagation_blocks)
                for i, b in enumerate(BRANCHES)
            }
        )
        self.reconstruct = residual_trunk(5 * channels, channels, reconstruction_blocks)
        self.upsample = nn.Sequential(
            nn.Conv2d(channels, 4 * channels, 3, padding=1),
            nn.PixelShuffle(2),
            _act(),
            nn.Conv2d(channels, 4 * channels, 3, padding=1),
            nn.PixelShuffle(2),
            _act(),
            nn.Conv2d(channels, channels, 3, padding=1),
            _act(),
            nn.Conv2d(channels, 3, 3, padding=1),
        )

    # ------------------------------------------------------------------ inputs
    def _inputs(self, lq: Tensor, noise_level: Tensor | None) -> Tensor:
        """(B, T, 3 [+1], H, W): the clip with its σ map; the same checks as the main network."""
        check_clip(lq)
        level = noise_map(lq, noise_level, self.noise_channel)
        if level is None:
            return lq
        return torch.cat([lq, level[:, None].expand(-1, lq.shape[1], -1, -1, -1)], dim=2)

    def _flows(self, lq: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """(backward, forward) flows at feature size, (B, T-1, 2, h, w) each: backward[i] aligns
        frame i+1 to frame i, forward[i] frame i to frame i+1."""
        batch, frames = lq.shape[:2]
        current = lq[:, :-1].reshape(-1, *lq.shape[2:])
        following = lq[:, 1:].reshape(-1, *lq.shape[2:])
        # the flow stage sees both directions of all pairs in one call
        both = self.flow(torch.cat([current, following]), torch.cat([following, current]))
        both = resize_flow(both, size, vector_scale=(0.25, 0.25))
        backward, forward = both.view(2, batch, frames - 1, 2, *size).unbind(0)
        return backward, forward

    # ------------------------------------------------------------------ propagation
    def _propagate(
        self, feats: dict[str, list[Tensor]], flows: Tensor, branch: str
    ) -> tuple[list[Tensor], list[Tensor]]:
        """One branch over the clip (reversed for ``backward_*``): its features and its aligned
        temporal features (zeros at the branch's first frame) per frame."""
        frames = len(feats["spatial"])
        order = list(range(frames))
        if branch.startswith("backward"):
            order = order[::-1]
        spatial = feats["spatial"][0]
        zeros_feat = spatial.new_zeros(spatial.shape)
        zeros_flow = spatial.new_zeros(spatial.shape[0], 2, *spatial.shape[2:])
        outputs: list[Tensor | None] = [None] * frames
        aligned_all: list[Tensor | None] = [None] * frames
        history: list[Tensor] = []
        for step, t in enumerate(order):
            current = feats["spatial"][t]
            if step == 0:
                aligned = zeros_feat
            else:
                # flow towards the frame propagated from: backward uses flows[t] (t+1 -> t),
                # forward flows[t-1] (t-1 -> t)
                flow_index = t if branch.startswith("backward") else t - 1
                flow_1 = flows[:, flow_index]
                prop_1 = history[-1]
                warped_1 = flow_warp(prop_1, flow_1)
                prop_2, flow_2, warped_2 = zeros_feat, zeros_flow, zeros_feat
                if step > 1:
                    prev_index = order[step - 1]
                    prev_flow_index = (
                        prev_index if branch.startswith("backward") else prev_index - 1
                    )
                    flow_2 = flows[:, prev_flow_index]
                    flow_2 = flow_1 + flow_warp(flow_2, flow_1)
                    prop_2 = history[-2]
                    warped_2 = flow_warp(prop_2, flow_2)
                aligned = self.align[branch](
                    torch.cat([prop_1, prop_2], 1),
                    torch.cat([warped_1, current, warped_2], 1),
                    flow_1,
                    flow_2,
                )
            earlier = [feats[b][t] for b in BRANCHES if b in feats and b != branch]
            out = aligned + self.propagate[branch](torch.cat([current, *earlier, aligned], 1))
            history.append(out)
            outputs[t] = out
            aligned_all[t] = aligned
        return outputs, aligned_all  # type: ignore[return-value]

    # ------------------------------------------------------------------ whole clip
    def forward(
        self,
        lq: Tensor,
        noise_level: Tensor | None = None,
        return_maps: bool = False,
        flows: Tensor | None = None,
    ) -> NetworkOutput:
        """``flows`` (the network interface's given flows) must be None: the second-order
        propagation needs both directions and flows between frames two apart, so BasicVSR++
        always estimates its own."""
        if flows is not None:
            raise ValueError(
                "flows: BasicVSR++ estimates its own bidirectional flows; set "
                "data.flow_estimator=null"
            )
        inputs = self._inputs(lq, noise_level)
        batch, frames, _, height, width = lq.shape
        pad_h, pad_w = (-height) % 4, (-width) % 4
        if pad_h or pad_w:
            flat = inputs.reshape(batch * frames, -1, height, width)
            inputs = F.pad(flat, (0, pad_w, 0, pad_h), mode="replicate").view(
                batch, frames, -1, height + pad_h, width + pad_w
            )
        padded = inputs[:, :, :3]
        spatial = self.extract(inputs.flatten(0, 1))
        size = tuple(spatial.shape[-2:])
        feats: dict[str, list[Tensor]] = {
            "spatial": list(spatial.view(batch, frames, *spatial.shape[1:]).unbind(1))
        }
        if frames > 1:
            backward_flows, forward_flows = self._flows(padded, size)
        else:
            backward_flows = forward_flows = spatial.new_zeros(batch, 0, 2, *size)
        aligned: list[Tensor] = []
        for branch in BRANCHES:
            flows = backward_flows if branch.startswith("backward") else forward_flows
            feats[branch], branch_aligned = self._propagate(feats, flows, branch)
            if branch == "forward_1":
                aligned = branch_aligned

        restored = []
        for t in range(frames):
            merged = torch.cat([feats[k][t] for k in ("spatial", *BRANCHES)], 1)
            residual = self.upsample(self.reconstruct(merged))
            restored.append(padded[:, t] + residual)
        restored_clip = torch.stack(restored, 1)[..., :height, :width]

        maps: list[dict[str, Tensor]] = []
        # maps: the flow each frame was aligned with from its predecessor (full size), and the
        # first forward branch's aligned temporal features as "aligned" and "purified" (no
        # codec: they are the same, as in the no_codec model; callbacks/purification.py)
        if return_maps:
            for t in range(frames):
                flow = (
                    resize_flow(
                        forward_flows[:, t - 1],
                        (height + pad_h, width + pad_w),
                        vector_scale=(4.0, 4.0),
                    )[..., :height, :width]
                    if t > 0
                    else lq.new_zeros(batch, 2, height, width)
                )
                maps.append(
                    {
                        "flow": flow.detach(),
                        "aligned": aligned[t].detach(),
                        "purified": aligned[t].detach(),
                    }
                )
        zero = lq.new_zeros(())
        return NetworkOutput(
            restored=restored_clip,
            bits_y=zero,
            bits_z=zero,
            bpp=zero,
            bpp_y=zero,
            bpp_z=zero,
            maps=maps,
        )
