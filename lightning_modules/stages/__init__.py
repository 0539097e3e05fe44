"""Model stages: plain ``nn.Module``s, one job per file (docs/ARCHITECTURE.md)."""

from lightning_modules.stages.alignment import MultiScaleAlignment
from lightning_modules.stages.attention import ConcatFusion, TemporalAttentionFusion
from lightning_modules.stages.bounds import LowerBound, NonNegativeParametrizer, lower_bound
from lightning_modules.stages.codec import CodecOutput, FeatureCodec
from lightning_modules.stages.entropy_models import (
    FactorizedDensity,
    GaussianConditional,
    LaplaceConditional,
)
from lightning_modules.stages.gdn import GDN
from lightning_modules.stages.mv_refine import MotionRefinement
from lightning_modules.stages.network import NetworkOutput, VideoRestorationNet
from lightning_modules.stages.quantizers import (
    AdaptiveQuantizer,
    ChannelQuantizer,
    FixedQuantizer,
    NoQuantizer,
    build_quantizer,
)
from lightning_modules.stages.restoration import ChannelAttentionBlock, RestorationUNet
from lightning_modules.stages.spynet import SpyNet
from lightning_modules.stages.warp import flow_warp, resize_flow

__all__ = [
    "GDN",
    "AdaptiveQuantizer",
    "ChannelAttentionBlock",
    "ChannelQuantizer",
    "CodecOutput",
    "ConcatFusion",
    "FactorizedDensity",
    "FeatureCodec",
    "FixedQuantizer",
    "GaussianConditional",
    "LaplaceConditional",
    "LowerBound",
    "MotionRefinement",
    "MultiScaleAlignment",
    "NetworkOutput",
    "NoQuantizer",
    "NonNegativeParametrizer",
    "RestorationUNet",
    "SpyNet",
    "TemporalAttentionFusion",
    "VideoRestorationNet",
    "build_quantizer",
    "flow_warp",
    "lower_bound",
    "resize_flow",
]
