"""Phased training: ``training_phases`` in the config runs several trainings in a row.

("Phase" is a training in the sequence; "stage" is reserved for a part of the network.)
Each phase is a dict::

    name: no_codec                      # its folder: <run dir>/phase<k>_<name>
    overrides: [model=no_codec, trainer.max_epochs=20]   # Hydra overrides for this phase
    init_from: previous                 # previous | none: start from the last phase's weights
    checkpoint: best                    # best | last: which checkpoint a later phase reads
    flow_from: flow                     # an earlier phase whose checkpoint holds the flow stage
    inherit: [trainer, logger, seed]    # command-line overrides it takes (default: all of them)

A phase's config is composed again from the job's command-line overrides followed by the phase's
(a phase override replaces a command-line one for the same key; with ``inherit``, only the
command-line overrides of those top-level keys are taken, e.g. a flow pre-training on its own
data that must not get the restoration data's ``data.root``), with ``training_phases=null``
and ``paths.output_dir`` set to the phase folder. ``init_from: previous`` copies weights
non-strictly: every tensor whose name and shape match is loaded, the rest keep their
initialisation (e.g. the codec when going from no_codec to adaptive_q); the counts are logged.
``flow_from: <phase>`` adds ``model.flow.pretrained=<that phase's checkpoint>``, so the flow
weights travel by the one route every flow checkpoint takes (``SpyNet.load_pretrained``).
Without ``training_phases`` nothing here runs: single-phase training is the default.
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

from lightning_modules.run.checkpoints import read_checkpoint

log = logging.getLogger(__name__)

INIT_CHOICES = ("previous", "none")
CHECKPOINT_CHOICES = ("best", "last")


@dataclass(frozen=True)
class Phase:
    """One entry of ``training_phases`` (see the module docstring)."""

    name: str
    overrides: list[str] = field(default_factory=list)
    init_from: str = "previous"
    checkpoint: str = "best"
    flow_from: str | None = None
    inherit: list[str] | None = None


def _check_choice(where: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{where}: expected one of {choices}, got {value!r}")
    return value


def parse_phases(entries: Any) -> list[Phase]:
    """Validate ``training_phases``; errors name the phase index and key."""
    entries = (
        OmegaConf.to_container(entries, resolve=True) if OmegaConf.is_config(entries) else entries
    )
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"training_phases: expected a non-empty list of phases, got {entries!r}")
    known = set(Phase.__dataclass_fields__)
    phases: list[Phase] = []
    for i, entry in enumerate(entries):
        where = f"training_phases[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a mapping with name/overrides, got {entry!r}")
        unknown = set(entry) - known
        if unknown:
            hint = " (key_map is gone: use flow_from: <phase>)" if "key_map" in unknown else ""
            raise ValueError(
                f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(known)}{hint}"
            )
        name = entry.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[\w.-]+", name):
            raise ValueError(f"{where}.name: expected a folder-safe string, got {name!r}")
        overrides = entry.get("overrides", [])
        if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
            raise ValueError(f"{where}.overrides: expected a list of 'key=value' strings")
        inherit = entry.get("inherit")
        if inherit is not None and (
            not isinstance(inherit, list) or not all(isinstance(k, str) for k in inherit)
        ):
            raise ValueError(f"{where}.inherit: expected a list of top-level keys, got {inherit!r}")
        flow_from = entry.get("flow_from")
        earlier = [p.name for p in phases]
        if flow_from is not None and flow_from not in earlier:
            raise ValueError(
                f"{where}.flow_from: expected the name of an earlier phase {earlier}, "
                f"got {flow_from!r}"
            )
        phases.append(
            Phase(
                name,
                list(overrides),
                _check_choice(
                    f"{where}.init_from", entry.get("init_from", "previous"), INIT_CHOICES
                ),
                _check_choice(
                    f"{where}.checkpoint", entry.get("checkpoint", "best"), CHECKPOINT_CHOICES
                ),
                flow_from,
                inherit,
            )
        )
    return phases


def _override_key(override: str) -> str:
    """The key an override sets: '+model.x=1' -> 'model.x', 'model=flow' -> 'model'."""
    key = override.split("=", 1)[0].lstrip("~+")
    return key.split("@", 1)[0]


def merge_overrides(
    base: list[str], phase: list[str], inherit: list[str] | None = None
) -> list[str]:
    """``base`` then ``phase``, dropping base overrides of keys the phase sets again and, with
    ``inherit``, those whose top-level key (``trainer`` of ``trainer.max_steps=5``) is not in it."""
    phase_keys = {_override_key(o) for o in phase}
    kept = [o for o in base if _override_key(o) not in phase_keys]
    if inherit is not None:
        kept = [o for o in kept if _override_key(o).split(".")[0].split("/")[0] in inherit]
    return kept + list(phase)


def load_weights_non_strict(model: pl.LightningModule, ckpt_path: str | Path) -> dict[str, list]:
    """Copy the tensors of a checkpoint whose key and shape match ``model``'s.

    Returns {"loaded", "missing" (model keys left as they were), "unused" (checkpoint keys with no
    match or another shape)}; raises when nothing at all matches (another kind of model).
    """
    checkpoint = read_checkpoint(ckpt_path)
    state = checkpoint.get("state_dict", {})
    own = model.state_dict()
    loadable = {
        k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)
    }
    if not loadable:
        raise ValueError(
            f"{ckpt_path}: no weight matches the model; checkpoint keys start like "
            f"{sorted(state)[:3]}, model keys like {sorted(own)[:3]}"
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


def run_phases(cfg: DictConfig, train_fn: TrainFn) -> tuple[dict[str, float], dict[str, Any]]:
    """Run every phase of ``cfg.training_phases`` with ``train_fn(phase_cfg, prepare_model)``,
    which returns (metrics, objects) with ``objects["checkpoints"] = {"best": .., "last": ..}``.

    Must run inside a Hydra app (or ``initialize_config_dir``) so the config can be recomposed.
    Returns the last phase's (metrics, objects); ``objects["phase_dirs"]`` lists the folders.
    """
    phases = parse_phases(cfg.training_phases)
    hydra_cfg = HydraConfig.get()
    base = list(hydra_cfg.overrides.task)
    root = Path(cfg.paths.output_dir)
    saved_by_phase: dict[str, str | None] = {}
    previous: str | None = None
    metrics: dict[str, float] = {}
    objects: dict[str, Any] = {}
    phase_dirs = []
    for k, phase in enumerate(phases, start=1):
        phase_dir = root / f"phase{k}_{phase.name}"
        phase_dirs.append(phase_dir)
        extra = ["training_phases=null", f"paths.output_dir={phase_dir}"]
        if phase.flow_from is not None:
            flow_checkpoint = saved_by_phase.get(phase.flow_from)
            if flow_checkpoint is None:
                raise RuntimeError(
                    f"phase '{phase.name}': flow_from '{phase.flow_from}' saved no checkpoint"
                )
            extra.append(f"model.flow.pretrained={flow_checkpoint}")
        overrides = merge_overrides(base, [*phase.overrides, *extra], phase.inherit)
        log.info("phase %d/%d '%s': %s", k, len(phases), phase.name, " ".join(overrides))
        phase_cfg = compose(config_name=hydra_cfg.job.config_name, overrides=overrides)
        prepare = None
        if phase.init_from == "previous" and previous is not None:

            def prepare(model, source=previous):
                load_weights_non_strict(model, source)

        metrics, objects = train_fn(phase_cfg, prepare)
        saved = objects.get("checkpoints") or {}
        previous = saved.get(phase.checkpoint) or saved.get("best") or saved.get("last")
        saved_by_phase[phase.name] = previous
        if previous is None and k < len(phases):
            log.warning("phase '%s' saved no checkpoint; the next phase starts afresh", phase.name)
    objects["phase_dirs"] = phase_dirs
    return metrics, objects
