"""Synthetic haze by the atmospheric scattering model.

``I = J·t + A·(1 − t)``, ``t = exp(−β·d)``, with J the clean frame, d in [0, 1] a smooth random
relative depth map, β the scattering coefficient and A the (grey-ish, per-channel) airlight.
One d, β and A are drawn per clip and shared by all its frames (a haze that is stable over the
clip, as from a slowly moving camera in a uniform medium).

The depth map mixes a random linear ramp (scenes usually get farther towards the top) with
low-frequency noise: a coarse random grid upsampled bicubically to the frame size, which is
smooth by construction and costs almost nothing at any resolution.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from datamodules.clip_transforms import check_clip
from datamodules.degradations.sampling import check_range, uniform


class SyntheticHaze:
    """Per-clip random haze.

    Args:
        beta_range: β ~ U[range]; with d in [0, 1], t spans [exp(−β), 1].
        airlight_range: grey level a ~ U[range] of the airlight.
        airlight_tint: each channel of A is a + U[−tint, tint] (clipped to [0, 1]).
        ramp_weight_range: weight w ~ U[range] of the linear ramp in d = w·ramp + (1 − w)·noise.
        noise_grid: the coarse noise grid has ``noise_grid`` cells along the longer side.

    ``__call__(gt_clip (T, 3, H, W), generator) -> (lq_clip, info)`` with info
    ``{"transmission": t (1, 1, H, W), "airlight": A (3,), "beta": β, "depth": d (1, 1, H, W)}``.
    """

    def __init__(
        self,
        beta_range: tuple[float, float] = (0.5, 2.0),
        airlight_range: tuple[float, float] = (0.7, 1.0),
        airlight_tint: float = 0.05,
        ramp_weight_range: tuple[float, float] = (0.3, 0.8),
        noise_grid: int = 4,
    ) -> None:
        owner = "SyntheticHaze"  # named in the range errors
        self.beta_range = check_range(owner, "beta_range", beta_range, 0.0, math.inf)
        self.airlight_range = check_range(owner, "airlight_range", airlight_range, 0.0, 1.0)
        self.ramp_weight_range = check_range(
            owner, "ramp_weight_range", ramp_weight_range, 0.0, 1.0
        )
        if not 0.0 <= float(airlight_tint) <= 0.5:
            raise ValueError(
                f"SyntheticHaze: airlight_tint must be in [0, 0.5], got {airlight_tint!r}"
            )
        if int(noise_grid) < 1:
            raise ValueError(f"SyntheticHaze: noise_grid must be >= 1, got {noise_grid!r}")
        self.airlight_tint = float(airlight_tint)
        self.noise_grid = int(noise_grid)

    def __repr__(self) -> str:
        return (
            f"SyntheticHaze(beta_range={self.beta_range}, airlight_range={self.airlight_range}, "
            f"airlight_tint={self.airlight_tint})"
        )

    def draw_depth(self, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
        """Smooth relative depth (1, 1, H, W) in [0, 1]: random ramp mixed with smooth noise."""
        angle = uniform(generator, -math.pi / 4, math.pi / 4)  # ramp direction around "up"
        ys = torch.linspace(-1.0, 1.0, height).view(height, 1)
        xs = torch.linspace(-1.0, 1.0, width).view(1, width)
        ramp = -ys * math.cos(angle) + xs * math.sin(angle)  # larger (farther) towards the top
        scale = self.noise_grid / max(height, width)
        grid = (max(2, round(height * scale) + 1), max(2, round(width * scale) + 1))
        coarse = torch.rand((1, 1, *grid), generator=generator)
        noise = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)[
            0, 0
        ]
        weight = uniform(generator, *self.ramp_weight_range)
        depth = weight * _normalise(ramp) + (1.0 - weight) * _normalise(noise)
        return depth.view(1, 1, height, width)

    def draw_airlight(self, generator: torch.Generator) -> torch.Tensor:
        """A (3,): a grey level plus a small per-channel tint, in [0, 1]."""
        grey = uniform(generator, *self.airlight_range)
        tint = (torch.rand(3, generator=generator) * 2.0 - 1.0) * self.airlight_tint
        return (grey + tint).clamp(0.0, 1.0)

    def __call__(
        self, gt_clip: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict]:
        check_clip(gt_clip, "SyntheticHaze input")
        height, width = gt_clip.shape[-2:]
        depth = self.draw_depth(height, width, generator)
        beta = uniform(generator, *self.beta_range)
        airlight = self.draw_airlight(generator)
        transmission = torch.exp(-beta * depth).to(gt_clip)
        a = airlight.to(gt_clip).view(1, 3, 1, 1)
        hazy = gt_clip * transmission + a * (1.0 - transmission)
        info = {"transmission": transmission, "airlight": airlight, "beta": beta, "depth": depth}
        return hazy, info


def _normalise(field: torch.Tensor) -> torch.Tensor:
    """Affinely map ``field`` onto [0, 1] (a constant field maps to 0)."""
    low, high = field.min(), field.max()
    return (field - low) / (high - low).clamp_min(1e-12)
