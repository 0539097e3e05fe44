"""``VideoDataModule``: the one LightningDataModule behind every ``conf/data/*.yaml``.

A data config names scanners (callables returning ``list[Sequence]``, usually Hydra
``_partial_`` targets such as ``datamodules.datasets.set8.scan_set8``) for each split, the task,
and the degradation synthesized on clean frames. The scanners run in ``setup()``, so a missing
dataset fails there with the scanner's own error; clips come from ``ClipDataset``.

Protocol (DATASETS.md §7): training clips get the degradation with random parameters (noise:
σ ~ U[sigma_range]/255 per clip); validation uses σ = ``val_sigma`` and test each σ of
``test_sigmas`` with noise seeded per item, when ``degradation == "noise"``. Other degradations
are seeded per item at val/test too, so every evaluation sees the same data. Noise levels are on
the 0-255 scale here, as in the data configs; the degradations are built here, once, in [0, 1]
units (``sigma_from_255``), and handed to the datasets.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Subset

from datamodules.clip_dataset import ClipDataset, derive_seed
from datamodules.clip_sampler import ClipSampler
from datamodules.degradations import (
    DEGRADATIONS,
    TASK_OF_DEGRADATION,
    build_degradation,
)
from datamodules.sequence import Sequence

TASKS = ("denoise", "derain", "dehaze")
METRIC_SPACES = ("rgb", "y")

SequenceSource = Callable[[], list[Sequence]] | list[Sequence] | None


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed numpy and ``random`` from the worker's torch seed
    (PyTorch already seeds torch per worker from the loader's generator), so any library
    drawing from them in a worker repeats too."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class VideoDataModule(pl.LightningDataModule):
    """Train/val/test clip loaders over scanned sequences.

    Args:
        train_sequences, val_sequences, test_sequences: callables returning ``list[Sequence]``
            (Hydra partials of the scanners), a list directly, or None when the split is absent.
        task: "denoise" | "derain" | "dehaze"; None = derived from ``degradation``. A synthetic
            degradation must match it (noise: denoise, rain: derain, haze: dehaze).
        metric_space: "rgb" | "y", the evaluation convention of the dataset.
        metric_edge_frames: frames at each end of a test sequence left out of its scores (the
            dataset's convention, e.g. 2 for NTURain as S2VD reports; 0 scores every frame).
        degradation: "noise" | "rain" | "haze" | "none", synthesized on clean frames of
            sequences without provided degraded frames.
        degradation_kwargs: constructor arguments of the degradation (e.g. ``sigma_range``).
        clip_len, val_clip_len, test_clip_len: frames per clip; -1 = whole sequence (val/test).
        patch_size: training crop (int or (h, w)); None = full frame.
        val_patch_size, test_patch_size: centre crop at val/test; None = full frame.
        batch_size: training clips per batch; val_batch_size: for validation and test.
        clips_per_epoch: training clips per epoch (over all DDP ranks), drawn from every window
            of every sequence (``ClipSampler``), so epoch length does not depend on how few
            sequences a set has; None = one clip per window start. Training clips are a function
            of (``seed``, the run's torch seed, epoch, position): a fit resumed mid-epoch from
            ``last.ckpt`` continues with exactly the clips it had not trained on.
        num_workers: DataLoader workers (persistent when > 0); pin_memory: DataLoader pinning.
        test_sigmas: test noise levels (0-255 units), one item per (clip, σ), noise only.
        val_sigma: validation noise level (0-255 units), noise only.
        seed: base seed of all clip sampling and degradations.
        skip_bad: skip short sequences and unreadable clips (logged) instead of raising.
        max_val_clips: keep at most this many validation clips, evenly spaced; None = all.
        temporal_strides, reverse_prob, flip, vflip, transpose, static_prob, static_pan:
            training augmentation (see ``ClipDataset``).
        degrade_paired: also degrade the provided LQ frames of paired sequences.
        flow_estimator: a flow stage without weights (e.g. the model's DIS stage,
            ``data.flow_estimator=${model.flow}``): training and validation clips then carry
            flow estimated on the crop grown by ``flow_margin`` pixels (``ClipDataset``), which
            the network uses instead of estimating it on the bare crop. Test clips do not (the
            network sees full frames there). None: the network estimates flow on its input.
        flow_margin: context around the crop for ``flow_estimator`` (None: the whole frame).
        clean_flow_prob: probability that ``flow_estimator`` sees a training clip's clean frames
            (``ClipDataset``); validation clips always use the degraded frames.
        root, train_list, test_list: anchors of a data config: the dataset folder and list
            files, written once at the top of the yaml and interpolated into the scanner
            partials (``root: ${..root}``). The scanners do the reading; the datamodule keeps
            them for messages only. Explicit (not ``**kwargs``) so a misspelt key stays an error.
    """

    def __init__(
        self,
        train_sequences: SequenceSource = None,
        val_sequences: SequenceSource = None,
        test_sequences: SequenceSource = None,
        task: str | None = None,
        metric_space: str = "rgb",
        metric_edge_frames: int = 0,
        degradation: str = "noise",
        degradation_kwargs: dict | None = None,
        clip_len: int = 7,
        val_clip_len: int = -1,
        test_clip_len: int = -1,
        patch_size: int | tuple[int, int] | None = 128,
        val_patch_size: int | tuple[int, int] | None = None,
        test_patch_size: int | tuple[int, int] | None = None,
        batch_size: int = 8,
        val_batch_size: int = 1,
        num_workers: int = 0,
        test_sigmas: list[float] | None = (10, 20, 30, 40, 50),
        val_sigma: float | None = 25.0,
        seed: int = 0,
        skip_bad: bool = False,
        max_val_clips: int | None = None,
        pin_memory: bool = False,
        temporal_strides: tuple[int, ...] = (1,),
        reverse_prob: float = 0.5,
        flip: bool = True,
        vflip: bool = False,
        transpose: bool = False,
        static_prob: float = 0.0,
        static_pan: int = 0,
        degrade_paired: bool = False,
        root: str | None = None,
        train_list: str | None = None,
        test_list: str | None = None,
        clips_per_epoch: int | None = None,
        flow_estimator=None,
        flow_margin: int | None = 64,
        clean_flow_prob: float = 0.0,
    ) -> None:
        super().__init__()
        self.root, self.train_list, self.test_list = root, train_list, test_list
        if degradation not in DEGRADATIONS:
            raise ValueError(
                f"VideoDataModule: degradation must be one of {', '.join(DEGRADATIONS)}, "
                f"got {degradation!r}"
            )
        if task is None:
            if degradation not in TASK_OF_DEGRADATION:
                raise ValueError(
                    f"VideoDataModule: task must be given (one of {', '.join(TASKS)}) when "
                    f"degradation is {degradation!r}"
                )
            task = TASK_OF_DEGRADATION[degradation]
        if task not in TASKS:
            raise ValueError(
                f"VideoDataModule: task must be one of {', '.join(TASKS)}, got {task!r}"
            )
        implied = TASK_OF_DEGRADATION.get(degradation, task)
        if implied != task:
            raise ValueError(
                f"VideoDataModule: degradation {degradation!r} makes a {implied} set but task is "
                f"{task!r}; set task={implied} too (data.task={implied})"
            )
        if metric_space not in METRIC_SPACES:
            raise ValueError(
                f"VideoDataModule: metric_space must be one of {', '.join(METRIC_SPACES)}, "
                f"got {metric_space!r}"
            )
        for name, value in (("batch_size", batch_size), ("val_batch_size", val_batch_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"VideoDataModule: {name} must be a positive int, got {value!r}")
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(
                f"VideoDataModule: num_workers must be an int >= 0, got {num_workers!r}"
            )
        if max_val_clips is not None and (not isinstance(max_val_clips, int) or max_val_clips < 1):
            raise ValueError(
                f"VideoDataModule: max_val_clips must be a positive int or None, "
                f"got {max_val_clips!r}"
            )
        self.sources = {"train": train_sequences, "val": val_sequences, "test": test_sequences}
        self.task = task
        self.metric_space = metric_space
        if metric_edge_frames < 0:
            raise ValueError(
                f"VideoDataModule: metric_edge_frames must be >= 0, got {metric_edge_frames}"
            )
        self.metric_edge_frames = int(metric_edge_frames)
        self.degradation_name = degradation
        self.degradation = build_degradation(degradation, **dict(degradation_kwargs or {}))
        self.clip_lens = {"train": clip_len, "val": val_clip_len, "test": test_clip_len}
        self.patch_sizes = {
            "train": _size(patch_size),
            "val": _size(val_patch_size),
            "test": _size(test_patch_size),
        }
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size
        self.num_workers = num_workers
        self.pin_memory = bool(pin_memory)
        self.eval_degradations = {
            "val": self._fixed_noise(None if val_sigma is None else [val_sigma]),
            "test": self._fixed_noise(test_sigmas),
        }
        self.seed = int(seed)
        self.skip_bad = bool(skip_bad)
        self.max_val_clips = max_val_clips
        self.augment = {
            "temporal_strides": tuple(int(s) for s in temporal_strides),
            "reverse_prob": float(reverse_prob),
            "flip": bool(flip),
            "vflip": bool(vflip),
            "transpose": bool(transpose),
            "static_prob": float(static_prob),
            "static_pan": static_pan,
        }
        self.degrade_paired = bool(degrade_paired)
        self.flow_estimator = flow_estimator
        self.flow_margin = flow_margin
        self.clean_flow_prob = clean_flow_prob
        if clips_per_epoch is not None and (
            isinstance(clips_per_epoch, bool)
            or not isinstance(clips_per_epoch, int)
            or clips_per_epoch < 1
        ):
            raise ValueError(
                f"VideoDataModule: clips_per_epoch (data.clips_per_epoch) must be a positive int "
                f"or null, got {clips_per_epoch!r}"
            )
        self.clips_per_epoch = clips_per_epoch
        self._resume_at = (0, 0)  # (epoch, batches of it trained) of a resumed fit
        self.datasets: dict[str, torch.utils.data.Dataset] = {}

    # ------------------------------------------------------------------ setup
    def _scan(self, split: str) -> list[Sequence] | None:
        source = self.sources[split]
        if source is None:
            return None
        sequences = source() if callable(source) else source
        sequences = list(sequences)
        if not sequences:
            raise ValueError(
                f"VideoDataModule: the {split} scanner {source!r:.200} returned no sequences "
                f"(data root: {self.root})"
            )
        return sequences

    def _fixed_noise(self, sigmas_255: list[float] | None) -> list | None:
        """One fixed-σ noise per level (0-255 scale) for a noise set; None (the degradation's
        own per-item seeded draw) for other sets or when no levels are given."""
        if self.degradation_name != "noise" or sigmas_255 is None:
            return None
        if not sigmas_255 or min(float(s) for s in sigmas_255) < 0:
            raise ValueError(
                f"VideoDataModule: test_sigmas / val_sigma must be non-empty and >= 0 (0-255 "
                f"scale), got {list(sigmas_255)!r}"
            )
        return [build_degradation("noise", fixed_sigma=float(s)) for s in sigmas_255]

    def _build(self, split: str) -> torch.utils.data.Dataset | None:
        sequences = self._scan(split)
        if sequences is None:
            return None
        train = split == "train"
        degradation = self.degradation
        if not train and self.eval_degradations[split] is not None:
            degradation = self.eval_degradations[split]  # one item per clip and noise level
        dataset = ClipDataset(
            sequences,
            clip_len=self.clip_lens[split],
            train=train,
            patch_size=self.patch_sizes[split],
            degradation=degradation,
            seed=self.seed,
            skip_bad=self.skip_bad,
            degrade_paired=self.degrade_paired,
            flow_estimator=None if split == "test" else self.flow_estimator,
            flow_margin=self.flow_margin,
            clean_flow_prob=self.clean_flow_prob,
            **self.augment,
        )
        if split == "val" and self.max_val_clips is not None and len(dataset) > self.max_val_clips:
            keep = np.linspace(0, len(dataset) - 1, self.max_val_clips).round().astype(int)
            return Subset(dataset, sorted(set(keep.tolist())))
        return dataset

    def setup(self, stage: str | None = None) -> None:
        """Scan and index the splits ``stage`` needs (fit: train + val; validate; test)."""
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(
            stage, ("train", "val", "test")
        )
        required = {"fit": "train", "test": "test"}.get(stage)
        for split in wanted:
            if split in self.datasets:
                continue
            dataset = self._build(split)
            if dataset is not None:
                self.datasets[split] = dataset
            elif split == required:
                raise ValueError(
                    f"VideoDataModule: stage {stage!r} needs {split}_sequences, which is None"
                )

    # ------------------------------------------------------------------ loaders
    def _loader(
        self, split: str, batch_size: int, sampler: ClipSampler | None = None
    ) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError(
                f"VideoDataModule: no {split} dataset; call setup() first "
                f"(or give {split}_sequences)"
            )
        return DataLoader(
            self.datasets[split],
            batch_size=batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=seed_worker,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_sampler(self) -> ClipSampler:
        """The training ``ClipSampler``: this rank's share of ``clips_per_epoch`` keys, seeded by
        ``seed`` and the run's torch seed (``seed_everything``), positioned where a resumed fit
        left off."""
        if "train" not in self.datasets:
            raise RuntimeError("VideoDataModule: no train dataset; call setup() first")
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        sampler = ClipSampler(
            len(self.datasets["train"]),
            self.clips_per_epoch,
            seed=derive_seed(self.seed, torch.initial_seed()),
            num_replicas=torch.distributed.get_world_size() if distributed else 1,
            rank=torch.distributed.get_rank() if distributed else 0,
        )
        epoch, done_batches = self._resume_at
        self._resume_at = (0, 0)  # once: later loaders (reloads) start their epochs afresh
        batches_per_epoch = math.ceil(len(sampler) / self.batch_size)
        limit = getattr(self.trainer, "limit_train_batches", None)  # as Lightning applies it
        if isinstance(limit, int):
            batches_per_epoch = min(batches_per_epoch, limit)
        elif isinstance(limit, float):
            batches_per_epoch = int(batches_per_epoch * limit)
        if done_batches >= batches_per_epoch:  # saved at the end of an epoch: the next one
            epoch, done_batches = epoch + 1, 0
        sampler.set_epoch(epoch)  # Lightning sets it too, but after a loader with workers started
        sampler.skip_next(done_batches * self.batch_size)
        return sampler

    # Hand-written resume position: Lightning restarts a plain DataLoader's epoch on resume, and
    # builds (and starts) the train loader for ``estimated_stepping_batches`` before it restores
    # its loops; the datamodule's own state is restored before that, so it carries the position.
    def state_dict(self) -> dict[str, int]:
        """Where training stands when a checkpoint is written: the epoch being trained and how
        many of its batches are done (from Lightning's loop progress)."""
        loop = getattr(self.trainer, "fit_loop", None)
        if loop is None:
            return {}
        return {
            "train_epoch": max(loop.epoch_progress.current.ready - 1, 0),
            "train_batches_done": loop.epoch_loop.batch_progress.current.ready,
        }

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume_at = (
            int(state_dict.get("train_epoch", 0)),
            int(state_dict.get("train_batches_done", 0)),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, self.train_sampler())

    def val_dataloader(self) -> DataLoader | list:
        """Validation clips, or an empty list (no validation) when val_sequences is None."""
        if "val" not in self.datasets and self.sources["val"] is None:
            return []
        return self._loader("val", self.val_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.val_batch_size)


def _size(patch_size):
    """Hydra passes lists (ListConfig) for pairs; ClipDataset wants an int, a tuple or None."""
    if patch_size is None or isinstance(patch_size, int):
        return patch_size
    return tuple(int(v) for v in patch_size)
