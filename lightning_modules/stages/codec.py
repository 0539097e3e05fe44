"""Feature codec, "denoise, then quantize": purify aligned multi-scale temporal features.

    y   = g_a(F_1, F_1/2, F_1/4)          analysis: strided conv + GDN, merging the three scales
    z   = h_a(y)                          hyper-analysis, two stride-2 steps
    ẑ   = FactorizedDensity(z)            noise in training, median-centred rounding in eval
    q, μ, σ = h_s(ẑ, context)             hyper-synthesis back to y's grid; the current frame's
                                          1/4-scale features join as context before the last layers
    ŷ   = quantizer(y, μ, q)              (round(y/q − μ) + μ)·q, see quantizers.py
    F̂   = g_s(ŷ)                          synthesis: inverse GDN + transposed convs,
                                          giving scales 1/4, 1/2, 1

Rate: bits_y = Σ −log2 p(r) with p the zero-mean Gaussian/Laplace interval mass of the centred
latent r the quantizer scored (σ >= 0.11, p >= 1e-9); bits_z = Σ −log2 p(ẑ). With
``quantizer="none"`` there is no hyperprior and nothing is coded: both are 0.

Sizes: inputs are replicate-padded at the bottom/right to a multiple of the total stride
(latent_stride · 4, the hyper-analysis adds two stride-2 steps) and the outputs are cropped back,
so any H, W works. ``maps`` live on the padded latent grid (B, C_y, h, w),
h = H_pad / latent_stride, and ``bits_y == maps["bits"].sum()``: the padded positions are
coded too and counted.

Design choices (the paper gives no details): 3x3 kernels throughout and 1x1 convs at the latent
resolution, where a 3x3 conv on ~100 channels would cost several GFLOPs at 854x480 on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.stages.bounds import lower_bound
from lightning_modules.stages.entropy_models import (
    SCALE_BOUND,
    FactorizedDensity,
    bits,
    build_conditional,
)
from lightning_modules.stages.gdn import GDN
from lightning_modules.stages.quantizers import MIN_STEP, build_quantizer

LATENT_STRIDES = (4, 8, 16)
HYPER_STRIDE = 4
INITIAL_STEP = 1.0


@dataclass
class CodecOutput:
    """features: purified features at scales 1, 1/2, 1/4 (input shapes); bits_y, bits_z: scalar
    tensors summed over the batch; maps: "q", "mu", "sigma", "bits" as (B, C_y, h, w) tensors
    (not detached) — step, mean (in units of the step), scale, and bits per latent element."""

    features: list[Tensor]
    bits_y: Tensor
    bits_z: Tensor
    maps: dict[str, Tensor]


def _conv(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1) -> nn.Conv2d:
    """Same-padded conv; with stride 2 it maps size n to ceil(n / 2)."""
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2)


def _deconv(in_ch: int, out_ch: int, kernel: int = 3) -> nn.ConvTranspose2d:
    """Stride-2 transposed conv mapping size n to exactly 2n."""
    return nn.ConvTranspose2d(
        in_ch, out_ch, kernel, stride=2, padding=kernel // 2, output_padding=1
    )


class MultiScaleEncoder(nn.Module):
    """g_a: [F_1, F_1/2, F_1/4] -> y at 1/latent_stride.

    F_1 -> conv/2 -> GDN -> ⊕F_1/2 -> conv/2 -> GDN -> ⊕F_1/4 -> conv1x1 -> (GDN -> conv/2)* -> y
    """

    def __init__(self, channels: tuple[int, int, int], latent_channels: int, latent_stride: int):
        super().__init__()
        c1, c2, c3 = channels
        self.down_full = nn.Sequential(_conv(c1, c2, stride=2), GDN(c2))
        self.down_half = nn.Sequential(_conv(2 * c2, c3, stride=2), GDN(c3))
        self.fuse_quarter = _conv(2 * c3, latent_channels, kernel=1)
        extra = int(math.log2(latent_stride)) - 2
        self.down_latent = nn.Sequential(
            *(
                layer
                for _ in range(extra)
                for layer in (GDN(latent_channels), _conv(latent_channels, latent_channels, 3, 2))
            )
        )

    def forward(self, feats: list[Tensor]) -> Tensor:
        h = self.down_full(feats[0])
        h = self.down_half(torch.cat([h, feats[1]], dim=1))
        y = self.fuse_quarter(torch.cat([h, feats[2]], dim=1))
        return self.down_latent(y)


class MultiScaleDecoder(nn.Module):
    """g_s: ŷ -> [F̂_1, F̂_1/2, F̂_1/4], mirroring g_a with inverse GDN and transposed convs.

    ŷ -> (deconv×2 -> IGDN)* -> conv1x1 = F̂_1/4
       -> IGDN -> deconv×2 = F̂_1/2 -> IGDN -> deconv×2 = F̂_1
    """

    def __init__(self, channels: tuple[int, int, int], latent_channels: int, latent_stride: int):
        super().__init__()
        c1, c2, c3 = channels
        extra = int(math.log2(latent_stride)) - 2
        self.up_latent = nn.Sequential(
            *(
                layer
                for _ in range(extra)
                for layer in (
                    _deconv(latent_channels, latent_channels),
                    GDN(latent_channels, inverse=True),
                )
            )
        )
        self.unfuse_quarter = _conv(latent_channels, c3, kernel=1)
        self.up_quarter = nn.Sequential(GDN(c3, inverse=True), _deconv(c3, c2))
        self.up_half = nn.Sequential(GDN(c2, inverse=True), _deconv(c2, c1))

    def forward(self, y_hat: Tensor) -> list[Tensor]:
        quarter = self.unfuse_quarter(self.up_latent(y_hat))
        half = self.up_quarter(quarter)
        full = self.up_half(half)
        return [full, half, quarter]


class HyperEncoder(nn.Module):
    """h_a: y -> z, conv/2 -> LReLU -> conv -> LReLU -> conv/2 (stride 4 overall)."""

    def __init__(self, latent_channels: int, hyper_channels: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            _conv(latent_channels, hyper_channels, stride=2),
            nn.LeakyReLU(0.1),
            _conv(hyper_channels, hyper_channels),
            nn.LeakyReLU(0.1),
            _conv(hyper_channels, hyper_channels, stride=2),
        )

    def forward(self, y: Tensor) -> Tensor:
        return self.layers(y)


class HyperDecoder(nn.Module):
    """h_s: (ẑ, context) -> ``chunks``·C_y raw parameter channels on y's grid.

    ẑ -> deconv×2 -> LReLU -> deconv×2 -> LReLU -> ⊕context -> conv1x1 -> LReLU -> conv1x1.
    """

    def __init__(
        self, hyper_channels: int, latent_channels: int, chunks: int, context_channels: int
    ) -> None:
        super().__init__()
        self.context_channels = context_channels
        self.upsample = nn.Sequential(
            _deconv(hyper_channels, hyper_channels),
            nn.LeakyReLU(0.1),
            _deconv(hyper_channels, hyper_channels),
            nn.LeakyReLU(0.1),
        )
        self.head = nn.Sequential(
            _conv(hyper_channels + context_channels, hyper_channels, kernel=1),
            nn.LeakyReLU(0.1),
            _conv(hyper_channels, chunks * latent_channels, kernel=1),
        )

    def forward(self, z_hat: Tensor, context: Tensor | None) -> Tensor:
        h = self.upsample(z_hat)
        if self.context_channels > 0:
            h = torch.cat([h, context], dim=1)
        return self.head(h)


class FeatureCodec(nn.Module):
    """Learned compression of multi-scale features with a (q, μ, σ) hyperprior (module doc)."""

    def __init__(
        self,
        channels: tuple[int, int, int] = (16, 32, 64),
        latent_channels: int = 96,
        hyper_channels: int = 64,
        latent_stride: int = 4,
        quantizer: str = "adaptive",
        likelihood: str = "gaussian",
        context_channels: int = 64,
        min_step: float = MIN_STEP,
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) != 3 or min(channels) < 1:
            raise ValueError(
                f"FeatureCodec: channels must be 3 positive ints (scales 1, 1/2, 1/4), "
                f"got {channels}"
            )
        if latent_stride not in LATENT_STRIDES:
            raise ValueError(
                f"FeatureCodec: latent_stride must be one of {LATENT_STRIDES}, got {latent_stride}"
            )
        for name, value, least in (
            ("latent_channels", latent_channels, 1),
            ("hyper_channels", hyper_channels, 1),
            ("context_channels", context_channels, 0),
        ):
            if int(value) < least:
                raise ValueError(f"FeatureCodec: {name} must be >= {least}, got {value}")
        self.channels = channels
        self.latent_channels = int(latent_channels)
        self.latent_stride = int(latent_stride)
        self.context_channels = int(context_channels)
        self.total_stride = self.latent_stride * HYPER_STRIDE
        self.quantizer = build_quantizer(quantizer, self.latent_channels, min_step)
        self.conditional = build_conditional(likelihood)
        self.chunks = self.quantizer.hyper_chunks
        self.encoder = MultiScaleEncoder(channels, self.latent_channels, self.latent_stride)
        self.decoder = MultiScaleDecoder(channels, self.latent_channels, self.latent_stride)
        if self.chunks > 0:
            self.hyper_encoder = HyperEncoder(self.latent_channels, hyper_channels)
            self.z_density = FactorizedDensity(hyper_channels)
            self.hyper_decoder = HyperDecoder(
                hyper_channels, self.latent_channels, self.chunks, self.context_channels
            )
            if self.chunks == 3:
                self._init_step_near_one()

    def _init_step_near_one(self) -> None:
        """Start the adaptive step q close to 1 (the plain hyperprior) everywhere."""
        last = self.hyper_decoder.head[-1]
        with torch.no_grad():
            last.weight[: self.latent_channels].mul_(0.1)
            last.bias[: self.latent_channels].fill_(INITIAL_STEP)

    def quantize_with_rate(
        self, y: Tensor, mu: Tensor, sigma: Tensor, q: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(ŷ, likelihood of the coded centred latent, step used) for given hyper parameters."""
        y_hat, r_for_rate, q_used = self.quantizer(y, mu, q)
        return y_hat, self.conditional.likelihood(r_for_rate, sigma), q_used

    def _check_inputs(self, feats: list[Tensor], context: Tensor | None) -> None:
        if not isinstance(feats, list | tuple) or len(feats) != 3:
            got = len(feats) if isinstance(feats, list | tuple) else type(feats).__name__
            raise ValueError(
                f"FeatureCodec: feats must be a list of 3 tensors (scales 1, 1/2, 1/4), got {got}"
            )
        if feats[0].dim() != 4:
            raise ValueError(
                f"FeatureCodec: feats[0] must be (B, C, H, W), got {tuple(feats[0].shape)}"
            )
        batch, _, height, width = feats[0].shape
        for s, (f, c) in enumerate(zip(feats, self.channels)):
            expected = (batch, c, math.ceil(height / 2**s), math.ceil(width / 2**s))
            if tuple(f.shape) != expected:
                raise ValueError(
                    f"FeatureCodec: feats[{s}] (scale 1/{2**s}) must have shape {expected} "
                    f"(channels={self.channels}), got {tuple(f.shape)}"
                )
        if context is None:
            return
        expected = (batch, self.context_channels, math.ceil(height / 4), math.ceil(width / 4))
        if self.context_channels == 0 or tuple(context.shape) != expected:
            raise ValueError(
                f"FeatureCodec: context must have shape {expected} "
                f"(context_channels={self.context_channels}), got {tuple(context.shape)}"
            )

    def _pad(self, x: Tensor, height: int, width: int) -> Tensor:
        """Replicate-pad x at the bottom/right to (height, width); x itself when it has that size
        (no copy, and no replication-pad kernel in the graph)."""
        if x.shape[-2:] == (height, width):
            return x
        return F.pad(x, (0, width - x.shape[-1], 0, height - x.shape[-2]), mode="replicate")

    def _context_on_latent_grid(
        self, context: Tensor | None, y: Tensor, padded_hw: tuple[int, int]
    ) -> Tensor | None:
        """Context padded like the features and average-pooled onto y's grid; zeros if absent."""
        if self.context_channels == 0:
            return None
        if context is None:
            shape = (y.shape[0], self.context_channels, *y.shape[-2:])
            return torch.zeros(shape, dtype=y.dtype, device=y.device)
        context = self._pad(context, padded_hw[0] // 4, padded_hw[1] // 4)
        pool = self.latent_stride // 4
        return F.avg_pool2d(context, pool) if pool > 1 else context

    def analyse(self, feats: list[Tensor], context: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """(y, context on y's grid or None): the padded features through g_a; ``feats`` and
        ``context`` as in ``forward``. Used by ``forward`` and by the entropy coder."""
        height, width = feats[0].shape[-2:]
        stride = self.total_stride
        padded = (math.ceil(height / stride) * stride, math.ceil(width / stride) * stride)
        padded_feats = [
            self._pad(f, padded[0] // 2**s, padded[1] // 2**s) for s, f in enumerate(feats)
        ]
        y = self.encoder(padded_feats)
        return y, self._context_on_latent_grid(context, y, padded)

    def hyper_parameters(
        self, z_hat: Tensor, context_grid: Tensor | None
    ) -> tuple[Tensor | None, Tensor, Tensor]:
        """(raw step q or None, μ, σ) on y's grid from ẑ and the context alone: what a decoder
        can compute before it has ŷ (σ bounded below by the conditional's scale bound)."""
        params = self.hyper_decoder(z_hat, context_grid).chunk(self.chunks, dim=1)
        q_raw = params[0] if self.chunks == 3 else None
        mu, sigma_raw = params[-2], params[-1]
        return q_raw, mu, lower_bound(F.softplus(sigma_raw), SCALE_BOUND)

    def forward(
        self, feats: list[Tensor], context: Tensor | None = None, with_rate: bool = True
    ) -> CodecOutput:
        """Purify ``feats`` (scales 1, 1/2, 1/4); ``context``: current-frame 1/4-scale features
        (B, context_channels, ceil(H/4), ceil(W/4)), or None (zeros are used).

        ``with_rate=False`` skips the likelihoods of y and z (restoring a frame does not need
        them): the features are identical, bits_y = bits_z = 0 and ``maps`` has no "bits"."""
        self._check_inputs(feats, context)
        y, context_grid = self.analyse(feats, context)
        if self.chunks == 0:
            y_hat = y
            zeros = torch.zeros_like(y)
            maps = {"q": zeros, "mu": zeros, "sigma": zeros, "bits": zeros}
            bits_y = bits_z = y.new_zeros(())
        elif not with_rate:
            z_hat = self.z_density.quantize(self.hyper_encoder(y))
            q_raw, mu, sigma = self.hyper_parameters(z_hat, context_grid)
            y_hat, _, q_used = self.quantizer(y, mu, q_raw)
            maps = {"q": q_used, "mu": mu, "sigma": sigma}
            bits_y = bits_z = y.new_zeros(())
        else:
            z_hat, z_likelihood = self.z_density(self.hyper_encoder(y))
            q_raw, mu, sigma = self.hyper_parameters(z_hat, context_grid)
            y_hat, y_likelihood, q_used = self.quantize_with_rate(y, mu, sigma, q_raw)
            bits_map = -torch.log2(y_likelihood)
            maps = {"q": q_used, "mu": mu, "sigma": sigma, "bits": bits_map}
            bits_y = bits_map.sum()
            bits_z = bits(z_likelihood)
        decoded = self.decoder(y_hat)
        features = [
            d[..., : f.shape[-2], : f.shape[-1]] for d, f in zip(decoded, feats, strict=True)
        ]
        return CodecOutput(features=features, bits_y=bits_y, bits_z=bits_z, maps=maps)
