"""Attention stage: fuse current-frame features with purified temporal features.

Contract (one scale): ``fusion(current, temporal, hint=None) -> fused``, with ``current``
(B, C, h, w), ``temporal`` a list of ``num_temporal`` tensors of the same shape (one per
propagation direction) and, for a module built with ``hint_channels`` > 0, ``hint`` a list of
``num_temporal`` (B, hint_channels, h, w) measurements of how well each temporal map is aligned
(``alignment_hint.py``).

:class:`TemporalAttentionFusion` decides how much temporal information to trust:

    g_i   = sigmoid(Conv3x3([current, temporal_1..n, hint_1..n]))_i   # spatial gate, in [0, 1]
    x     = [current, g_1 * temporal_1, ..., g_n * temporal_n]
    w     = sigmoid(W_2 relu(W_1 avgpool(x)))                 # channel attention (squeeze-excite)
    fused = Conv1x1(w * x)                                    # back to C channels

:class:`ConcatFusion` is the ablation without attention: ``fused = Conv1x1([current, temporal,
hint])``.

The gate's weights on the hint start at −1 on the centre tap and 0 elsewhere: the hint channels
measure distrust (0 where the past agrees), so at initialisation the gate is the hint-less gate
where the alignment is good and closes where it is not; training takes it from there.

Without autograd the attention fusion runs the same formula without building ``x``: the 1x1
projection is linear and each gate g_i is one scalar per pixel, so with P = [P_0, P_1..n]
split by input block,

    fused = (P_0·w_0) current + Σ_i g_i ⊙ ((P_i·w_i) temporal_i) + b,
    avgpool(g_i ⊙ temporal_i) = temporal_i · g_i / (h·w)      (a matrix-vector product)

This skips the concatenations and the broadcast products at full resolution, which the CPU
profile showed costing several times the fusion's FLOPs (issue 9); the output equals the autograd
path up to float rounding (tested).

In both paths the 3x3 gate conv (a single output map per temporal input, which oneDNN runs at a
few GFLOP/s) is one 1x1 conv per input block to the 9 taps, then a sum of the 9 shifted tap
maps: conv3x3(x)[p] = Σ_k (W_k x)[p + δ_k] (same weights, same result up to rounding; training
fwd+bwd of the gate 0.73-0.84x the conv's time at 4x96², 48², 24² on 2 CPU threads).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.stages.squeeze_excite import squeeze_excite_gate


def _check_inputs(
    current: torch.Tensor,
    temporal: list[torch.Tensor],
    channels: int,
    n: int,
    hint: list[torch.Tensor] | None = None,
    hint_channels: int = 0,
):
    """Raise one clear error when ``current``/``temporal``/``hint`` do not match the module."""
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
    if hint_channels == 0:
        if hint is not None:
            raise ValueError("hint: this fusion was built with hint_channels=0; pass hint=None")
        return
    expected = (current.shape[0], hint_channels, *current.shape[2:])
    if not isinstance(hint, list | tuple) or len(hint) != n:
        got = len(hint) if isinstance(hint, list | tuple) else type(hint).__name__
        raise ValueError(f"hint: expected a list of {n} tensors of shape {expected}, got {got}")
    for i, h in enumerate(hint):
        if tuple(h.shape) != expected:
            raise ValueError(f"hint[{i}]: expected shape {expected}, got {tuple(h.shape)}")


def _init_hint_weights(conv: nn.Conv2d, first_hint_input: int, hint_channels: int, n: int):
    """Zero the gate's weights on the hint inputs except −1 on the centre tap of each temporal
    map's own hint (module docstring)."""
    with torch.no_grad():
        conv.weight[:, first_hint_input:].zero_()
        for i in range(n):
            start = first_hint_input + i * hint_channels
            conv.weight[i, start : start + hint_channels, 1, 1] = -1.0


def _per_sample_1x1(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution whose (C_out, C_in) kernel differs per sample: kernel (B, C_out, C_in),
    x (B, C_in, h, w). One conv2d for B = 1 (the streaming case), a grouped conv otherwise."""
    batch, c_in, height, width = x.shape
    c_out = kernel.shape[1]
    if batch == 1:
        return F.conv2d(x, kernel[0, :, :, None, None])
    grouped = F.conv2d(
        x.reshape(1, batch * c_in, height, width),
        kernel.reshape(batch * c_out, c_in, 1, 1),
        groups=batch,
    )
    return grouped.view(batch, c_out, height, width)


class _Fusion(nn.Module):
    """What both fusions share: the sizes of their inputs, checked on construction and per call."""

    def __init__(self, channels: int, num_temporal: int, hint_channels: int):
        super().__init__()
        if channels < 1 or num_temporal < 1 or hint_channels < 0:
            raise ValueError(
                f"{type(self).__name__}: channels and num_temporal must be >= 1 and "
                f"hint_channels >= 0, got {channels}, {num_temporal}, {hint_channels}"
            )
        self.channels = channels
        self.num_temporal = num_temporal
        self.hint_channels = hint_channels

    def _check(self, current, temporal, hint) -> None:
        _check_inputs(current, temporal, self.channels, self.num_temporal, hint, self.hint_channels)


class TemporalAttentionFusion(_Fusion):
    """Spatial gate per temporal map + squeeze-excite channel attention + 1x1 projection."""

    def __init__(
        self, channels: int, num_temporal: int = 1, reduction: int = 4, hint_channels: int = 0
    ):
        super().__init__(channels, num_temporal, hint_channels)
        if reduction < 1:
            raise ValueError(f"TemporalAttentionFusion: reduction must be >= 1, got {reduction}")
        total = channels * (1 + num_temporal)
        self.spatial_gate = nn.Conv2d(
            total + num_temporal * hint_channels, num_temporal, 3, padding=1
        )
        if hint_channels:
            _init_hint_weights(self.spatial_gate, total, hint_channels, num_temporal)
        self.channel_gate = squeeze_excite_gate(total, reduction)
        self.project = nn.Conv2d(total, channels, 1)

    def gate(
        self,
        current: torch.Tensor,
        temporal: list[torch.Tensor],
        hint: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Per-pixel trust in each temporal map: (B, num_temporal, h, w), values in [0, 1]."""
        self._check(current, temporal, hint)
        return torch.sigmoid(self._gate_logits_by_taps([current, *temporal, *(hint or [])]))

    def _gate_logits_by_taps(self, blocks: list[torch.Tensor]) -> torch.Tensor:
        """``spatial_gate(cat(blocks))`` as 1x1 convs to the 9 taps and a shifted sum."""
        n = self.num_temporal
        height, width = blocks[0].shape[2:]
        # (n, C_in, 3, 3) -> (9·n, C_in, 1, 1), tap-major: rows k·n .. k·n+n-1 are tap k
        taps_weight = self.spatial_gate.weight.permute(2, 3, 0, 1).reshape(9 * n, -1, 1, 1)
        taps = None
        start = 0
        for block in blocks:
            end = start + block.shape[1]
            part = F.conv2d(block, taps_weight[:, start:end])
            taps = part if taps is None else taps.add_(part)  # conv outputs: in place is safe
            start = end
        padded = F.pad(taps.contiguous(), (1, 1, 1, 1))
        logits = self.spatial_gate.bias.view(1, n, 1, 1)
        for k in range(9):
            dy, dx = divmod(k, 3)
            logits = logits + padded[:, k * n : (k + 1) * n, dy : dy + height, dx : dx + width]
        return logits

    def forward(
        self,
        current: torch.Tensor,
        temporal: list[torch.Tensor],
        hint: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        gates = self.gate(current, temporal, hint)
        if not torch.is_grad_enabled():
            return self._fused_inference(current, temporal, gates)
        gated = [t * gates[:, i : i + 1] for i, t in enumerate(temporal)]
        x = torch.cat([current, *gated], dim=1)
        return self.project(x * self.channel_gate(x))

    def _fused_inference(
        self, current: torch.Tensor, temporal: list[torch.Tensor], gates: torch.Tensor
    ) -> torch.Tensor:
        """``forward`` without the concatenated, gated ``x`` (module docstring)."""
        batch, channels = current.shape[:2]
        pixels = current.shape[2] * current.shape[3]
        pooled = [current.mean(dim=(2, 3))]
        for i, t in enumerate(temporal):
            pooled.append(torch.einsum("bchw,bhw->bc", t, gates[:, i]) / pixels)
        _, squeeze, relu, excite, sigmoid = self.channel_gate
        weights = sigmoid(excite(relu(squeeze(torch.cat(pooled, 1)[:, :, None, None]))))
        weights = weights.view(batch, 1, -1)  # (B, 1, C·(1+n)) over the projection's inputs
        kernel = self.project.weight.view(1, channels, -1) * weights  # (B, C, C·(1+n))
        blocks = kernel.split(channels, dim=2)
        fused = _per_sample_1x1(current, blocks[0]).add_(self.project.bias.view(1, -1, 1, 1))
        for i, t in enumerate(temporal):  # in place: no new full-size tensors (issue 9)
            fused.addcmul_(gates[:, i : i + 1], _per_sample_1x1(t, blocks[i + 1]))
        return fused


class ConcatFusion(_Fusion):
    """Fusion without attention (ablation): ``Conv1x1([current, temporal_1..n, hint_1..n])``."""

    def __init__(self, channels: int, num_temporal: int = 1, hint_channels: int = 0):
        super().__init__(channels, num_temporal, hint_channels)
        inputs = channels * (1 + num_temporal) + num_temporal * hint_channels
        self.project = nn.Conv2d(inputs, channels, 1)

    def forward(
        self,
        current: torch.Tensor,
        temporal: list[torch.Tensor],
        hint: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        self._check(current, temporal, hint)
        return self.project(torch.cat([current, *temporal, *(hint or [])], dim=1))
