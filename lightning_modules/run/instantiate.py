"""Instantiate ``_target_`` nodes with errors that name the config key, in one place.

``instantiate(cfg, where)`` wraps ``hydra.utils.instantiate``: when the target cannot be
imported or rejects its arguments, the error names ``where`` (the config path, e.g.
``model.task.net.codec``), the target and, for an unexpected argument, the nearest parameter of
the target's signature ("did you mean"). ``instantiate_collection`` does the same for a named
collection (``callbacks``, ``logger``): a ``null`` entry (or a null collection) is switched off,
so ``callbacks.early_stopping=null`` removes one callback and ``logger=null`` all loggers.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from lightning_modules.run.config_schema import ConfigError, did_you_mean

_UNEXPECTED = re.compile(r"unexpected keyword argument '(\w+)'")
_FULL_KEY = re.compile(r"full_key: ([\w.\[\]]+)")
_TARGET = re.compile(r"target '([\w.]+)'")


def _explain(error: InstantiationException, where: str) -> str:
    """One line: the config key, the target and what went wrong (with a suggestion)."""
    message = str(error)
    full_key = _FULL_KEY.search(message)
    key = full_key.group(1) if full_key else ""
    if not key.startswith(where):  # Hydra names keys from the root of the node it was given
        key = f"{where}.{key}" if key else where
    target = _TARGET.search(message)
    cause = error.__cause__ if error.__cause__ is not None else error
    unexpected = _UNEXPECTED.search(str(cause))
    if unexpected is not None and target is not None:
        try:
            parameters = inspect.signature(hydra.utils.get_object(target.group(1))).parameters
        except (ImportError, ValueError, TypeError, AttributeError):
            parameters = {}
        name = unexpected.group(1)
        suggestion = did_you_mean(name, parameters)
        return f"{key}.{name}: {target.group(1)} has no argument '{name}'{suggestion}"
    if cause is error:  # e.g. a target that cannot be imported: Hydra's first line says it
        return f"{key}: {message.splitlines()[0]}"
    return f"{key}: {type(cause).__name__}: {str(cause).splitlines()[0]}"


_NUMBER = re.compile(r"\b(int|float)\b")
_TEXT = re.compile(r"\b(str|Any)\b")


def _text_for_a_number(cfg: DictConfig, where: str) -> str | None:
    """ "<where>.<key>: expected <annotation>, got '<text>'" for the first argument given as text
    where the target's signature annotates a number (e.g. ``trainer.max_steps=abc``), else None.
    Lightning and torch fail on such values deep inside with a TypeError that names no key."""
    try:
        parameters = inspect.signature(hydra.utils.get_object(cfg._target_)).parameters
    except (ImportError, ValueError, TypeError, AttributeError):
        return None
    for name, value in cfg.items():
        if not isinstance(value, str) or name not in parameters:
            continue
        annotation = parameters[name].annotation
        text = annotation if isinstance(annotation, str) else str(annotation)
        text = getattr(annotation, "__name__", text) if isinstance(annotation, type) else text
        if _NUMBER.search(text) and not _TEXT.search(text):
            return f"{where}.{name}: expected {text}, got {value!r}"
    return None


def instantiate(cfg: DictConfig, where: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate(cfg, **kwargs)``; a ``ConfigError`` naming ``where`` on failure."""
    try:
        return hydra.utils.instantiate(cfg, **kwargs)
    except InstantiationException as error:
        if isinstance(error.__cause__, TypeError) and isinstance(cfg, DictConfig):
            wrong_type = _text_for_a_number(cfg, where)
            if wrong_type is not None:
                raise ConfigError(wrong_type) from error
        raise ConfigError(_explain(error, where)) from error


def instantiate_collection(cfg: DictConfig | None, where: str) -> list:
    """Instantiate every non-null entry of ``cfg`` in order; ``where`` names it in errors."""
    if cfg is None:
        return []
    if not isinstance(cfg, DictConfig):
        raise ConfigError(
            f"{where}: expected a mapping of name -> config with _target_, got {cfg!r}"
        )
    objects = []
    for name in cfg:
        node = cfg[name]
        if node is None:
            continue
        if not isinstance(node, DictConfig) or "_target_" not in node:
            shown = OmegaConf.to_container(node) if isinstance(node, DictConfig) else node
            raise ConfigError(f"{where}.{name}: expected a config with a _target_, got {shown!r}")
        objects.append(instantiate(node, f"{where}.{name}"))
    return objects
