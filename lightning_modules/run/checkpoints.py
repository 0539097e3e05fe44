"""Keep the resolved run config inside every checkpoint, and rebuild the model from a checkpoint.

``train.py`` adds ``StoreConfigInCheckpoint(resolved)`` to the trainer's callbacks; each saved
checkpoint then has ``checkpoint["run_config"]``: the whole run config with every interpolation
resolved (plain dicts/lists). ``build_task_from_checkpoint(path)`` instantiates ``model.task`` from
that config and loads the weights strictly, so ``eval.py`` and ``restore.py`` need the file alone.

Checkpoints are read with ``torch.load(weights_only=True)``: tensors and plain containers only
(the stored config is plain data), so a downloaded checkpoint cannot run code when it is loaded.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from lightning_modules.run.instantiate import instantiate

CONFIG_KEY = "run_config"


class StoreConfigInCheckpoint(pl.Callback):
    """Writes ``config`` (a resolved plain dict) into every checkpoint under ``CONFIG_KEY``."""

    def __init__(self, config: dict):
        if not isinstance(config, dict) or "model" not in config:
            raise ValueError(
                "StoreConfigInCheckpoint: expected the resolved run config (a dict "
                "with a 'model' key)"
            )
        self.config = config

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[CONFIG_KEY] = self.config


def resolved_config(cfg: DictConfig) -> dict:
    """The run config as plain containers with every interpolation resolved (no ``hydra`` node)."""
    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    container.pop("hydra", None)
    return container


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict at ``path``; a clear error when the file is absent or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path: no checkpoint file at '{path}'")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "unsupported global" not in str(err).lower():  # junk bytes, not a pickled object
            raise ValueError(
                f"ckpt_path: '{path}' is not a readable PyTorch checkpoint (corrupt, or not a "
                "file written by torch.save)"
            ) from err
        raise ValueError(
            f"ckpt_path: '{path}' holds objects other than tensors and plain data, which could "
            "run code when loaded; refused (only checkpoints written by train.py are read)"
        ) from err
    except Exception as err:  # torch raises several unrelated types for a bad file
        raise ValueError(
            f"ckpt_path: '{path}' is not a readable PyTorch checkpoint ({err})"
        ) from err


def stored_config(checkpoint: dict, path: str | Path = "<checkpoint>") -> DictConfig:
    """The run config stored in ``checkpoint``; an error when it was not written by train.py."""
    config = checkpoint.get(CONFIG_KEY)
    if not isinstance(config, dict) or "task" not in (config.get("model") or {}):
        raise ValueError(
            f"ckpt_path: '{path}' carries no run config (key '{CONFIG_KEY}' with model.task); "
            "it was not written by this project's train.py, so the model cannot be rebuilt"
        )
    return OmegaConf.create(config)


def _forget_pretrained_paths(node: Any) -> None:
    """Set every ``pretrained`` key (the flow stage's, wherever the resolved config copied it) to
    None: the weights come from the checkpoint, and the file may not exist on this machine."""
    if isinstance(node, DictConfig):
        for key in node:
            if key == "pretrained":
                node[key] = None
            else:
                _forget_pretrained_paths(node._get_node(key))
    elif OmegaConf.is_list(node):
        for item in node:
            _forget_pretrained_paths(item)


def build_task(model_cfg: DictConfig, task_overrides: dict | None = None) -> pl.LightningModule:
    """Instantiate ``model_cfg.task`` with ``task_overrides`` (keys of the task) applied first."""
    task_cfg = OmegaConf.create(OmegaConf.to_container(model_cfg.task, resolve=True))
    for key, value in (task_overrides or {}).items():
        if key not in task_cfg:
            raise KeyError(f"model.task has no key '{key}' to override")
        task_cfg[key] = value
    return instantiate(task_cfg, "model.task")


def build_task_from_checkpoint(
    path: str | Path, task_overrides: dict | None = None, checkpoint: dict | None = None
) -> tuple[pl.LightningModule, DictConfig]:
    """Rebuild the LightningModule of a train.py checkpoint and load its weights (strict).

    Returns the module (eval mode, on CPU) and the stored run config. The flow stage's
    ``pretrained`` path in the stored config is ignored: its weights are in the checkpoint, so
    the file is all that is needed. ``checkpoint``: the already loaded dict of ``path``, to avoid
    reading it twice.
    """
    checkpoint = read_checkpoint(path) if checkpoint is None else checkpoint
    config = stored_config(checkpoint, path)
    _forget_pretrained_paths(config.model)
    task = build_task(config.model, task_overrides)
    state = checkpoint.get("state_dict")
    if not isinstance(state, dict):
        raise ValueError(f"ckpt_path: '{path}' has no 'state_dict'")
    try:
        result = task.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches raise even when strict=False
        raise ValueError(
            f"ckpt_path: '{path}' does not match the model its config builds: {err}"
        ) from err
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"ckpt_path: '{path}' does not match the model its config builds: "
            f"missing {result.missing_keys[:5]} ({len(result.missing_keys)} in all), "
            f"unexpected {result.unexpected_keys[:5]} ({len(result.unexpected_keys)} in all)"
        )
    return task.eval(), config
