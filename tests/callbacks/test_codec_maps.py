"""Viridis-like colour map and latent-map colouring."""

import pytest
import torch

from callbacks.codec_maps import CodecMaps, colorize_map, viridis
from callbacks.validation_visuals import ClipVisuals


def test_viridis_end_points_and_monotone_brightness():
    ends = viridis(torch.tensor([0.0, 1.0]))
    assert ends[:, 0].tolist() == pytest.approx([68 / 255, 1 / 255, 84 / 255])
    assert ends[:, 1].tolist() == pytest.approx([253 / 255, 231 / 255, 37 / 255])
    ramp = viridis(torch.linspace(0, 1, 50))
    brightness = ramp.mean(dim=0)
    assert (brightness[1:] >= brightness[:-1] - 1e-6).all()
    assert viridis(torch.tensor([float("nan"), -3.0, 9.0])).shape == (3, 3)


def test_colorize_map_upsamples_channel_mean_with_finite_values():
    latent = torch.zeros(4, 2, 3)
    latent[:, 0, 0] = 1.0
    latent[0, 1, 2] = float("inf")
    image = colorize_map(latent, (8, 12))
    assert image.shape == (3, 8, 12) and torch.isfinite(image).all()
    assert image[:, :4, :4].unique(dim=1).shape[1] == 1  # one latent cell -> one 4x4 block
    assert torch.allclose(image[:, 0, 0], viridis(torch.tensor(1.0)))
    assert torch.allclose(image[:, 7, 11], viridis(torch.tensor(0.0)))
    constant = colorize_map(torch.ones(2, 2, 2), (4, 4))
    assert torch.isfinite(constant).all()
    with pytest.raises(ValueError, match="C, h, w"):
        colorize_map(torch.zeros(2, 2), (4, 4))


def test_colorize_map_is_not_flattened_by_one_extreme_position():
    latent = torch.linspace(0, 1, 100).reshape(1, 10, 10).clone()
    latent[0, 0, 0] = 1e6  # one runaway latent position
    image = colorize_map(latent, (10, 10))
    # the ramp still spans the colour scale: its middle is mid-scale, not the bottom colour
    assert torch.allclose(image[:, 5, 0], viridis(torch.tensor(0.5)), atol=0.05)
    assert torch.allclose(image[:, 0, 0], viridis(torch.tensor(1.0)))


def test_codec_maps_skip_nets_without_codec():
    visuals = ClipVisuals("a", torch.zeros(2, 3, 8, 8), maps=[{"flow": torch.zeros(2, 8, 8)}] * 2)
    assert CodecMaps().make_images(visuals) == {}
    codec = {k: torch.rand(5, 2, 2) for k in ("q", "mu", "sigma", "bits")}
    images = CodecMaps().make_images(ClipVisuals("a", torch.zeros(2, 3, 8, 8), maps=[{}, codec]))
    assert set(images) == {"q", "mu", "sigma", "bits"}
    assert all(img.shape == (3, 8, 8) for img in images.values())
    with pytest.raises(ValueError, match="every_n_epochs"):
        CodecMaps(every_n_epochs=0)
