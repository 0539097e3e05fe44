"""Multi-scale alignment: warp the previous step's features onto the current frame.

``MultiScaleAlignment(num_scales)(feats, flow)[s] = flow_warp(feats[s], v_s)`` where feats[s] is
(B, C_s, h_s, w_s) at scale 1/2**s of the flow's (H, W) (h_s = floor or ceil of H / 2**s, as
strided convs give) and v_s is the flow resampled to (h_s, w_s) with its vectors divided by
exactly 2**s (a feature pixel j at scale 1/2**s stands for input pixel 2**s j, also when the
size was ceil-rounded). ``mode``: grid_sample's interpolation, ``bilinear`` (default) or
``bicubic`` (sharper: a state carried over many frames is resampled at every step, and bilinear
sampling low-passes it each time). No learnable parameters.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from lightning_modules.stages.warp import flow_warp, resize_flow

# nearest is left out: it passes no gradient to the flow (motion refinement learns through it)
ALIGNMENT_MODES = ("bilinear", "bicubic")


class MultiScaleAlignment(nn.Module):
    """Warp a list of ``num_scales`` feature maps (scales 1, 1/2, 1/4, ...) by one flow field."""

    def __init__(self, num_scales: int = 3, mode: str = "bilinear"):
        super().__init__()
        if mode not in ALIGNMENT_MODES:
            raise ValueError(
                f"MultiScaleAlignment: mode must be one of {ALIGNMENT_MODES}, got {mode!r}"
            )
        self.mode = mode
        if not isinstance(num_scales, int) or num_scales < 1:
            raise ValueError(
                f"MultiScaleAlignment: num_scales must be a positive int, got {num_scales!r}"
            )
        self.num_scales = num_scales

    def forward(
        self, feats: list[Tensor], flow: Tensor, current: list[Tensor] | None = None
    ) -> list[Tensor]:
        """Aligned features, one per scale, each the shape of its input. ``current`` (the current
        frame's features, which a learned alignment conditions on) is not used here."""
        return self.warp(feats, self.scaled_flows(feats, flow))

    def warp(self, feats: list[Tensor], flows: list[Tensor]) -> list[Tensor]:
        """Each feature map warped by its scale's flow (``scaled_flows``)."""
        return [flow_warp(feat, f, mode=self.mode) for feat, f in zip(feats, flows)]

    def scaled_flows(self, feats: list[Tensor], flow: Tensor) -> list[Tensor]:
        """v_s per scale: ``flow`` resized to feats[s] with its vectors divided by 2**s; errors
        unless feats are ``num_scales`` maps at 1, 1/2, 1/4, ... of the flow's size."""
        if not isinstance(feats, (list, tuple)) or len(feats) != self.num_scales:
            got = len(feats) if isinstance(feats, (list, tuple)) else type(feats).__name__
            raise ValueError(
                f"MultiScaleAlignment: feats must be a list of {self.num_scales} tensors "
                f"(scales 1 .. 1/{2 ** (self.num_scales - 1)}), got {got}"
            )
        if not isinstance(flow, Tensor) or flow.dim() != 4:
            shape = tuple(flow.shape) if isinstance(flow, Tensor) else type(flow).__name__
            raise ValueError(f"MultiScaleAlignment: flow must be (B, 2, H, W), got {shape}")
        height, width = flow.shape[2:]
        flows = []
        for scale_index, feat in enumerate(feats):
            factor = 2**scale_index
            allowed_h = {height // factor, math.ceil(height / factor)}
            allowed_w = {width // factor, math.ceil(width / factor)}
            if (
                not isinstance(feat, Tensor)
                or feat.dim() != 4
                or feat.shape[2] not in allowed_h
                or feat.shape[3] not in allowed_w
            ):
                shape = tuple(feat.shape) if isinstance(feat, Tensor) else type(feat).__name__
                raise ValueError(
                    f"MultiScaleAlignment: feats[{scale_index}] must be (B, C, h, w) at 1/{factor} "
                    f"of the flow size {(height, width)}, i.e. h in {sorted(allowed_h)} and "
                    f"w in {sorted(allowed_w)}; got {shape}"
                )
            flows.append(
                resize_flow(flow, tuple(feat.shape[2:]), vector_scale=(1.0 / factor, 1.0 / factor))
            )
        return flows
