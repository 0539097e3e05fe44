"""Sweeps: per-job ``metrics.json``, the sweep summary, and an Optuna study that resumes.

The summary functions are checked on hand-made job folders (fast); the Optuna test runs the
real ``train.py -m hparams_search=optuna_rate_lr`` twice (2 tiny trials each) on one sqlite
study and checks that the second run continues it (trial numbers 2 and 3).
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from callbacks.sweep_summary import (
    METRICS_FILE,
    SUMMARY_CSV,
    SUMMARY_MD,
    collect_jobs,
    write_job_metrics,
    write_summary,
)
from tests.conftest import REPO_ROOT
from tests.conftest_config import DATA_TINY, model_tiny

# A seconds-long training per job: 2 steps, one validation, no test, no images, csv logger.
SWEEP_TINY = [
    "logger=csv",
    "test=false",
    "callbacks=model_checkpoint",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
    *DATA_TINY,
]


def _job(sweep: Path, num: int, overrides: list[str], metrics: dict | None) -> None:
    folder = sweep / str(num)
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if metrics is not None:
        write_job_metrics(folder, metrics, "val/psnr", metrics.get("val/psnr", math.nan))


def test_summary_lists_every_job_with_its_swept_keys_and_metrics(tmp_path):
    sweep = tmp_path / "sweep"
    _job(sweep, 0, ["model=fixed_q", "model.rate_weight=0.01", "logger=csv"], {"val/psnr": 30.5})
    _job(sweep, 1, ["model=no_codec", "model.rate_weight=0.01", "logger=csv"], None)  # failed
    _job(
        sweep,
        10,
        ["model=adaptive_q", "model.rate_weight=0.01", "logger=csv"],
        {"val/psnr": 31.0, "val/bpp": math.nan},
    )
    (sweep / "multirun.yaml").write_text("{}")  # not a job folder

    jobs = collect_jobs(sweep)
    assert [j["job"] for j in jobs] == ["0", "1", "10"]
    assert [j["status"] for j in jobs] == ["ok", "failed", "ok"]
    assert jobs[2]["metrics"] == {"val/bpp": None, "val/psnr": 31.0}  # NaN: null in JSON

    csv_path, md_path = write_summary(sweep)
    rows = list(csv.DictReader(csv_path.open()))
    assert list(rows[0]) == [
        "job",
        "status",
        "model",
        "best val/psnr",
        "val/bpp",
        "val/psnr",
        "overrides",
    ]  # only the key that varies gets a column; all overrides stay in the last one
    assert [r["model"] for r in rows] == ["fixed_q", "no_codec", "adaptive_q"]
    assert [r["best val/psnr"] for r in rows] == ["30.5", "", "31"]
    assert rows[1]["status"] == "failed" and "model.rate_weight=0.01" in rows[1]["overrides"]
    markdown = md_path.read_text()
    assert "3 jobs. Overrides common to all: `model.rate_weight=0.01` `logger=csv`" in markdown
    assert "| 10 | ok | adaptive_q | 31 |  | 31 |" in markdown


def test_no_summary_without_jobs_that_wrote_metrics(tmp_path):
    assert write_summary(tmp_path) is None and write_summary(tmp_path / "absent") is None
    _job(tmp_path, 0, ["ckpt_path=a.ckpt"], None)  # e.g. an eval.py sweep: no metrics.json
    assert write_summary(tmp_path) is None
    assert not (tmp_path / SUMMARY_CSV).exists()


def _optuna(tmp_path: Path, sweep: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "train.py",
        "hparams_search=optuna_rate_lr",  # sets hydra.mode=MULTIRUN and the sqlite storage
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=1",
        f"paths.log_dir={tmp_path}/logs",
        f"hydra.sweep.dir={tmp_path}/{sweep}",
        *SWEEP_TINY,
        *model_tiny("adaptive_q"),
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result


@pytest.mark.slow
def test_optuna_study_is_stored_in_sqlite_and_a_second_run_continues_it(tmp_path):
    optuna = pytest.importorskip("optuna")
    database = tmp_path / "logs" / "train" / "optuna" / "rate_lr.db"

    first = _optuna(tmp_path, "sweep1")
    assert "A new study created in RDB" in first.stdout + first.stderr
    assert database.is_file()
    second = _optuna(tmp_path, "sweep2")  # the same command again, as after a kill
    assert "Using an existing study" in second.stdout + second.stderr

    study = optuna.load_study(study_name="rate_lr", storage=f"sqlite:///{database}")
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert all(0 < t.value < 60 for t in trials)

    # Each run: one folder per trial with its metrics, and a summary whose rows match them.
    for sweep, numbers in (("sweep1", (0, 1)), ("sweep2", (2, 3))):
        rows = list(csv.DictReader((tmp_path / sweep / SUMMARY_CSV).open()))
        assert [r["status"] for r in rows] == ["ok", "ok"]
        for row, number in zip(rows, numbers):
            record = json.loads((tmp_path / sweep / row["job"] / METRICS_FILE).read_text())
            assert record["optimized_value"] == pytest.approx(trials[number].value)
            assert float(row["best val/psnr"]) == pytest.approx(trials[number].value, rel=1e-5)
            assert float(row["model.lr"]) == pytest.approx(trials[number].params["model.lr"])
        assert (tmp_path / sweep / SUMMARY_MD).is_file()
