"""``FlowPairsDataModule``: synthetic flow pairs for the supervised pre-training of the flow stage.

Training pairs (``SyntheticFlowPairs``) are rendered on the fly from ``seed`` with the
degradations of the data config applied to the inputs (noise levels on the 0-255 scale, as in
every data config); validation pairs come from ``val_seed`` (kept out of training) and the same
degradations, so ``val/epe`` measures flow on degraded frames. Textures: the bundled
photographs, or the frames of any scanner (``source``: a Hydra partial such as
``datamodules.datasets.davis.scan_davis``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from datamodules.degradations import build_degradation
from datamodules.flow_pairs import SyntheticFlowPairs
from datamodules.video_datamodule import seed_worker


class FlowPairsDataModule(pl.LightningDataModule):
    """Train/val loaders of synthetic flow pairs.

    Args:
        size: crop (H, W) of the rendered pairs (an int for a square).
        train_length, val_length: pairs per training epoch / in the validation set.
        degradations: name -> constructor arguments (as ``build_degradation`` takes them), one
            drawn per pair; empty or None for clean inputs.
        clean_prob: probability of an undegraded pair.
        source: texture source of ``SyntheticFlowPairs`` (None: bundled photographs).
        seed, val_seed: seeds of the training and validation pairs (keep them apart).
        batch_size, val_batch_size, num_workers, pin_memory: DataLoader settings.
        pairs: further ``SyntheticFlowPairs`` arguments (motion ranges, layers, jitter, ...).
    """

    def __init__(
        self,
        size: int | tuple[int, int] = 256,
        train_length: int = 8000,
        val_length: int = 64,
        degradations: Mapping[str, Mapping] | None = None,
        clean_prob: float = 0.2,
        source: Callable | list | None = None,
        seed: int = 0,
        val_seed: int = 1,
        batch_size: int = 8,
        val_batch_size: int = 8,
        num_workers: int = 0,
        pin_memory: bool = False,
        pairs: Mapping | None = None,
    ) -> None:
        super().__init__()
        if seed == val_seed:
            raise ValueError(
                f"FlowPairsDataModule: seed and val_seed must differ (got {seed} for both): "
                "validation pairs must not be training pairs"
            )
        for name, value in (("batch_size", batch_size), ("val_batch_size", val_batch_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"FlowPairsDataModule: {name} must be a positive int, got {value!r}"
                )
        self.size = size if isinstance(size, int) else tuple(int(v) for v in size)
        self.lengths = {"train": int(train_length), "val": int(val_length)}
        self.seeds = {"train": int(seed), "val": int(val_seed)}
        built = [build_degradation(n, **dict(k or {})) for n, k in (degradations or {}).items()]
        self.degradations = built or None
        self.clean_prob = float(clean_prob)
        self.source = source
        self.batch_sizes = {"train": batch_size, "val": val_batch_size}
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.pairs = dict(pairs or {})
        self.datasets: dict[str, SyntheticFlowPairs] = {}

    def setup(self, stage: str | None = None) -> None:
        for split in ("train", "val"):
            if split not in self.datasets:
                self.datasets[split] = SyntheticFlowPairs(
                    size=self.size,
                    length=self.lengths[split],
                    seed=self.seeds[split],
                    source=self.source,
                    degradations=self.degradations,
                    clean_prob=self.clean_prob,
                    **self.pairs,
                )

    def _loader(self, split: str) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError(f"FlowPairsDataModule: no {split} dataset; call setup() first")
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_sizes[split],
            shuffle=split == "train",
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=seed_worker,
            generator=torch.Generator().manual_seed(self.seeds[split]),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")
