"""Quantizers: exact eval formula, straight-through training, gradient flow, the 0.5 step floor,
rate versus step size, and the name registry."""

import pytest
import torch

from lightning_modules.stages.entropy_models import GaussianConditional, bits
from lightning_modules.stages.quantizers import (
    AdaptiveQuantizer,
    ChannelQuantizer,
    FixedQuantizer,
    NoQuantizer,
    build_quantizer,
)

SHAPE = (2, 4, 5, 6)


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = 3 * torch.randn(SHAPE, generator=g)
    mu = torch.randn(SHAPE, generator=g)
    q = 0.5 + 2 * torch.rand(SHAPE, generator=g)
    return y, mu, q


def _variants():
    """(quantizer, q passed in, step it should use) for the three coding variants."""
    _, _, q = _inputs()
    channel = ChannelQuantizer(SHAPE[1])
    with torch.no_grad():
        channel.step.copy_(torch.tensor([0.7, 1.0, 1.9, 3.2]))
    return [
        (AdaptiveQuantizer(), q, q),
        (channel, None, channel.step.detach().reshape(1, -1, 1, 1).expand(SHAPE)),
        (FixedQuantizer(), None, torch.ones(SHAPE)),
    ]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_eval_quantization_is_exact(index):
    quantizer, q_in, step = _variants()[index]
    y, mu, _ = _inputs()
    quantizer.eval()
    y_hat, r_for_rate, q_used = quantizer(y, mu, q_in)
    assert torch.equal(q_used, step)
    assert torch.equal(y_hat, (torch.round(y / step - mu) + mu) * step)
    assert torch.equal(r_for_rate, torch.round(y / step - mu))


@pytest.mark.parametrize("index", [0, 1, 2])
def test_training_rounds_straight_through_and_adds_noise_for_rate(index):
    torch.manual_seed(0)
    quantizer, q_in, step = _variants()[index]
    y, mu, _ = _inputs()
    y = y.clone().requires_grad_(True)
    quantizer.train()
    y_hat, r_for_rate, _ = quantizer(y, mu, q_in)
    exact = (torch.round(y.detach() / step - mu) + mu) * step
    assert torch.allclose(y_hat, exact, atol=1e-5)  # forward value is the rounded one
    noise = r_for_rate.detach() - (y.detach() / step - mu)
    assert noise.abs().max() <= 0.5 + 1e-6 and noise.std() > 0.2
    y_hat.sum().backward()
    assert torch.allclose(y.grad, torch.ones_like(y))  # straight-through: dŷ/dy = 1


def test_training_gradients_reach_y_q_and_mu():
    torch.manual_seed(0)
    y, mu, q = (t.clone().requires_grad_(True) for t in _inputs())
    quantizer = AdaptiveQuantizer().train()
    y_hat, r_for_rate, _ = quantizer(y, mu, q)
    rate = bits(GaussianConditional().likelihood(r_for_rate, torch.ones(SHAPE)))
    (y_hat.pow(2).sum() + rate).backward()
    for name, tensor in (("y", y), ("q", q), ("mu", mu)):
        assert torch.isfinite(tensor.grad).all(), name
        assert tensor.grad.abs().sum() > 0, name


def test_channel_step_is_learned():
    torch.manual_seed(0)
    y, mu, _ = _inputs()
    quantizer = ChannelQuantizer(SHAPE[1]).train()
    y_hat, r_for_rate, _ = quantizer(y, mu)
    rate = bits(GaussianConditional().likelihood(r_for_rate, torch.ones(SHAPE)))
    (y_hat.pow(2).sum() + rate).backward()
    assert quantizer.step.grad is not None and quantizer.step.grad.abs().sum() > 0


def test_step_never_below_half_even_for_very_negative_hyper_output():
    y, mu, _ = _inputs()
    q = torch.full(SHAPE, -100.0, requires_grad=True)
    quantizer = AdaptiveQuantizer().eval()
    y_hat, _, q_used = quantizer(y, mu, q)
    assert torch.equal(q_used, torch.full(SHAPE, 0.5))
    assert torch.equal(y_hat, (torch.round(y / 0.5 - mu) + mu) * 0.5)
    # a loss that wants a coarser step still reaches the stuck hyper output
    (-q_used.sum()).backward()
    assert torch.all(q.grad < 0)

    channel = ChannelQuantizer(SHAPE[1])
    with torch.no_grad():
        channel.step.fill_(-3.0)
    assert torch.all(channel(y, mu)[2] == 0.5)


@pytest.mark.parametrize("min_step", [0.25, 1.0])
def test_step_lower_bound_is_configurable(min_step):
    y, mu, _ = _inputs()
    adaptive = build_quantizer("adaptive", SHAPE[1], min_step=min_step).eval()
    q_used = adaptive(y, mu, torch.full(SHAPE, -1.0))[2]
    assert torch.equal(q_used, torch.full(SHAPE, min_step))
    channel = build_quantizer("channel", SHAPE[1], min_step=min_step)
    with torch.no_grad():
        channel.step.fill_(-3.0)
    assert torch.all(channel(y, mu)[2] == min_step)
    with pytest.raises(ValueError, match="min_step must be > 0"):
        build_quantizer("adaptive", SHAPE[1], min_step=0.0)


def test_larger_step_gives_fewer_bits():
    y, mu, _ = _inputs()
    mu = torch.zeros_like(mu)
    quantizer, conditional = AdaptiveQuantizer().eval(), GaussianConditional()
    rates = []
    for step in (0.5, 1.0, 2.0, 4.0):
        _, r, _ = quantizer(y, mu, torch.full(SHAPE, step))
        rates.append(bits(conditional.likelihood(r, torch.full(SHAPE, 3.0 / step))).item())
    assert all(a > b for a, b in zip(rates, rates[1:])), rates


def test_no_quantizer_is_identity_without_rate():
    y, mu, q = _inputs()
    y_hat, r_for_rate, q_used = NoQuantizer()(y, mu, q)
    assert y_hat is y and r_for_rate is None and q_used is None


def test_build_quantizer_and_chunk_counts():
    expected = {"adaptive": 3, "channel": 2, "fixed": 2, "none": 0}
    for name, chunks in expected.items():
        quantizer = build_quantizer(name, channels=8)
        assert quantizer.hyper_chunks == chunks
    assert build_quantizer("channel", channels=8).step.shape == (8,)
    with pytest.raises(ValueError, match="adaptive, channel, fixed, none"):
        build_quantizer("uniform", channels=8)


def test_bad_inputs_raise_clear_errors():
    y, mu, q = _inputs()
    with pytest.raises(ValueError, match="q .* is required"):
        AdaptiveQuantizer()(y, mu)
    with pytest.raises(ValueError, match="q must be None"):
        ChannelQuantizer(SHAPE[1])(y, mu, q)
    with pytest.raises(ValueError, match="q must be None"):
        FixedQuantizer()(y, mu, q)
    with pytest.raises(ValueError, match="mu must have y's shape"):
        FixedQuantizer()(y, mu[:, :2])
    with pytest.raises(ValueError, match="expected 3"):
        ChannelQuantizer(3)(y, mu)
