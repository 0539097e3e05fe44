"""Gaussian/Laplace conditionals against closed forms; FactorizedDensity normalization, medians,
fitting; bits = Σ −log2 p."""

import math

import pytest
import torch

from lightning_modules.stages.entropy_models import (
    FactorizedDensity,
    GaussianConditional,
    LaplaceConditional,
    bits,
    build_conditional,
)


def _gaussian_reference(r: float, sigma: float) -> float:
    def cdf(t):
        return 0.5 * (1 + math.erf(t / (sigma * math.sqrt(2))))

    return cdf(r + 0.5) - cdf(r - 0.5)


def _laplace_reference(r: float, b: float) -> float:
    def cdf(t):
        return 0.5 * math.exp(t / b) if t < 0 else 1 - 0.5 * math.exp(-t / b)

    return cdf(r + 0.5) - cdf(r - 0.5)


CASES = [(0.0, 1.0), (0.3, 0.5), (-1.0, 0.2), (2.0, 3.0), (-4.5, 1.7), (0.49, 0.11), (7.0, 2.0)]


@pytest.mark.parametrize(
    ("model", "reference"),
    [(GaussianConditional, _gaussian_reference), (LaplaceConditional, _laplace_reference)],
)
def test_conditional_equals_closed_form(model, reference):
    r = torch.tensor([c[0] for c in CASES], dtype=torch.float64)
    sigma = torch.tensor([c[1] for c in CASES], dtype=torch.float64)
    expected = torch.tensor([reference(*c) for c in CASES], dtype=torch.float64)
    assert torch.allclose(model().likelihood(r, sigma), expected, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("model", [GaussianConditional, LaplaceConditional])
def test_scale_floor_and_likelihood_floor(model):
    entropy_model = model()
    r = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    tiny = torch.full_like(r, 1e-4)
    floor = torch.full_like(r, 0.11)
    assert torch.equal(entropy_model.likelihood(r, tiny), entropy_model.likelihood(r, floor))
    far = entropy_model.likelihood(torch.tensor([1e3, -1e4]), torch.tensor([0.2, 0.11]))
    assert torch.equal(far, torch.full_like(far, 1e-9))
    many = entropy_model.likelihood(50 * torch.randn(1000), torch.rand(1000) * 5)
    assert torch.all(many >= 1e-9) and torch.all(many <= 1)


@pytest.mark.parametrize("model", [GaussianConditional, LaplaceConditional])
def test_conditional_sums_to_one_over_integers(model):
    r = torch.arange(-1000, 1001, dtype=torch.float64)
    for sigma in (0.3, 2.0, 20.0):
        total = model().likelihood(r, torch.full_like(r, sigma)).sum()
        assert abs(total.item() - 1) < 1e-5  # each far-tail cell adds at most its 1e-9 floor


@pytest.mark.parametrize("model", [GaussianConditional, LaplaceConditional])
def test_conditional_gradients_are_finite_even_far_in_the_tail(model):
    r = torch.tensor([0.0, 0.4, 3.0, 1e3], requires_grad=True)
    sigma = torch.tensor([0.5, 0.05, 2.0, 0.2], requires_grad=True)
    bits(model().likelihood(r, sigma)).backward()
    assert torch.isfinite(r.grad).all() and torch.isfinite(sigma.grad).all()
    assert r.grad[2] > 0  # moving r towards 0 lowers the rate
    # r = 0.4 sits inside its cell, so a smaller σ would raise p; below the 0.11 floor that
    # downward push is blocked (the next test checks that an upward push passes)
    assert sigma.grad[1] == 0


def test_scale_below_floor_can_be_pushed_up():
    sigma = torch.tensor([0.05], requires_grad=True)
    r = torch.tensor([0.8])
    bits(GaussianConditional().likelihood(r, sigma)).backward()
    assert sigma.grad.item() < 0  # r off its cell wants a larger σ; the floor lets that through


def test_bits_is_sum_of_minus_log2():
    p = torch.tensor([0.5, 0.25, 1.0, 0.125])
    assert bits(p).item() == pytest.approx(1 + 2 + 0 + 3)
    assert GaussianConditional.bits(p).item() == pytest.approx(6)


def test_conditional_shape_mismatch_and_unknown_name():
    with pytest.raises(ValueError, match="same shape"):
        GaussianConditional().likelihood(torch.zeros(2, 3), torch.ones(3))
    with pytest.raises(ValueError, match="gaussian, laplace"):
        build_conditional("logistic")
    assert isinstance(build_conditional("laplace"), LaplaceConditional)


def test_factorized_density_is_normalized_per_channel():
    torch.manual_seed(0)
    density = FactorizedDensity(4)
    grid = torch.arange(-300, 301, dtype=torch.float32)
    z = grid.reshape(1, 1, -1, 1).expand(1, 4, -1, 1)
    totals = density.likelihood(z).sum(dim=(0, 2, 3))
    assert torch.allclose(totals, torch.ones(4), atol=1e-4)
    # shifting the grid by a fraction keeps the total (a partition of the line into unit cells)
    shifted = density.likelihood(z + 0.37).sum(dim=(0, 2, 3))
    assert torch.allclose(shifted, torch.ones(4), atol=1e-4)


def test_factorized_density_medians_and_eval_rounding():
    torch.manual_seed(0)
    density = FactorizedDensity(3)
    with torch.no_grad():
        density.biases[-1].add_(torch.tensor([2.0, -1.0, 0.3]).reshape(3, 1, 1))
    medians = density.medians()
    logits = density.cumulative_logits(medians.reshape(3, 1, 1))
    assert torch.allclose(logits, torch.zeros_like(logits), atol=1e-5)
    density.eval()
    z = 5 * torch.randn(2, 3, 4, 4)
    z_hat, likelihood = density(z)
    offset = z_hat - medians.reshape(1, 3, 1, 1)
    assert torch.allclose(offset, offset.round(), atol=1e-5)
    assert (z_hat - z).abs().max() <= 0.5 + 1e-5
    assert torch.equal(likelihood, density.likelihood(z_hat))


def test_factorized_density_medians_follow_parameter_updates():
    torch.manual_seed(0)
    density = FactorizedDensity(2)
    before = density.medians()
    assert density.medians() is before  # cached while the parameters are unchanged
    optimizer = torch.optim.SGD(density.parameters(), lr=1.0)
    (-bits(density.likelihood(torch.full((1, 2, 4, 4), 5.0)))).backward()
    optimizer.step()
    after = density.medians()
    assert not torch.allclose(after, before)
    logits = density.cumulative_logits(after.reshape(2, 1, 1))
    assert torch.allclose(logits, torch.zeros_like(logits), atol=1e-5)


def test_half_precision_inputs_keep_the_likelihood_floor():
    r = torch.tensor([0.0, 1e3]).half()
    sigma = torch.tensor([1.0, 0.2]).half()
    p = GaussianConditional().likelihood(r, sigma)
    assert p.dtype == torch.float32 and p[1].item() == pytest.approx(1e-9)
    assert torch.isfinite(bits(p))
    z = torch.tensor([0.0, 1e3]).half().reshape(1, 1, 2)
    assert torch.isfinite(bits(FactorizedDensity(1).likelihood(z)))


def test_factorized_density_training_adds_bounded_noise():
    torch.manual_seed(0)
    density = FactorizedDensity(2).train()
    z = torch.randn(4, 2, 8, 8)
    z_hat, likelihood = density(z)
    noise = z_hat - z
    assert noise.abs().max() <= 0.5 and noise.std() > 0.2  # U(-1/2, 1/2) has std 0.289
    assert likelihood.shape == z.shape and torch.all(likelihood >= 1e-9)


@pytest.fixture
def single_thread():
    """Tiny tensors: intra-op threads only add overhead (and contention on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_factorized_density_can_be_fitted(single_thread):
    """Fitting noisy samples of N(3, 2²) and Laplace(-1, 4) brings their rate near the entropy."""
    torch.manual_seed(0)
    density = FactorizedDensity(2)
    gaussian = 3 + 2 * torch.randn(1000)
    laplace = torch.distributions.Laplace(-1.0, 4.0).sample((1000,))
    samples = torch.stack([gaussian, laplace]).reshape(1, 2, -1, 1)
    optimizer = torch.optim.Adam(density.parameters(), lr=5e-2)

    def bits_per_value():
        return bits(density(samples)[1]) / samples.numel()

    before = bits_per_value().item()
    for _ in range(150):
        loss = bits_per_value()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = bits_per_value().item()
    # differential entropies (bits) of the two sources: the noisy quantized rate sits just above
    entropy = (0.5 * math.log2(2 * math.pi * math.e * 4) + math.log2(2 * math.e * 4)) / 2
    assert before > entropy + 0.5
    assert after < entropy + 0.15
    medians = density.medians()
    assert abs(medians[0].item() - 3) < 0.3 and abs(medians[1].item() + 1) < 0.5


def test_factorized_density_rejects_wrong_channels():
    with pytest.raises(ValueError, match=r"\(B, 3, \.\.\.\)"):
        FactorizedDensity(3)(torch.zeros(1, 2, 4, 4))
