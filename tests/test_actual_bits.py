"""eval.py entropy_coding=true and restore.py save_latents=PATH, end to end on a tiny run."""

import csv
import math
import sys

import numpy as np
import pytest
from hydra import initialize_config_dir
from PIL import Image

import eval as evaluation
import restore
from callbacks.actual_bits import ActualBits, add_ratios, markdown_table
from lightning_modules.run.checkpoints import build_task_from_checkpoint
from lightning_modules.stages.entropy_coding import decode_hyper_latents
from lightning_modules.stages.latent_file import read_latent_file
from tests.conftest_config import CONF_DIR, compose_config, tiny_training_run

pytest.importorskip("constriction")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    return tiny_training_run(tmp_path_factory)


def test_ratios_and_their_table():
    rows = [
        {"sequence": "a", "sigma": 25, "bpp": 0.5, "bpp_actual": 0.51, "bpp_actual_y": 0.4,
         "bpp_actual_z": 0.11, "bpp_y": 0.4, "bpp_z": 0.1},
        {"sequence": "b", "sigma": 25, "bpp": 0.0, "bpp_actual": 0.001, "bpp_actual_y": 0.0,
         "bpp_actual_z": 0.001, "bpp_y": 0.0, "bpp_z": 0.0},
        {"sequence": "c", "sigma": 25, "bpp": 0.1},  # run without entropy coding: untouched
    ]  # fmt: skip
    add_ratios(rows)
    assert rows[0]["ratio"] == pytest.approx(1.02) and rows[0]["ratio_y"] == pytest.approx(1.0)
    assert rows[0]["ratio_z"] == pytest.approx(1.1)
    assert math.isnan(rows[1]["ratio"])  # no estimate: no ratio
    assert "ratio" not in rows[2]
    table = markdown_table(rows[:1])
    assert "| a | 25 | 0.50000 | 0.51000 | 1.0200 | 1.0000 | 1.1000 |" in table


def test_missing_constriction_stops_before_the_test_run(monkeypatch):
    monkeypatch.setitem(sys.modules, "constriction", None)
    with pytest.raises(ImportError, match=r"pip install 'ncfl-video\[coding\]'"):
        ActualBits()


@pytest.mark.slow
def test_eval_adds_actual_bits_and_ratios(tiny_run, tmp_path, capsys):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose_config(
            "eval",
            [
                f"ckpt_path={tiny_run['best']}",
                f"paths.output_dir={tmp_path}",
                "trainer.accelerator=cpu",
                "entropy_coding=true",
            ],
        )
        result = evaluation.evaluate(cfg)
    for row in result["rows"]:
        assert row["bpp_actual"] == pytest.approx(row["bpp_actual_y"] + row["bpp_actual_z"])
        assert row["bpp"] == pytest.approx(row["bpp_y"] + row["bpp_z"], rel=1e-4)
        assert row["bpp_actual_z"] > 0 and math.isfinite(row["ratio_z"])
        assert 0.5 < row["ratio_z"] < 2.0
    with open(tmp_path / "results.csv") as f:
        written = list(csv.DictReader(f))
    assert {"bpp_actual", "ratio", "ratio_y", "ratio_z"} <= set(written[0])
    assert "actual/estimate" in capsys.readouterr().out


@pytest.mark.slow
def test_restore_writes_latents_that_read_back_with_the_same_model(tiny_run, tmp_path):
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
    for t in range(5):
        Image.fromarray(base[t : t + 32]).save(frames_dir / f"{t}.png")
    latents = tmp_path / "latents.bin"
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose_config(
            "restore",
            [
                f"ckpt_path={tiny_run['best']}",
                f"input={frames_dir}",
                f"output={tmp_path / 'out'}",
                "device=cpu",
                "chunk_size=2",
                "context_frames=1",
                f"paths.output_dir={tmp_path}",
                f"save_latents={latents}",
            ],
        )
        restore.restore(cfg)
    task, _ = build_task_from_checkpoint(tiny_run["best"])
    frames = read_latent_file(latents, task.net)
    # every frame but the video's first (no past: nothing sent); later windows start from
    # a context frame, so their first output frame has a past
    assert [index for index, _ in frames] == [1, 2, 3, 4]
    for _, coded in frames:
        assert decode_hyper_latents(task.net.codec, coded).shape == coded.z_shape
