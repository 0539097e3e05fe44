"""SPyNet optical flow (Ranjan & Black, CVPR 2017), in the BasicSR/mmagic variant.

``SpyNet()(ref, supp)`` returns the backward flow v (B, 2, H, W, pixels) such that
``flow_warp(supp, v) ≈ ref``: ref is the current frame x_t, supp the previous frame x_{t-1}.

Coarse to fine over an average-pooled pyramid of ImageNet-normalised frames, with V_0 = 0 at the
coarsest level:  V_k = u(V_{k-1}) + G_k(cat[I1_k, warp(I2_k, u(V_{k-1})), u(V_{k-1})])
where u is 2x bilinear upsampling (align_corners=True) with the vectors doubled and G_k five 7x7
convs 8-32-64-32-16-2 with ReLU between. Frames are resized to a multiple of 2**(num_levels-1)
(after an optional ``scale``), and the flow is resized back with its vectors rescaled.

Weights: random init (the last conv of every G_k starts at zero, so an untrained SpyNet returns
zero flow, the identity warp), or a local BasicSR / mmagic SPyNet checkpoint via
``load_pretrained``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.stages.warp import flow_warp, resize_flow

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Conv indices inside our (and BasicSR's) nn.Sequential: conv, ReLU, conv, ReLU, ..., conv.
_CONV_SEQ_INDICES = (0, 2, 4, 6, 8)
# mmagic wraps each conv in a ConvModule (conv + activation), so they are numbered 0..4.
_MMAGIC_KEY = re.compile(r"^basic_module\.(\d+)\.basic_module\.(\d+)\.conv\.(weight|bias)$")
# Any SPyNet weight key, after whatever prefix the enclosing model gives it (group 1).
_SPYNET_KEY = re.compile(r"^(.*?)basic_module\.\d+\.basic_module\.\d+\.(?:conv\.)?(?:weight|bias)$")
_CONSTANT_BUFFERS = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}


class SpyNetBasicModule(nn.Module):
    """G_k: five 7x7 convs 8-32-64-32-16-2 with ReLU between; maps 8 channels to a residual flow.

    Initialisation for training from scratch: the last conv is zero (zero flow at first), and
    half of the first conv's filters see the difference ref − warped supp (their weights on the
    warped frame are the negated weights on the reference, scaled by ``DIFFERENCE_GAIN``): the
    temporal difference is the signal flow comes from, and without it a randomly initialised
    module did not start learning (a single module regressing ±2 px shifts on photograph
    crops: EPE ratio to zero flow 1.00 after 900 Adam steps with the default init, 0.80 after 800
    with this one, lr 3e-4).
    """

    DIFFERENCE_GAIN = 4.0

    def __init__(self) -> None:
        super().__init__()
        widths = (8, 32, 64, 32, 16, 2)
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Conv2d(c_in, c_out, kernel_size=7, padding=3))
            if i < len(widths) - 2:
                layers.append(nn.ReLU(inplace=False))
        self.basic_module = nn.Sequential(*layers)
        with torch.no_grad():
            first = self.basic_module[0].weight  # (32, 8 = ref 3 + warped 3 + flow 2, 7, 7)
            half = first.shape[0] // 2
            first[:half, 3:6] = -first[:half, 0:3]
            first[:half, :6] *= self.DIFFERENCE_GAIN
        nn.init.zeros_(self.basic_module[-1].weight)
        nn.init.zeros_(self.basic_module[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.basic_module(x)


class SpyNet(nn.Module):
    """Pyramid flow network; see the module docstring for the contract and the recursion.

    Args:
        num_levels: pyramid levels (6 in the pretrained BasicSR/mmagic weights); frames are
            resized to a multiple of 2**(num_levels - 1) internally.
        scale: estimate the flow on frames resized by this factor (0 < scale <= 1, e.g. 0.25),
            then upsample it to input size with vectors rescaled.
        pretrained: path of a local BasicSR or mmagic SPyNet checkpoint, or None.
    """

    def __init__(self, num_levels: int = 6, scale: float = 1.0, pretrained: str | None = None):
        super().__init__()
        if not isinstance(num_levels, int) or num_levels < 1:
            raise ValueError(f"SpyNet: num_levels must be an int >= 1, got {num_levels!r}")
        if not (isinstance(scale, (int, float)) and 0.0 < float(scale) <= 1.0):
            raise ValueError(f"SpyNet: scale must be in (0, 1], got {scale!r}")
        self.num_levels = num_levels
        self.scale = float(scale)
        self.basic_module = nn.ModuleList(SpyNetBasicModule() for _ in range(num_levels))
        # Constants, not weights: non-persistent so checkpoints hold only the conv weights,
        # exactly like the BasicSR/mmagic files.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if pretrained is not None:
            self.load_pretrained(pretrained)

    def internal_size(self, height: int, width: int) -> tuple[int, int]:
        """Size the flow is estimated at: (H, W) * scale rounded up to a multiple of 2**(L-1)."""
        multiple = 2 ** (self.num_levels - 1)
        return (
            max(1, math.ceil(height * self.scale / multiple)) * multiple,
            max(1, math.ceil(width * self.scale / multiple)) * multiple,
        )

    def forward(self, ref: Tensor, supp: Tensor) -> Tensor:
        """Flow (B, 2, H, W) in pixels with ``flow_warp(supp, flow) ≈ ref``."""
        height, width = ref.shape[2:] if isinstance(ref, Tensor) and ref.dim() == 4 else (0, 0)
        return resize_flow(self.pyramid_flows(ref, supp)[-1], (height, width))

    def pyramid_flows(self, ref: Tensor, supp: Tensor) -> list[Tensor]:
        """The flow after every level, coarsest first, at the internal resolutions
        (``internal_size`` halved ``num_levels - 1 - k`` times for level k), in the pixels of
        that level: what a multi-level loss supervises. The last one is ``forward``'s, before
        it is resized back to the input size."""
        for name, frame in (("ref", ref), ("supp", supp)):
            if not isinstance(frame, Tensor) or frame.dim() != 4 or frame.shape[1] != 3:
                shape = tuple(frame.shape) if isinstance(frame, Tensor) else type(frame).__name__
                raise ValueError(f"SpyNet: {name} must be a (B, 3, H, W) RGB tensor, got {shape}")
        if ref.shape != supp.shape:
            raise ValueError(
                f"SpyNet: ref {tuple(ref.shape)} and supp {tuple(supp.shape)} differ in shape"
            )
        height, width = ref.shape[2:]
        inner_h, inner_w = self.internal_size(height, width)
        if (inner_h, inner_w) != (height, width):
            # Antialiased when shrinking: it also averages out noise in degraded frames.
            shrinking = inner_h < height or inner_w < width
            pair = torch.cat((ref, supp), dim=0)
            pair = F.interpolate(
                pair,
                size=(inner_h, inner_w),
                mode="bilinear",
                align_corners=False,
                antialias=shrinking,
            )
            ref, supp = pair.chunk(2, dim=0)
        return self._pyramid_flows(ref, supp)

    def _pyramid_flows(self, ref: Tensor, supp: Tensor) -> list[Tensor]:
        """Coarse-to-fine recursion on frames whose size is a multiple of 2**(num_levels-1)."""
        refs = [(ref - self.mean) / self.std]
        supps = [(supp - self.mean) / self.std]
        for _ in range(self.num_levels - 1):
            refs.append(F.avg_pool2d(refs[-1], kernel_size=2, stride=2))
            supps.append(F.avg_pool2d(supps[-1], kernel_size=2, stride=2))
        coarse = refs[-1]
        flow = coarse.new_zeros(coarse.shape[0], 2, coarse.shape[2], coarse.shape[3])
        flows = []
        for level, module in enumerate(self.basic_module):
            ref_k, supp_k = refs[-1 - level], supps[-1 - level]
            if level > 0:
                # u(V): same corner-aligned upsampling as the BasicSR/mmagic weights expect.
                flow = 2.0 * F.interpolate(
                    flow, scale_factor=2, mode="bilinear", align_corners=True
                )
            warped = flow_warp(supp_k, flow, padding_mode="border")
            flow = flow + module(torch.cat((ref_k, warped, flow), dim=1))
            flows.append(flow)
        return flows

    def load_pretrained(self, path: str | Path) -> None:
        """Load the SPyNet weights of a local checkpoint, strictly: the one route for flow weights.

        Reads BasicSR and mmagic SPyNet files and this project's flow pre-training and
        restoration checkpoints (see ``spynet_state_from_checkpoint``); keys are remapped to ours
        (``basic_module.{k}.basic_module.{0,2,4,6,8}.{weight,bias}``). A file that is not such a
        checkpoint raises an error naming the file and the missing/unexpected keys.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"SpyNet.load_pretrained: no checkpoint file at {path}")
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # pickle/zip errors have many types; re-raise with the file
            raise ValueError(
                f"SpyNet.load_pretrained: cannot read {path} as a torch checkpoint: {error}"
            ) from error
        state = spynet_state_from_checkpoint(checkpoint, source=str(path))
        own_keys = set(self.state_dict())
        missing = sorted(own_keys - set(state))
        unexpected = sorted(set(state) - own_keys)
        if missing or unexpected:
            raise ValueError(
                f"SpyNet.load_pretrained: {path} does not match a {self.num_levels}-level SpyNet; "
                f"missing keys: {_key_list(missing)}; unexpected keys: {_key_list(unexpected)}"
            )
        try:
            self.load_state_dict(state, strict=True)
        except RuntimeError as error:  # shape mismatches
            raise ValueError(f"SpyNet.load_pretrained: {path}: {error}") from error


def spynet_state_from_checkpoint(checkpoint: object, source: str = "checkpoint") -> dict:
    """Turn a checkpoint object holding a SPyNet into our state-dict key names.

    BasicSR: ``{"params": {"basic_module.0.basic_module.0.weight": ...}}`` (same names as ours).
    mmagic:  ``{"state_dict": {"basic_module.0.basic_module.0.conv.weight": ...}}`` (ConvModules
    numbered 0..4). This project's Lightning checkpoints: ``{"state_dict": {"flow.basic_module..."
    or "net.flow.basic_module...": ...}}``. Whatever prefix a full model puts before the SPyNet
    keys is removed; a bare state dict of either naming is accepted too.
    """
    if not isinstance(checkpoint, Mapping):
        raise ValueError(
            f"SpyNet checkpoint {source} must be a dict of tensors (optionally under 'params', "
            f"'params_ema' or 'state_dict'), got {type(checkpoint).__name__}"
        )
    for wrapper in ("params", "params_ema", "state_dict"):
        if wrapper in checkpoint and isinstance(checkpoint[wrapper], Mapping):
            checkpoint = checkpoint[wrapper]
            break
    state = {key: value for key, value in checkpoint.items() if isinstance(key, str)}
    # A full-model checkpoint: keep only the SPyNet part, found by the shape of its keys
    # (``flow.``, ``net.flow.``, ``generator.spynet.``, ... prefixes alike).
    prefixes = {m.group(1) for m in map(_SPYNET_KEY.match, state) if m is not None}
    if len(prefixes) > 1:
        raise ValueError(
            f"SpyNet checkpoint {source}: holds several SPyNets (prefixes {sorted(prefixes)})"
        )
    if prefixes and (prefix := prefixes.pop()):
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    remapped = {}
    for key, value in state.items():
        if key in _CONSTANT_BUFFERS and _is_constant(value, _CONSTANT_BUFFERS[key]):
            continue  # mmagic/BasicSR model dumps may carry the ImageNet mean/std buffers

        match = _MMAGIC_KEY.match(key)
        if match is not None:
            level, conv_index, kind = match.groups()
            if int(conv_index) < len(_CONV_SEQ_INDICES):
                key = (
                    f"basic_module.{level}.basic_module.{_CONV_SEQ_INDICES[int(conv_index)]}.{kind}"
                )
        remapped[key] = value
    non_tensors = sorted(k for k, v in remapped.items() if not isinstance(v, Tensor))
    if non_tensors:
        raise ValueError(f"SpyNet checkpoint {source}: entries are not tensors: {non_tensors}")
    return remapped


def _is_constant(value: object, expected: tuple[float, ...]) -> bool:
    return (
        isinstance(value, Tensor)
        and value.numel() == len(expected)
        and torch.allclose(value.detach().float().flatten().cpu(), torch.tensor(expected))
    )


def _key_list(keys: list[str], limit: int = 12) -> str:
    """At most ``limit`` key names, then how many more; 'none' for an empty list."""
    if not keys:
        return "none"
    shown = ", ".join(keys[:limit])
    return shown if len(keys) <= limit else f"{shown}, ... ({len(keys) - limit} more)"
