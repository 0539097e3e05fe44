"""eval.py: rebuild from the checkpoint alone, reproduce the test metric, write the tables."""

import csv
import math
import os

import pytest
import torch
from hydra import initialize_config_dir

import eval as evaluation  # noqa: E402
from lightning_modules.run.checkpoints import (  # noqa: E402
    CONFIG_KEY,
    build_task_from_checkpoint,
)
from tests.conftest_config import CONF_DIR, compose_config, tiny_training_run  # noqa: E402


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    return tiny_training_run(tmp_path_factory)


def _evaluate(overrides: list[str]):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose_config("eval", [*overrides, "trainer.accelerator=cpu"])
        return evaluation.evaluate(cfg)


@pytest.mark.slow
def test_eval_reproduces_the_in_process_test_metrics(tiny_run, tmp_path, capsys):
    result = _evaluate([f"ckpt_path={tiny_run['best']}", f"paths.output_dir={tmp_path}"])
    for key in ("test/psnr", "test/ssim", "test/bpp"):
        assert result["metrics"][key] == pytest.approx(tiny_run["metrics"][key], abs=1e-4), key
    rows = {(r["sequence"], r["sigma"]): r for r in result["rows"]}
    expected = {(r["name"], round(r["sigma"] * 255)): r for r in tiny_run["records"]}
    for key, record in expected.items():
        assert rows[key]["psnr"] == pytest.approx(record["psnr"], abs=1e-4)
    with open(tmp_path / "results.csv") as f:
        written = list(csv.DictReader(f))
    assert [r["sequence"] for r in written][-1] == "all"
    assert "σ=25" in (tmp_path / "results.md").read_text()
    assert "σ=25" in capsys.readouterr().out  # the table is printed too


@pytest.mark.slow
def test_purification_option_writes_the_ratio_and_the_tsne_picture(tiny_run, tmp_path, capsys):
    result = _evaluate(
        [f"ckpt_path={tiny_run['best']}", f"paths.output_dir={tmp_path}", "purification=true"]
    )
    assert result["purification"] > 0 and math.isfinite(result["purification"])
    assert (tmp_path / "purification_tsne.png").stat().st_size > 1000
    assert "purification ratio" in capsys.readouterr().out


@pytest.mark.slow
def test_model_is_rebuilt_from_the_checkpoint_file_alone(tiny_run, tmp_path):
    moved = tmp_path / "elsewhere.ckpt"
    moved.write_bytes(tiny_run["last"].read_bytes())
    task, config = build_task_from_checkpoint(moved)
    assert type(task).__name__ == "RestorationTask" and not task.training
    stored = torch.load(moved, map_location="cpu", weights_only=True)["state_dict"]
    for key, value in task.state_dict().items():
        assert torch.equal(value, stored[key]), key
    assert config.model.task.net.codec.quantizer == "adaptive"


def test_missing_and_foreign_checkpoints_give_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="ckpt_path: no checkpoint file"):
        build_task_from_checkpoint(tmp_path / "missing.ckpt")
    (tmp_path / "junk.ckpt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        build_task_from_checkpoint(tmp_path / "junk.ckpt")
    torch.save({"state_dict": {}, "hook": os.system}, tmp_path / "pickled_code.ckpt")
    with pytest.raises(ValueError, match="could run code when loaded; refused"):
        build_task_from_checkpoint(tmp_path / "pickled_code.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    with pytest.raises(ValueError, match=f"carries no run config \\(key '{CONFIG_KEY}'"):
        build_task_from_checkpoint(tmp_path / "foreign.ckpt")


@pytest.mark.slow
def test_incompatible_checkpoint_is_reported(tiny_run, tmp_path):
    checkpoint = torch.load(tiny_run["last"], map_location="cpu", weights_only=False)
    checkpoint[CONFIG_KEY]["model"]["task"]["net"]["codec"] = None  # config says no_codec
    torch.save(checkpoint, tmp_path / "edited.ckpt")
    with pytest.raises(ValueError, match="does not match the model its config builds"):
        build_task_from_checkpoint(tmp_path / "edited.ckpt")


def test_summary_averages_frames_per_sequence_then_sequences_per_sigma():
    s10, s30 = 10 / 255, 30 / 255  # records carry σ in [0, 1] units; rows show 0-255
    records = [  # sequence "a" split into two clips of 3 and 1 frames
        {"name": "a", "sigma": s10, "psnr": 30.0, "ssim": 0.9, "bpp": 0.2, "num_frames": 3},
        {"name": "a", "sigma": s10, "psnr": 34.0, "ssim": 0.5, "bpp": 0.6, "num_frames": 1},
        {"name": "b", "sigma": s10, "psnr": 20.0, "ssim": 0.6, "bpp": 0.1, "num_frames": 2},
        {"name": "a", "sigma": s30, "psnr": 25.0, "ssim": 0.7, "bpp": 0.3, "num_frames": 4},
    ]
    rows = {(r["sequence"], r["sigma"]): r for r in evaluation.summarize(records)}
    assert rows[("a", 10)]["psnr"] == pytest.approx(31.0)  # (3·30 + 34) / 4
    assert rows[("a", 10)]["num_frames"] == 4
    assert rows[("mean", 10)]["psnr"] == pytest.approx(25.5)  # (31 + 20) / 2 sequences
    assert rows[("mean", 30)]["ssim"] == pytest.approx(0.7)
    assert rows[("all", "all")]["psnr"] == pytest.approx((31 + 20 + 25) / 3)
    text = evaluation.markdown_tables(evaluation.summarize(records), "y")
    assert "PSNR/SSIM, Y" in text and "| b | 20.00/0.6000 | — |" in text
    with pytest.raises(ValueError, match="no records"):
        evaluation.summarize([])
    assert math.isnan(evaluation._mean([]))


def test_results_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """A failure while writing (here: a full disk) leaves no results file, not a partial one."""
    records = [{"name": "a", "sigma": 10 / 255, "psnr": 30.0, "ssim": 0.9, "bpp": 0.2}]
    rows = evaluation.summarize([{**r, "num_frames": 2} for r in records])

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(csv.DictWriter, "writerow", disk_full)
        with pytest.raises(OSError, match="No space left"):
            evaluation.write_results(rows, "rgb", tmp_path)
    assert list(tmp_path.iterdir()) == []
    evaluation.write_results(rows, "rgb", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "results.md"]
    assert "| a | 30.00/0.9000 |" in (tmp_path / "results.md").read_text()
