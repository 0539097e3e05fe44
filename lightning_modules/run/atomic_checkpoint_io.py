"""``AtomicCheckpointIO``: a checkpoint file is either the old one or the complete new one.

Lightning's ``TorchCheckpointIO`` writes through an fsspec transaction whose local temporary
file lives in the system temp folder; the final move is then a copy across file systems, and
nothing is fsynced, so a kill or a power cut can leave a truncated ``last.ckpt``. Here, for
local paths, ``save_checkpoint`` writes through ``atomic_files.atomic_output``: a hidden
temporary file in the target's own folder (``.<name>.partial-<random>.tmp``: no ``*.ckpt`` glob
matches it), fsynced, ``os.replace``d onto the final name (atomic within one file system), then
the folder fsynced so the rename itself is durable. Temporary files that a killed save left for
the same name are removed by the next save of that name. Remote paths (``s3://``, ...) keep
Lightning's own behaviour.

Wired into every trainer config (``conf/trainer/default.yaml``: ``plugins``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.utilities.cloud_io import get_filesystem
from pytorch_lightning.plugins.io import TorchCheckpointIO

from lightning_modules.run.atomic_files import atomic_output, remove_stale_temps

TEMP_SUFFIX = ".tmp"  # not ".ckpt": no checkpoint glob may pick up a half-written file


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` through ``atomic_output`` (see the module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    with atomic_output(path, suffix=TEMP_SUFFIX) as temp:
        torch.save(obj, temp)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves are atomic and durable (module docstring)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        protocol = get_filesystem(path).protocol
        local = "file" in ((protocol,) if isinstance(protocol, str) else protocol)
        if storage_options is not None or not local:
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        atomic_torch_save(checkpoint, path)
