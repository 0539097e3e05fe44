"""Lightning callbacks (they only read the model): restoration strips, codec maps, flow views,
the temporal gain, the codec's purification ratio and step timing."""

from callbacks.codec_maps import CodecMaps
from callbacks.flow_views import FlowViews
from callbacks.image_logging import log_images
from callbacks.purification import Purification
from callbacks.restoration_strips import RestorationStrips
from callbacks.step_timing import StepTiming
from callbacks.temporal_gain import TemporalGain

__all__ = [
    "CodecMaps",
    "FlowViews",
    "Purification",
    "RestorationStrips",
    "StepTiming",
    "TemporalGain",
    "log_images",
]
