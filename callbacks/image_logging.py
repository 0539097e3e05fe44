"""Send images to whatever loggers the trainer has, and the base of the image callbacks.

``log_images`` handles WandbLogger (``log_image``), TensorBoardLogger (``add_image``) and
CSVLogger (PNG files under ``<log_dir>/images/<key>/``), in any mix, on rank zero only; other
loggers are skipped with a one-time info message.

``ScheduledImageCallback`` runs the model on the first clip of the first validation batch
(``validation_visuals.clip_visuals``, shared by all image callbacks) only on the epochs its
schedule selects, and logs the images its subclass draws from it. It only reads the model: no
image work touches training steps, and the tasks know nothing of images.
"""

from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from pytorch_lightning.utilities import rank_zero_info, rank_zero_only

from callbacks.validation_visuals import ClipVisuals, clip_visuals

_warned: set[str] = set()


def info_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        rank_zero_info(message)


def to_uint8_hwc(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """An image as a (H, W, 3) uint8 array.

    Accepts (H, W), (H, W, C) or (C, H, W) with C in {1, 3}, as a tensor or array. Float input is
    read as [0, 1] (clipped, NaN -> 0); integer input must already be 0..255.
    """
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ValueError(f"image must be (H, W), (H, W, C) or (C, H, W), got {array.shape}")
    if array.shape[0] in (1, 3) and array.shape[2] not in (1, 3):
        array = np.transpose(array, (1, 2, 0))
    if array.shape[2] not in (1, 3):
        raise ValueError(f"image must have 1 or 3 channels, got shape {array.shape}")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if np.issubdtype(array.dtype, np.floating):
        array = np.nan_to_num(array.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        array = np.round(np.clip(array, 0.0, 1.0) * 255.0)
    elif array.min(initial=0) < 0 or array.max(initial=0) > 255:
        raise ValueError("integer images must be in 0..255")
    return np.ascontiguousarray(array.astype(np.uint8))


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


@rank_zero_only
def log_images(
    trainer: pl.Trainer,
    key: str,
    images: dict[str, np.ndarray | torch.Tensor],
    step: int,
) -> None:
    """Log named images under ``key`` at ``step`` to every logger of ``trainer`` (rank zero).

    WandbLogger: one ``log_image`` call with captions; TensorBoardLogger: ``add_image`` per image
    as ``key/name``; CSVLogger: ``<log_dir>/images/<key>/<name>_step<step>.png``.
    """
    if not images:
        return
    names = list(images)
    arrays = [to_uint8_hwc(images[name]) for name in names]
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=arrays, step=step, caption=names)
        elif isinstance(logger, TensorBoardLogger):
            for name, array in zip(names, arrays):
                logger.experiment.add_image(
                    f"{key}/{name}", array, global_step=step, dataformats="HWC"
                )
        elif isinstance(logger, CSVLogger):
            folder = Path(logger.log_dir, "images", *[_safe_name(p) for p in key.split("/")])
            folder.mkdir(parents=True, exist_ok=True)
            for name, array in zip(names, arrays):
                Image.fromarray(array).save(folder / f"{_safe_name(name)}_step{step:07d}.png")
        else:
            info_once(f"log_images: {type(logger).__name__} cannot receive images; skipped")


class ScheduledImageCallback(pl.Callback):
    """Base: every ``every_n_epochs`` validation epochs, draw and log images of the first clip.

    Subclasses set ``key`` and implement ``make_images(visuals: ClipVisuals) -> dict`` (an
    empty dict logs nothing). Sanity-check validation is skipped.
    """

    key = "val/images"

    def __init__(self, every_n_epochs: int = 1) -> None:
        super().__init__()
        if not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise ValueError(
                f"{type(self).__name__}: every_n_epochs must be an int >= 1, got {every_n_epochs!r}"
            )
        self.every_n_epochs = every_n_epochs

    def is_due(self, trainer: pl.Trainer) -> bool:
        return not trainer.sanity_checking and trainer.current_epoch % self.every_n_epochs == 0

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: dict[str, Any],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx != 0 or dataloader_idx != 0 or not self.is_due(trainer):
            return
        if not trainer.is_global_zero:  # only rank zero logs images: spare the others the forward
            return
        visuals = clip_visuals(pl_module, batch)
        if visuals is None:
            info_once(
                f"{type(self).__name__}: {type(pl_module).__name__} has no net or flow to draw"
            )
            return
        images = self.make_images(visuals)
        if images:
            log_images(trainer, self.key, images, step=trainer.global_step)

    def make_images(self, visuals: ClipVisuals) -> dict[str, np.ndarray | torch.Tensor]:
        raise NotImplementedError
