"""Per-job metrics and the sweep summary of a multirun (a Hydra callback, not a Lightning one).

- ``write_job_metrics(output_dir, metrics, optimized_metric, optimized_value)``: ``train.py``
  writes ``<job dir>/metrics.json`` (``{"optimized_metric", "optimized_value", "metrics"}``,
  plain floats, NaN as null) at the end of every run, from rank zero only.
- ``SweepSummary``: configured under ``hydra.callbacks`` (``conf/hydra/default.yaml``); when a
  multirun ends (after the last job, in the launching process, whatever the launcher) it reads
  every job folder of the sweep (``.hydra/overrides.yaml`` and ``metrics.json``) and writes
  ``sweep_summary.csv`` and ``sweep_summary.md`` into the sweep folder: one row per job with its
  overrides, the optimized value and its final metrics; a job without ``metrics.json`` (it
  failed) is listed with status ``failed``. Sweeps in which no job wrote metrics (``eval.py``,
  ``restore.py``) get no summary.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from pytorch_lightning.utilities import rank_zero_only

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
SUMMARY_CSV = "sweep_summary.csv"
SUMMARY_MD = "sweep_summary.md"


def _number(value: Any) -> float | None:
    """A float for JSON (None for NaN/inf, which JSON cannot hold)."""
    value = float(value)
    return value if math.isfinite(value) else None


@rank_zero_only
def write_job_metrics(
    output_dir: str | Path,
    metrics: dict[str, float],
    optimized_metric: str | None,
    optimized_value: float,
) -> Path:
    """Write ``<output_dir>/metrics.json`` with the run's final metrics; returns its path."""
    path = Path(output_dir) / METRICS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "optimized_metric": optimized_metric,
        "optimized_value": _number(optimized_value),
        "metrics": {key: _number(value) for key, value in sorted(metrics.items())},
    }
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def _job_overrides(job_dir: Path) -> list[str]:
    overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
    return [str(o) for o in overrides]


def collect_jobs(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """One record per job folder of ``sweep_dir`` (a folder with ``.hydra/overrides.yaml``),
    in job order: ``job``, ``status`` (ok | failed), ``overrides`` ({key: value}),
    ``optimized_metric``, ``optimized_value`` and ``metrics``."""
    jobs = []
    for job_dir in Path(sweep_dir).iterdir():
        if not (job_dir / ".hydra" / "overrides.yaml").is_file():
            continue
        overrides = dict(o.split("=", 1) if "=" in o else (o, "") for o in _job_overrides(job_dir))
        record: dict[str, Any] = {"job": job_dir.name, "overrides": overrides, "metrics": {}}
        metrics_file = job_dir / METRICS_FILE
        if metrics_file.is_file():
            record.update(json.loads(metrics_file.read_text()), status="ok")
        else:
            record.update(status="failed", optimized_metric=None, optimized_value=None)
        jobs.append(record)
    return sorted(jobs, key=lambda r: (len(r["job"]), r["job"]))  # 0, 1, ..., 10 (numbers)


def common_overrides(jobs: list[dict[str, Any]]) -> dict[str, str]:
    """The overrides every job has with the same value (the sweep's fixed settings)."""
    first = jobs[0]["overrides"] if jobs else {}
    return {
        key: value
        for key, value in first.items()
        if all(job["overrides"].get(key) == value for job in jobs)
    }


def summary_table(jobs: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """(header, rows): job, status, one column per swept key (an override whose value differs
    between jobs), the optimized value, every final metric, and all of the job's overrides."""
    fixed = common_overrides(jobs)
    swept = sorted({key for job in jobs for key in job["overrides"] if key not in fixed})
    metric_keys = sorted({key for job in jobs for key in job["metrics"]})
    objective = next((j["optimized_metric"] for j in jobs if j.get("optimized_metric")), None)
    header = ["job", "status", *swept, f"best {objective}" if objective else "objective"]
    header += [*metric_keys, "overrides"]
    rows = [
        [
            job["job"],
            job["status"],
            *[job["overrides"].get(key, "") for key in swept],
            job.get("optimized_value"),
            *[job["metrics"].get(key) for key in metric_keys],
            " ".join(f"{key}={value}" for key, value in job["overrides"].items()),
        ]
        for job in jobs
    ]
    return header, rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_summary(sweep_dir: str | Path) -> tuple[Path, Path] | None:
    """Write ``sweep_summary.csv`` and ``.md`` into ``sweep_dir``; None (nothing written) when
    no job wrote ``metrics.json`` (no jobs, or a sweep of ``eval.py`` / ``restore.py``)."""
    sweep_dir = Path(sweep_dir)
    jobs = collect_jobs(sweep_dir) if sweep_dir.is_dir() else []
    if not any(job["status"] == "ok" for job in jobs):
        return None
    header, rows = summary_table(jobs)
    csv_path, md_path = sweep_dir / SUMMARY_CSV, sweep_dir / SUMMARY_MD
    with csv_path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows([[_cell(v) for v in row] for row in rows])
    fixed = " ".join(f"`{key}={value}`" for key, value in common_overrides(jobs).items())
    header, rows = header[:-1], [row[:-1] for row in rows]  # markdown: fixed settings once
    lines = [
        f"# Sweep summary: {sweep_dir}",
        "",
        f"{len(jobs)} jobs. Overrides common to all: {fixed or 'none'}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows],
        "",
    ]
    md_path.write_text("\n".join(lines))
    return csv_path, md_path


class SweepSummary(Callback):
    """Hydra callback: ``sweep_summary.csv`` / ``.md`` in the sweep folder when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        written = write_summary(sweep_dir)
        if written is not None:
            log.info("sweep summary: %s (and %s)", written[1], written[0].name)


class StorageFolder(Callback):
    """Hydra callback: create the folder of a ``sqlite:///<path>`` sweeper storage before the
    sweeper opens it (sqlite creates the file, not its folder)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        storage = config.hydra.sweeper.get("storage")
        if isinstance(storage, str) and storage.startswith("sqlite:///"):
            Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
