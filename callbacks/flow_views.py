"""FlowViews: log the estimated flow before and after motion-vector refinement as colours."""

import torch

from callbacks.flow_colors import flow_to_color
from callbacks.image_logging import ScheduledImageCallback, info_once
from callbacks.validation_visuals import ClipVisuals

FLOW_MAP_KEYS = ("flow", "flow_refined")


class FlowViews(ScheduledImageCallback):
    """Every ``every_n_epochs`` validation epochs, log ``flow`` and ``flow_refined`` images.

    Uses frame ``frame_index`` (default: the last) of the first validation clip. Both fields are
    coloured with the Middlebury wheel on one common scale (the larger of their maximum
    magnitudes, or ``max_flow`` pixels when given), so their saturation is comparable; the
    refinement residual is logged as ``refinement`` on its own scale when both exist.
    """

    key = "val/flow"

    def __init__(
        self, every_n_epochs: int = 1, frame_index: int = -1, max_flow: float | None = None
    ) -> None:
        super().__init__(every_n_epochs)
        if max_flow is not None and max_flow <= 0:
            raise ValueError(f"FlowViews: max_flow must be > 0 or None, got {max_flow}")
        self.frame_index = frame_index
        self.max_flow = max_flow

    def make_images(self, visuals: ClipVisuals) -> dict[str, torch.Tensor]:
        maps = visuals.maps
        fields = {}
        if maps:
            frame_maps = maps[self.frame_index]
            fields = {key: frame_maps[key] for key in FLOW_MAP_KEYS if key in frame_maps}
        if not fields:
            info_once("FlowViews: the model's maps have no 'flow' / 'flow_refined'; skipped")
            return {}
        scale = self.max_flow
        if scale is None:
            largest = max(
                float(torch.nan_to_num(f.float()).norm(dim=0).max()) for f in fields.values()
            )
            scale = largest if largest > 0 else 1.0
        images = {key: flow_to_color(field, max_flow=scale) for key, field in fields.items()}
        if len(fields) == 2:
            images["refinement"] = flow_to_color(fields["flow_refined"] - fields["flow"])
        return images
