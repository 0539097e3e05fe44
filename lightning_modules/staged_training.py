"""Multi-stage training: ``training_stages`` in the config runs several trainings in a row.

Each stage is a dict::

    name: no_codec                      # its folder: <run dir>/stage<k>_<name>
    overrides: [model=no_codec, trainer.max_epochs=20]   # Hydra overrides for this stage
    init_from: previous                 # previous | none: start from the last stage's weights
    checkpoint: best                    # best | last: which checkpoint of that stage
    key_map: {"flow.": "net.flow."}     # rename weight-key prefixes (flow task -> restoration)

A stage's config is composed again from the job's command-line overrides followed by the stage's
(a stage override replaces a command-line one for the same key), with ``training_stages=null`` and
``paths.output_dir`` set to the stage folder. Weights are copied non-strictly: every tensor whose
(mapped) name and shape match is loaded, the rest keep their initialisation (e.g. the codec when
going from no_codec to adaptive_q); the counts are logged. Without ``training_stages`` nothing here
runs: single-stage training is the default.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra import compose
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from lightning_modules.checkpoint_config import read_checkpoint

log = logging.getLogger(__name__)

INIT_CHOICES = ("previous", "none")
CHECKPOINT_CHOICES = ("best", "last")


@dataclass(frozen=True)
class Stage:
    """One entry of ``training_stages`` (see the module docstring)."""

    name: str
    overrides: list[str] = field(default_factory=list)
    init_from: str = "previous"
    checkpoint: str = "best"
    key_map: dict[str, str] = field(default_factory=dict)


def parse_stages(entries: Any) -> list[Stage]:
    """Validate ``training_stages``; errors name the stage index and key."""
    entries = (
        OmegaConf.to_container(entries, resolve=True) if OmegaConf.is_config(entries) else entries
    )
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"training_stages: expected a non-empty list of stages, got {entries!r}")
    known = set(Stage.__dataclass_fields__)
    stages = []
    for i, entry in enumerate(entries):
        where = f"training_stages[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a mapping with name/overrides, got {entry!r}")
        unknown = set(entry) - known
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(known)}")
        name = entry.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[\w.-]+", name):
            raise ValueError(f"{where}.name: expected a folder-safe string, got {name!r}")
        overrides = entry.get("overrides", [])
        if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
            raise ValueError(f"{where}.overrides: expected a list of 'key=value' strings")
        init_from = entry.get("init_from", "previous")
        if init_from not in INIT_CHOICES:
            raise ValueError(
                f"{where}.init_from: expected one of {INIT_CHOICES}, got {init_from!r}"
            )
        checkpoint = entry.get("checkpoint", "best")
        if checkpoint not in CHECKPOINT_CHOICES:
            raise ValueError(
                f"{where}.checkpoint: expected one of {CHECKPOINT_CHOICES}, got {checkpoint!r}"
            )
        key_map = entry.get("key_map") or {}
        if not isinstance(key_map, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in key_map.items()
        ):
            raise ValueError(f"{where}.key_map: expected a mapping of prefix -> prefix strings")
        stages.append(Stage(name, list(overrides), init_from, checkpoint, dict(key_map)))
    return stages


def _override_key(override: str) -> str:
    """The key an override sets: '+model.x=1' -> 'model.x', 'model=flow' -> 'model'."""
    key = override.split("=", 1)[0].lstrip("~+")
    return key.split("@", 1)[0]


def merge_overrides(base: list[str], stage: list[str]) -> list[str]:
    """``base`` then ``stage``, dropping base overrides of keys the stage sets again."""
    stage_keys = {_override_key(o) for o in stage}
    return [o for o in base if _override_key(o) not in stage_keys] + list(stage)


def rename_keys(state: dict[str, Any], key_map: dict[str, str]) -> dict[str, Any]:
    """Rename each key by the first ``key_map`` prefix it starts with (others unchanged)."""
    renamed = {}
    for key, value in state.items():
        for old, new in key_map.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        renamed[key] = value
    return renamed


def load_weights_non_strict(
    model: pl.LightningModule, ckpt_path: str | Path, key_map: dict[str, str] | None = None
) -> dict[str, list[str]]:
    """Copy the tensors of a checkpoint whose (renamed) key and shape match ``model``'s.

    Returns {"loaded", "missing" (model keys left as they were), "unused" (checkpoint keys with no
    match or another shape)}; raises when nothing at all matches (wrong file or key_map).
    """
    checkpoint = read_checkpoint(ckpt_path)
    state = rename_keys(checkpoint.get("state_dict", {}), key_map or {})
    own = model.state_dict()
    loadable = {
        k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)
    }
    if not loadable:
        raise ValueError(
            f"{ckpt_path}: no weight matches the model (key_map {key_map or {}}); checkpoint keys "
            f"start like {sorted(state)[:3]}, model keys like {sorted(own)[:3]}"
        )
    model.load_state_dict(loadable, strict=False)
    report = {
        "loaded": sorted(loadable),
        "missing": sorted(set(own) - set(loadable)),
        "unused": sorted(set(state) - set(loadable)),
    }
    log.info(
        "initialised from %s: %d tensors loaded, %d kept their init, %d unused",
        ckpt_path,
        len(report["loaded"]),
        len(report["missing"]),
        len(report["unused"]),
    )
    return report


TrainFn = Callable[..., tuple[dict[str, float], dict[str, Any]]]


def run_stages(cfg: DictConfig, train_fn: TrainFn) -> tuple[dict[str, float], dict[str, Any]]:
    """Run every stage of ``cfg.training_stages`` with ``train_fn(stage_cfg, prepare_model)``,
    which returns (metrics, objects) with ``objects["checkpoints"] = {"best": .., "last": ..}``.

    Must run inside a Hydra app (or ``initialize_config_dir``) so the config can be recomposed.
    Returns the last stage's (metrics, objects); ``objects["stage_dirs"]`` lists the folders.
    """
    stages = parse_stages(cfg.training_stages)
    hydra_cfg = HydraConfig.get()
    base = list(hydra_cfg.overrides.task)
    root = Path(cfg.paths.output_dir)
    previous: str | None = None
    metrics: dict[str, float] = {}
    objects: dict[str, Any] = {}
    stage_dirs = []
    for k, stage in enumerate(stages, start=1):
        stage_dir = root / f"stage{k}_{stage.name}"
        stage_dirs.append(stage_dir)
        overrides = merge_overrides(
            base, [*stage.overrides, "training_stages=null", f"paths.output_dir={stage_dir}"]
        )
        log.info("stage %d/%d '%s': %s", k, len(stages), stage.name, " ".join(overrides))
        stage_cfg = compose(config_name=hydra_cfg.job.config_name, overrides=overrides)
        prepare = None
        if stage.init_from == "previous" and previous is not None:
            source = previous

            def prepare(model, source=source, key_map=stage.key_map):
                load_weights_non_strict(model, source, key_map)

        metrics, objects = train_fn(stage_cfg, prepare)
        saved = objects.get("checkpoints") or {}
        previous = saved.get(stage.checkpoint) or saved.get("best") or saved.get("last")
        if previous is None and k < len(stages):
            log.warning("stage '%s' saved no checkpoint; the next stage starts afresh", stage.name)
    objects["stage_dirs"] = stage_dirs
    return metrics, objects
