"""Restoration stage: a 3-scale U-Net of channel-attention blocks (CABs).

The U-Net is split in two so the network can fuse temporal features between the halves:

    E_t          = unet.encode(frame, extra)        # [scale 1, 1/2, 1/4] current-frame features
    fused        = attention(E_t, purified temporal features)   (per scale, done by the network)
    restored, D_t = unet.decode(fused, frame)       # restored = frame + residual; D_t = next state

Scale s has ``channels[s]`` channels and spatial size ``ceil(H / 2**s) x ceil(W / 2**s)`` (stride-2
3x3 convs with padding 1 give exactly that), so any H, W works without padding. The decoder
upsamples with a 2x2 transposed conv and crops to the skip size. ``D_t`` holds the decoder
features after the CABs of each scale; ``D_t[0]`` is the last feature map before the output conv.

Without autograd the merge ``M [up(x), skip]`` (1x1 conv M = [M_up, M_skip] after the
transposed conv T) runs as ``(M_up∘T)(x) + M_skip skip``: M_up is folded into T's kernel and
bias, so neither the concatenation nor the 1x1 conv over the upsampled map is computed (the
full-resolution copies cost ~3x the merge's FLOPs on CPU, issue 9). Same output up to float
rounding (tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.stages.squeeze_excite import squeeze_excite_gate


def _activation() -> nn.Module:
    # in place: every use follows a conv, whose backward does not need its output
    return nn.LeakyReLU(0.1, inplace=True)


class ChannelAttentionBlock(nn.Module):
    """CAB: ``x + SE(conv(act(conv(x))))``, SE = global-pool squeeze / excite sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        if channels < 1 or reduction < 1:
            raise ValueError(
                f"ChannelAttentionBlock: channels and reduction must be >= 1, got {channels}, "
                f"{reduction}"
            )
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            _activation(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )
        self.excite = squeeze_excite_gate(channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.body(x)
        gate = self.excite(residual)
        if torch.is_grad_enabled():
            return torch.addcmul(x, residual, gate)
        # inference: into the conv's fresh output, no new full-size tensor (issue 9)
        return residual.mul_(gate).add_(x)


def _cab_stack(channels: int, count: int, reduction: int) -> nn.Sequential:
    return nn.Sequential(*[ChannelAttentionBlock(channels, reduction) for _ in range(count)])


class RestorationUNet(nn.Module):
    """3-scale CAB U-Net predicting a residual on the input frame; see the module docstring."""

    num_scales = 3

    def __init__(
        self,
        in_channels: int = 3,
        extra_channels: int = 1,
        channels: tuple[int, int, int] = (16, 32, 64),
        num_blocks: tuple[int, int, int] = (1, 2, 2),
        reduction: int = 4,
    ):
        super().__init__()
        channels, num_blocks = tuple(channels), tuple(num_blocks)
        if len(channels) != 3 or any(c < 1 for c in channels):
            raise ValueError(
                f"channels: expected 3 positive ints (scales 1, 1/2, 1/4), got {channels}"
            )
        if len(num_blocks) != 3 or any(n < 0 for n in num_blocks):
            raise ValueError(f"num_blocks: expected 3 ints >= 0 (per scale), got {num_blocks}")
        if in_channels < 1 or extra_channels < 0:
            raise ValueError(
                f"in_channels must be >= 1 and extra_channels >= 0, got {in_channels}, "
                f"{extra_channels}"
            )
        self.in_channels = in_channels
        self.extra_channels = extra_channels
        self.channels = channels
        c0, c1, c2 = channels

        self.head = nn.Conv2d(in_channels + extra_channels, c0, 3, padding=1)
        self.encoder = nn.ModuleList(
            _cab_stack(c, n, reduction) for c, n in zip(channels, num_blocks)
        )
        self.down = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(c0, c1, 3, stride=2, padding=1), _activation()),
                nn.Sequential(nn.Conv2d(c1, c2, 3, stride=2, padding=1), _activation()),
            ]
        )
        self.decoder = nn.ModuleList(
            _cab_stack(c, n, reduction) for c, n in zip(channels, num_blocks)
        )
        # up[s] brings scale s+1 to scale s; merge[s] mixes it with the fused skip of scale s.
        self.up = nn.ModuleList(
            [nn.ConvTranspose2d(c1, c0, 2, stride=2), nn.ConvTranspose2d(c2, c1, 2, stride=2)]
        )
        self.merge = nn.ModuleList([nn.Conv2d(2 * c0, c0, 1), nn.Conv2d(2 * c1, c1, 1)])
        self.tail = nn.Conv2d(c0, in_channels, 3, padding=1)

    def feature_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Spatial size of each scale for an H x W frame: ceil(H / 2**s), ceil(W / 2**s)."""
        return [(-(-height // 2**s), -(-width // 2**s)) for s in range(self.num_scales)]

    def _check_frame(self, frame: torch.Tensor) -> None:
        if frame.ndim != 4 or frame.shape[1] != self.in_channels:
            raise ValueError(
                f"frame: expected (B, {self.in_channels}, H, W), got shape {tuple(frame.shape)}"
            )

    def encode(self, frame: torch.Tensor, extra: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Current-frame features E_t at scales 1, 1/2, 1/4 (``extra``: e.g. the noise map)."""
        self._check_frame(frame)
        if self.extra_channels == 0:
            if extra is not None:
                raise ValueError("extra: this U-Net has extra_channels=0, so extra must be None")
            x = frame
        else:
            expected = (frame.shape[0], self.extra_channels, *frame.shape[2:])
            if extra is None or tuple(extra.shape) != expected:
                got = None if extra is None else tuple(extra.shape)
                raise ValueError(f"extra: expected shape {expected}, got {got}")
            x = torch.cat([frame, extra.to(frame.dtype)], dim=1)
        features = [self.encoder[0](self.head(x))]
        for s in range(1, self.num_scales):
            features.append(self.encoder[s](self.down[s - 1](features[-1])))
        return features

    def decode(
        self, fused: list[torch.Tensor], frame: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(restored = frame + residual, decoder features D_t at scales 1, 1/2, 1/4)."""
        self._check_frame(frame)
        sizes = self.feature_sizes(*frame.shape[2:])
        if len(fused) != self.num_scales:
            raise ValueError(f"fused: expected {self.num_scales} tensors, got {len(fused)}")
        for s, f in enumerate(fused):
            expected = (frame.shape[0], self.channels[s], *sizes[s])
            if tuple(f.shape) != expected:
                raise ValueError(f"fused[{s}]: expected shape {expected}, got {tuple(f.shape)}")

        decoded = [None] * self.num_scales
        x = self.decoder[2](fused[2])
        decoded[2] = x
        for s in (1, 0):
            h, w = sizes[s]
            if torch.is_grad_enabled():
                up = self.up[s](x)[:, :, :h, :w]
                merged = self.merge[s](torch.cat([up, fused[s]], dim=1))
            else:
                merged = self._folded_merge(s, x, fused[s])
            x = self.decoder[s](merged)
            decoded[s] = x
        return frame + self.tail(x), decoded

    def _folded_merge(self, s: int, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``merge[s](cat[up[s](coarse) cropped, skip])`` with merge's up-block folded into up."""
        up, merge = self.up[s], self.merge[s]
        c = self.channels[s]
        merge_up = merge.weight[:, :c, 0, 0]  # (C_out, C_up)
        kernel = torch.einsum("imyx,om->ioyx", up.weight, merge_up)
        bias = merge_up @ up.bias + merge.bias
        height, width = skip.shape[2:]
        upsampled = F.conv_transpose2d(coarse, kernel, bias, stride=2)[:, :, :height, :width]
        return F.conv2d(skip, merge.weight[:, c:]).add_(upsampled)
