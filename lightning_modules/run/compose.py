"""Compose the real config tree outside an entry point (tests, benchmarks, notebooks).

``compose_config(name, overrides)`` composes ``conf/<name>.yaml`` with Hydra's compose API, as
``python train.py <overrides>`` would, and makes it the current Hydra config (so ``${hydra:...}``
resolves and phased training can recompose). ``build_network(preset, overrides)`` instantiates
the network of a model preset from it: the presets live only in ``conf/model/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from torch import nn

from lightning_modules.run.instantiate import instantiate
from lightning_modules.run.resolvers import register_resolvers
from lightning_modules.run.structured_configs import register_configs

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def compose_config(name: str = "train", overrides: Sequence[str] = ()) -> DictConfig:
    """``conf/<name>.yaml`` composed with ``overrides`` (without the ``hydra`` node).

    Initialises Hydra on ``conf/`` unless the caller already did (``initialize_config_dir``).
    """
    register_resolvers()
    register_configs()
    if not GlobalHydra.instance().is_initialized():
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            return compose_config(name, overrides)
    cfg = compose(config_name=name, overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def build_network(preset: str = "adaptive_q", overrides: Sequence[str] = ()) -> nn.Module:
    """The network of ``conf/model/<preset>.yaml`` with ``overrides`` (``model.channels=16``)."""
    cfg = compose_config("train", [f"model={preset}", "paths.output_dir=.", *overrides])
    return instantiate(cfg.model.task.net, "model.task.net")
