"""Data-parallel training on 2 CPU processes (gloo) through the real ``train.py``.

Run as a subprocess (docs: ``strategy=ddp`` inside pytest re-runs pytest in the child rank). A
test-only callback (``tests/rank_probe.py``) writes what each rank saw; the tests check that the
ranks got different clips (Lightning's DistributedSampler), agree on every epoch metric (synced),
and that the run left one run folder with one set of checkpoints and logs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.conftest_config import model_tiny

pytestmark = pytest.mark.slow

DATA_DDP = [  # 4 x 2 training windows, each once per epoch; 2 validation clips: half each rank
    "data.train_sequences.num_sequences=4",
    "data.train_sequences.num_frames=4",
    "data.train_sequences.size=[40,40]",
    "data.val_sequences.num_sequences=2",
    "data.val_sequences.num_frames=3",
    "data.val_sequences.size=[32,32]",
    "data.clip_len=3",
    "data.patch_size=32",
    "data.batch_size=1",
    "data.val_batch_size=1",
    "data.temporal_strides=[1]",
    "data.num_workers=0",
    "data.clips_per_epoch=8",
]


def _run_ddp(tmp_path: Path, strategy: str) -> tuple[dict[int, dict], Path]:
    """One epoch of ``trainer=ddp_cpu`` with ``strategy``; (rank -> probe record, run folder)."""
    probe = tmp_path / "probe"
    command = [
        sys.executable,
        "train.py",
        "trainer=ddp_cpu",
        f"trainer.strategy={strategy}",
        "model=no_codec",
        "logger=csv",
        "test=false",
        f"paths.log_dir={tmp_path}/logs",
        *DATA_DDP,
        *model_tiny("no_codec"),
        "trainer.max_epochs=1",
        "trainer.num_sanity_val_steps=0",
        "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false",
        "callbacks.rich_progress_bar=null",
        "callbacks.rich_model_summary=null",
        "callbacks.purification.tsne_points=0",
        "+callbacks.rank_probe._target_=tests.rank_probe.RankProbe",
        f"+callbacks.rank_probe.out_dir={probe}",
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    records = {}
    for path in sorted(probe.glob("rank*.json")):
        record = json.loads(path.read_text())
        records[record["global_rank"]] = record
    runs = sorted((tmp_path / "logs" / "train" / "runs").iterdir())
    assert len(runs) == 1, f"one run folder expected, got {runs}"
    return records, runs[0]


@pytest.mark.parametrize("strategy", ["ddp_spawn", "ddp"])
def test_ranks_see_different_clips_and_agree_on_synced_metrics(tmp_path, strategy):
    records, run_dir = _run_ddp(tmp_path, strategy)
    assert sorted(records) == [0, 1] and all(r["world_size"] == 2 for r in records.values())

    # The training sampler (a DistributedSampler): disjoint shards that together cover the 8
    # training windows (had the ranks drawn different orders, 69 in 70 would overlap).
    train = [{tuple(clip) for clip in records[rank]["train_clips"]} for rank in (0, 1)]
    assert len(train[0]) == len(train[1]) == 4 and not train[0] & train[1]
    assert len(train[0] | train[1]) == 8
    val = [{tuple(clip) for clip in records[rank]["val_clips"]} for rank in (0, 1)]
    assert len(val[0]) == len(val[1]) == 1 and val[0] != val[1]

    # Epoch metrics are reduced across ranks: both report the same value for each key, though
    # each rank scored a different validation clip.
    metrics = [records[rank]["val_metrics"][-1] for rank in (0, 1)]
    assert {"val/psnr", "val/loss", "val/temporal_gain_db"} <= set(metrics[0])
    assert metrics[0] == metrics[1]

    # One run folder: one set of checkpoints, one logger run (rank zero writes them).
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert checkpoints == ["best_epoch000_step000004.ckpt", "last.ckpt"]
    assert [p.name for p in run_dir.iterdir() if p.name.startswith(("csv", "version"))] == ["csv"]
    rows = (run_dir / "csv" / "metrics.csv").read_text().splitlines()
    val_rows = [row for row in rows[1:] if row.split(",")[rows[0].split(",").index("val/psnr")]]
    assert len(val_rows) == 1  # one validation, logged once (not once per rank)
    images = list((run_dir / "csv" / "images").rglob("*.png"))
    assert images and all("step0000004" in p.name for p in images)
