"""Per-frame PSNR / SSIM for clips, in RGB or BT.601 studio-range Y, with synced averaging.

Conventions (those of the video restoration papers):
- Both clips are clamped to [0, 1] before measuring: the network output is what would be
  written to an 8-bit file, and noisy inputs may leave [0, 1].
- ``crop_border`` pixels are dropped at each side before measuring.
- PSNR/SSIM are computed per frame (data_range = 1); clip values are frame averages and data set
  values are averages over clips (per frame, then per sequence).
"""

import torch
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

METRIC_SPACES = ("rgb", "y")


def rgb_to_y_bt601(rgb: torch.Tensor) -> torch.Tensor:
    """Studio-range BT.601 luma of RGB in [0, 1]: ``(16 + 65.481 R + 128.553 G + 24.966 B) / 255``.

    (…, 3, H, W) -> (…, 1, H, W); white -> 235/255, black -> 16/255. Hand-written because
    ``kornia.color.rgb_to_y`` is full-range (JPEG) luma, while Y-PSNR in the deraining and
    super-resolution literature follows MATLAB's ``rgb2ycbcr`` (Y in [16, 235]).
    """
    if rgb.dim() < 3 or rgb.shape[-3] != 3:
        raise ValueError(f"rgb_to_y_bt601: expected (..., 3, H, W) RGB, got {tuple(rgb.shape)}")
    r, g, b = rgb.unbind(dim=-3)
    y = (16.0 + 65.481 * r + 128.553 * g + 24.966 * b) / 255.0
    return y.unsqueeze(-3)


def prepare_frames(
    clip: torch.Tensor, metric_space: str = "rgb", crop_border: int = 0
) -> torch.Tensor:
    """(B, T, 3, H, W) or (B, 3, H, W) -> (N, C, H', W') frames ready for the metrics.

    Clamps to [0, 1], crops ``crop_border`` pixels at each side, converts to Y when
    ``metric_space == "y"``. Returns float32.
    """
    if metric_space not in METRIC_SPACES:
        raise ValueError(f"metric_space must be one of {METRIC_SPACES}, got {metric_space!r}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if clip.dim() == 5:
        clip = clip.flatten(0, 1)
    if clip.dim() != 4 or clip.shape[1] != 3:
        raise ValueError(
            f"expected RGB frames (B, T, 3, H, W) or (B, 3, H, W), got {tuple(clip.shape)}"
        )
    h, w = clip.shape[-2:]
    if crop_border:
        if 2 * crop_border >= min(h, w):
            raise ValueError(f"crop_border={crop_border} leaves nothing of a {h}x{w} frame")
        clip = clip[..., crop_border : h - crop_border, crop_border : w - crop_border]
    frames = clip.float().clamp(0.0, 1.0)
    return rgb_to_y_bt601(frames) if metric_space == "y" else frames


def _prepared_clips(
    restored: torch.Tensor, target: torch.Tensor, metric_space: str, crop_border: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both clips checked and flattened to (B·T, C, h, w) frames in the metric space."""
    if restored.shape != target.shape:
        raise ValueError(
            f"restored {tuple(restored.shape)} and target {tuple(target.shape)} "
            f"must have the same shape"
        )
    if restored.dim() != 5:
        raise ValueError(f"expected clips (B, T, 3, H, W), got {tuple(restored.shape)}")
    with torch.no_grad():
        pred = prepare_frames(restored.detach(), metric_space, crop_border)
        ref = prepare_frames(target.detach(), metric_space, crop_border)
    return pred, ref


def _psnr(pred: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return peak_signal_noise_ratio(pred, ref, data_range=1.0, reduction="none", dim=(1, 2, 3))


def frame_psnr(
    restored: torch.Tensor,
    target: torch.Tensor,
    metric_space: str = "rgb",
    crop_border: int = 0,
) -> torch.Tensor:
    """Per-frame PSNR (dB) of clips (B, T, 3, H, W) -> (B, T), as ``frame_psnr_ssim`` computes
    it, without the SSIM (the training step logs PSNR only: SSIM's 11x11 Gaussian filtering
    cost 5-6% of a default CPU training step)."""
    pred, ref = _prepared_clips(restored, target, metric_space, crop_border)
    return _psnr(pred, ref).view(restored.shape[:2])


def frame_psnr_ssim(
    restored: torch.Tensor,
    target: torch.Tensor,
    metric_space: str = "rgb",
    crop_border: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame PSNR (dB) and SSIM of clips (B, T, 3, H, W) -> two (B, T) tensors.

    Uses torchmetrics' functional forms (PSNR over dims (1, 2, 3) of each frame, Gaussian SSIM
    with an 11-pixel window) with data_range 1. Identical frames give PSNR = inf.
    """
    pred, ref = _prepared_clips(restored, target, metric_space, crop_border)
    b, t = restored.shape[:2]
    with torch.no_grad():
        ssim = structural_similarity_index_measure(pred, ref, data_range=1.0, reduction="none")
    return _psnr(pred, ref).view(b, t), ssim.view(b, t)


class ClipQualityMetrics(nn.Module):
    """Running averages of PSNR and SSIM over clips, synced across processes.

    ``update(restored, target)`` measures every frame, averages per clip over the scored frames
    (all but ``edge_frames`` at each end of the clip), adds one value per clip to the ``psnr`` and
    ``ssim`` ``MeanMetric``s (so the epoch value is the mean over clips of per-frame means) and
    returns the per-frame (B, T) values of every frame for per-clip records. Log the
    ``psnr``/``ssim`` attributes with ``LightningModule.log`` so Lightning computes, syncs and
    resets them at epoch end.
    """

    def __init__(
        self, metric_space: str = "rgb", crop_border: int = 0, edge_frames: int = 0
    ) -> None:
        super().__init__()
        if metric_space not in METRIC_SPACES:
            raise ValueError(f"metric_space must be one of {METRIC_SPACES}, got {metric_space!r}")
        if crop_border < 0:
            raise ValueError(f"crop_border must be >= 0, got {crop_border}")
        if edge_frames < 0:
            raise ValueError(f"edge_frames must be >= 0, got {edge_frames}")
        self.metric_space = metric_space
        self.crop_border = crop_border
        self.edge_frames = edge_frames
        self.psnr = MeanMetric()
        self.ssim = MeanMetric()

    def update(
        self, restored: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        psnr, ssim = frame_psnr_ssim(restored, target, self.metric_space, self.crop_border)
        window = self.scored_frames(psnr.shape[1])
        self.psnr.update(psnr[:, window].mean(dim=1))
        self.ssim.update(ssim[:, window].mean(dim=1))
        return psnr, ssim

    def scored_frames(self, num_frames: int) -> slice:
        """The frames of a ``num_frames`` clip that count: all but ``edge_frames`` at each end."""
        if num_frames <= 2 * self.edge_frames:
            raise ValueError(
                f"edge_frames={self.edge_frames} leaves no frame of a {num_frames}-frame clip to "
                f"score; use clips longer than {2 * self.edge_frames} frames"
            )
        return slice(self.edge_frames, num_frames - self.edge_frames)

    def reset(self) -> None:
        self.psnr.reset()
        self.ssim.reset()
