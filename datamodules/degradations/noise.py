"""Additive white Gaussian noise for video denoising (the VRT / BasicVSR++ protocol).

``lq = gt + σ·n``, n ~ N(0, 1) i.i.d. per pixel, channel and frame, unclipped, in float.
Training: σ ~ U[sigma_range] / 255, drawn once per clip. Test: ``fixed_sigma`` / 255.
"""

from __future__ import annotations

import torch

from datamodules.clip_transforms import check_clip


class GaussianNoise:
    """Unclipped AWGN with a per-clip σ.

    Args:
        sigma_range: (low, high) in 0-255 units; σ ~ U[low, high] / 255 per clip.
        fixed_sigma: σ in 0-255 units used for every clip instead (test protocol).

    ``__call__(gt_clip (T, 3, H, W), generator) -> (lq_clip, {"sigma": σ in [0, 1] units})``.
    """

    def __init__(
        self, sigma_range: tuple[float, float] = (0.0, 50.0), fixed_sigma: float | None = None
    ) -> None:
        low, high = (float(v) for v in sigma_range)
        if not 0.0 <= low <= high:
            raise ValueError(
                f"GaussianNoise: sigma_range must satisfy 0 <= low <= high, got {sigma_range!r}"
            )
        if fixed_sigma is not None and float(fixed_sigma) < 0:
            raise ValueError(
                f"GaussianNoise: fixed_sigma must be >= 0 (0-255 units), got {fixed_sigma!r}"
            )
        self.sigma_range = (low, high)
        self.fixed_sigma = None if fixed_sigma is None else float(fixed_sigma)

    def __repr__(self) -> str:
        return f"GaussianNoise(sigma_range={self.sigma_range}, fixed_sigma={self.fixed_sigma})"

    def draw_sigma(self, generator: torch.Generator) -> float:
        """σ in [0, 1] units: the fixed value, or one uniform draw from ``sigma_range``."""
        if self.fixed_sigma is not None:
            return self.fixed_sigma / 255.0
        low, high = self.sigma_range
        return (low + (high - low) * torch.rand((), generator=generator).item()) / 255.0

    def __call__(
        self, gt_clip: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict]:
        check_clip(gt_clip, "GaussianNoise input")
        sigma = self.draw_sigma(generator)
        noise = torch.randn(gt_clip.shape, generator=generator, dtype=gt_clip.dtype)
        return gt_clip + sigma * noise.to(gt_clip.device), {"sigma": sigma}
