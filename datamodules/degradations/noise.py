"""Additive white Gaussian noise for video denoising (the VRT / BasicVSR++ protocol), and the one
place noise levels change units.

Inside the code a noise level σ is a float in [0, 1] units (the units of the frames). Configs and
reports use the 0-255 scale of the papers (σ = 25 means 25/255); they convert with
``sigma_from_255`` / ``sigma_to_255`` and nothing else does.

``lq = gt + σ·n``, n ~ N(0, 1) i.i.d. per pixel, channel and frame, unclipped, in float.
Training: σ ~ U[sigma_range], drawn once per clip. Test: ``fixed_sigma``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from datamodules.clip_transforms import check_clip


def sigma_from_255(value: float | Sequence[float]) -> float | list[float]:
    """σ on the 0-255 scale (configs, command lines) -> [0, 1] units; a sequence elementwise."""
    if isinstance(value, (int, float)):
        return float(value) / 255.0
    return [float(v) / 255.0 for v in value]


def sigma_to_255(value: float) -> float:
    """σ in [0, 1] units -> the 0-255 scale of tables and logs."""
    return float(value) * 255.0


class GaussianNoise:
    """Unclipped AWGN with a per-clip σ, all in [0, 1] units.

    Args:
        sigma_range: (low, high); σ ~ U[low, high] per clip.
        fixed_sigma: σ used for every clip instead (test protocol).

    ``__call__(gt_clip (T, 3, H, W), generator) -> (lq_clip, {"sigma": σ})``.
    """

    def __init__(
        self, sigma_range: tuple[float, float] = (0.0, 50 / 255), fixed_sigma: float | None = None
    ) -> None:
        low, high = (float(v) for v in sigma_range)
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(
                f"GaussianNoise: sigma_range must satisfy 0 <= low <= high <= 1 ([0, 1] units; "
                f"σ_255 / 255), got {sigma_range!r}"
            )
        if fixed_sigma is not None and not 0.0 <= float(fixed_sigma) <= 1.0:
            raise ValueError(
                f"GaussianNoise: fixed_sigma must be in [0, 1] ([0, 1] units; σ_255 / 255), "
                f"got {fixed_sigma!r}"
            )
        self.sigma_range = (low, high)
        self.fixed_sigma = None if fixed_sigma is None else float(fixed_sigma)

    def __repr__(self) -> str:
        return f"GaussianNoise(sigma_range={self.sigma_range}, fixed_sigma={self.fixed_sigma})"

    def draw_sigma(self, generator: torch.Generator) -> float:
        """σ: the fixed value, or one uniform draw from ``sigma_range``."""
        if self.fixed_sigma is not None:
            return self.fixed_sigma
        low, high = self.sigma_range
        return low + (high - low) * torch.rand((), generator=generator).item()

    def __call__(
        self, gt_clip: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict]:
        check_clip(gt_clip, "GaussianNoise input")
        sigma = self.draw_sigma(generator)
        noise = torch.randn(gt_clip.shape, generator=generator, dtype=gt_clip.dtype)
        return gt_clip + sigma * noise.to(gt_clip.device), {"sigma": sigma}
