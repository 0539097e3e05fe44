"""train.py end to end on tiny configs: presets, checkpoints, resuming, loggers, sweeps, DDP."""

import math
import os
import subprocess
import sys
import time

import pytest
import torch
from hydra import initialize_config_dir

import train  # noqa: E402
from lightning_modules.run.checkpoints import CONFIG_KEY, read_checkpoint  # noqa: E402
from lightning_modules.run.config_schema import ConfigError  # noqa: E402
from tests.conftest import REPO_ROOT
from tests.conftest_config import (  # noqa: E402
    CONF_DIR,
    DATA_TINY,
    PRESETS,
    TRAINER_TINY,
    compose_config,
    model_tiny,
    tiny_overrides,
    tiny_training_run,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    return tiny_training_run(tmp_path_factory)


def _train(overrides: list[str]):
    torch.manual_seed(0)
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose_config("train", overrides)
        return train.train(cfg)


@pytest.mark.parametrize("preset", PRESETS)
def test_fast_dev_run_of_every_preset(tmp_path, preset):
    overrides = [o for o in tiny_overrides(preset, tmp_path) if "warmup_steps" not in o]
    metrics, objects = _train([*overrides, "debug=fdr"])  # fdr drops the scheduler
    assert objects["trainer"].global_step == 1
    assert math.isfinite(metrics["train/loss"])
    assert not list(tmp_path.rglob("*.ckpt"))  # fast_dev_run: nothing saved, as fdr promises
    if preset == "flow_pretrain":
        assert "test/psnr" not in metrics  # the flow task has no test step; skipped
        assert 0 < metrics["val/flow_error_ratio"] < 2
    else:
        assert 0 < metrics["test/psnr"] < 60
        assert (metrics["test/bpp"] == 0) == (preset == "no_codec")


def test_training_writes_checkpoints_with_config_logs_and_images(tiny_run):
    out_dir = tiny_run["out_dir"]
    assert tiny_run["best"].is_file() and tiny_run["best"].parent == out_dir / "checkpoints"
    assert tiny_run["last"] == out_dir / "checkpoints" / "last.ckpt"
    stored = read_checkpoint(tiny_run["last"])[CONFIG_KEY]
    assert stored["model"]["task"]["net"]["restoration"]["channels"] == [4, 8, 16]
    assert stored["paths"]["output_dir"] == str(out_dir)  # resolved, no interpolations left
    header = (out_dir / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert {"train/loss", "val/psnr", "test/psnr", "train/bpp"} <= set(header.split(","))
    images = {p.parent.name for p in (out_dir / "csv").rglob("*.png")}
    assert {"strips", "codec_maps", "flow"} <= images
    assert math.isfinite(tiny_run["metrics"]["test/psnr"])


def test_resume_continues_step_and_optimizer_state(tiny_run, tmp_path):
    assert tiny_run["global_step"] == 2
    overrides = [
        *tiny_overrides("adaptive_q", tmp_path),
        f"ckpt_path={tiny_run['last']}",
        "trainer.max_epochs=2",
        "test=false",
    ]
    _, objects = _train(overrides)
    trainer = objects["trainer"]
    assert trainer.global_step == 4  # 2 restored + 2 new, not 2
    adam_steps = {float(s["step"]) for s in trainer.optimizers[0].state.values()}
    assert adam_steps == {4.0}  # AdamW moments continued from the checkpoint
    assert trainer.current_epoch == 2


def test_wandb_offline_run_directory_with_logged_keys(tmp_path):
    import wandb

    try:
        _train([*tiny_overrides("no_codec", tmp_path, logger="wandb"), "test=false"])
    finally:
        if wandb.run is not None:
            wandb.finish()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((tmp_path / "wandb").iterdir())
    log_file = next(runs[0].glob("run-*.wandb"))
    keys = (b"train/loss", b"val/psnr", b"val/strips", b"model")
    # wandb's service process writes this log; once in a full suite (2 cores, session 21) the
    # file held only its 7-byte header when read right after finish(), so wait for it (≤ 30 s).
    deadline = time.monotonic() + 30.0
    while not all(k in log_file.read_bytes() for k in keys) and time.monotonic() < deadline:
        time.sleep(0.5)
    records = log_file.read_bytes()
    for key in keys:
        assert key in records, key
    assert os.environ["WANDB_DIR"].startswith(str(tmp_path.parent))  # conftest: tmp only


def test_misspelled_key_fails_before_anything_heavy(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.rate_wieght.*did you mean 'rate_weight'"):
        _train([*tiny_overrides("adaptive_q", tmp_path), "+model.rate_wieght=0.1"])
    assert not (tmp_path / "checkpoints").exists()
    with pytest.raises(FileNotFoundError, match="ckpt_path"):
        _train([*tiny_overrides("adaptive_q", tmp_path), "ckpt_path=/no/such/last.ckpt"])


def test_multirun_logs_a_failing_job_and_goes_on(tmp_path):
    """Job 0 has an invalid λ (< 0) and fails; job 1 still trains and writes its folder."""
    overrides = [
        "model=no_codec",
        "logger=csv",
        "debug=fdr",
        f"paths.log_dir={tmp_path}",
        f"hydra.sweep.dir={tmp_path}/sweep",
        *DATA_TINY,
        *TRAINER_TINY,
        *[o for o in model_tiny("no_codec") if "warmup_steps" not in o],
    ]
    result = subprocess.run(
        [sys.executable, "train.py", "-m", "model.rate_weight=-1,0.01", *overrides],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    log_0 = (tmp_path / "sweep" / "0" / "debug.log").read_text()
    assert "failed; the sweep goes on" in log_0 and "Traceback" in log_0
    assert "rate_weight must be >= 0" in log_0
    log_1 = (tmp_path / "sweep" / "1" / "debug.log").read_text()
    assert "failed" not in log_1 and "Traceback" not in log_1


def test_ddp_cpu_two_processes(tmp_path):
    metrics, objects = _train(
        [*tiny_overrides("no_codec", tmp_path), "trainer=ddp_cpu", "test=false", "~logger"]
    )
    assert objects["trainer"].world_size == 2
    assert math.isfinite(metrics["val/psnr"])


def test_training_with_flow_from_the_data_loader(tmp_path):
    """data.flow_estimator=${model.flow}: the loader estimates DIS flow on the full frames and
    training and validation run on it; a trainable flow stage is refused with one message."""
    base = [
        *tiny_overrides("no_codec", tmp_path),
        "test=false",
        "+data.flow_estimator=${model.flow}",
    ]
    metrics, objects = _train(base)
    assert objects["trainer"].global_step == 2
    assert math.isfinite(metrics["train/loss"]) and 0 < metrics["val/psnr"] < 60
    batch = next(iter(objects["datamodule"].train_dataloader()))
    assert batch["flow"].shape == (*batch["lq"].shape[:2], 2, *batch["lq"].shape[3:])
    with pytest.raises(Exception, match="trainable weights"):
        _train([*base, "model/flow=spynet", "model.flow.num_levels=3"])
