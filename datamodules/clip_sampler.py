"""``ClipSampler``: which training clips an epoch holds, as a function of (seed, epoch) alone.

- Epoch length is ``clips_per_epoch`` (None: one clip per window start of the dataset, i.e.
  ``len(dataset)``), whatever the number of sequences: a 3-sequence set can have 500 clips per
  epoch. The dataset's items (one per window start, over all sequences) are drawn as
  concatenated random permutations, so within a pass every window is seen once and every frame
  stays equally likely.
- Each key is ``(index, item_seed)`` with ``item_seed = derive_seed(seed, epoch, slot)``:
  ``ClipDataset`` draws the clip's stride, crop, flips and degradation from that, so clip
  ``slot`` of epoch ``e`` is the same in every run, process, worker count and after a resume.
- ``skip_next(n)`` drops the first ``n`` keys of the next pass (a fit resumed mid-epoch goes on
  with the clips it had not trained on).
- A ``DistributedSampler`` subclass: under DDP each rank takes every ``num_replicas``-th key, so
  ranks see different clips, and Lightning calls ``set_epoch`` on it instead of wrapping it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import DistributedSampler

from datamodules.clip_dataset import derive_seed


class ClipSampler(DistributedSampler):
    """Training keys ``(index, item_seed)`` for a dataset of ``num_items`` items (see above).

    Args:
        num_items: ``len(dataset)``.
        clips_per_epoch: keys per epoch over all ranks; None = ``num_items``.
        seed: base of the order and of every item seed.
        num_replicas, rank: DDP world size and this process's rank (1, 0 without DDP).
    """

    def __init__(
        self,
        num_items: int,
        clips_per_epoch: int | None = None,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if clips_per_epoch is not None and (
            isinstance(clips_per_epoch, bool)
            or not isinstance(clips_per_epoch, int)
            or clips_per_epoch < 1
        ):
            raise ValueError(
                f"ClipSampler: clips_per_epoch (data.clips_per_epoch) must be a positive int or "
                f"null, got {clips_per_epoch!r}"
            )
        if num_items < 1:
            raise ValueError(f"ClipSampler: the dataset is empty (num_items={num_items})")
        super().__init__(
            range(num_items), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed
        )
        self.num_items = num_items
        self.clips_per_epoch = clips_per_epoch or num_items
        self.num_samples = math.ceil(self.clips_per_epoch / num_replicas)
        self.total_size = self.num_samples * num_replicas
        self._skip = 0

    def epoch_keys(self, epoch: int) -> list[tuple[int, int]]:
        """All ``total_size`` keys of ``epoch`` (every rank's), in slot order."""
        generator = torch.Generator().manual_seed(derive_seed(self.seed, "order", epoch))
        order: list[int] = []
        while len(order) < self.total_size:
            order += torch.randperm(self.num_items, generator=generator).tolist()
        return [
            (order[slot], derive_seed(self.seed, "item", epoch, slot))
            for slot in range(self.total_size)
        ]

    def skip_next(self, count: int) -> None:
        """Leave out the first ``count`` keys of this rank in the next pass only."""
        self._skip = max(0, int(count))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        keys = self.epoch_keys(self.epoch)[self.rank : self.total_size : self.num_replicas]
        skip, self._skip = self._skip, 0
        return iter(keys[skip:])

    def __len__(self) -> int:
        return self.num_samples
