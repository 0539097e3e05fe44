"""Parameter checks and draws shared by the synthetic degradations (haze, rain)."""

from __future__ import annotations

import torch


def check_range(
    owner: str, name: str, value: tuple[float, float], low: float, high: float
) -> tuple[float, float]:
    """``value`` as a float pair ``(a, b)`` with ``low <= a <= b <= high``; otherwise a
    ``ValueError`` naming the ``owner`` class, the argument ``name`` and the bounds."""
    a, b = (float(v) for v in value)
    if not low <= a <= b <= high:
        raise ValueError(
            f"{owner}: {name} must satisfy {low} <= low <= high <= {high}, got {value!r}"
        )
    return a, b


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    """One draw from U[low, high) taken from ``generator``."""
    return low + (high - low) * torch.rand((), generator=generator).item()
