"""Motion-compensated recursive filter of the restored frames: the last stage of the recurrence.

    g_t = warp(r_{t-1}, v̂_t)                               previous filtered output, aligned
    d_t = mean over a k×k window and the channels of (g_t − out_t)²    local disagreement
    w_t = w_max · m_t · exp(−d_t / τ²),   τ = κ·σ + c            trust in the aligned past
    r_t = out_t + w_t·(g_t − out_t)                          (r_0 = out_0)

with out_t the U-Net's restored frame, m_t = 1 where the warp reads inside the frame and σ the
noise level (0 for other tasks). Two restored frames differ by their residual errors, which are
largely independent from frame to frame, plus any misalignment; where they agree to within τ
the output is averaged with the aligned past (a recursive average over the frames the flow
keeps aligned), where they do not (occlusions, flow errors) w falls to 0 and r_t = out_t.

Why next to the feature recurrence: on the moving held-out clip the same average applied after
the fact to a trained net's outputs gained +1.2 dB over the net's own recurrence (docs/
ARCHITECTURE.md, issue 8); the U-Net's residual error is what averaging removes, and the
feature state does not learn to remove it at the training budgets measured. Unlike the input
blend (``temporal_blend.py``) the frame the U-Net restores stays the degraded one and frame 0
is never filtered (trained with the filter, the U-Net's frame-alone output still gets weaker on
moving video: it learns to lean on the average; bench/RESULTS.md, session 20).

The scalars w_max = sigmoid(a), κ and c are learned (``agreement_weight.AgreementWeight``,
shared with the input blend; a starts at 0, κ at 0.4, c at 0.01: τ ≈ 0.057 at σ = 30/255).
Trained end to end: the loss sees r_t.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_modules.stages.agreement_weight import AgreementWeight
from lightning_modules.stages.alignment_hint import window_mean
from lightning_modules.stages.warp import flow_warp, in_bounds_mask


class RecursiveOutputFilter(AgreementWeight):
    """``filter(restored, previous, flow, noise_level) -> (r_t, w_t)``; see the module docstring.

    Args:
        window: side k of the window the disagreement is averaged over (odd).
        init_trust: initial w_max in (0, 1).
        init_kappa: initial κ (disagreement tolerated per unit of σ).
        init_offset: initial c, the disagreement tolerated without noise (image units).
    """

    def __init__(
        self,
        window: int = 5,
        init_trust: float = 0.5,
        init_kappa: float = 0.4,
        init_offset: float = 0.01,
    ) -> None:
        super().__init__(window, init_trust, init_kappa, init_offset)

    def forward(
        self,
        restored: Tensor,
        previous: Tensor,
        flow: Tensor,
        noise_level: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """(r_t (B, C, H, W), w_t (B, 1, H, W)) from out_t, r_{t-1} and v̂_t (B, 2, H, W)."""
        if restored.dim() != 4 or previous.shape != restored.shape:
            raise ValueError(
                f"RecursiveOutputFilter: restored {tuple(restored.shape)} and previous "
                f"{tuple(previous.shape)} must be the same (B, C, H, W) shape"
            )
        if flow.shape != (restored.shape[0], 2, *restored.shape[2:]):
            raise ValueError(
                f"RecursiveOutputFilter: flow must be (B, 2, H, W) = "
                f"{(restored.shape[0], 2, *restored.shape[2:])}, got {tuple(flow.shape)}"
            )
        aligned = flow_warp(previous, flow)
        difference = aligned - restored
        disagreement = window_mean(difference.square().mean(1, keepdim=True), self.window)
        tolerance = self.tolerance(self.sigma_of(noise_level, restored))
        weight = self.max_trust() * torch.exp(-disagreement / tolerance.square())
        weight = weight * in_bounds_mask(flow).to(weight.dtype)
        return restored + weight * difference, weight
