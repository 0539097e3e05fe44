"""RestorationStrips: log degraded | restored | clean strips of the first validation clip."""

import torch

from callbacks.image_logging import ScheduledImageCallback, info_once
from callbacks.validation_visuals import ClipVisuals


class RestorationStrips(ScheduledImageCallback):
    """Every ``every_n_epochs`` validation epochs, log one image ``strip`` under ``val/strips``.

    Rows are the first ``max_frames`` frames of the first validation clip; columns are the
    degraded input, the restored output and (when the set has it) the clean target, each clamped
    to [0, 1]. Drawn from ``clip_visuals`` at validation, so training is not slowed.
    """

    key = "val/strips"

    def __init__(self, every_n_epochs: int = 1, max_frames: int = 3) -> None:
        super().__init__(every_n_epochs)
        if not isinstance(max_frames, int) or max_frames < 1:
            raise ValueError(
                f"RestorationStrips: max_frames must be an int >= 1, got {max_frames!r}"
            )
        self.max_frames = max_frames

    def make_images(self, visuals: ClipVisuals) -> dict[str, torch.Tensor]:
        if visuals.restored is None:
            info_once("RestorationStrips: the model restores nothing (a flow task); skipped")
            return {}
        columns = [visuals.lq, visuals.restored]
        if visuals.gt is not None:
            columns.append(visuals.gt)
        frames = min(self.max_frames, columns[0].shape[0])
        # (T, 3, H, W) per column -> rows of frames side by side -> (3, frames·H, columns·W)
        rows = [torch.cat([c[t].clamp(0, 1) for c in columns], dim=-1) for t in range(frames)]
        return {"strip": torch.nan_to_num(torch.cat(rows, dim=-2))}
