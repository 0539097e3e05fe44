"""Top-level schemas of ``conf/train.yaml``, ``conf/eval.yaml`` and ``conf/restore.yaml``.

Registered in Hydra's ``ConfigStore`` (``register_configs()``) and named first in each entry
config's defaults list, so Hydra itself rejects an unknown top-level key or a value of the wrong
type while composing, naming the key. The groups (data, model, trainer, ...) are free-form here:
their ``_target_`` signatures check them when they are instantiated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class TrainConfig:
    """``conf/train.yaml``: what ``train.py`` reads."""

    task_name: str = "train"
    tags: list[str] = field(default_factory=list)
    train: bool = True
    test: bool = True
    ckpt_path: str | None = None
    seed: int | None = None
    optimized_metric: str | None = None
    float32_matmul_precision: str | None = None
    compile: bool = False
    channels_last: bool = True
    training_phases: list[Any] | None = None
    training_stages: Any = None  # renamed training_phases; config_schema says so if it is set
    data: Any = MISSING
    model: Any = MISSING
    trainer: Any = MISSING
    callbacks: Any = None
    logger: Any = None
    paths: Any = MISSING


@dataclass
class EvalConfig:
    """``conf/eval.yaml``: what ``eval.py`` reads."""

    task_name: str = "eval"
    tags: list[str] = field(default_factory=list)
    ckpt_path: Any = None  # a path or a list of paths (eval_methods.requested checks them)
    method: Any = None  # noisy | nlm | bm3d, or a list of them
    max_frames: int | None = None
    seed: int | None = None
    float32_matmul_precision: str | None = None
    channels_last: bool = True
    purification: bool = False
    entropy_coding: bool = False
    data: Any = None
    trainer: Any = MISSING
    logger: Any = None
    paths: Any = MISSING


@dataclass
class RestoreConfig:
    """``conf/restore.yaml``: what ``restore.py`` reads."""

    task_name: str = "restore"
    tags: list[str] = field(default_factory=list)
    ckpt_path: str = MISSING
    input: str = MISSING
    output: str = MISSING
    overwrite: bool = False
    sigma: Any = None  # a float in [0, 255], "auto" or None (checked by restore.check_options)
    sigma_frames: int = 3
    chunk_size: int = 16
    context_frames: int = 4
    pad_multiple: int = 16
    tile: Any = None  # None, "auto" or an int (checked by restore.check_options)
    tile_overlap: int = 32
    precision: str = "32"
    channels_last: bool = True
    progress: bool = True
    device: str = "auto"
    fps: float | None = None
    crf: int = 17
    codec: str = "libx264"
    bit_depth: int = 8
    save_latents: str | None = None
    paths: Any = MISSING


SCHEMAS = {"train_schema": TrainConfig, "eval_schema": EvalConfig, "restore_schema": RestoreConfig}


def register_configs() -> None:
    """Store the schemas under the names the entry configs' defaults lists use (idempotent)."""
    store = ConfigStore.instance()
    for name, node in SCHEMAS.items():
        store.store(name=name, node=node)
