"""Lightning callbacks: restoration strips, codec maps, flow views, the temporal gain, the
codec's purification ratio and step timing (they only read the model), and the weight EMA."""

from callbacks.codec_maps import CodecMaps
from callbacks.flow_views import FlowViews
from callbacks.image_logging import log_images
from callbacks.purification import Purification
from callbacks.restoration_strips import RestorationStrips
from callbacks.step_timing import StepTiming
from callbacks.temporal_gain import TemporalGain
from callbacks.weight_ema import WarmupEMA

__all__ = [
    "CodecMaps",
    "FlowViews",
    "Purification",
    "RestorationStrips",
    "StepTiming",
    "TemporalGain",
    "WarmupEMA",
    "log_images",
]
