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
    """Stand-in network: its aligned features are the input frames' first channel pooled to 1/4;
    its codec output is ``scale · aligned`` plus ``shift`` (clean run) or plus ``shift`` + 1
    (degraded run)."""

    noise_channel = True

    def __init__(self, scale, shift):
        super().__init__()
        self.scale, self.shift = scale, shift

    def forward(self, lq, noise_level=None, return_maps=False):
        aligned = torch.nn.functional.avg_pool2d(lq[0, :, :1], 4)[:, None]
        offset = self.shift + float(noise_level.abs().sum() > 0)
        maps = [{"aligned": a, "purified": self.scale * a + offset} for a in aligned]
        return type("Out", (), {"maps": maps})()


def test_relative_ratio_ignores_rescaling_and_sees_an_added_footprint():
    batch = _batch()
    plain = purification(_FeatureNet(scale=1.0, shift=0.0), {**batch, "sigma": torch.zeros(2)})
    assert plain.ratio == pytest.approx(1.0) and plain.relative_ratio == pytest.approx(1.0)
    rescaled = purification(_FeatureNet(scale=10.0, shift=0.0), {**batch, "sigma": torch.zeros(2)})
    assert rescaled.ratio > 5 and rescaled.relative_ratio == pytest.approx(1.0)
    # a degraded run that moves every purified feature by 1 on top: a footprint of its own
    marked = purification(_FeatureNet(scale=1.0, shift=0.0), batch)
    before = (marked.before - marked.clean).flatten(1).norm(dim=1).sum()
    after = (marked.after - marked.clean_after).flatten(1).norm(dim=1).sum()
    expected = (after / marked.clean_after.flatten(1).norm(dim=1).sum()) / (
        before / marked.clean.flatten(1).norm(dim=1).sum()
    )
    assert marked.relative_ratio == pytest.approx(float(expected)) and marked.relative_ratio > 1


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
