"""Lightning callbacks: image logging of restoration strips, codec maps and flow views."""

from callbacks.codec_maps import CodecMaps
from callbacks.flow_views import FlowViews
from callbacks.image_logging import log_images
from callbacks.restoration_strips import RestorationStrips

__all__ = ["CodecMaps", "FlowViews", "RestorationStrips", "log_images"]
