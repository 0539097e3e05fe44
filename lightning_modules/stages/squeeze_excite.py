"""Squeeze-and-excitation channel gate (Hu et al., CVPR 2018), shared by the CAB and the fusion.

``squeeze_excite_gate(C, r)(x)`` = ``sigmoid(W_2 relu(W_1 avgpool(x)))``: one weight in (0, 1)
per channel, shape (B, C, 1, 1), with a hidden width of ``max(C // r, 4)``.
"""

from __future__ import annotations

from torch import nn


def squeeze_excite_gate(channels: int, reduction: int) -> nn.Sequential:
    """The gate as ``Sequential(pool, conv1x1, relu, conv1x1, sigmoid)`` (indices 1 and 3 are
    the convs: checkpoints name their weights by these positions)."""
    hidden = max(channels // reduction, 4)
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(1),
        nn.Conv2d(channels, hidden, 1),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, channels, 1),
        nn.Sigmoid(),
    )
