"""Synthetic degradations: clean clip -> degraded clip, reproducible through a torch.Generator.

Every degradation is a callable ``deg(gt_clip (T, 3, H, W) in [0, 1], generator) -> (lq_clip,
info: dict)``. All randomness comes from ``generator``, so the same generator state gives the
same degraded clip. ``info["sigma"]`` (noise std in [0, 1] units) is set by ``GaussianNoise``
only; the datasets treat a missing key as σ = 0.
"""

from __future__ import annotations

import torch

from datamodules.clip_transforms import check_clip
from datamodules.degradations.haze import SyntheticHaze
from datamodules.degradations.noise import GaussianNoise, sigma_from_255, sigma_to_255
from datamodules.degradations.rain import SyntheticRain


class NoDegradation:
    """Identity: ``lq = gt`` (a copy), empty info. For sets whose degraded frames are provided."""

    def __repr__(self) -> str:
        return "NoDegradation()"

    def __call__(
        self, gt_clip: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict]:
        return check_clip(gt_clip, "NoDegradation input").clone(), {}


# The restoration task each synthetic degradation makes ("none" makes none).
TASK_OF_DEGRADATION = {"noise": "denoise", "rain": "derain", "haze": "dehaze"}

DEGRADATIONS = {
    "noise": GaussianNoise,
    "rain": SyntheticRain,
    "haze": SyntheticHaze,
    "none": NoDegradation,
}


def build_degradation(name: str, **kwargs):
    """Build the degradation called ``name`` ("noise", "rain", "haze", "none") from ``kwargs``
    as a data config writes them: noise levels (``sigma_range``, ``fixed_sigma``) on the 0-255
    scale, converted here by ``sigma_from_255``."""
    if name not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {name!r}; valid names: {', '.join(DEGRADATIONS)}")
    if name == "noise":
        kwargs = {k: (sigma_from_255(v) if v is not None else None) for k, v in kwargs.items()}
    try:
        return DEGRADATIONS[name](**kwargs)
    except TypeError as error:
        raise TypeError(
            f"degradation {name!r}: bad keyword arguments {sorted(kwargs)}: {error}"
        ) from error


__all__ = [
    "DEGRADATIONS",
    "GaussianNoise",
    "NoDegradation",
    "SyntheticHaze",
    "SyntheticRain",
    "TASK_OF_DEGRADATION",
    "build_degradation",
    "sigma_from_255",
    "sigma_to_255",
]
