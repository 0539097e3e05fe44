"""Attention stage: fuse current-frame features with purified temporal features.

Contract (one scale): ``fusion(current, temporal) -> fused``, with ``current`` (B, C, h, w) and
``temporal`` a list of ``num_temporal`` tensors of the same shape (one per propagation direction).

:class:`TemporalAttentionFusion` decides how much temporal information to trust:

    g_i   = sigmoid(Conv3x3([current, temporal_1..n]))_i      # spatial gate, one per map, in [0, 1]
    x     = [current, g_1 * temporal_1, ..., g_n * temporal_n]
    w     = sigmoid(W_2 relu(W_1 avgpool(x)))                 # channel attention (squeeze-excite)
    fused = Conv1x1(w * x)                                    # back to C channels

:class:`ConcatFusion` is the ablation without attention: ``fused = Conv1x1([current, temporal])``.
"""

from __future__ import annotations

import torch
from torch import nn

from lightning_modules.stages.squeeze_excite import squeeze_excite_gate


def _check_inputs(current: torch.Tensor, temporal: list[torch.Tensor], channels: int, n: int):
    """Raise one clear error when ``current``/``temporal`` do not match the module's shape."""
    if current.ndim != 4 or current.shape[1] != channels:
        raise ValueError(
            f"current: expected (B, {channels}, h, w), got shape {tuple(current.shape)}"
        )
    if not isinstance(temporal, list | tuple) or len(temporal) != n:
        got = len(temporal) if isinstance(temporal, list | tuple) else type(temporal).__name__
        raise ValueError(f"temporal: expected a list of {n} tensors, got {got}")
    for i, t in enumerate(temporal):
        if t.shape != current.shape:
            raise ValueError(
                f"temporal[{i}]: expected shape {tuple(current.shape)} (like current), "
                f"got {tuple(t.shape)}"
            )


class TemporalAttentionFusion(nn.Module):
    """Spatial gate per temporal map + squeeze-excite channel attention + 1x1 projection."""

    def __init__(self, channels: int, num_temporal: int = 1, reduction: int = 4):
        super().__init__()
        if channels < 1 or num_temporal < 1 or reduction < 1:
            raise ValueError(
                "TemporalAttentionFusion: channels, num_temporal and reduction must be >= 1, "
                f"got {channels}, {num_temporal}, {reduction}"
            )
        self.channels = channels
        self.num_temporal = num_temporal
        total = channels * (1 + num_temporal)
        self.spatial_gate = nn.Conv2d(total, num_temporal, 3, padding=1)
        self.channel_gate = squeeze_excite_gate(total, reduction)
        self.project = nn.Conv2d(total, channels, 1)

    def gate(self, current: torch.Tensor, temporal: list[torch.Tensor]) -> torch.Tensor:
        """Per-pixel trust in each temporal map: (B, num_temporal, h, w), values in [0, 1]."""
        _check_inputs(current, temporal, self.channels, self.num_temporal)
        return torch.sigmoid(self.spatial_gate(torch.cat([current, *temporal], dim=1)))

    def forward(self, current: torch.Tensor, temporal: list[torch.Tensor]) -> torch.Tensor:
        gates = self.gate(current, temporal)
        gated = [t * gates[:, i : i + 1] for i, t in enumerate(temporal)]
        x = torch.cat([current, *gated], dim=1)
        return self.project(x * self.channel_gate(x))


class ConcatFusion(nn.Module):
    """Fusion without attention (ablation): ``Conv1x1([current, temporal_1..n])``."""

    def __init__(self, channels: int, num_temporal: int = 1):
        super().__init__()
        if channels < 1 or num_temporal < 1:
            raise ValueError(
                f"ConcatFusion: channels and num_temporal must be >= 1, got {channels}, "
                f"{num_temporal}"
            )
        self.channels = channels
        self.num_temporal = num_temporal
        self.project = nn.Conv2d(channels * (1 + num_temporal), channels, 1)

    def forward(self, current: torch.Tensor, temporal: list[torch.Tensor]) -> torch.Tensor:
        _check_inputs(current, temporal, self.channels, self.num_temporal)
        return self.project(torch.cat([current, *temporal], dim=1))
