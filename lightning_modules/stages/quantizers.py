"""Quantizers for the codec latent y: adaptive (spatial-channel-wise), per-channel, fixed, none.

Common contract, ``forward(y, mu, q=None) -> (y_hat, r_for_rate, q_used)`` (DCVC-HEM style):

    q_used = lower_bound(q, 0.5)        # max(q, 0.5); the gradient may still push q up
    r      = y / q_used − μ             # scale by the step, then centre
    r̂      = round(r)                   # training: straight-through r + (round(r) − r).detach()
    ŷ      = (r̂ + μ) · q_used           # what the decoder sees
    r_for_rate = r + U(−1/2, 1/2) in training, round(r) in eval

``r_for_rate`` is what the zero-mean conditional entropy model scores. In eval mode
ŷ = (round(y / q − μ) + μ) · q exactly. Note that with the straight-through estimator ŷ = y +
const · q, so μ receives its gradient through the rate path only.

Where q comes from, and how many chunks the hyper-decoder must output (``hyper_chunks``):
- ``AdaptiveQuantizer``: q is a (B, C, h, w) map from the hyper-decoder; 3 chunks (q, μ, σ).
- ``ChannelQuantizer``: a learned per-channel step (initialised to 1); 2 chunks (μ, σ).
- ``FixedQuantizer``: q = 1, the plain mean-scale hyperprior; 2 chunks (μ, σ).
- ``NoQuantizer``: ŷ = y, no quantization and no rate (``r_for_rate`` and ``q_used`` are None;
  the codec then reports 0 bits); 0 chunks.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_modules.stages.bounds import lower_bound

MIN_STEP = 0.5  # default lower bound of the step q (DESIGN §2); a constructor argument below


def _check_min_step(owner: str, min_step: float) -> float:
    if not min_step > 0:
        raise ValueError(f"{owner}: min_step must be > 0, got {min_step}")
    return float(min_step)


def quantize_centred(y: Tensor, mu: Tensor, q: Tensor, training: bool) -> tuple[Tensor, Tensor]:
    """(ŷ, r_for_rate) for latent y, mean μ and step q (already lower-bounded); see module doc."""
    r = y / q - mu
    if training:
        r_hat = r + (torch.round(r) - r).detach()
        r_for_rate = r + torch.empty_like(r).uniform_(-0.5, 0.5)
    else:
        r_hat = torch.round(r)
        r_for_rate = r_hat
    return (r_hat + mu) * q, r_for_rate


def _check_same_shape(owner: str, y: Tensor, **others: Tensor) -> None:
    if y.dim() != 4:
        raise ValueError(f"{owner}: expected y of shape (B, C, h, w), got {tuple(y.shape)}")
    for name, t in others.items():
        if t.shape != y.shape:
            raise ValueError(
                f"{owner}: {name} must have y's shape {tuple(y.shape)}, got {tuple(t.shape)}"
            )


class AdaptiveQuantizer(nn.Module):
    """Spatial-channel-wise step: q is the hyper-decoder's (B, C, h, w) map, bounded below by
    ``min_step``."""

    hyper_chunks = 3

    def __init__(self, min_step: float = MIN_STEP) -> None:
        super().__init__()
        self.min_step = _check_min_step("AdaptiveQuantizer", min_step)

    def forward(self, y: Tensor, mu: Tensor, q: Tensor | None = None) -> tuple[Tensor, ...]:
        if q is None:
            raise ValueError("AdaptiveQuantizer: q (the hyper-decoder's step map) is required")
        _check_same_shape("AdaptiveQuantizer", y, mu=mu, q=q)
        q_used = lower_bound(q, self.min_step)
        y_hat, r_for_rate = quantize_centred(y, mu, q_used, self.training)
        return y_hat, r_for_rate, q_used

    def extra_repr(self) -> str:
        return f"min_step={self.min_step}"


class ChannelQuantizer(nn.Module):
    """One learned step per channel (parameter ``step`` (C,), initialised to 1), bounded below
    by ``min_step``."""

    hyper_chunks = 2

    def __init__(self, channels: int, min_step: float = MIN_STEP) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"ChannelQuantizer: channels must be >= 1, got {channels}")
        self.channels = int(channels)
        self.min_step = _check_min_step("ChannelQuantizer", min_step)
        self.step = nn.Parameter(torch.ones(channels))

    def forward(self, y: Tensor, mu: Tensor, q: Tensor | None = None) -> tuple[Tensor, ...]:
        if q is not None:
            raise ValueError("ChannelQuantizer: learns its own step; q must be None")
        _check_same_shape("ChannelQuantizer", y, mu=mu)
        if y.shape[1] != self.channels:
            raise ValueError(
                f"ChannelQuantizer: y has {y.shape[1]} channels, expected {self.channels}"
            )
        step = lower_bound(self.step, self.min_step).to(y.dtype)
        q_used = step.reshape(1, -1, 1, 1).expand_as(y)
        y_hat, r_for_rate = quantize_centred(y, mu, q_used, self.training)
        return y_hat, r_for_rate, q_used

    def extra_repr(self) -> str:
        return f"channels={self.channels}, min_step={self.min_step}"


class FixedQuantizer(nn.Module):
    """Unit step q = 1: rounding around the predicted mean (standard mean-scale hyperprior)."""

    hyper_chunks = 2

    def forward(self, y: Tensor, mu: Tensor, q: Tensor | None = None) -> tuple[Tensor, ...]:
        if q is not None:
            raise ValueError("FixedQuantizer: the step is fixed at 1; q must be None")
        _check_same_shape("FixedQuantizer", y, mu=mu)
        q_used = torch.ones_like(y)
        y_hat, r_for_rate = quantize_centred(y, mu, q_used, self.training)
        return y_hat, r_for_rate, q_used


class NoQuantizer(nn.Module):
    """Identity: ŷ = y, nothing to code (bits = 0); ``mu`` and ``q`` are ignored."""

    hyper_chunks = 0

    def forward(
        self, y: Tensor, mu: Tensor | None = None, q: Tensor | None = None
    ) -> tuple[Tensor, None, None]:
        return y, None, None


QUANTIZERS = {
    "adaptive": AdaptiveQuantizer,
    "channel": ChannelQuantizer,
    "fixed": FixedQuantizer,
    "none": NoQuantizer,
}


def build_quantizer(name: str, channels: int, min_step: float = MIN_STEP) -> nn.Module:
    """Quantizer by name ("adaptive", "channel", "fixed", "none") for a latent of ``channels``;
    ``min_step`` bounds the learned step of "adaptive" and "channel" from below."""
    if name not in QUANTIZERS:
        raise ValueError(f"unknown quantizer {name!r}; valid names: {', '.join(QUANTIZERS)}")
    if name == "channel":
        return ChannelQuantizer(channels, min_step)
    if name == "adaptive":
        return AdaptiveQuantizer(min_step)
    return QUANTIZERS[name]()
