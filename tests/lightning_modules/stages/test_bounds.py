"""lower_bound forward/backward rule, LowerBound module, NonNegativeParametrizer round trip."""

import pytest
import torch

from lightning_modules.stages.bounds import LowerBound, NonNegativeParametrizer, lower_bound


def test_lower_bound_forward_is_max():
    x = torch.tensor([-2.0, 0.5, 1.0, 3.0])
    assert torch.equal(lower_bound(x, 1.0), torch.tensor([1.0, 1.0, 1.0, 3.0]))


@pytest.mark.parametrize(
    ("upstream", "expected"),
    [
        # grad > 0: descent would lower x; blocked where x < bound.
        (1.0, [0.0, 0.0, 1.0, 1.0]),
        # grad < 0: descent raises x; passes everywhere, so x can climb back above the bound.
        (-1.0, [-1.0, -1.0, -1.0, -1.0]),
    ],
)
def test_lower_bound_gradient_rule(upstream, expected):
    x = torch.tensor([-2.0, 0.5, 1.0, 3.0], requires_grad=True)
    (lower_bound(x, 1.0) * upstream).sum().backward()
    assert torch.equal(x.grad, torch.tensor(expected))


def test_lower_bound_mixed_upstream_signs():
    x = torch.tensor([0.0, 0.0, 2.0, 2.0], requires_grad=True)
    grad = torch.tensor([3.0, -3.0, 3.0, -3.0])
    lower_bound(x, 1.0).backward(grad)
    assert torch.equal(x.grad, torch.tensor([0.0, -3.0, 3.0, -3.0]))


def test_lower_bound_lets_a_parameter_recover():
    """A parameter stuck below the bound climbs back when the loss wants it larger."""
    p = torch.nn.Parameter(torch.tensor(-5.0))
    opt = torch.optim.SGD([p], lr=1.0)
    for _ in range(10):
        opt.zero_grad()
        (-lower_bound(p, 0.5)).backward()
        opt.step()
    assert p.item() > 0.5
    # clamp would have had zero gradient and left it at -5
    q = torch.nn.Parameter(torch.tensor(-5.0))
    (-torch.clamp(q, min=0.5)).backward()
    assert q.grad.item() == 0.0


def test_lower_bound_rejects_bound_that_enlarges_x():
    with pytest.raises(ValueError, match="bound of shape"):
        lower_bound(torch.zeros(3), torch.zeros(2, 3))


def test_lower_bound_module_buffer_and_dtype():
    module = LowerBound(0.11)
    assert "bound" in dict(module.named_buffers())
    out = module(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert out.dtype == torch.float64
    assert torch.allclose(out, torch.tensor([0.11, 1.0], dtype=torch.float64))


def test_non_negative_parametrizer_round_trip_and_floor():
    param = NonNegativeParametrizer(minimum=1e-6)
    values = torch.tensor([1e-3, 0.1, 1.0, 7.5], dtype=torch.float64)
    stored = param.init(values)
    assert torch.allclose(stored, torch.sqrt(values + 2.0**-36))
    assert torch.allclose(param(stored), values, rtol=1e-12, atol=0)
    # arbitrary (even negative) stored values map to >= minimum
    for dtype in (torch.float32, torch.float64):
        floor = param(torch.tensor([-3.0, 0.0, 1e-9], dtype=dtype))
        assert torch.all(floor >= torch.tensor(1e-6, dtype=dtype))
        assert torch.allclose(floor, torch.full_like(floor, 1e-6))


def test_non_negative_parametrizer_rejects_negative_minimum():
    with pytest.raises(ValueError, match="minimum"):
        NonNegativeParametrizer(minimum=-1.0)
