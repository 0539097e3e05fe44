"""Lower bounds with an optimizer-friendly gradient, and a non-negative reparametrization.

``lower_bound(x, b) = max(x, b)``. A plain ``torch.clamp`` has zero gradient wherever ``x < b``,
so a parameter (or a network output) that falls below the bound can never climb back. Here the
backward pass lets the gradient through where ``x >= b`` *or* where the gradient would push ``x``
upward (``grad < 0``: gradient descent then increases ``x``). It is hand-written because torch has
no such operator.

``NonNegativeParametrizer`` keeps a parameter ``v >= minimum`` by storing ``s = sqrt(v + p²)``
(``p = 2^-18``) and mapping back with ``v = max(s, sqrt(minimum + p²))² − p²``. The pedestal ``p²``
keeps the gradient ``2s`` away from zero near ``v = 0`` (Ballé et al., 2016, "Density modeling of
images using a generalized normalization transformation").
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class _LowerBoundFunction(torch.autograd.Function):
    """max(x, bound); gradient passes where x >= bound or where it pushes x upward."""

    @staticmethod
    def forward(ctx, x: Tensor, bound: Tensor) -> Tensor:
        ctx.save_for_backward(x, bound)
        return torch.maximum(x, bound)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None]:
        x, bound = ctx.saved_tensors
        passes = (x >= bound) | (grad_output < 0)
        return grad_output * passes.to(grad_output.dtype), None


def lower_bound(x: Tensor, bound: float | Tensor) -> Tensor:
    """``max(x, bound)`` elementwise; ``bound`` is a number or a tensor broadcastable to ``x``
    (it must not enlarge ``x``'s shape). Backward: see the module docstring."""
    bound_t = torch.as_tensor(bound, dtype=x.dtype, device=x.device)
    if torch.broadcast_shapes(x.shape, bound_t.shape) != x.shape:
        raise ValueError(
            f"lower_bound: bound of shape {tuple(bound_t.shape)} must broadcast to x's shape "
            f"{tuple(x.shape)} without enlarging it"
        )
    return _LowerBoundFunction.apply(x, bound_t)


class LowerBound(nn.Module):
    """Module form of :func:`lower_bound` with the bound kept as a buffer (moves with .to())."""

    def __init__(self, bound: float) -> None:
        super().__init__()
        self.register_buffer("bound", torch.tensor(float(bound)))

    def forward(self, x: Tensor) -> Tensor:
        return lower_bound(x, self.bound)

    def extra_repr(self) -> str:
        return f"bound={self.bound.item():g}"


class NonNegativeParametrizer(nn.Module):
    """Maps a stored tensor ``s`` to a value ``v = max(s, sqrt(minimum + p²))² − p² >= minimum``.

    ``init(v)`` gives the stored form ``sqrt(max(v + p², p²))`` of a desired value; ``forward(s)``
    gives the value back. ``p = reparam_offset`` (default 2^-18).
    """

    def __init__(self, minimum: float = 0.0, reparam_offset: float = 2.0**-18) -> None:
        super().__init__()
        if minimum < 0:
            raise ValueError(f"NonNegativeParametrizer: minimum must be >= 0, got {minimum}")
        if reparam_offset <= 0:
            raise ValueError(
                f"NonNegativeParametrizer: reparam_offset must be > 0, got {reparam_offset}"
            )
        self.minimum = float(minimum)
        pedestal = float(reparam_offset) ** 2
        self.register_buffer("pedestal", torch.tensor(pedestal))
        self.lower_bound = LowerBound((self.minimum + pedestal) ** 0.5)

    def init(self, value: Tensor) -> Tensor:
        """Stored form of ``value`` (values below 0 are stored as 0)."""
        pedestal = self.pedestal.to(value.dtype)
        return torch.sqrt(torch.clamp(value + pedestal, min=pedestal))

    def forward(self, stored: Tensor) -> Tensor:
        """Value ``>= minimum`` represented by ``stored``. The outer bound only absorbs the
        rounding of ``sqrt(minimum + p²)² − p²`` so the floor holds exactly in any dtype."""
        value = self.lower_bound(stored) ** 2 - self.pedestal.to(stored.dtype)
        return lower_bound(value, self.minimum)

    def extra_repr(self) -> str:
        return f"minimum={self.minimum:g}"
