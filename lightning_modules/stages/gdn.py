"""Generalized divisive normalization (Ballé et al., ICLR 2016) and its approximate inverse.

GDN:          y_i = x_i / sqrt(β_i + Σ_j γ_ij x_j²)
inverse GDN:  y_i = x_i · sqrt(β_i + Σ_j γ_ij x_j²)

β (C,) and γ (C, C) are kept non-negative by reparametrization (``NonNegativeParametrizer``:
stored as sqrt(value + p²), p = 2^-18) with lower bounds β >= ``beta_min`` and γ >= 0, so no
optimizer step can make the normalizer negative. β starts at 1 and γ at ``gamma_init``·I. The
sum over j is a 1x1 convolution of x² with γ as its weight and β as its bias.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.stages.bounds import NonNegativeParametrizer


class GDN(nn.Module):
    """GDN over the channels of a (B, C, H, W) tensor; ``inverse=True`` multiplies instead."""

    def __init__(
        self,
        channels: int,
        inverse: bool = False,
        beta_min: float = 1e-6,
        gamma_init: float = 0.1,
    ) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"GDN: channels must be >= 1, got {channels}")
        if beta_min <= 0:
            raise ValueError(f"GDN: beta_min must be > 0, got {beta_min}")
        if gamma_init < 0:
            raise ValueError(f"GDN: gamma_init must be >= 0, got {gamma_init}")
        self.channels = int(channels)
        self.inverse = bool(inverse)
        self.beta_parametrizer = NonNegativeParametrizer(minimum=beta_min)
        self.gamma_parametrizer = NonNegativeParametrizer(minimum=0.0)
        self.beta_reparam = nn.Parameter(self.beta_parametrizer.init(torch.ones(channels)))
        self.gamma_reparam = nn.Parameter(
            self.gamma_parametrizer.init(gamma_init * torch.eye(channels))
        )

    @property
    def beta(self) -> Tensor:
        """Effective β (C,), >= beta_min."""
        return self.beta_parametrizer(self.beta_reparam)

    @property
    def gamma(self) -> Tensor:
        """Effective γ (C, C), >= 0; row i holds the weights γ_ij of output channel i."""
        return self.gamma_parametrizer(self.gamma_reparam)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"GDN: expected x of shape (B, {self.channels}, H, W), got {tuple(x.shape)}"
            )
        gamma = self.gamma.to(x.dtype)[:, :, None, None]
        norm = F.conv2d(x * x, gamma, self.beta.to(x.dtype))
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, inverse={self.inverse}"
