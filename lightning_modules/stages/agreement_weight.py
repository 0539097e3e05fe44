"""The learned trust that the pixel-level temporal stages share (``temporal_blend.py``,
``output_filter.py``): how much of an aligned past to average in, given how much it disagrees.

    τ = κ·σ + c                    disagreement tolerated (σ = 0 without a noise level)
    weight = w_max · exp(−e / τ²)   with w_max = sigmoid(a), e a window energy of the disagreement

The three scalars a, κ, c are parameters (``trust_logit``, ``log_kappa``, ``log_offset``), so
training sets how far the past is trusted; each stage picks its own e and starting values.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class AgreementWeight(nn.Module):
    """Base of the stages above: the checked window and the three learned scalars.

    Args:
        window: side k of the window the disagreement is averaged over (odd).
        init_trust: initial w_max in (0, 1).
        init_kappa: initial κ (disagreement tolerated per unit of σ), > 0.
        init_offset: initial c, the disagreement tolerated without noise (image units), > 0.
    """

    def __init__(
        self, window: int, init_trust: float, init_kappa: float, init_offset: float
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        if isinstance(window, bool) or not isinstance(window, int) or window < 1 or window % 2 == 0:
            raise ValueError(f"{owner}: window must be an odd int >= 1, got {window!r}")
        if not 0.0 < init_trust < 1.0:
            raise ValueError(f"{owner}: init_trust must be in (0, 1), got {init_trust}")
        if not (init_kappa > 0 and init_offset > 0):
            raise ValueError(
                f"{owner}: init_kappa and init_offset must be > 0, got {init_kappa}, {init_offset}"
            )
        self.window = window
        self.trust_logit = nn.Parameter(torch.tensor(math.log(init_trust / (1 - init_trust))))
        self.log_kappa = nn.Parameter(torch.tensor(math.log(init_kappa)))
        self.log_offset = nn.Parameter(torch.tensor(math.log(init_offset)))

    def max_trust(self) -> Tensor:
        """w_max = sigmoid(a)."""
        return torch.sigmoid(self.trust_logit)

    @staticmethod
    def sigma_of(noise_level: Tensor | None, like: Tensor) -> Tensor:
        """σ as (B, 1, 1, 1) for a batch ``like`` (B, ...); zeros without a noise level."""
        if noise_level is None:
            return like.new_zeros(like.shape[0], 1, 1, 1)
        return noise_level.reshape(-1, 1, 1, 1).to(like)

    def tolerance(self, sigma: Tensor) -> Tensor:
        """τ = κ·σ + c for σ from ``sigma_of``."""
        return self.log_kappa.exp() * sigma + self.log_offset.exp()
