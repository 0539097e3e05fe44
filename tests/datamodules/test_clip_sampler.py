"""ClipSampler and ``data.clips_per_epoch``: epoch length independent of the number of
sequences; training clips a function of (seed, epoch, position) only (workers, ranks, resume)."""

from __future__ import annotations

from collections import Counter
from functools import partial

import pytest
import torch

from datamodules.clip_sampler import ClipSampler
from datamodules.sample import scan_sample
from datamodules.video_datamodule import VideoDataModule


def _datamodule(**overrides) -> VideoDataModule:
    small = partial(scan_sample, num_frames=5, size=(24, 32))
    args = {
        "train_sequences": partial(small, "train", num_sequences=3),  # 3 sequences x 3 windows
        "val_sequences": None,
        "clip_len": 3,
        "patch_size": 16,
        "batch_size": 4,
        "clips_per_epoch": 20,
        "temporal_strides": (1,),
    }
    datamodule = VideoDataModule(**{**args, **overrides})
    datamodule.setup("fit")
    return datamodule


def _epoch(loader, epoch: int) -> list[dict]:
    loader.sampler.set_epoch(epoch)
    return list(loader)


def _same_batches(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(
        x["name"] == y["name"]
        and torch.equal(x["frame_idx"], y["frame_idx"])
        and torch.equal(x["lq"], y["lq"])
        for x, y in zip(a, b)
    )


def test_a_three_sequence_set_gets_clips_per_epoch_clips():
    datamodule = _datamodule()
    assert len(datamodule.datasets["train"]) == 9  # what an epoch was before: 9 clips
    batches = _epoch(datamodule.train_dataloader(), 0)
    assert [len(b["name"]) for b in batches] == [4, 4, 4, 4, 4]
    assert len({n for b in batches for n in b["name"]}) == 3  # every sequence is drawn
    assert len(_epoch(_datamodule(clips_per_epoch=None).train_dataloader(), 0)) == 3  # 9 clips


def test_each_pass_over_the_windows_sees_every_window_once():
    sampler = ClipSampler(9, clips_per_epoch=18, seed=1)
    counts = Counter(index for index, _ in sampler)
    assert counts == {i: 2 for i in range(9)}
    assert len({seed for _, seed in sampler}) == 18  # each slot its own crop / noise


def test_clips_repeat_per_seed_and_epoch_and_change_across_epochs():
    first, again = _datamodule().train_dataloader(), _datamodule().train_dataloader()
    assert _same_batches(_epoch(first, 0), _epoch(again, 0))
    assert _same_batches(_epoch(first, 1), _epoch(again, 1))
    assert not _same_batches(_epoch(first, 0), _epoch(first, 1))
    other_seed = _datamodule(seed=5).train_dataloader()
    assert not _same_batches(_epoch(first, 0), _epoch(other_seed, 0))


def test_worker_processes_give_the_same_clips():
    alone = _epoch(_datamodule().train_dataloader(), 1)
    loader = _datamodule(num_workers=2).train_dataloader()
    assert loader.persistent_workers
    assert _same_batches(_epoch(loader, 1), alone)


def test_ranks_split_an_epoch_into_disjoint_slots():
    full = ClipSampler(9, clips_per_epoch=10, seed=3).epoch_keys(4)
    ranks = [ClipSampler(9, clips_per_epoch=10, seed=3, num_replicas=2, rank=r) for r in (0, 1)]
    for sampler in ranks:
        sampler.set_epoch(4)
    keys = [list(s) for s in ranks]
    assert len(keys[0]) == len(keys[1]) == len(ranks[0]) == 5
    assert sorted(keys[0] + keys[1]) == sorted(full)
    assert not set(k[1] for k in keys[0]) & set(k[1] for k in keys[1])


def test_a_resumed_fit_continues_with_the_clips_it_had_not_trained_on():
    uninterrupted = _epoch(_datamodule().train_dataloader(), 1)
    resumed = _datamodule()
    resumed.load_state_dict({"train_epoch": 1, "train_batches_done": 2})  # as a checkpoint has it
    loader = resumed.train_dataloader()
    assert _same_batches(list(loader), uninterrupted[2:])
    assert _same_batches(_epoch(loader, 2), _epoch(_datamodule().train_dataloader(), 2))
    # saved at the end of epoch 1: the resumed fit starts epoch 2 from its first clip
    at_end = _datamodule()
    at_end.load_state_dict({"train_epoch": 1, "train_batches_done": 5})
    assert _same_batches(
        list(at_end.train_dataloader()), _epoch(_datamodule().train_dataloader(), 2)
    )


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_clips_per_epoch_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match=r"clips_per_epoch \(data.clips_per_epoch\)"):
        VideoDataModule(train_sequences=None, clips_per_epoch=bad)
    with pytest.raises(ValueError, match=r"data.clips_per_epoch"):
        ClipSampler(4, clips_per_epoch=bad)
