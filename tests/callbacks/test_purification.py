"""The purification ratio (paper Fig. 1c as a number) and its t-SNE picture."""

import pytest
import torch

from callbacks.purification import Purification, purification, tsne_image
from tests.conftest_config import tiny_network


def _batch(frames=3, size=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    gt = torch.rand(2, frames, 3, size, size, generator=generator)
    sigma = torch.full((2,), 30 / 255)
    lq = gt + sigma.view(2, 1, 1, 1, 1) * torch.randn(gt.shape, generator=generator)
    return {"lq": lq, "gt": gt, "sigma": sigma}


def test_ratio_is_exactly_one_without_a_codec_and_measured_with_one():
    torch.manual_seed(0)
    plain = tiny_network("no_codec", ["model/flow=zero"]).eval()
    result = purification(plain, _batch())
    assert result.ratio == pytest.approx(1.0)
    assert result.before.shape == (2, 16, 8, 8)  # frames 2..3 of the first clip, N=16 at 1/4
    coded = tiny_network("adaptive_q", ["model/flow=zero"]).eval()
    ratio = purification(coded, _batch()).ratio
    assert ratio > 0 and ratio != pytest.approx(1.0)
    assert purification(coded, {**_batch(), "gt": None}) is None
    assert purification(coded, _batch(frames=1)) is None


class _FeatureNet(torch.nn.Module):
    """Stand-in network: its aligned features are the frames' first channel pooled to 1/4; its
    codec output is ``scale · aligned``, plus 1 in a degraded run (σ > 0) when ``mark``, or a
    constant when ``constant``."""

    noise_channel = True

    def __init__(self, scale=1.0, mark=False, constant=False):
        super().__init__()
        self.scale, self.mark, self.constant = scale, mark, constant

    def forward(self, lq, noise_level=None, return_maps=False):
        aligned = torch.nn.functional.avg_pool2d(lq[0, :, :1], 4)[:, None]
        purified = self.scale * aligned + float(self.mark and bool(noise_level.sum() > 0))
        if self.constant:
            purified = torch.ones_like(aligned)
        maps = [{"aligned": a, "purified": p} for a, p in zip(aligned, purified)]
        return type("Out", (), {"maps": maps})()


def test_relative_ratio_known_answers():
    noisy = _batch()
    assert purification(_FeatureNet(), noisy).ratio == pytest.approx(1.0)
    assert purification(_FeatureNet(), noisy).relative_ratio == pytest.approx(1.0)
    rescaled = purification(_FeatureNet(scale=10.0), noisy)  # the plain ratio moves, not this
    assert rescaled.ratio > 5 and rescaled.relative_ratio == pytest.approx(1.0)
    assert purification(_FeatureNet(constant=True), noisy).relative_ratio == 0.0  # all removed
    # Flat frames, clean 0.5 and degraded 0.6: before, the footprint is 0.1 / 0.5 = 0.2 of the
    # clean features; a codec that adds 1 in the degraded run leaves (0.1 + 1) / 0.5 = 2.2.
    flat = {"gt": torch.full((2, 3, 3, 32, 32), 0.5), "sigma": torch.full((2,), 30 / 255)}
    flat["lq"] = flat["gt"] + 0.1
    marked = purification(_FeatureNet(mark=True), flat)
    assert marked.relative_ratio == pytest.approx(2.2 / 0.2, rel=1e-5)
    assert marked.ratio == pytest.approx(1.1 / 0.1, rel=1e-5)  # same space here: the same answer


def test_tsne_image_is_a_deterministic_scatter():
    pytest.importorskip("sklearn")
    torch.manual_seed(0)
    result = purification(tiny_network("adaptive_q", ["model/flow=zero"]).eval(), _batch())
    first = tsne_image(result, points=90, size=128)
    assert first.shape == (128, 128, 3) and first.dtype.name == "uint8"
    assert (first < 250).any(axis=2).mean() > 0.01  # points were drawn
    assert (first == tsne_image(result, points=90, size=128)).all()
    with pytest.raises(ValueError, match="tsne_points"):
        Purification(tsne_points=-1)
