"""GDN against its formula, inverse GDN, initial values and the non-negativity invariants."""

import pytest
import torch

from lightning_modules.stages.gdn import GDN


def _randomize(gdn: GDN, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        beta = 0.5 + torch.rand(gdn.channels, generator=g)
        gdn.beta_reparam.copy_(gdn.beta_parametrizer.init(beta))
        gamma = 0.3 * torch.rand(gdn.channels, gdn.channels, generator=g)
        gdn.gamma_reparam.copy_(gdn.gamma_parametrizer.init(gamma))


def _by_hand(x, beta, gamma, inverse):
    """y_i = x_i / sqrt(β_i + Σ_j γ_ij x_j²) with explicit loops (× for the inverse)."""
    out = torch.empty_like(x)
    channels = x.shape[1]
    for i in range(channels):
        norm = beta[i] + sum(gamma[i, j] * x[:, j] ** 2 for j in range(channels))
        out[:, i] = x[:, i] * norm.sqrt() if inverse else x[:, i] / norm.sqrt()
    return out


def test_initial_beta_gamma():
    gdn = GDN(4)
    assert torch.allclose(gdn.beta, torch.ones(4))
    assert torch.allclose(gdn.gamma, 0.1 * torch.eye(4), atol=1e-9)


@pytest.mark.parametrize("inverse", [False, True])
def test_gdn_equals_formula(inverse):
    torch.manual_seed(0)
    gdn = GDN(5, inverse=inverse).double()
    _randomize(gdn, seed=1)
    x = torch.randn(2, 5, 4, 6, dtype=torch.float64)
    expected = _by_hand(x, gdn.beta.detach(), gdn.gamma.detach(), inverse)
    assert torch.allclose(gdn(x), expected, rtol=1e-12, atol=1e-12)


def test_gdn_of_zero_is_zero_and_odd():
    torch.manual_seed(0)
    gdn = GDN(3)
    _randomize(gdn, seed=2)
    x = torch.randn(1, 3, 5, 5)
    assert torch.equal(gdn(torch.zeros_like(x)), torch.zeros_like(x))
    assert torch.allclose(gdn(-x), -gdn(x))


def test_inverse_gdn_inverts_gdn_for_small_gamma():
    torch.manual_seed(0)
    forward, inverse = GDN(6, gamma_init=1e-3), GDN(6, inverse=True, gamma_init=1e-3)
    x = torch.randn(2, 6, 8, 8)
    error = (inverse(forward(x)) - x).abs()
    # With γ = g·I the round trip is x·sqrt((1 + g·y²)/(1 + g·x²)), off by about g²·|x|⁵/2.
    assert torch.all(error <= 0.6 * 1e-6 * x.abs() ** 5 + 1e-6)
    assert error.max() < 1e-3
    # and a larger γ makes it a poorer inverse, so the test measures something
    forward_big, inverse_big = GDN(6, gamma_init=0.5), GDN(6, inverse=True, gamma_init=0.5)
    assert (inverse_big(forward_big(x)) - x).abs().max() > 100 * error.max()


def test_parameters_stay_non_negative_under_huge_gradients():
    torch.manual_seed(0)
    for inverse in (False, True):
        gdn = GDN(4, inverse=inverse)
        optimizer = torch.optim.SGD(gdn.parameters(), lr=1e3)
        for step in range(20):
            x = torch.randn(2, 4, 6, 6)
            sign = 1.0 if step % 2 else -1.0
            loss = sign * 1e6 * gdn(x).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            assert torch.all(gdn.beta >= 1e-6)
            assert torch.all(gdn.gamma >= 0)
            assert torch.isfinite(gdn(x)).all()


def test_gradients_reach_input_and_parameters():
    torch.manual_seed(0)
    gdn = GDN(3)
    x = torch.randn(1, 3, 4, 4, requires_grad=True)
    gdn(x).pow(2).sum().backward()
    for tensor in (x, gdn.beta_reparam, gdn.gamma_reparam):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all()
        assert tensor.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"channels": 0}, "channels"), ({"channels": 2, "beta_min": 0.0}, "beta_min")],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GDN(**kwargs)


def test_wrong_input_shape_names_expected_channels():
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\)"):
        GDN(4)(torch.zeros(1, 3, 2, 2))
