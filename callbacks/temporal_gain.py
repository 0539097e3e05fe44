"""How much the recurrence helps: PSNR of the recurrent output minus PSNR of the same network
run with zero temporal state (each frame alone), in dB.

The paper's claim rests on temporal features carrying useful information through the codec. This
logs ``val/temporal_gain_db`` on the first validation batch every ``every_n_epochs`` epochs:

    gain = PSNR(net(clip)[1:], gt[1:]) − PSNR([net(clip[t:t+1]) for t ≥ 1], gt[1:])

over frames 2..T (frame 1 has no past in either run), in the task's metric space. A gain near 0
means the network ignores its temporal features (e.g. an untrained flow stage, or a codec whose
rate has collapsed). It costs T + 1 extra forward passes of one batch, only on its schedule.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from lightning_modules.tasks.metrics import frame_psnr_ssim
from lightning_modules.tasks.network_inputs import flow_inputs, network_inputs


class TemporalGain(pl.Callback):
    """Log ``val/temporal_gain_db`` (recurrent minus zero-state PSNR) every N validation epochs."""

    key = "val/temporal_gain_db"

    def __init__(self, every_n_epochs: int = 1) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"TemporalGain: every_n_epochs must be >= 1, got {every_n_epochs}")
        self.every_n_epochs = every_n_epochs

    def _due(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch_idx: int) -> bool:
        return (
            batch_idx == 0
            and not trainer.sanity_checking
            and trainer.current_epoch % self.every_n_epochs == 0
            and hasattr(pl_module, "net")  # restoration tasks only (not flow pre-training)
        )

    @torch.no_grad()
    def gain(self, net: torch.nn.Module, batch: dict[str, Any], metric_space: str) -> float | None:
        """The gain in dB on ``batch``, or None when it has no ``gt`` or fewer than 2 frames."""
        lq, sigma = network_inputs(batch, net)
        gt = batch.get("gt")
        if gt is None or lq.shape[1] < 2:
            return None
        recurrent = net(lq, sigma, **flow_inputs(batch, net)).restored[:, 1:]
        alone = torch.cat([net(lq[:, t : t + 1], sigma).restored for t in range(1, lq.shape[1])], 1)
        psnr_recurrent = frame_psnr_ssim(recurrent, gt[:, 1:], metric_space)[0].mean()
        psnr_alone = frame_psnr_ssim(alone, gt[:, 1:], metric_space)[0].mean()
        return float(psnr_recurrent - psnr_alone)

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: dict[str, Any],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if dataloader_idx != 0 or not self._due(trainer, pl_module, batch_idx):
            return
        metric_space = getattr(pl_module.hparams, "metric_space", "rgb")
        value = self.gain(pl_module.net, batch, metric_space)
        if value is not None:
            pl_module.log(
                self.key, value, on_step=False, on_epoch=True, batch_size=1, sync_dist=True
            )
