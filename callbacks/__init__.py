"""Lightning callbacks: image logging of restoration strips, codec maps and flow views."""

from callbacks.codec_maps import CodecMaps
from callbacks.flow_views import FlowViews
from callbacks.image_logging import log_images
from callbacks.restoration_strips import RestorationStrips
from callbacks.temporal_gain import TemporalGain

__all__ = ["CodecMaps", "FlowViews", "RestorationStrips", "TemporalGain", "log_images"]
