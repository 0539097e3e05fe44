"""CodecMaps: log the codec's learned step q, mean μ, scale σ and bits per latent position."""

import torch
import torch.nn.functional as F

from callbacks.image_logging import ScheduledImageCallback, info_once
from callbacks.validation_visuals import ClipVisuals

CODEC_MAP_KEYS = ("q", "mu", "sigma", "bits")

# Nine evenly spaced samples of matplotlib's viridis (RGB 0..255), linearly interpolated
# below. Hand-written because matplotlib is not a dependency of this project.
VIRIDIS_ANCHORS = (
    torch.tensor(
        [
            [68, 1, 84],
            [72, 40, 120],
            [62, 73, 137],
            [49, 104, 142],
            [38, 130, 142],
            [31, 158, 137],
            [53, 183, 121],
            [110, 206, 88],
            [253, 231, 37],
        ],
        dtype=torch.float32,
    )
    / 255.0
)


def viridis(values: torch.Tensor) -> torch.Tensor:
    """Map values in [0, 1] (any shape S) to viridis-like RGB (3, *S) in [0, 1].

    Values outside [0, 1] are clipped; NaN maps to 0 (dark purple).
    """
    v = torch.nan_to_num(values.float(), nan=0.0).clamp(0.0, 1.0) * (len(VIRIDIS_ANCHORS) - 1)
    low = v.floor().long().clamp(max=len(VIRIDIS_ANCHORS) - 2)
    frac = (v - low).unsqueeze(-1)
    rgb = VIRIDIS_ANCHORS[low] * (1 - frac) + VIRIDIS_ANCHORS[low + 1] * frac
    return rgb.movedim(-1, 0)


def colorize_map(latent_map: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(C, h, w) latent map -> (3, H, W) colour image of its channel mean.

    The mean is normalised between its 2nd and 98th percentiles and clipped (robust to the odd
    extreme position, which would otherwise flatten the rest of the map; non-finite values become
    0 first; a constant map is shown at the bottom of the scale), colour-mapped with ``viridis``
    and upsampled with nearest neighbours so each latent position stays a visible block.
    """
    if latent_map.dim() != 3:
        raise ValueError(f"colorize_map: expected a (C, h, w) map, got {tuple(latent_map.shape)}")
    mean = torch.nan_to_num(latent_map.float(), nan=0.0, posinf=0.0, neginf=0.0).mean(dim=0)
    low, high = torch.quantile(mean.flatten(), torch.tensor([0.02, 0.98]))
    if high > low:
        normalised = ((mean - low) / (high - low)).clamp(0.0, 1.0)
    else:
        normalised = torch.zeros_like(mean)
    image = viridis(normalised)
    return F.interpolate(image.unsqueeze(0), size=size, mode="nearest").squeeze(0)


class CodecMaps(ScheduledImageCallback):
    """Every ``every_n_epochs`` validation epochs, log ``q``, ``mu``, ``sigma``, ``bits`` maps.

    Maps come from the first validation clip's frame ``frame_index`` (default: the last one,
    whose temporal features are not the all-zero start state), are channel-averaged, robustly
    normalised per map (2nd-98th percentile), colour-mapped and upsampled to the frame size.
    Nets without a codec (no ``q`` in their maps) are skipped with a rank-zero info message.
    """

    key = "val/codec_maps"

    def __init__(self, every_n_epochs: int = 1, frame_index: int = -1) -> None:
        super().__init__(every_n_epochs)
        self.frame_index = frame_index

    def make_images(self, visuals: ClipVisuals) -> dict[str, torch.Tensor]:
        maps = visuals.maps
        if not maps:
            info_once("CodecMaps: the network returned no maps; nothing logged")
            return {}
        frame_maps = maps[self.frame_index]
        if not all(key in frame_maps for key in CODEC_MAP_KEYS):
            info_once("CodecMaps: the network has no codec maps (q, mu, sigma, bits); skipped")
            return {}
        size = tuple(visuals.lq.shape[-2:])
        return {key: colorize_map(frame_maps[key], size) for key in CODEC_MAP_KEYS}
