"""FeatureCodec: shapes for odd sizes, an honest rate (hand-computed from its maps), rate versus
step, gradients for every variant, context use, and clear errors on bad arguments."""

import math

import pytest
import torch

from lightning_modules.stages.codec import CodecOutput, FeatureCodec

SMALL = {"channels": (4, 8, 16), "latent_channels": 12, "hyper_channels": 8, "context_channels": 8}


def _features(channels, height, width, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, c, math.ceil(height / 2**s), math.ceil(width / 2**s), generator=g)
        for s, c in enumerate(channels)
    ]


def _context(channels, height, width, batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, math.ceil(height / 4), math.ceil(width / 4), generator=g)


def _gaussian_mass(r: float, sigma: float) -> float:
    def cdf(t):
        return 0.5 * (1 + math.erf(t / (sigma * math.sqrt(2))))

    return cdf(r + 0.5) - cdf(r - 0.5)


def _laplace_mass(r: float, b: float) -> float:
    def cdf(t):
        return 0.5 * math.exp(t / b) if t < 0 else 1 - 0.5 * math.exp(-t / b)

    return cdf(r + 0.5) - cdf(r - 0.5)


@pytest.mark.parametrize("latent_stride", [4, 8, 16])
def test_output_shapes_equal_input_shapes_for_odd_sizes(latent_stride):
    torch.manual_seed(0)
    codec = FeatureCodec(**SMALL, latent_stride=latent_stride)
    feats = _features(SMALL["channels"], 37, 53)
    out = codec(feats, _context(8, 37, 53))
    assert isinstance(out, CodecOutput)
    assert [f.shape for f in out.features] == [f.shape for f in feats]
    # inputs are padded to a multiple of latent_stride · 4; the maps live on that latent grid
    h, w = (math.ceil(n / (4 * latent_stride)) * 4 for n in (37, 53))
    for key in ("q", "mu", "sigma", "bits"):
        assert out.maps[key].shape == (2, 12, h, w), key
    assert out.bits_y.dim() == 0 and out.bits_z.dim() == 0
    assert torch.allclose(out.maps["bits"].sum(), out.bits_y)


def test_default_codec_shapes_and_initial_step_near_one():
    torch.manual_seed(0)
    codec = FeatureCodec()
    feats = _features((16, 32, 64), 37, 53, batch=1)
    out = codec(feats, _context(64, 37, 53, batch=1))
    assert [f.shape for f in out.features] == [f.shape for f in feats]
    q = out.maps["q"]
    assert q.min() >= 0.5 and abs(q.mean().item() - 1.0) < 0.2
    assert torch.all(out.maps["sigma"] >= 0.11)


@pytest.mark.parametrize(
    ("likelihood", "mass"), [("gaussian", _gaussian_mass), ("laplace", _laplace_mass)]
)
@pytest.mark.parametrize("quantizer", ["adaptive", "channel", "fixed"])
def test_rate_equals_hand_computation_from_maps(quantizer, likelihood, mass):
    """Eval: bits_y = Σ −log2 max(p(round(y/q − μ)), 1e-9) with q, μ, σ from the maps, y from the
    encoder; bits_z = Σ −log2 p(ẑ); the features are the decoder's output for ŷ."""
    torch.manual_seed(0)
    codec = FeatureCodec(**SMALL, quantizer=quantizer, likelihood=likelihood).eval()
    feats = _features(SMALL["channels"], 32, 48)  # divisible by 16: no padding
    context = _context(8, 32, 48)
    with torch.no_grad():
        out = codec(feats, context)
        y = codec.encoder(feats)
        z_hat, _ = codec.z_density(codec.hyper_encoder(y))
        z_likelihood = codec.z_density.likelihood(z_hat)
    q, mu, sigma = (out.maps[k].double() for k in ("q", "mu", "sigma"))
    r = torch.round(y.double() / q - mu)
    expected = sum(
        -math.log2(max(mass(ri, si), 1e-9))
        for ri, si in zip(r.flatten().tolist(), sigma.flatten().tolist())
    )
    assert out.bits_y.item() == pytest.approx(expected, rel=1e-4)
    assert out.bits_z.item() == pytest.approx(-torch.log2(z_likelihood).sum().item(), rel=1e-6)
    y_hat = (torch.round(y / out.maps["q"] - out.maps["mu"]) + out.maps["mu"]) * out.maps["q"]
    with torch.no_grad():
        decoded = codec.decoder(y_hat)
    for got, want in zip(out.features, decoded):
        assert torch.allclose(got, want, atol=1e-5)


def test_training_rate_matches_its_maps_and_is_positive():
    torch.manual_seed(0)
    codec = FeatureCodec(**SMALL).train()
    out = codec(_features(SMALL["channels"], 32, 48), _context(8, 32, 48))
    assert out.bits_y.item() > 0 and out.bits_z.item() > 0
    assert torch.allclose(out.maps["bits"].sum(), out.bits_y)


def test_larger_step_gives_fewer_bits_for_fixed_latent():
    torch.manual_seed(0)
    codec = FeatureCodec(**SMALL).eval()
    feats = _features(SMALL["channels"], 32, 48)
    with torch.no_grad():
        y = 4 * codec.encoder(feats)
        mu, sigma = torch.zeros_like(y), torch.full_like(y, 2.0)
        rates = [
            -torch.log2(codec.quantize_with_rate(y, mu, sigma, torch.full_like(y, s))[1]).sum()
            for s in (0.5, 1.0, 2.0, 4.0)
        ]
    assert all(a > b for a, b in zip(rates, rates[1:])), rates


@pytest.mark.parametrize(
    "kwargs",
    [
        {"quantizer": "adaptive"},
        {"quantizer": "channel"},
        {"quantizer": "fixed"},
        {"quantizer": "none"},
        {"quantizer": "adaptive", "likelihood": "laplace", "latent_stride": 8},
        {"quantizer": "adaptive", "context_channels": 0},
    ],
)
def test_every_variant_gives_finite_gradients_to_all_parameters(kwargs):
    torch.manual_seed(0)
    codec = FeatureCodec(**{**SMALL, **kwargs}).train()
    feats = [f.requires_grad_(True) for f in _features(SMALL["channels"], 21, 27)]
    context = _context(8, 21, 27) if codec.context_channels else None
    out = codec(feats, context)
    loss = sum(f.pow(2).mean() for f in out.features) + 1e-3 * (out.bits_y + out.bits_z)
    loss.backward()
    for name, param in codec.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in feats)


def test_no_quantizer_codes_nothing():
    torch.manual_seed(0)
    codec = FeatureCodec(**SMALL, quantizer="none").eval()
    assert not hasattr(codec, "hyper_encoder")
    feats = _features(SMALL["channels"], 32, 48)
    out = codec(feats, _context(8, 32, 48))
    assert out.bits_y.item() == 0 and out.bits_z.item() == 0
    assert all(torch.equal(m, torch.zeros_like(m)) for m in out.maps.values())
    with torch.no_grad():
        expected = codec.decoder(codec.encoder(feats))
    assert all(torch.allclose(a, b) for a, b in zip(out.features, expected))


def test_context_steers_the_hyper_decoder():
    torch.manual_seed(0)
    feats = _features(SMALL["channels"], 32, 48)
    for latent_stride in (4, 8):
        codec = FeatureCodec(**SMALL, latent_stride=latent_stride).eval()
        with torch.no_grad():
            a = codec(feats, _context(8, 32, 48, seed=1))
            b = codec(feats, _context(8, 32, 48, seed=2))
            none = codec(feats, None)
            zeros = codec(feats, torch.zeros(2, 8, 8, 12))
        assert not torch.allclose(a.maps["mu"], b.maps["mu"])
        assert torch.equal(none.maps["mu"], zeros.maps["mu"])  # absent context = zeros


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown quantizer 'vector'.*adaptive"):
        FeatureCodec(**SMALL, quantizer="vector")
    with pytest.raises(ValueError, match="unknown likelihood 'cauchy'.*gaussian"):
        FeatureCodec(**SMALL, likelihood="cauchy")
    with pytest.raises(ValueError, match="latent_stride"):
        FeatureCodec(**SMALL, latent_stride=2)
    with pytest.raises(ValueError, match="channels must be 3"):
        FeatureCodec(channels=(8, 16))

    codec = FeatureCodec(**SMALL)
    feats = _features(SMALL["channels"], 16, 16)
    with pytest.raises(ValueError, match="list of 3 tensors.*got 2"):
        codec(feats[:2])
    with pytest.raises(ValueError, match=r"feats\[1\].*\(2, 8, 8, 8\)"):
        codec([feats[0], torch.zeros(2, 5, 8, 8), feats[2]])
    with pytest.raises(ValueError, match=r"feats\[2\]"):
        codec([feats[0], feats[1], torch.zeros(2, 16, 5, 4)])
    with pytest.raises(ValueError, match=r"context must have shape \(2, 8, 4, 4\)"):
        codec(feats, torch.zeros(2, 3, 4, 4))
    no_context = FeatureCodec(**{**SMALL, "context_channels": 0})
    with pytest.raises(ValueError, match="context_channels=0"):
        no_context(feats, torch.zeros(2, 8, 4, 4))


@pytest.mark.parametrize("quantizer", ["adaptive", "channel", "fixed"])
def test_without_rate_the_features_are_identical_and_nothing_is_counted(quantizer):
    """with_rate=False (restoring frames) skips the likelihoods only: ŷ, hence the purified
    features, equal the rated pass's exactly in eval mode, and the bits are 0."""
    torch.manual_seed(0)
    codec = FeatureCodec(**SMALL, quantizer=quantizer).eval()
    feats, context = _features(SMALL["channels"], 40, 56), _context(8, 40, 56)
    with torch.no_grad():
        rated = codec(feats, context)
        fast = codec(feats, context, with_rate=False)
    assert rated.bits_y.item() > 0 and rated.bits_z.item() > 0
    assert fast.bits_y.item() == 0 and fast.bits_z.item() == 0
    assert all(torch.equal(a, b) for a, b in zip(fast.features, rated.features))
    assert set(fast.maps) == {"q", "mu", "sigma"}
    assert all(torch.equal(fast.maps[k], rated.maps[k]) for k in fast.maps)
