"""Train, then test, a model as the Hydra config says: ``python train.py [overrides]``.

- ``python train.py``: the full model on the embedded sample set (a few CPU minutes).
- ``python train.py model=no_codec data=vimeo trainer=gpu``; ``ckpt_path=<last.ckpt>`` resumes.
- ``python train.py experiment=phased``: the trainings of ``training_phases`` one after another.
- ``python train.py -m hparams_search=optuna_rate_lr``: sweeps read the returned metric.

Each run writes into its Hydra run folder: ``checkpoints/`` (``last.ckpt`` and the best by
``optimized_metric``; each stores the resolved config, so ``eval.py``/``restore.py`` need nothing
else), the logger folders and ``train.log``. In a multirun a failing job is logged with its
traceback and returns NaN; the other jobs go on.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from pytorch_lightning.utilities.model_helpers import is_overridden

from callbacks.sweep_summary import write_job_metrics
from lightning_modules.run.acceleration import (
    checked_precision,
    compile_network,
    set_channels_last,
)
from lightning_modules.run.checkpoints import StoreConfigInCheckpoint, build_task, resolved_config
from lightning_modules.run.config_schema import check_overrides, validate_config
from lightning_modules.run.entry_point import StepCounter, job, reported_errors
from lightning_modules.run.instantiate import instantiate, instantiate_collection
from lightning_modules.run.phased_training import run_phases
from lightning_modules.run.resolvers import register_resolvers
from lightning_modules.run.resume import (
    RngStateInCheckpoint,
    requeued_job_checkpoint,
    resume_argv,
)
from lightning_modules.run.structured_configs import register_configs

log = logging.getLogger(__name__)
register_resolvers()
register_configs()


def saved_checkpoints(trainer: pl.Trainer) -> dict[str, str | None]:
    """Paths of the best and the last checkpoint of the fit so far (None when not written)."""
    callback = trainer.checkpoint_callback
    found = {
        "best": getattr(callback, "best_model_path", ""),
        "last": getattr(callback, "last_model_path", ""),
    }
    return {key: path if path and Path(path).is_file() else None for key, path in found.items()}


def _test_checkpoint(checkpoints: dict[str, str | None], cfg: DictConfig) -> str | None:
    """Best checkpoint of this fit; else last; else ckpt_path for test-only runs; else None
    (the current weights, with a warning)."""
    if checkpoints["best"]:
        return checkpoints["best"]
    if checkpoints["last"]:
        log.warning(
            "no best checkpoint (fast_dev_run, or optimized_metric never logged): testing last"
        )
        return checkpoints["last"]
    if not cfg.train and cfg.ckpt_path:
        return cfg.ckpt_path
    log.warning("no checkpoint was saved (e.g. fast_dev_run): testing the current weights")
    return None


def train(
    cfg: DictConfig, prepare_model: Callable[[pl.LightningModule], Any] | None = None
) -> tuple[dict[str, float], dict[str, Any]]:
    """Fit and/or test as ``cfg`` says.

    Returns (metrics, objects): objects has ``trainer``, ``model``, ``datamodule`` and
    ``checkpoints`` ({"best": path | None, "last": path | None} written by this fit).

    ``prepare_model(model)`` is called after the model is built and before fitting (phased
    training uses it to load the previous phase's weights).
    """
    validate_config(cfg)
    if cfg.ckpt_path is not None and not Path(cfg.ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path: no checkpoint file at '{cfg.ckpt_path}'")
    if cfg.seed is not None:
        pl.seed_everything(cfg.seed, workers=True)
    if cfg.float32_matmul_precision:
        torch.set_float32_matmul_precision(cfg.float32_matmul_precision)

    resolved = resolved_config(cfg)
    log.info("data: %s", cfg.data._target_)
    datamodule = instantiate(cfg.data, "data")
    log.info("model: %s", cfg.model.task._target_)
    model = build_task(cfg.model)
    if prepare_model is not None:
        prepare_model(model)
    accelerator = cfg.trainer.get("accelerator")
    set_channels_last(model, bool(cfg.channels_last))
    compile_network(model, bool(cfg.get("compile")), accelerator)  # eager, 1 warning, if it can't
    callbacks = instantiate_collection(cfg.get("callbacks"), "callbacks")
    callbacks += [StoreConfigInCheckpoint(resolved), StepCounter()]
    callbacks.append(RngStateInCheckpoint())  # a resumed fit continues the random streams
    loggers = instantiate_collection(cfg.get("logger"), "logger")
    if not loggers:  # LearningRateMonitor refuses a trainer without loggers (e.g. logger=null)
        callbacks = [c for c in callbacks if not isinstance(c, pl.callbacks.LearningRateMonitor)]
    if cfg.trainer.get("enable_progress_bar") is False:  # as Lightning users expect: no bar
        callbacks = [c for c in callbacks if not isinstance(c, pl.callbacks.ProgressBar)]
    precision = checked_precision(cfg.trainer.get("precision"), accelerator)  # bf16: GPU has it?
    trainer: pl.Trainer = instantiate(
        cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False, precision=precision
    )
    for logger in trainer.loggers:
        logger.log_hyperparams(resolved)

    metrics: dict[str, float] = {}
    checkpoints: dict[str, str | None] = {"best": None, "last": None}
    if cfg.train:
        ckpt_path = cfg.ckpt_path or requeued_job_checkpoint(cfg.paths.output_dir)
        if ckpt_path is not None and cfg.ckpt_path is None:
            log.info("requeued SLURM job: resuming from %s", ckpt_path)
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
        checkpoints = saved_checkpoints(trainer)
    if cfg.test and not is_overridden("test_step", model):
        log.warning("%s has no test step: test=true is skipped", type(model).__name__)
    elif cfg.test:
        trainer.test(model, datamodule=datamodule, ckpt_path=_test_checkpoint(checkpoints, cfg))
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    objects = {"trainer": trainer, "model": model, "datamodule": datamodule}
    return metrics, {**objects, "checkpoints": checkpoints}


def optimized_value(
    cfg: DictConfig, metrics: dict[str, float], trainer: pl.Trainer | None
) -> float:
    """The value sweeps optimize: the best score of ``optimized_metric`` (else its last value)."""
    name = cfg.get("optimized_metric")
    callback = trainer.checkpoint_callback if trainer is not None else None
    best = getattr(callback, "best_model_score", None)
    if best is not None and getattr(callback, "monitor", None) == name:
        return float(best)
    if name in metrics:
        return metrics[name]
    log.warning("optimized_metric '%s' was not logged (have: %s)", name, sorted(metrics))
    return math.nan


def run(cfg: DictConfig) -> float:
    """One Hydra job: a single training or phases of training; returns the optimized metric
    and writes the final metrics to ``<run dir>/metrics.json`` (read by the sweep summary)."""
    if cfg.get("training_phases"):
        metrics, objects = run_phases(cfg, train)
    else:
        metrics, objects = train(cfg)
    value = optimized_value(cfg, metrics, objects.get("trainer"))
    write_job_metrics(cfg.paths.output_dir, metrics, cfg.get("optimized_metric"), value)
    return value


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """A failure before the first training step removes the run folder; an expected error is
    one ``error:`` line (``lightning_modules/run/entry_point.py``)."""
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    with job(started=StepCounter.started):
        try:
            return run(cfg)
        except Exception:
            if not multirun:
                raise
            log.exception("job %s failed; the sweep goes on", HydraConfig.get().job.num)
            return math.nan
        finally:
            wandb = sys.modules.get("wandb")
            if wandb is not None and wandb.run is not None:
                wandb.finish()  # one wandb run per job, also when the job failed


if __name__ == "__main__":
    with reported_errors():  # expected errors: one line, no traceback
        check_overrides(sys.argv[1:])
        sys.argv = resume_argv(sys.argv)  # ckpt_path=last; a resumed run keeps its run folder
        main()
