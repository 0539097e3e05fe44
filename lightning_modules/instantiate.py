"""Instantiate a named collection of ``_target_`` nodes (``callbacks``, ``logger``) in one place.

A collection is a dict of name -> node; a ``null`` entry (or a null collection) is switched off, so
``callbacks.early_stopping=null`` removes one callback and ``logger=null`` removes all loggers.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf


def instantiate_collection(cfg: DictConfig | None, where: str) -> list:
    """Instantiate every non-null entry of ``cfg`` in order; ``where`` names it in errors."""
    if cfg is None:
        return []
    if not isinstance(cfg, DictConfig):
        raise TypeError(f"{where}: expected a mapping of name -> config with _target_, got {cfg!r}")
    objects = []
    for name in cfg:
        node = cfg[name]
        if node is None:
            continue
        if not isinstance(node, DictConfig) or "_target_" not in node:
            shown = OmegaConf.to_container(node) if isinstance(node, DictConfig) else node
            raise TypeError(f"{where}.{name}: expected a config with a _target_, got {shown!r}")
        objects.append(hydra.utils.instantiate(node))
    return objects
