"""Helpers shared by the tests that run tiny Lightning fits (callbacks, lightning_modules).

Import as ``from tests.lightning_helpers import ...`` (pytest puts the repository root on
``sys.path`` through ``pythonpath`` in pyproject.toml). ``one_intra_op_thread`` is an autouse
fixture: importing it into a test module is what applies it there.
"""

import pytest
import pytorch_lightning as pl
import torch


@pytest.fixture(autouse=True)
def one_intra_op_thread():
    """Tiny tensors: one intra-op thread is faster, and immune to a busy 2-core machine.

    Restores the previous count afterwards (a DDP strategy may have changed it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_trainer(tmp_path, **overrides) -> pl.Trainer:
    """A quiet CPU ``pl.Trainer`` rooted at ``tmp_path``: no logger, checkpoints, progress bar,
    model summary or sanity validation, unless ``overrides`` (any Trainer argument) say so."""
    options = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
    )
    options.update(overrides)
    return pl.Trainer(**options)
