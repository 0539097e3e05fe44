"""Kill and resume (lightning_modules/run/resume.py): a real ``train.py`` is SIGKILLed mid-epoch,
``ckpt_path=last`` resumes it in the same run folder, and its per-step losses equal those of a
run that was never stopped; ``resume_argv`` resolves ``last`` and reuses folder and wandb run."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_modules.run.config_schema import ConfigError
from lightning_modules.run.resume import (
    RngStateInCheckpoint,
    requeued_job_checkpoint,
    resume_argv,
    run_folder,
)
from tests.conftest_config import CONF_DIR

REPO = CONF_DIR.parent
STEPS_PER_EPOCH = 5
EPOCHS = 2
OVERRIDES = [
    "model=adaptive_q",  # the codec's training noise draws from torch's global RNG
    "logger=csv",
    "+logger.csv.flush_logs_every_n_steps=1",  # rows reach metrics.csv before the kill
    "model.warmup_steps=0",
    "model.channels=8",
    "model.mv_refine.channels=8",
    "model.codec.latent_channels=8",
    "model.codec.hyper_channels=8",
    "data.train_sequences.num_sequences=2",
    "data.train_sequences.num_frames=4",
    "data.train_sequences.size=[32,32]",
    "data.clip_len=2",
    "data.patch_size=24",
    "data.batch_size=1",
    "data.temporal_strides=[1]",
    "data.num_workers=0",
    f"data.clips_per_epoch={STEPS_PER_EPOCH}",
    "trainer.accelerator=cpu",
    f"trainer.max_epochs={EPOCHS}",
    "trainer.limit_val_batches=0",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
    "trainer.deterministic=true",
    "callbacks=model_checkpoint",
    "callbacks.model_checkpoint.monitor=null",
    "callbacks.model_checkpoint.every_n_epochs=0",
    "+callbacks.model_checkpoint.every_n_train_steps=1",
    "test=false",
    "seed=7",
]


def _train(log_dir: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "train.py", *OVERRIDES, f"paths.log_dir={log_dir}", *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process: subprocess.Popen, timeout: float = 120) -> None:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-3000:]


def _runs(log_dir: Path) -> list[Path]:
    return sorted((log_dir / "train" / "runs").glob("*"))


def _losses(run: Path) -> dict[int, float]:
    """train/loss by step from the run's CSV log (the last row of a step wins)."""
    with open(run / "csv" / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    return {int(r["step"]): float(r["train/loss"]) for r in rows if r.get("train/loss")}


def _global_step(path: Path) -> int | None:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])
    except (OSError, EOFError, RuntimeError, KeyError):
        return None


@pytest.mark.timeout(300)
def test_sigkill_mid_epoch_then_ckpt_path_last_gives_the_uninterrupted_losses(tmp_path):
    reference = _train(tmp_path / "reference")
    victim = _train(tmp_path / "killed")
    deadline = time.monotonic() + 150
    step = None
    while time.monotonic() < deadline and victim.poll() is None:
        found = list((tmp_path / "killed").glob("train/runs/*/checkpoints/last.ckpt"))
        step = _global_step(found[0]) if found else None
        if step is not None and step >= 2:
            break
        time.sleep(0.02)
    assert victim.poll() is None, victim.communicate()[0][-3000:]  # still training
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    (run,) = _runs(tmp_path / "killed")
    resumed_from = _global_step(run / "checkpoints" / "last.ckpt")
    assert resumed_from is not None and 2 <= resumed_from < STEPS_PER_EPOCH * EPOCHS, resumed_from
    # killed mid-epoch 0 (or early in epoch 1): the resume must continue inside an epoch
    assert resumed_from % STEPS_PER_EPOCH != 0 or resumed_from == STEPS_PER_EPOCH

    _finish(_train(tmp_path / "killed", "ckpt_path=last"))
    _finish(reference)

    assert _runs(tmp_path / "killed") == [run]  # the resumed fit wrote into the same folder
    expected = _losses(_runs(tmp_path / "reference")[0])
    assert sorted(expected) == list(range(STEPS_PER_EPOCH * EPOCHS))
    got = _losses(run)  # one CSV with the whole training: the killed run's rows, then the resumed
    assert sorted(got) == sorted(expected), sorted(got)
    after = list(range(resumed_from, STEPS_PER_EPOCH * EPOCHS))
    assert [got[s] for s in after] == [expected[s] for s in after]
    assert [got[s] for s in range(resumed_from)] == [expected[s] for s in range(resumed_from)]
    assert _global_step(run / "checkpoints" / "last.ckpt") == STEPS_PER_EPOCH * EPOCHS


def _fake_run(root: Path, name: str, mtime: float, wandb_id: str | None = None) -> Path:
    run = root / "train" / "runs" / name
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    last = run / "checkpoints" / "last.ckpt"
    torch.save({"global_step": 1}, last)
    os.utime(last, (mtime, mtime))
    if wandb_id:
        (run / "wandb" / f"offline-run-20260101_000000-{wandb_id}").mkdir(parents=True)
    return run


def test_ckpt_path_last_picks_the_newest_run_and_reuses_its_folder_and_wandb_run(tmp_path):
    _fake_run(tmp_path, "2026-01-01_00-00-00", 1_000)
    newest = _fake_run(tmp_path, "2025-01-01_00-00-00", 2_000, wandb_id="abc123")
    argv = resume_argv(["train.py", "logger=wandb", f"paths.log_dir={tmp_path}", "ckpt_path=last"])
    assert argv[:3] == ["train.py", "logger=wandb", f"paths.log_dir={tmp_path}"]
    assert argv[3] == f"ckpt_path={newest / 'checkpoints' / 'last.ckpt'}"
    assert f"hydra.run.dir={newest}" in argv
    assert "logger.wandb.id=abc123" in argv and "++logger.wandb.resume=allow" in argv
    # csv logger: no wandb override; an explicit run dir is kept
    argv = resume_argv(
        ["train.py", "logger=csv", f"paths.log_dir={tmp_path}", "ckpt_path=last", "hydra.run.dir=x"]
    )
    assert not any("wandb" in a for a in argv) and argv.count("hydra.run.dir=x") == 1


def test_ckpt_path_outside_a_run_folder_and_no_ckpt_path_change_nothing(tmp_path):
    loose = tmp_path / "downloaded.ckpt"
    torch.save({}, loose)
    assert run_folder(loose) is None
    assert resume_argv(["train.py", f"ckpt_path={loose}"]) == ["train.py", f"ckpt_path={loose}"]
    assert resume_argv(["train.py", "model=no_codec"]) == ["train.py", "model=no_codec"]


def test_ckpt_path_last_without_a_run_is_one_clear_error(tmp_path):
    with pytest.raises(
        ConfigError, match=r"ckpt_path=last: no run of task_name='train'.*last\.ckpt"
    ):
        resume_argv(["train.py", f"paths.log_dir={tmp_path}", "ckpt_path=last"])


def test_rng_states_survive_a_weights_only_checkpoint(tmp_path):
    callback = RngStateInCheckpoint()
    torch.manual_seed(3)
    np.random.seed(3)
    state = callback.state_dict()
    expected = (torch.rand(3), np.random.rand(3), __import__("random").random())
    torch.save({"state": state}, tmp_path / "rng.ckpt")
    loaded = torch.load(tmp_path / "rng.ckpt", weights_only=True)["state"]
    torch.manual_seed(99)
    np.random.seed(99)
    callback.load_state_dict(loaded)
    callback.on_train_start(None, None)
    got = (torch.rand(3), np.random.rand(3), __import__("random").random())
    assert torch.equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[2] == expected[2]


def test_a_requeued_slurm_job_resumes_from_its_newest_own_checkpoint(tmp_path):
    """SLURM_RESTART_COUNT > 0: the newest of checkpoints/last.ckpt and hpc_ckpt_*.ckpt in the
    job's own folder; a first run, or a job without checkpoints, starts afresh."""
    (tmp_path / "checkpoints").mkdir()
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert requeued_job_checkpoint(tmp_path, {"SLURM_RESTART_COUNT": "1"}) is None
    last.write_bytes(b"x")
    assert requeued_job_checkpoint(tmp_path, {}) is None  # not requeued
    assert requeued_job_checkpoint(tmp_path, {"SLURM_RESTART_COUNT": "0"}) is None
    assert requeued_job_checkpoint(tmp_path, {"SLURM_RESTART_COUNT": "2"}) == last
    hpc = tmp_path / "hpc_ckpt_1.ckpt"
    hpc.write_bytes(b"y")
    os.utime(last, (time.time() - 60, time.time() - 60))
    assert requeued_job_checkpoint(tmp_path, {"SLURM_RESTART_COUNT": "1"}) == hpc
    os.utime(hpc, (time.time() - 120, time.time() - 120))
    assert requeued_job_checkpoint(tmp_path, {"SLURM_RESTART_COUNT": "1"}) == last
