"""The config checks no library does: keys nothing reads, and spellings that were renamed.

Hydra already rejects unknown or ill-typed top-level keys (the structured configs of
``structured_configs.py``) and a misspelled command-line override without ``+``; instantiating a
``_target_`` rejects arguments its signature lacks (``instantiate.py`` words that error). What is
left is here:

1. ``check_unread_keys``: every key of the plain (target-less) ``model`` container must be read
   by some interpolation (``model.task.rate_weight: ${model.rate_weight}``). A key nobody reads
   has no effect, which is almost always a typo; the error suggests the nearest key (difflib).
2. ``renamed_spelling``: an override or key that an earlier version used gets one message
   saying what to write now (``model=flow`` -> ``model=flow_pretrain``, ...).
"""

from __future__ import annotations

import dataclasses
import difflib
import re

from omegaconf import DictConfig, OmegaConf

CHECKED_CONTAINERS = ("model",)  # plain containers whose every key must be read somewhere
# ...except these: the LightningModule itself and what callbacks/sweeps may (not) read
CONTAINER_OWN_KEYS = {"task", "monitor", "monitor_mode"}
_INTERPOLATION = re.compile(r"\$\{\s*(\.*[A-Za-z_][\w.]*)\s*\}")

# Old command-line spelling (key=value, or key alone for any value) -> what to write now.
RENAMED_OVERRIDES = {
    "model=flow": "model=flow_pretrain (flow pre-training; model/flow=... picks the flow stage)",
    "experiment=staged": "experiment=phased (the trainings in a row are now 'phases')",
    "model.attention": "model/fusion=attention or model/fusion=concat",
    "model.mv_refine": "model/mv_refine=residual or model/mv_refine=none",
    "training_stages": "training_phases",
}


class ConfigError(ValueError):
    """A config key is unknown, unread, renamed or of the wrong type."""


def did_you_mean(key: str, candidates) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or an empty string."""
    match = difflib.get_close_matches(key, sorted(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def renamed_spelling(override: str, model_keys=()) -> str | None:
    """What to write instead of ``override`` (``key=value``) if it uses an old spelling.

    ``model_keys``: the keys of the composed ``model`` container; ``model.task.<k>=...`` for one
    of them is refused in favour of ``model.<k>`` (each task knob has one name).
    """
    key, _, value = override.lstrip("~+").partition("=")
    for choice in value.split(","):
        if f"{key}={choice}" in RENAMED_OVERRIDES:
            return RENAMED_OVERRIDES[f"{key}={choice}"]
    if key in RENAMED_OVERRIDES:
        return RENAMED_OVERRIDES[key]
    parts = key.split(".")
    if parts[:2] == ["model", "task"] and len(parts) > 2:
        knob = parts[-1]
        if not model_keys or knob in model_keys:
            return f"model.{knob}={value} (model.task is assembled from the model.* knobs)"
        return f"a model.* knob (model.task is assembled from them; knobs: {sorted(model_keys)})"
    return None


def check_overrides(overrides: list[str], model_keys=()) -> None:
    """Raise ``ConfigError`` for the first override with an old spelling."""
    for override in overrides:
        instead = renamed_spelling(override, model_keys)
        if instead is not None:
            raise ConfigError(f"'{override}' is no longer accepted; write {instead}")


def interpolation_references(cfg: DictConfig) -> set[str]:
    """Absolute dotted paths read by interpolations anywhere in ``cfg`` (and their parents)."""
    refs: set[str] = set()

    def scan(value, location: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                scan(v, _join(location, k))
        elif isinstance(value, list):
            for v in value:
                scan(v, location)
        elif isinstance(value, str):
            for ref in _INTERPOLATION.findall(value):
                if ref.startswith("."):  # relative: one dot = sibling, each extra dot = one up
                    dots = len(ref) - len(ref.lstrip("."))
                    base = location.split(".")[:-dots] if dots else []
                    ref = ".".join([*base, ref.lstrip(".")])
                parts = ref.split(".")
                refs.update(".".join(parts[: i + 1]) for i in range(len(parts)))

    scan(OmegaConf.to_container(cfg, resolve=False), "")
    return refs


def check_unread_keys(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` for a key of a checked container that no interpolation reads."""
    refs = interpolation_references(cfg)
    for path in CHECKED_CONTAINERS:
        node = cfg.get(path)
        if not isinstance(node, DictConfig) or "_target_" in node:
            continue
        used = {k for k in node if _join(path, k) in refs}
        for key in node:
            if key not in used and not str(key).startswith("_") and key not in CONTAINER_OWN_KEYS:
                raise ConfigError(
                    f"unknown key '{_join(path, key)}': nothing in the config reads it"
                    f"{did_you_mean(str(key), used)}"
                )


def check_top_level_keys(cfg: DictConfig) -> None:
    """Keys added with ``+key=`` that the config's schema (its structured type) lacks."""
    schema = OmegaConf.get_type(cfg)
    if not dataclasses.is_dataclass(schema):
        return
    fields = {f.name for f in dataclasses.fields(schema)}
    for key in cfg:
        if key not in fields and key != "hydra":
            raise ConfigError(f"unknown top-level key '{key}'{did_you_mean(str(key), fields)}")


def validate_config(cfg: DictConfig) -> None:
    """The checks of the module docstring on a composed run config."""
    check_top_level_keys(cfg)
    if cfg.get("training_stages") is not None:
        instead = RENAMED_OVERRIDES["training_stages"]
        raise ConfigError(f"'training_stages' is no longer read; write {instead}")
    check_unread_keys(cfg)
