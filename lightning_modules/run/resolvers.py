"""The OmegaConf resolvers the config tree uses; ``register_resolvers()`` installs them.

- ``${eq:a,b}``: a == b (e.g. the noise-map input follows ``data.task == denoise``);
- ``${int:x}``: int(x) (booleans to 0/1 channel counts);
- ``${channel_pyramid:N}``: [N/4, N/2, N], the feature channels of scales 1, 1/2, 1/4;
- ``${extra_inputs:noise_channel,guide_frame,blend,previous_input}``: channels the U-Net reads
  beside the frame (``network.extra_input_channels``);
- ``${wandb_offline:}``: offline unless the user is logged in or set WANDB_MODE=online;
- ``${task_of:degradation}``: the task a synthetic degradation makes (noise -> denoise, ...).
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path

from omegaconf import OmegaConf

from datamodules.degradations import TASK_OF_DEGRADATION
from lightning_modules.stages.network import extra_input_channels


def wandb_offline() -> bool:
    """True unless wandb can go online: WANDB_MODE=online, or a key in WANDB_API_KEY or netrc."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "dryrun", "disabled"):
        return True
    if mode == "online" or os.environ.get("WANDB_API_KEY"):
        return False
    netrc_path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return netrc.netrc(netrc_path).authenticators("api.wandb.ai") is None
    except (OSError, netrc.NetrcParseError):
        return True


def channel_pyramid(channels: int) -> list[int]:
    """Feature channels (N/4, N/2, N) of scales 1, 1/2, 1/4 for N = ``channels``."""
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 4 or channels % 4:
        raise ValueError(f"model.channels: expected a positive multiple of 4, got {channels!r}")
    return [channels // 4, channels // 2, channels]


def task_of(degradation: str) -> str:
    """denoise / derain / dehaze for noise / rain / haze; an error naming data.task otherwise."""
    if degradation not in TASK_OF_DEGRADATION:
        raise ValueError(
            f"data.degradation={degradation!r} implies no task; set data.task to one of "
            f"{', '.join(TASK_OF_DEGRADATION.values())}"
        )
    return TASK_OF_DEGRADATION[degradation]


def register_resolvers() -> None:
    """Register the resolvers of the module docstring (idempotent)."""
    resolvers = {
        "task_of": task_of,
        "eq": lambda a, b: a == b,
        "int": lambda x: int(x),
        # a ListConfig, not a list: OmegaConf.resolve() cannot store a plain list in a value node
        "channel_pyramid": lambda n: OmegaConf.create(channel_pyramid(n)),
        "wandb_offline": wandb_offline,
        "extra_inputs": lambda noise, guide, blend, previous: extra_input_channels(
            bool(noise), bool(guide), blend is not None, bool(previous)
        ),
    }
    for name, fn in resolvers.items():
        OmegaConf.register_new_resolver(name, fn, replace=True)
