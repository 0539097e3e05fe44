"""AtomicCheckpointIO: a process SIGKILLed while it saves never leaves a broken ``last.ckpt``, and
its leftover temporary file is neither a ``*.ckpt`` nor kept by the next save."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import random
import signal
import time
from pathlib import Path

import pytest
import torch

from lightning_modules.run.atomic_checkpoint_io import AtomicCheckpointIO, atomic_torch_save
from lightning_modules.run.atomic_files import stale_temps as stale_temp_files
from tests.conftest_config import compose_config

NUMBERS = 6_000_000  # 24 MB of float32: a save takes long enough to be killed inside it


def _keep_saving(path: str, saved) -> None:
    """Child: save checkpoints 0, 1, 2, ... to ``path`` through the plugin until killed."""
    io = AtomicCheckpointIO()
    step = 0
    while True:
        io.save_checkpoint({"step": step, "weights": torch.full((NUMBERS,), float(step))}, path)
        saved.value = step
        step += 1


def _wait(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the saving process made no progress")
        time.sleep(0.001)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sigkill_while_saving_never_breaks_last_ckpt(tmp_path):
    path = tmp_path / "last.ckpt"
    context = multiprocessing.get_context("fork")  # torch already imported: no 5 s start-up
    chooser = random.Random(12)
    killed_mid_write = 0
    for kill in range(5):
        saved = context.Value("q", -1)
        child = context.Process(target=_keep_saving, args=(str(path), saved), daemon=True)
        child.start()
        _wait(lambda saved=saved: saved.value >= 0)  # a first complete save of this process
        if kill % 2 == 0:  # as soon as a write is under way
            _wait(lambda: bool(stale_temp_files(path)))
        else:  # at a random moment
            time.sleep(chooser.uniform(0.0, 0.3))
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        last_saved = saved.value
        killed_mid_write += bool(stale_temp_files(path))

        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        step = checkpoint["step"]
        assert last_saved <= step <= last_saved + 1  # the last complete save (or the one after)
        assert checkpoint["weights"].shape == (NUMBERS,)
        assert bool((checkpoint["weights"] == step).all())
        assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["last.ckpt"]
    assert killed_mid_write >= 1  # the kills did land inside writes

    atomic_torch_save({"step": -1}, path)  # the next save removes what killed saves left
    assert stale_temp_files(path) == [] and sorted(os.listdir(tmp_path)) == ["last.ckpt"]
    assert torch.load(path, weights_only=True) == {"step": -1}


def test_a_failed_save_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1}, path)  # creates the folder
    with pytest.raises((pickle.PicklingError, AttributeError)):  # a lambda cannot be saved
        AtomicCheckpointIO().save_checkpoint({"step": 2, "bad": lambda: None}, path)
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert os.listdir(path.parent) == ["last.ckpt"]


def test_every_trainer_config_uses_the_atomic_plugin():
    for trainer in sorted(
        p.stem for p in (Path(__file__).parents[3] / "conf" / "trainer").glob("*.yaml")
    ):
        cfg = compose_config("train", [f"trainer={trainer}", "paths.output_dir=."])
        targets = [p["_target_"] for p in cfg.trainer.get("plugins") or []]
        assert targets == ["lightning_modules.run.atomic_checkpoint_io.AtomicCheckpointIO"], trainer
