"""Blind noise-level estimate for additive white Gaussian noise (AWGN), on the 0-255 scale.

``estimate_sigma_255(frames)``: the wavelet median-absolute-deviation estimator (Donoho &
Johnstone): the finest diagonal Haar detail coefficients HH of an image are mostly noise, and
``σ = median(|HH|) / 0.6745`` is robust to the few large coefficients edges and texture give.
Written here (a 2×2 Haar step is four slices) because ``skimage.restoration.estimate_sigma``
needs PyWavelets, which is not a dependency; like it, the result is in the frames' units,
times 255 here.

Clipped noise (an 8-bit video keeps only [0, 255]) is narrower than Gaussian near black and
white, so the estimate is refined twice by dropping the coefficients whose neighbourhood mean
lies within 2σ of 0 or 1. Measured on the bundled photographs with AWGN (8-bit, clipped):
within ±2 of the truth for σ = 10 .. 50 (tests/datamodules/test_noise_estimate.py).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

MAD_TO_SIGMA = 0.6745  # median |N(0, 1)|
MARGIN = 2.0  # drop coefficients whose local mean is within MARGIN·σ of 0 or 1
REFINEMENTS = 2
MIN_COEFFICIENTS = 1024  # fewer kept coefficients: keep the previous estimate


def _haar_details(frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(HH, local mean) of a (C, H, W) frame: orthonormal diagonal Haar details of each 2×2
    block (the noise keeps its σ), and the mean of the 5×5 blocks around it."""
    height, width = frame.shape[-2] // 2 * 2, frame.shape[-1] // 2 * 2
    x = frame[..., :height, :width].double()
    a, b, c, d = x[..., 0::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    details = (a - b - c + d) / 2
    mean = F.avg_pool2d(
        ((a + b + c + d) / 4)[:, None], 5, stride=1, padding=2, count_include_pad=False
    )[:, 0]
    return details.flatten(), mean.flatten()


def estimate_sigma_255(frames: Iterable[torch.Tensor]) -> float:
    """σ of the AWGN in float (3, H, W) RGB frames in [0, 1], on the 0-255 scale, pooled over
    all the given frames. ``ValueError`` when they are too small (under 2×2 pixels)."""
    pairs = [_haar_details(frame) for frame in frames if min(frame.shape[-2:]) >= 2]
    if not pairs:
        raise ValueError("estimate_sigma_255: expected frames of at least 2x2 pixels")
    details = torch.cat([p[0] for p in pairs]).abs()
    mean = torch.cat([p[1] for p in pairs])
    sigma = details.median().item() / MAD_TO_SIGMA
    for _ in range(REFINEMENTS):
        keep = (mean > MARGIN * sigma) & (mean < 1.0 - MARGIN * sigma)
        if int(keep.sum()) < MIN_COEFFICIENTS:
            break
        sigma = details[keep].median().item() / MAD_TO_SIGMA
    return sigma * 255.0
