"""Shared pytest fixtures.

`shared_data` points at the real sample frames (``../shared/data`` beside the checkout, or the
``NCFL_SHARED_DATA`` environment variable). Tests that need them skip when the folder is absent,
except under CI (``CI=true``), where a missing folder is an error: there they must run.
"""

import os
from pathlib import Path

import pytest
import torch

# Test tensors are tiny: one intra-op thread avoids oversubscription on 2-core machines
# (measured 10-70x slowdowns of small ops with 2 threads on a loaded machine).
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("NCFL_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real sample frames; skips (or fails under CI) when absent."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must have the shared sample data at {SHARED_DATA}")
        pytest.skip(f"shared sample data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch, tmp_path):
    """No test may reach the network or write wandb files into the repository."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / ".wandb_cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / ".wandb_config"))
