"""Real bits for the feature codec: range-code ẑ and ŷ with ``constriction`` and decode them back.

What is coded, per codec call (one frame of a batch), in two range-coder streams:

    z-stream: s = round(z − m) per element (m: each channel's median, as the codec's eval
              rounding), channel by channel, each channel with a categorical model tabulated
              from the learned factorized density: P(k) = c(k + m + 1/2) − c(k + m − 1/2) for
              k in [lo, hi], the range where the density's tails hold more than 1e-9 (widened
              to the data's symbols if needed; stored in the header). The range depends on the
              model, not on the data, so the coder gains nothing from knowing it.
    y-stream: r̂ = round(y/q − μ), the centred integer the codec's rate term scores, under a
              zero-mean quantized Gaussian (or Laplace) of scale σ̃ clipped to [lo, hi] = [−R, R],
              R covering the largest σ̃'s tails to 1e-9 (widened to the data if needed; stored
              in the header). Clipping to the data's own range would save more on frames whose
              symbols are all 0 (measured: up to half of y's bits early in training), but then
              the actual bits would measure the range side information, not the coder.

The decoder reads ẑ = s + m, runs the hyper-decoder on ẑ and the context alone to get (q, μ, σ),
reads r̂ and returns ŷ = (r̂ + μ)·q: the same float operations as the quantizer, so ŷ is
bit-identical to the encoder's on the same machine. μ and q do not enter the coder's model (the
centred latent is zero-mean); only σ does.

The estimate (``CodecOutput.bits_y/bits_z``) and the coder differ by: σ̃, σ rounded to a log grid
(64 steps per octave, ≤ 0.55 % off; see below), whose cost is second order (~1e-5 bit per
symbol); constriction's 24-bit fixed-point probabilities (every symbol of [lo, hi] keeps at least
2⁻²⁴, so a range [lo, hi] costs up to (hi − lo + 1)·2⁻²⁴ of mass per symbol, and the 1e-9
likelihood floor of the estimate becomes ~2⁻²⁴: a grossly mis-predicted symbol costs ≤ ~24 bits
instead of 30); the clipping of the models to their 1e-9 tails; up to two 32-bit words of flush
per stream; and the 32-bit symbol range of each stream, which the actual bits include
(``RANGE_HEADER_BITS``).

Determinism, and what breaks it across machines: encoder and decoder must build *bit-identical*
models. ẑ is integer plus a per-channel median (same parameters: same medians), but σ comes from
the hyper-decoder, whose convolutions sum in an order that depends on the BLAS/oneDNN kernel,
the CPU type (AVX2 vs AVX-512), the thread count and the device. Measured here: the float32
hyper-decoder run with 2 and then 1 thread gave 26 % of σ's 1 ulp apart, and the stream no longer
decoded. What we do: (1) the coder's σ and z tables come from a float64 copy of the hyper-decoder
and the density on the CPU (the same whatever device runs the model), whose differences are
~1e-16; (2) σ is rounded to the log grid, so such a difference matters only for a σ within
~1e-16 of a grid boundary (improbable, not impossible: only integer arithmetic in the
hyper-decoder removes it, Ballé et al., ICLR 2019, "Integer networks for data compression");
(3) every frame carries a CRC32 of its symbols, so a desynchronised decode stops with a clear
error instead of returning wrong features. The symbols then decode exactly across thread counts;
ŷ = (r̂ + μ)·q is bit-identical only where the float32 μ and q are (same machine, thread count
and device; elsewhere ŷ can differ by float32 rounding of μ, q). The context (U-Net features of
the current frame) must be the same too. The model hash in a file's header refuses another
model's parameters.

Symbols beyond ``MAX_SYMBOL`` in magnitude (or a non-finite latent) are rejected with a clear
error rather than clamped: clamping would break the exact round trip.
"""

from __future__ import annotations

import copy
import hashlib
import math
import weakref
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.stages.bounds import lower_bound
from lightning_modules.stages.entropy_models import SCALE_BOUND, LaplaceConditional

CODING_EXTRA = "ncfl-video[coding]"
MAX_SYMBOL = 2**15 - 1  # |symbol| bound; the header stores ranges as int16
Z_TAIL_MASS = 1e-9  # the z range covers the density up to this mass per tail (= likelihood floor)
GAUSSIAN_TAIL_SIGMAS = 6.0  # Φ(−6) ≈ 1e-9 = Z_TAIL_MASS
RANGE_HEADER_BITS = 32  # a stream's symbol range, two int16: counted in its actual bits
SCALE_STEPS_PER_OCTAVE = 64
SCALE_MAX = 2.0**16
# σ̃ grid: SCALE_BOUND·2^(k/64); a σ is rounded (in log2) to the nearest grid value by comparing
# it with the geometric midpoints, so no transcendental function runs at coding time.
_GRID_EXPONENTS = np.arange(
    0, int(np.ceil(np.log2(SCALE_MAX / SCALE_BOUND) * SCALE_STEPS_PER_OCTAVE)) + 1
)
SCALE_GRID = SCALE_BOUND * 2.0 ** (_GRID_EXPONENTS / SCALE_STEPS_PER_OCTAVE)
_GRID_MIDPOINTS = SCALE_BOUND * 2.0 ** ((_GRID_EXPONENTS[:-1] + 0.5) / SCALE_STEPS_PER_OCTAVE)


def require_constriction() -> Any:
    """The ``constriction`` module, or one ImportError naming the optional extra."""
    try:
        import constriction
    except ImportError as err:
        raise ImportError(
            f"entropy coding needs the optional package 'constriction': "
            f"pip install '{CODING_EXTRA}' (or pip install constriction)"
        ) from err
    return constriction


def model_hash(module: nn.Module) -> str:
    """SHA-256 (hex) of a module's state dict: names, dtypes, shapes and raw bytes, in key order.
    Device-independent (tensors are read on the CPU)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def grid_scales(sigma: Tensor) -> np.ndarray:
    """σ (any shape) rounded to the nearest value of ``SCALE_GRID`` in log2; flat float64."""
    values = sigma.detach().reshape(-1).cpu().double().numpy()
    return SCALE_GRID[np.searchsorted(_GRID_MIDPOINTS, values)]


@dataclass
class CodedLatents:
    """One codec call, coded: shapes and symbol ranges (the header), the two streams (uint32
    words), and a CRC32 of the symbols (z then y) that the decoder checks."""

    y_shape: tuple[int, ...]
    z_shape: tuple[int, ...]
    y_range: tuple[int, int]
    z_range: tuple[int, int]
    y_words: np.ndarray
    z_words: np.ndarray
    checksum: int

    @property
    def bits_y(self) -> int:
        """Actual bits of ŷ: the stream's 32-bit words plus its symbol range."""
        return 32 * int(self.y_words.size) + RANGE_HEADER_BITS

    @property
    def bits_z(self) -> int:
        """Actual bits of ẑ: the stream's 32-bit words plus its symbol range."""
        return 32 * int(self.z_words.size) + RANGE_HEADER_BITS

    def header(self) -> dict[str, Any]:
        return {
            "y_shape": list(self.y_shape),
            "z_shape": list(self.z_shape),
            "y_range": list(self.y_range),
            "z_range": list(self.z_range),
            "y_words": int(self.y_words.size),
            "z_words": int(self.z_words.size),
            "checksum": self.checksum,
        }


def _check_codec(codec: nn.Module) -> None:
    if getattr(codec, "chunks", 0) == 0:
        raise ValueError(
            "entropy coding: this codec has no quantizer (quantizer='none'), so there is "
            "nothing to code; use a codec with quantizer adaptive, channel or fixed"
        )
    if codec.training:
        raise ValueError(
            "entropy coding: the codec is in training mode (noise instead of rounding); "
            "call .eval() first"
        )


def _symbol_range(symbols: Tensor, what: str) -> tuple[int, int]:
    """(min, max) of an integer-valued float tensor, at least two symbols wide (constriction's
    models need it: an all-zero latent gets [0, 1]); a clear error beyond ±MAX_SYMBOL."""
    if not torch.isfinite(symbols).all():
        raise ValueError(f"entropy coding: the {what} latent has non-finite values (NaN or inf)")
    outside = symbols.abs() > MAX_SYMBOL
    if outside.any():
        raise ValueError(
            f"entropy coding: {int(outside.sum())} of {symbols.numel()} {what} symbols lie "
            f"outside the coder's range ±{MAX_SYMBOL} (largest |symbol| = "
            f"{int(symbols.abs().max())}); the input is far outside what the codec handles"
        )
    lo, hi = int(symbols.min()), int(symbols.max())
    return lo, max(hi, lo + 1)


def _medians(codec: nn.Module, like: Tensor) -> Tensor:
    """Per-channel medians of ẑ's density shaped (1, C, 1, 1) like the codec's eval rounding."""
    density = codec.z_density
    return density.medians().to(like.dtype).reshape(1, density.channels, 1, 1)


def _z_tail_range(codec: nn.Module, medians: Tensor) -> tuple[int, int]:
    """Smallest symbol range [lo, hi] (offsets from the medians, over all channels) outside
    which the factorized density has less than ``Z_TAIL_MASS`` on each side. It depends on the
    model only, so the coder gains nothing from the data's own range (see the module doc)."""
    density = codec.z_density
    bound = math.log(Z_TAIL_MASS / (1.0 - Z_TAIL_MASS))  # logit of the tail mass (< 0)
    m = medians.reshape(-1, 1, 1)
    extent = 16
    while True:
        k = torch.arange(-extent, extent + 1, dtype=m.dtype, device=m.device).reshape(1, 1, -1)
        upper = density.cumulative_logits(k + m + 0.5)[:, 0]  # (C, W): logit c(k + m + 1/2)
        lower = density.cumulative_logits(k + m - 0.5)[:, 0]
        inside = (upper[:, 0] < bound).all() and (lower[:, -1] > -bound).all()
        if inside or extent > MAX_SYMBOL:
            break
        extent *= 2
    k = k.reshape(-1)
    keep_low = (upper >= bound).any(dim=0)  # some channel has tail mass at or above k
    keep_high = (lower <= -bound).any(dim=0)
    lo = int(k[keep_low].min()) if keep_low.any() else 0
    hi = int(k[keep_high].max()) if keep_high.any() else 0
    return max(lo, -MAX_SYMBOL), min(hi, MAX_SYMBOL)


_FLOAT64_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _float64_copy(codec: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(hyper-decoder, z density) of ``codec`` in float64 on the CPU, for the coder's model only:
    float32 sums differ with the thread count (measured: a 2- vs 1-thread hyper-decoder changed
    26 % of the σ's by ~1 ulp and 3 of 262k σ̃'s; enough to desynchronise a stream), float64
    ones by ~1e-16, which reaches the σ grid almost never. Cached until a parameter changes."""
    versions = tuple((p.data_ptr(), p._version) for p in codec.parameters())
    cached = _FLOAT64_COPIES.get(codec)
    if cached is None or cached[0] != versions:
        parts = tuple(
            copy.deepcopy(part).to("cpu", torch.float64).eval()
            for part in (codec.hyper_decoder, codec.z_density)
        )
        _FLOAT64_COPIES[codec] = cached = (versions, parts)
    return cached[1]


def _coder_scales(codec: nn.Module, z_hat: Tensor, context_grid: Tensor | None) -> np.ndarray:
    """σ̃ of the y-coder: ``codec.hyper_parameters``'s σ, computed in float64 on the CPU from ẑ
    and the context only, rounded to the grid; flat float64."""
    hyper_decoder, _ = _float64_copy(codec)
    context = None if context_grid is None else context_grid.to("cpu", torch.float64)
    raw = hyper_decoder(z_hat.to("cpu", torch.float64), context).chunk(codec.chunks, dim=1)[-1]
    return grid_scales(lower_bound(F.softplus(raw), SCALE_BOUND))


def _z_tables(codec: nn.Module, medians: Tensor, z_range: tuple[int, int]) -> np.ndarray:
    """(C, hi − lo + 1) float64 masses of the factorized density at k + m_c, k in [lo, hi]
    (float64 on the CPU, like the σ's)."""
    _, density = _float64_copy(codec)
    lo, hi = z_range
    k = torch.arange(lo, hi + 1, dtype=torch.float64)
    values = k.reshape(1, 1, -1) + medians.to("cpu", torch.float64).reshape(1, -1, 1)
    return density.likelihood(values)[0].numpy()


def _y_tail(codec: nn.Module, largest_scale: float) -> int:
    """Symbol bound R such that [−R, R] holds the zero-mean conditional of the largest σ̃ up to
    ``Z_TAIL_MASS`` per tail: like z's range it depends on the model, not on the data."""
    if isinstance(codec.conditional, LaplaceConditional):
        spread = math.log(0.5 / Z_TAIL_MASS)  # P(X > x) = exp(−x/b)/2
    else:
        spread = GAUSSIAN_TAIL_SIGMAS
    return min(math.ceil(spread * largest_scale + 0.5), MAX_SYMBOL)


def _y_family(constriction: Any, codec: nn.Module, y_range: tuple[int, int]) -> Any:
    models = constriction.stream.model
    if isinstance(codec.conditional, LaplaceConditional):
        return models.QuantizedLaplace(*y_range)
    return models.QuantizedGaussian(*y_range)


def _checksum(z_symbols: np.ndarray, y_symbols: np.ndarray) -> int:
    return zlib.crc32(y_symbols.tobytes(), zlib.crc32(z_symbols.tobytes()))


@torch.no_grad()
def encode_latents(
    codec: nn.Module, feats: list[Tensor], context: Tensor | None = None
) -> tuple[CodedLatents, Tensor]:
    """Code one call of ``codec`` (a ``FeatureCodec`` in eval mode) on ``feats``/``context`` as
    its forward would see them; returns the code and the ŷ the codec's forward computes."""
    constriction = require_constriction()
    _check_codec(codec)
    codec._check_inputs(feats, context)
    y, context_grid = codec.analyse(feats, context)
    z = codec.hyper_encoder(y)
    medians = _medians(codec, z)
    z_symbols = torch.round(z - medians)
    data_lo, data_hi = _symbol_range(z_symbols, "z")
    tail_lo, tail_hi = _z_tail_range(codec, medians)
    z_range = (min(data_lo, tail_lo), max(data_hi, tail_hi))
    z_hat = z_symbols + medians
    q_raw, mu, _ = codec.hyper_parameters(z_hat, context_grid)
    y_hat, y_symbols, _ = codec.quantizer(y, mu, q_raw)
    data_lo, data_hi = _symbol_range(y_symbols, "y")
    scales = _coder_scales(codec, z_hat, context_grid)
    tail = _y_tail(codec, float(scales.max()))
    y_range = (min(data_lo, -tail), max(data_hi, tail))

    z_int = z_symbols.to(torch.int32).cpu().numpy()
    tables = _z_tables(codec, medians, z_range)
    z_encoder = constriction.stream.queue.RangeEncoder()
    for c in range(z_int.shape[1]):
        model = constriction.stream.model.Categorical(tables[c], perfect=False)
        z_encoder.encode(np.ascontiguousarray(z_int[:, c]).reshape(-1) - z_range[0], model)

    y_int = y_symbols.to(torch.int32).reshape(-1).cpu().numpy()
    y_encoder = constriction.stream.queue.RangeEncoder()
    y_encoder.encode(y_int, _y_family(constriction, codec, y_range), np.zeros_like(scales), scales)
    coded = CodedLatents(
        y_shape=tuple(y.shape),
        z_shape=tuple(z.shape),
        y_range=y_range,
        z_range=z_range,
        y_words=y_encoder.get_compressed(),
        z_words=z_encoder.get_compressed(),
        checksum=_checksum(z_int, y_int),
    )
    return coded, y_hat


def _desynchronised() -> ValueError:
    return ValueError(
        "entropy coding: the decoded symbols fail the encoder's checksum: the decoder's model "
        "(σ from the hyper-decoder, or the z tables) differs from the encoder's; decode with "
        "the same context, model and kind of machine/device that encoded it"
    )


def _decode_z(
    constriction: Any, codec: nn.Module, coded: CodedLatents
) -> tuple[np.ndarray, Tensor]:
    """(z symbols as int32 (B, C, h, w), ẑ = symbols + medians) from the z-stream."""
    medians = _medians(codec, codec.z_density.biases[0])
    tables = _z_tables(codec, medians, coded.z_range)
    decoder = constriction.stream.queue.RangeDecoder(coded.z_words)
    batch, channels, *grid = coded.z_shape
    per_channel = batch * int(np.prod(grid))
    z_int = np.empty((channels, per_channel), dtype=np.int32)
    try:  # constriction asserts when the stream is invalid under the decoder's model
        for c in range(channels):
            model = constriction.stream.model.Categorical(tables[c], perfect=False)
            z_int[c] = decoder.decode(model, per_channel) + coded.z_range[0]
    except AssertionError as err:
        raise _desynchronised() from err
    z_int = np.ascontiguousarray(z_int.reshape(channels, batch, *grid).swapaxes(0, 1))
    return z_int, torch.from_numpy(z_int).to(medians) + medians


@torch.no_grad()
def decode_hyper_latents(codec: nn.Module, coded: CodedLatents) -> Tensor:
    """ẑ (the codec's rounded hyper-latent) from the z-stream; needs the model only."""
    constriction = require_constriction()
    _check_codec(codec)
    return _decode_z(constriction, codec, coded)[1]


@torch.no_grad()
def decode_latents(codec: nn.Module, coded: CodedLatents, context: Tensor | None = None) -> Tensor:
    """ŷ from the two streams, computing (q, μ, σ) from the decoded ẑ and ``context`` alone.

    ``context`` must be what the encoder was given (the current frame's 1/4-scale features, or
    None for both); a different one desynchronises the stream and fails the checksum."""
    constriction = require_constriction()
    _check_codec(codec)
    z_int, z_hat = _decode_z(constriction, codec, coded)
    _, _, height, width = coded.y_shape
    stride = codec.latent_stride
    y_like = z_hat.new_empty(coded.y_shape)
    context_grid = codec._context_on_latent_grid(context, y_like, (height * stride, width * stride))
    q_raw, mu, _ = codec.hyper_parameters(z_hat, context_grid)
    scales = _coder_scales(codec, z_hat, context_grid)
    decoder = constriction.stream.queue.RangeDecoder(coded.y_words)
    family = _y_family(constriction, codec, coded.y_range)
    try:  # constriction asserts when the stream is invalid under the decoder's model
        y_int = decoder.decode(family, np.zeros_like(scales), scales).astype(np.int32)
    except AssertionError as err:
        raise _desynchronised() from err
    if _checksum(z_int, y_int) != coded.checksum:
        raise _desynchronised()
    r_hat = torch.from_numpy(y_int).to(mu).reshape(coded.y_shape)
    # The step the quantizer uses does not depend on y: ask it with a zero latent.
    _, _, q_used = codec.quantizer(torch.zeros_like(mu), mu, q_raw)
    return (r_hat + mu) * q_used


# ----------------------------------------------------------------------------- recording
@dataclass
class CodedCall:
    """One recorded codec call: the code and the model's estimate of its bits."""

    coded: CodedLatents
    estimate_y: float
    estimate_z: float


@dataclass
class LatentRecorder:
    """Entropy-codes every forward call of ``codec`` while attached (a forward hook; the
    forward itself is unchanged). ``verify``: decode each call and require ŷ bit-identical to
    the encoder's (an error otherwise). ``calls`` holds one ``CodedCall`` per call."""

    codec: nn.Module
    verify: bool = True
    calls: list[CodedCall] = field(default_factory=list)

    def __post_init__(self) -> None:
        require_constriction()
        self._handle = None

    def _hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        feats = args[0] if args else kwargs["feats"]
        context = args[1] if len(args) > 1 else kwargs.get("context")
        coded, y_hat = encode_latents(module, feats, context)
        if self.verify:
            decoded = decode_latents(module, coded, context)
            if not torch.equal(decoded, y_hat):
                mismatched = int((decoded != y_hat).sum())
                raise RuntimeError(
                    f"entropy coding: decoding changed {mismatched} of {y_hat.numel()} ŷ values"
                )
        self.calls.append(CodedCall(coded, float(output.bits_y), float(output.bits_z)))

    def __enter__(self) -> LatentRecorder:
        if getattr(self.codec, "chunks", 0) == 0:
            _check_codec(self.codec)  # the "nothing to code" error
        self._handle = self.codec.register_forward_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def totals(self) -> dict[str, float]:
        """Actual and estimated bits of the recorded calls: keys actual_y, actual_z,
        estimate_y, estimate_z."""
        return {
            "actual_y": float(sum(c.coded.bits_y for c in self.calls)),
            "actual_z": float(sum(c.coded.bits_z for c in self.calls)),
            "estimate_y": sum(c.estimate_y for c in self.calls),
            "estimate_z": sum(c.estimate_z for c in self.calls),
        }
