"""The blind AWGN estimate (datamodules/noise_estimate.py) on real photographs and frames."""

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.noise_estimate import estimate_sigma_255
from datamodules.sample import load_photo

PHOTOS = ("astronaut", "coffee", "rocket", "chelsea", "motorcycle")


def _noisy_8bit(photo: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """``photo`` + AWGN of σ (0-255 scale), stored as an 8-bit frame would be (clipped)."""
    noise = torch.randn(photo.shape, generator=torch.Generator().manual_seed(seed))
    return ((photo * 255 + noise * sigma).round().clamp(0, 255) / 255).float()


@pytest.mark.parametrize("name", PHOTOS)
def test_estimate_is_within_2_of_the_true_sigma_from_10_to_50(name):
    photo = load_photo(name)
    for sigma in (10, 20, 30, 40, 50):
        estimate = estimate_sigma_255([_noisy_8bit(photo, sigma, seed=sigma)])
        assert abs(estimate - sigma) <= 2.0, (name, sigma, estimate)


def test_frames_are_pooled_and_clean_frames_estimate_low():
    photo = load_photo("chelsea")
    halves = [photo[:, :150], photo[:, 150:]]
    noisy = [_noisy_8bit(h, 25, seed=i) for i, h in enumerate(halves)]
    assert abs(estimate_sigma_255(noisy) - 25) <= 2.0
    assert estimate_sigma_255([photo]) < 3.0  # the clean photograph: only its fine texture
    with pytest.raises(ValueError, match="at least 2x2 pixels"):
        estimate_sigma_255([torch.zeros(3, 1, 5)])


def test_estimate_on_the_shared_tennis_pair(shared_data):
    """SOURCES.md: AWGN clipped to [0, 255], σ not stated; std(noisy - clean) ≈ 38-39 and
    the clean SIF frames carry noise of their own (they estimate ≈ 9 here)."""
    folder = shared_data / "tennis_videnn"

    def frames(kind):
        paths = sorted((folder / kind).glob("*.png"))[:3]
        return [
            torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1) / 255.0
            for p in paths
        ]

    noisy, clean = frames("noisy"), frames("original")
    difference = float((torch.stack(noisy) - torch.stack(clean)).std() * 255)
    estimate = estimate_sigma_255(noisy)
    assert 38.0 <= difference <= 40.0
    assert abs(estimate - (difference**2 + estimate_sigma_255(clean) ** 2) ** 0.5) <= 2.0
