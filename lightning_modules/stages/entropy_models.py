"""Entropy models that turn quantized values into likelihoods, and likelihoods into bits.

- ``FactorizedDensity``: a learned univariate density per channel for the hyper-latent z
  (Ballé et al., ICLR 2018, "Variational image compression with a scale hyperprior", appendix 6.1).
  Its cumulative c(x) = sigmoid(f_K ∘ ... ∘ f_0(x)) is a chain of per-channel layers
  f_k(x) = h + tanh(a_k) ⊙ tanh(h), h = softplus(H_k) x + b_k; non-negative matrices and
  tanh(a_k) > -1 make c monotone. The likelihood of a value is the mass of the unit interval
  around it: p(z) = c(z + 1/2) − c(z − 1/2).
- ``GaussianConditional`` / ``LaplaceConditional``: a zero-mean density with a per-element scale σ
  (Gaussian standard deviation, or Laplace scale b = σ) for the centred latent r = y/q − μ:
  p(r) = CDF_σ(r + 1/2) − CDF_σ(r − 1/2).

Every scale is lower-bounded at 0.11 and every likelihood at 1e-9 (``lower_bound``: the gradient
still pushes values up), so the rate −log2 p stays finite. ``bits(p) = Σ −log2 p``.
These are plain-torch re-implementations: compressai cannot be installed beside the CPU torch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.stages.bounds import lower_bound

LIKELIHOOD_BOUND = 1e-9
SCALE_BOUND = 0.11


def bits(likelihood: Tensor) -> Tensor:
    """Total information content Σ −log2 p, a scalar tensor."""
    return -torch.log2(likelihood).sum()


def _full_precision(*tensors: Tensor) -> tuple[Tensor, ...]:
    """Half/bfloat16 inputs promoted to float32: the 1e-9 likelihood floor underflows in fp16."""
    return tuple(t.float() if t.dtype in (torch.float16, torch.bfloat16) else t for t in tensors)


def _check_likelihood_bound(likelihood_bound: float, owner: str) -> None:
    if not 0.0 < likelihood_bound < 1.0:
        raise ValueError(f"{owner}: likelihood_bound must be in (0, 1), got {likelihood_bound}")


class FactorizedDensity(nn.Module):
    """Per-channel learned density for z of shape (B, C, ...).

    ``forward(z) -> (z_hat, likelihood)``. Training: z_hat = z + u, u ~ U(−1/2, 1/2) (the usual
    differentiable stand-in for rounding). Eval: z is rounded around each channel's median m,
    z_hat = round(z − m) + m, where m solves c(m) = 1/2 by bisection on the learned cumulative
    (no auxiliary loss or extra parameters are needed for it). ``likelihood`` has z's shape and
    is >= ``likelihood_bound``.
    """

    def __init__(
        self,
        channels: int,
        filters: tuple[int, ...] = (3, 3, 3),
        init_scale: float = 10.0,
        likelihood_bound: float = LIKELIHOOD_BOUND,
    ) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"FactorizedDensity: channels must be >= 1, got {channels}")
        if any(int(f) < 1 for f in filters):
            raise ValueError(f"FactorizedDensity: filters must all be >= 1, got {filters}")
        if init_scale <= 0:
            raise ValueError(f"FactorizedDensity: init_scale must be > 0, got {init_scale}")
        _check_likelihood_bound(likelihood_bound, "FactorizedDensity")
        self.channels = int(channels)
        self.likelihood_bound = float(likelihood_bound)
        widths = (1, *(int(f) for f in filters), 1)
        # Initialise so that the initial density is spread over about ±init_scale.
        layer_scale = init_scale ** (1.0 / (len(widths) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for k in range(len(widths) - 1):
            d_in, d_out = widths[k], widths[k + 1]
            start = math.log(math.expm1(1.0 / layer_scale / d_out))  # softplus⁻¹
            self.matrices.append(nn.Parameter(torch.full((channels, d_out, d_in), start)))
            self.biases.append(nn.Parameter(torch.empty(channels, d_out, 1).uniform_(-0.5, 0.5)))
            if k < len(widths) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, d_out, 1)))
        self._median_cache: tuple[tuple, Tensor] | None = None

    def cumulative_logits(self, x: Tensor) -> Tensor:
        """Logit of the learned cumulative, f_K ∘ ... ∘ f_0(x), for x of shape (C, 1, N)."""
        for k, matrix in enumerate(self.matrices):
            x = torch.matmul(F.softplus(matrix), x) + self.biases[k]
            if k < len(self.factors):
                x = x + torch.tanh(self.factors[k]) * torch.tanh(x)
        return x

    def _check(self, z: Tensor) -> None:
        if z.dim() < 2 or z.shape[1] != self.channels:
            raise ValueError(
                f"FactorizedDensity: expected z of shape (B, {self.channels}, ...), "
                f"got {tuple(z.shape)}"
            )

    def likelihood(self, z: Tensor) -> Tensor:
        """p(z) = c(z + 1/2) − c(z − 1/2) per element, lower-bounded; same shape as z."""
        self._check(z)
        (z,) = _full_precision(z)
        per_channel = z.transpose(0, 1).reshape(self.channels, 1, -1)
        with torch.autocast(z.device.type, enabled=False):
            # Both interval ends in one pass through the layers (half the small kernels).
            ends = self.cumulative_logits(torch.cat([per_channel - 0.5, per_channel + 0.5], -1))
            lower, upper = ends.chunk(2, dim=-1)
        # Evaluate on the tail where the sigmoid is far from 1, to avoid cancellation:
        # c(u) − c(l) = sigmoid(−l) − sigmoid(−u) when both logits are positive.
        flip = torch.where(lower + upper > 0, -1.0, 1.0).detach()
        p = torch.abs(torch.sigmoid(flip * upper) - torch.sigmoid(flip * lower))
        moved = z.transpose(0, 1)
        p = p.reshape(moved.shape).transpose(0, 1)
        return lower_bound(p, self.likelihood_bound)

    def _parameter_versions(self) -> tuple[tuple[int, int], ...]:
        return tuple((p.data_ptr(), p._version) for p in self.parameters())

    def medians(self) -> Tensor:
        """Per-channel median m (C,) with c(m) = 1/2 (detached). Cached until a parameter
        changes (optimizer steps and ``load_state_dict`` bump the tensors' versions)."""
        versions = self._parameter_versions()
        if self._median_cache is None or self._median_cache[0] != versions:
            with torch.autocast(self.biases[0].device.type, enabled=False):
                self._median_cache = (versions, self._solve_medians())
        return self._median_cache[1]

    @torch.no_grad()
    def _solve_medians(self, iterations: int = 48) -> Tensor:
        """Bracket each channel's median by doubling, then bisect the cumulative logit."""
        lo = -torch.ones(self.channels, 1, 1, device=self.biases[0].device)
        hi = torch.ones_like(lo)
        for _ in range(120):  # widen the bracket until it contains the median
            lo_high = self.cumulative_logits(lo) > 0
            hi_low = self.cumulative_logits(hi) < 0
            if not (lo_high.any() or hi_low.any()):
                break
            lo = torch.where(lo_high, lo * 2, lo)
            hi = torch.where(hi_low, hi * 2, hi)
        for _ in range(iterations):
            mid = 0.5 * (lo + hi)
            below = self.cumulative_logits(mid) < 0
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        return (0.5 * (lo + hi)).reshape(self.channels)

    def quantize(self, z: Tensor) -> Tensor:
        """ẑ: z + U(−1/2, 1/2) in training, median-centred rounding in eval."""
        self._check(z)
        if self.training:
            return z + torch.empty_like(z).uniform_(-0.5, 0.5)
        m = self.medians().to(z.dtype).reshape(1, self.channels, *([1] * (z.dim() - 2)))
        return torch.round(z - m) + m

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """(ẑ, its likelihood)."""
        z_hat = self.quantize(z)
        return z_hat, self.likelihood(z_hat)

    @staticmethod
    def bits(likelihood: Tensor) -> Tensor:
        """Σ −log2 p (see :func:`bits`)."""
        return bits(likelihood)


class _ZeroMeanConditional(nn.Module):
    """Likelihood of the unit interval around r under a zero-mean density of scale σ."""

    def __init__(
        self, scale_bound: float = SCALE_BOUND, likelihood_bound: float = LIKELIHOOD_BOUND
    ) -> None:
        super().__init__()
        if scale_bound <= 0:
            raise ValueError(f"{type(self).__name__}: scale_bound must be > 0, got {scale_bound}")
        _check_likelihood_bound(likelihood_bound, type(self).__name__)
        self.scale_bound = float(scale_bound)
        self.likelihood_bound = float(likelihood_bound)

    def _interval_mass(self, distance: Tensor, scale: Tensor) -> Tensor:
        """P(|X| ∈ unit interval centred at ``distance`` >= 0) for X of scale ``scale``."""
        raise NotImplementedError

    def likelihood(self, r: Tensor, sigma: Tensor) -> Tensor:
        """CDF_σ(r + 1/2) − CDF_σ(r − 1/2) with σ >= scale_bound, result >= likelihood_bound."""
        if r.shape != sigma.shape:
            raise ValueError(
                f"{type(self).__name__}.likelihood: r {tuple(r.shape)} and sigma "
                f"{tuple(sigma.shape)} must have the same shape"
            )
        r, sigma = _full_precision(r, sigma)
        with torch.autocast(r.device.type, enabled=False):
            scale = lower_bound(sigma, self.scale_bound)
            p = self._interval_mass(torch.abs(r), scale)
            return lower_bound(p, self.likelihood_bound)

    def forward(self, r: Tensor, sigma: Tensor) -> Tensor:
        return self.likelihood(r, sigma)

    @staticmethod
    def bits(likelihood: Tensor) -> Tensor:
        """Σ −log2 p (see :func:`bits`)."""
        return bits(likelihood)

    def extra_repr(self) -> str:
        return f"scale_bound={self.scale_bound:g}, likelihood_bound={self.likelihood_bound:g}"


class GaussianConditional(_ZeroMeanConditional):
    """Zero-mean Gaussian, σ = standard deviation.

    By symmetry p(r) = Φ((1/2 − |r|)/σ) − Φ((−1/2 − |r|)/σ): both arguments sit on the lower
    tail, where Φ(t) = erfc(−t/√2)/2 keeps full relative precision (no 1 − 1 cancellation).
    """

    def _interval_mass(self, distance: Tensor, scale: Tensor) -> Tensor:
        def normal_cdf(t: Tensor) -> Tensor:
            return 0.5 * torch.erfc(-t / math.sqrt(2.0))

        return normal_cdf((0.5 - distance) / scale) - normal_cdf((-0.5 - distance) / scale)


class LaplaceConditional(_ZeroMeanConditional):
    """Zero-mean Laplace, density exp(−|x|/b)/(2b) with scale b = σ.

    For d = |r| >= 1/2: p = exp(−(d − 1/2)/b)·(1 − exp(−1/b))/2 (both interval ends on one tail);
    for d < 1/2:       p = 1 − (exp(−(1/2 − d)/b) + exp(−(1/2 + d)/b))/2.
    Each branch gets d clamped to its own range so the unused one cannot overflow.
    """

    def _interval_mass(self, distance: Tensor, scale: Tensor) -> Tensor:
        far = torch.clamp(distance, min=0.5)
        tail = 0.5 * torch.exp(-(far - 0.5) / scale) * -torch.expm1(-1.0 / scale)
        near = torch.clamp(distance, max=0.5)
        centre = 1.0 - 0.5 * (torch.exp(-(0.5 - near) / scale) + torch.exp(-(0.5 + near) / scale))
        return torch.where(distance >= 0.5, tail, centre)


CONDITIONALS: dict[str, type[_ZeroMeanConditional]] = {
    "gaussian": GaussianConditional,
    "laplace": LaplaceConditional,
}


def build_conditional(name: str, **kwargs: float) -> _ZeroMeanConditional:
    """Conditional entropy model by name: "gaussian" or "laplace"."""
    if name not in CONDITIONALS:
        raise ValueError(
            f"unknown likelihood {name!r}; valid names: {', '.join(sorted(CONDITIONALS))}"
        )
    return CONDITIONALS[name](**kwargs)
