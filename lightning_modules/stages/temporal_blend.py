"""Motion-compensated recursive blend: the aligned previous restored frame, averaged into the input.

    d  = mean over a k×k window and the channels of |g − x|      local disagreement
    α  = α_max · exp(−(d / (κ·σ + c))²)                          trust in the aligned past
    x̃  = x + α·(g − x)

or, with ``detector="excess_energy"``, a disagreement that the noise cannot fake:

    e² = max(mean over the window and channels of (g − x)² − σ², 0)
    α  = α_max · exp(−e² / (κ·σ + c)²)

Since x = clean + noise and g = clean + δ (misalignment, restoration error),
E[(g − x)²] = δ² + σ²: e² estimates δ² whatever the noise. The mean of |g − x| instead grows
only once |δ| is well above σ, so at σ = 30 a 1-2 px misalignment of textured content passes as
agreement and is blended in (ghosting).

with x the current degraded frame, g = warp(restored_{t-1}, flow) the aligned previous output and
σ the noise level (0 for other tasks). Where the past agrees with the present to within the
noise, the input is averaged with it, which lowers its noise at once; where they disagree
(occlusions, flow errors, moving content the flow missed) α falls to 0 and x̃ = x. The scalars
α_max = sigmoid(a), κ and c are learned (a starts at 0, κ at 2, c at 0.02), so the network has
temporal evidence from its first training step instead of having to learn the averaging. The
U-Net then restores x̃ (its residual is added to x̃), with α as an extra input so it knows where
the input was averaged (and is less noisy than σ says).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_modules.stages.agreement_weight import AgreementWeight
from lightning_modules.stages.alignment_hint import window_mean


class TemporalBlend(AgreementWeight):
    """``blend(x, guide, noise_level) -> (x̃, α)``; see the module docstring.

    Args:
        window: side k of the window the disagreement is averaged over (odd).
        init_trust: initial α_max in (0, 1).
        init_kappa: initial κ (how many σ of disagreement still count as agreement).
        init_offset: initial c, the disagreement tolerated without noise (image units).
        detector: ``mean_abs`` (d above) or ``excess_energy`` (e² above).
    """

    DETECTORS = ("mean_abs", "excess_energy")

    def __init__(
        self,
        window: int = 5,
        init_trust: float = 0.5,
        init_kappa: float = 1.0,
        init_offset: float = 0.02,
        detector: str = "excess_energy",
    ) -> None:
        super().__init__(window, init_trust, init_kappa, init_offset)
        if detector not in self.DETECTORS:
            raise ValueError(
                f"TemporalBlend: detector must be one of {self.DETECTORS}, got {detector!r}"
            )
        self.detector = detector

    def weight(self, frame: Tensor, guide: Tensor, noise_level: Tensor | None) -> Tensor:
        """α (B, 1, H, W) in [0, α_max]."""
        difference = guide - frame
        energy = self.detector == "excess_energy"
        disagreement = (difference.square() if energy else difference.abs()).mean(1, keepdim=True)
        disagreement = window_mean(disagreement, self.window)
        sigma = self.sigma_of(noise_level, frame)
        tolerance = self.tolerance(sigma)
        if energy:
            excess = (disagreement - sigma.square()).clamp(min=0.0)
            return self.max_trust() * torch.exp(-excess / tolerance.square())
        return self.max_trust() * torch.exp(-((disagreement / tolerance) ** 2))

    def forward(
        self, frame: Tensor, guide: Tensor, noise_level: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """(x̃ (B, C, H, W), α (B, 1, H, W))."""
        if frame.shape != guide.shape or frame.dim() != 4:
            raise ValueError(
                f"TemporalBlend: frame {tuple(frame.shape)} and guide {tuple(guide.shape)} must "
                "be the same (B, C, H, W) shape"
            )
        weight = self.weight(frame, guide, noise_level)
        return frame + weight * (guide - frame), weight
