"""The submitit launchers: the sbatch script SLURM would get, and a real local 2-job sweep.

No SLURM here: the SLURM test renders the batch script with submitit's own code from our
``hydra/launcher=submitit_slurm`` config (a stand-in ``srun`` on PATH lets submitit's executor
start) and checks what Lightning needs: one task per GPU, nodes, the requeue signal. The local
test runs ``train.py -m hydra/launcher=submitit_local`` for two models and checks both jobs ran
in their own folders, wrote their metrics, and the sweep summary lists them.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from tests.conftest import REPO_ROOT
from tests.conftest_config import CONF_DIR
from tests.test_sweeps import SWEEP_TINY

submitit = pytest.importorskip("submitit")
# Our launcher yamls carry the plugin's schema names on purpose (typed keys); Hydra notes that.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:\s*'hydra/launcher/submitit_\w+' is validated against ConfigStore:UserWarning"
)


def _sbatch_script(tmp_path, monkeypatch, overrides: list[str]) -> str:
    """The sbatch file submitit would submit for a job of ``train.py -m <overrides>``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    from lightning_modules.run.resolvers import register_resolvers
    from lightning_modules.run.structured_configs import register_configs

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 0\n")  # submitit only checks it exists
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    register_resolvers()
    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(
            "train",
            ["hydra/launcher=submitit_slurm", f"hydra.sweep.dir={tmp_path}/sweep", *overrides],
            return_hydra_config=True,
        )
        HydraConfig.instance().set_config(cfg)
        params = dict(instantiate(cfg.hydra.launcher).params)  # resolved, as the launcher has
    # Hand the parameters to submitit's executor the way the Hydra plugin does: its own
    # names for the shared queue keys, "slurm_" + key for the others.
    executor = submitit.AutoExecutor(
        cluster="slurm",
        folder=tmp_path / "submitit",
        slurm_max_num_timeout=params.pop("max_num_timeout"),
    )
    params.pop("submitit_folder")
    shared = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in shared else f"slurm_{k}": v for k, v in params.items()})
    return executor._executor._make_submission_file_text("python -m submitit.core._submit", "0")


def test_slurm_script_has_one_task_per_gpu_and_the_lightning_requeue_signal(tmp_path, monkeypatch):
    script = _sbatch_script(
        tmp_path,
        monkeypatch,
        [
            "trainer=ddp",
            "trainer.devices=4",
            "trainer.num_nodes=2",
            "hydra.launcher.partition=gpu_long",
            "hydra.launcher.account=proj42",
            "hydra.launcher.timeout_min=720",
            "hydra.launcher.signal_delay_s=300",
        ],
    )
    lines = set(script.splitlines())
    for expected in (
        "#SBATCH --nodes=2",  # = trainer.num_nodes
        "#SBATCH --ntasks-per-node=4",  # = trainer.devices: one task per GPU
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --partition=gpu_long",
        "#SBATCH --account=proj42",
        "#SBATCH --time=720",
        "#SBATCH --signal=USR1@300",  # Lightning's SLURMEnvironment saves and requeues on USR1
        "#SBATCH --requeue",
    ):
        assert expected in lines, f"{expected} missing from:\n{script}"
    assert "USR2" not in script  # submitit's own restart-from-scratch requeue is replaced
    assert any(line.startswith("srun ") for line in lines)  # srun starts the 8 DDP processes


def test_slurm_defaults_follow_a_single_gpu_trainer(tmp_path, monkeypatch):
    script = _sbatch_script(tmp_path, monkeypatch, ["trainer=gpu"])
    assert "#SBATCH --nodes=1" in script and "#SBATCH --ntasks-per-node=1" in script
    assert "#SBATCH --gpus-per-node=1" in script
    assert "--partition" not in script and "--account" not in script  # unset: cluster default


@pytest.mark.slow
def test_submitit_local_sweep_runs_both_jobs_and_summarises_them(tmp_path):
    command = [
        sys.executable,
        "train.py",
        "-m",
        "hydra/launcher=submitit_local",
        "model=fixed_q,no_codec",
        f"paths.log_dir={tmp_path}/logs",
        f"hydra.sweep.dir={tmp_path}/sweep",
        *SWEEP_TINY,
        "model.warmup_steps=0",
        "model.channels=16",
        "model.mv_refine.channels=8",
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    sweep = tmp_path / "sweep"
    assert list((sweep / ".submitit").glob("*/*_result.pkl")), "submitit ran no job"
    for job, model in (("0", "fixed_q"), ("1", "no_codec")):
        record = json.loads((sweep / job / "metrics.json").read_text())
        assert 0 < record["optimized_value"] < 60
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()
        assert f"model={model}" in (sweep / job / ".hydra" / "overrides.yaml").read_text()
    rows = list(csv.DictReader((sweep / "sweep_summary.csv").open()))
    assert [(r["job"], r["status"], r["model"]) for r in rows] == [
        ("0", "ok", "fixed_q"),
        ("1", "ok", "no_codec"),
    ]
    assert float(rows[0]["val/bpp"]) > 0 and float(rows[1]["val/bpp"]) == 0  # no codec: no bits
