"""A test-only callback that records what each DDP rank saw (used by ``tests/test_ddp.py``).

Passed to a real ``train.py`` run as ``+callbacks.rank_probe._target_=tests.rank_probe.RankProbe``
with ``+callbacks.rank_probe.out_dir=<folder>``. Each rank writes ``rank<k>.json`` into
``out_dir`` when fitting ends: the training and validation clips it was given (sequence name and
first frame index) and the value of every epoch metric after Lightning's reduction
(``trainer.callback_metrics``), plus the world size it ran in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytorch_lightning as pl


def _clips(batch: dict[str, Any]) -> list[list]:
    """(sequence name, first frame index) of every clip of a batch (reversal-proof)."""
    names = batch["name"]
    starts = batch["frame_idx"].min(dim=1).values.tolist()
    return [[str(name), int(start)] for name, start in zip(names, starts)]


class RankProbe(pl.Callback):
    """Write ``<out_dir>/rank<global rank>.json`` with the clips and synced metrics a rank saw."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.train_clips: list[list] = []
        self.val_clips: list[list] = []
        self.val_metrics: list[dict[str, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.train_clips += _clips(batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            self.val_clips += _clips(batch)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            metrics = trainer.callback_metrics
            self.val_metrics.append(
                {k: float(v) for k, v in metrics.items() if k.startswith("val/")}
            )

    def on_fit_end(self, trainer, pl_module) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "world_size": trainer.world_size,
            "global_rank": trainer.global_rank,
            "train_clips": self.train_clips,
            "val_clips": self.val_clips,
            "val_metrics": self.val_metrics,
        }
        path = self.out_dir / f"rank{trainer.global_rank}.json"
        path.write_text(json.dumps(record, indent=1))
