"""Resuming a training: the same run folder, the same logger run, the same random streams.

- ``resume_argv(argv)`` (called by ``train.py`` before Hydra starts) turns ``ckpt_path=last``
  into the newest ``<log_dir>/<task_name>/runs/*/checkpoints/last.ckpt`` (by modification time)
  and, for a checkpoint inside a run folder (``<run>/checkpoints/*.ckpt`` beside
  ``<run>/.hydra``), adds ``hydra.run.dir=<run>``: the resumed fit writes its checkpoints and
  csv/tensorboard logs into the folder it came from. When that folder holds a wandb run and the
  config logs to wandb, ``logger.wandb.id`` is set to that run's id with ``resume=allow``, so
  the same wandb run goes on. An explicit ``hydra.run.dir`` or ``logger.wandb.id`` is kept;
  multiruns only get ``last`` resolved (each job has its own folder).
- ``requeued_job_checkpoint(output_dir)``: a SLURM job that was requeued
  (``SLURM_RESTART_COUNT`` > 0; the same pickled job, hence the same folder) and was given no
  ``ckpt_path`` resumes from the newest of its own ``checkpoints/last.ckpt`` and the
  ``hpc_ckpt_*.ckpt`` Lightning saves on the time-limit signal: a job preempted without a
  warning signal still goes on from its last checkpoint instead of starting again.
- ``RngStateInCheckpoint``: Lightning restores weights, optimizer, schedulers and loop
  progress but not the random generators; this callback stores torch's (CPU and CUDA), numpy's
  and Python's generator states in every checkpoint and puts them back when a resumed fit
  starts training (after the sanity validation), so a fixed-seed deterministic run resumed from
  ``last.ckpt`` computes the same losses as one that was never stopped. The training clips
  themselves are a function of (seed, epoch, position) (``datamodules/clip_sampler.py``).
- ``ResumableCSVLogger`` (``conf/logger/csv.yaml``): Lightning's ``CSVLogger`` deletes an
  existing ``metrics.csv`` when it starts; this one appends to it, so a resumed run's CSV holds
  the whole training (steps logged after the checkpoint and before the kill appear twice; the
  later row is the resumed run's).
"""

from __future__ import annotations

import csv
import os
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment

from lightning_modules.run.config_schema import ConfigError

CKPT_KEYS = ("ckpt_path=", "+ckpt_path=", "++ckpt_path=")
LAST = "last"


def _override_value(overrides: list[str], key: str) -> tuple[int, str] | None:
    """(position, value) of the last ``key=value`` override (with or without + / ++)."""
    found = None
    for position, override in enumerate(overrides):
        name, sep, value = override.lstrip("+").partition("=")
        if sep and name == key:
            found = (position, value)
    return found


def requeued_job_checkpoint(output_dir: str | Path, environ: dict | None = None) -> Path | None:
    """The checkpoint a requeued SLURM job resumes from (module docstring), or None."""
    environ = os.environ if environ is None else environ
    if environ.get("SLURM_RESTART_COUNT", "0") in ("", "0"):
        return None
    folder = Path(output_dir)
    candidates = [*folder.glob("hpc_ckpt_*.ckpt"), folder / "checkpoints" / "last.ckpt"]
    existing = [path for path in candidates if path.is_file()]
    return max(existing, key=lambda path: path.stat().st_mtime) if existing else None


def run_folder(checkpoint: Path) -> Path | None:
    """The Hydra run folder holding ``checkpoint`` (``<run>/checkpoints/x.ckpt`` with
    ``<run>/.hydra``), or None for a checkpoint elsewhere."""
    folder = checkpoint.resolve().parent.parent
    if checkpoint.resolve().parent.name == "checkpoints" and (folder / ".hydra").is_dir():
        return folder
    return None


def newest_last_checkpoint(runs_dir: Path) -> Path | None:
    """The most recently written ``<runs_dir>/*/checkpoints/last.ckpt``, or None."""
    found = [p for p in runs_dir.glob("*/checkpoints/last.ckpt") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def wandb_run_id(folder: Path) -> str | None:
    """Id of the newest wandb run (``<folder>/wandb/[offline-]run-<time>-<id>``), or None."""
    runs = sorted((folder / "wandb").glob("*run-*-*"), key=lambda p: p.name.split("run-", 1)[1])
    runs = [p for p in runs if p.is_dir()]
    return runs[-1].name.rsplit("-", 1)[1] if runs else None


def _compose(overrides: list[str]):
    """The train config as ``python train.py <overrides>`` composes it (hydra.* left out)."""
    from lightning_modules.run.compose import compose_config

    return compose_config("train", [o for o in overrides if not o.lstrip("+").startswith("hydra")])


def resume_argv(argv: list[str]) -> list[str]:
    """``argv`` of ``train.py`` with ``ckpt_path=last`` resolved and the run folder (and wandb
    run) of the checkpoint reused; unchanged when no ``ckpt_path`` is given. Raises
    ``ConfigError`` (one line) when ``ckpt_path=last`` finds no checkpoint."""
    overrides = list(argv[1:])
    found = _override_value(overrides, "ckpt_path")
    if found is None or found[1] in ("", "null"):
        return list(argv)
    position, value = found
    multirun = any(o in ("-m", "--multirun") for o in overrides)
    cfg = None
    if value == LAST:
        cfg = _compose(overrides[:position] + overrides[position + 1 :])
        runs_dir = Path(cfg.paths.log_dir) / cfg.task_name / "runs"
        checkpoint = newest_last_checkpoint(runs_dir)
        if checkpoint is None:
            raise ConfigError(
                f"ckpt_path=last: no run of task_name={cfg.task_name!r} has a "
                f"checkpoints/last.ckpt under {runs_dir}"
            )
    else:
        checkpoint = Path(value)
    if checkpoint.is_file():
        checkpoint = checkpoint.resolve()
    prefix = overrides[position].split("ckpt_path=", 1)[0]
    overrides[position] = f"{prefix}ckpt_path={checkpoint}"
    folder = run_folder(checkpoint) if checkpoint.is_file() else None
    if folder is None or multirun:
        return [argv[0], *overrides]
    if _override_value(overrides, "hydra.run.dir") is None:
        overrides.append(f"hydra.run.dir={folder}")
    # the folder holds this run's own checkpoints: Lightning's notice about it is not news
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    run_id = wandb_run_id(folder)
    if run_id is not None and _override_value(overrides, "logger.wandb.id") is None:
        cfg = cfg if cfg is not None else _compose(overrides)
        logger = cfg.get("logger") or {}
        if "wandb" in logger:
            overrides += [f"logger.wandb.id={run_id}", "++logger.wandb.resume=allow"]
    return [argv[0], *overrides]


class RngStateInCheckpoint(pl.Callback):
    """Stores the random generators' states in checkpoints; restores them when a resumed fit
    starts training (see the module docstring). Plain tensors, lists and ints only, so the
    checkpoint still loads with ``torch.load(weights_only=True)``."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        numpy_state = np.random.get_state(legacy=False)
        state = {
            "torch": torch.get_rng_state(),
            "numpy": {
                "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                "pos": int(numpy_state["state"]["pos"]),
                "has_gauss": int(numpy_state["has_gauss"]),
                "gauss": float(numpy_state["gauss"]),
            },
            "python": [list(v) if isinstance(v, tuple) else v for v in random.getstate()],
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        state, self._pending = self._pending, None
        if not state:
            return
        torch.set_rng_state(state["torch"])
        numpy_state = state["numpy"]
        np.random.set_state(
            {
                "bit_generator": "MT19937",
                "state": {
                    "key": numpy_state["key"].numpy().astype(np.uint32),
                    "pos": numpy_state["pos"],
                },
                "has_gauss": numpy_state["has_gauss"],
                "gauss": numpy_state["gauss"],
            }
        )
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class _AppendingWriter(ExperimentWriter):
    """Keeps an existing ``metrics.csv`` and appends to it (its columns stay)."""

    def _check_log_dir_exists(self) -> None:  # Lightning's deletes metrics.csv
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                header = next(csv.reader(file), [])
            self.metrics_keys = sorted(set(header))


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` that continues an existing ``metrics.csv`` instead of deleting it."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
