"""Baselines in the same harness: BasicVSR++ through train/eval/restore, classical references
and comparisons through eval.py (lightning_modules/run/eval_methods.py)."""

import csv
import importlib.util

import numpy as np
import pytest
import torch
from hydra import initialize_config_dir
from PIL import Image

import eval as evaluation  # noqa: E402
import train  # noqa: E402
from lightning_modules.run.entry_point import InputError
from lightning_modules.run.eval_methods import FrameCap, write_comparison
from tests.conftest_config import CONF_DIR, DATA_TINY, TRAINER_TINY, compose_config

BASICVSR_TINY = [
    "model=basicvsr_pp",
    "model.warmup_steps=0",
    "model.channels=8",
    "model.extract_blocks=1",
    "model.propagation_blocks=1",
    "model.reconstruction_blocks=1",
    "model.deform_groups=4",
]


def _compose(name: str, overrides: list[str]):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose_config(name, overrides)


def _evaluate(overrides: list[str]):
    return evaluation.evaluate(_compose("eval", [*overrides, "trainer.accelerator=cpu"]))


@pytest.fixture(scope="module")
def basicvsr_run(tmp_path_factory):
    """Two training steps of a tiny BasicVSR++ through train.py."""
    out_dir = tmp_path_factory.mktemp("basicvsr_run")
    torch.manual_seed(0)
    cfg = _compose(
        "train",
        [
            *BASICVSR_TINY,
            "logger=csv",
            f"paths.output_dir={out_dir}",
            f"paths.log_dir={out_dir}/logs",
            *DATA_TINY,
            *TRAINER_TINY,
        ],
    )
    metrics, objects = train.train(cfg)
    return {"metrics": metrics, "trainer": objects["trainer"], **objects["checkpoints"]}


@pytest.mark.slow
def test_basicvsr_trains_two_steps_and_its_checkpoint_evaluates(basicvsr_run, tmp_path):
    assert basicvsr_run["trainer"].global_step == 2
    assert 0 < basicvsr_run["metrics"]["test/psnr"] < 60
    assert basicvsr_run["metrics"]["test/bpp"] == 0
    result = _evaluate([f"ckpt_path={basicvsr_run['last']}", f"paths.output_dir={tmp_path}"])
    assert result["metrics"]["test/psnr"] == pytest.approx(
        basicvsr_run["metrics"]["test/psnr"], abs=1e-3
    )
    assert "σ=25" in (tmp_path / "results.md").read_text()
    # a checkpoint beside a classical method: one comparison table, entries in sub-folders
    both = tmp_path / "both"
    result = _evaluate(
        [f"ckpt_path=[{basicvsr_run['last']}]", "method=[noisy]", f"paths.output_dir={both}"]
    )
    labels = [e["label"] for e in result["entries"]]
    assert labels[1] == "noisy" and labels[0].endswith("/last")
    assert (both / "noisy" / "results.csv").is_file() and (both / "comparison.csv").is_file()
    assert result["entries"][0]["metrics"]["test/psnr"] == pytest.approx(
        basicvsr_run["metrics"]["test/psnr"], abs=1e-3
    )


@pytest.mark.slow
def test_basicvsr_checkpoint_restores_a_frame_folder(basicvsr_run, tmp_path):
    import restore

    source = tmp_path / "frames"
    source.mkdir()
    rng = np.random.default_rng(0)
    for t in range(3):
        Image.fromarray(rng.integers(0, 256, (24, 28, 3), dtype=np.uint8)).save(
            source / f"frame_{t}.png"
        )
    target = tmp_path / "clean.mp4"
    cfg = _compose(
        "restore",
        [
            f"ckpt_path={basicvsr_run['last']}",
            f"input={source}",
            f"output={target}",
            "device=cpu",
            f"paths.output_dir={tmp_path}",
        ],
    )
    restore.restore(cfg)
    assert target.stat().st_size > 0


def test_nlm_beats_the_noisy_input_at_sigma_30(tmp_path):
    data = [o for o in DATA_TINY if "test_sigmas" not in o and "test_sequences.size" not in o]
    result = _evaluate(
        [
            "method=[noisy,nlm]",
            "data=sample",
            *data,
            "data.test_sigmas=[30]",
            "data.test_sequences.size=[48,48]",
            "max_frames=2",
            "trainer.enable_progress_bar=false",
            f"paths.output_dir={tmp_path}",
        ]
    )
    rows = {r["label"]: r for r in result["rows"]}
    assert rows["noisy"]["sigma"] == 30
    # unclipped Gaussian noise of σ = 30/255: PSNR = 20·log10(255/30) = 18.59 dB (sample noise)
    assert rows["noisy"]["psnr"] == pytest.approx(18.59, abs=0.3)
    assert rows["nlm"]["psnr"] > rows["noisy"]["psnr"] + 2
    assert rows["nlm"]["num_frames"] == 2  # max_frames cut the 3-frame clip
    assert (tmp_path / "noisy" / "results.md").is_file()
    table = (tmp_path / "comparison.md").read_text()
    assert "| nlm |" in table and "σ=30" in table
    if importlib.util.find_spec("matplotlib") is not None:  # the [plots] extra (part of [dev])
        assert (tmp_path / "psnr_vs_sigma.png").stat().st_size > 1000
    assert not (tmp_path / "rate_distortion.png").exists()  # no checkpoints


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["method=median"], "method: unknown 'median'; expected one of noisy, nlm, bm3d"),
        ([], "give ckpt_path=<file.ckpt>"),
        (["method=nlm"], "method=nlm: no checkpoint to take the data from; give data="),
        (["method=nlm", "max_frames=0"], "max_frames: expected null or an integer >= 1"),
    ],
)
def test_bad_requests_get_one_clear_error(overrides, message, tmp_path):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _evaluate([*overrides, f"paths.output_dir={tmp_path}"])


def test_missing_bm3d_names_the_extra(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "bm3d", None)  # import bm3d -> ImportError
    with pytest.raises(InputError, match=r"pip install 'ncfl-video\[classical\]'"):
        _evaluate(["method=bm3d", "data=sample", f"paths.output_dir={tmp_path}"])


def test_frame_cap_cuts_every_per_frame_tensor():
    batch = {
        "lq": torch.zeros(1, 5, 3, 4, 4),
        "gt": torch.zeros(1, 5, 3, 4, 4),
        "frame_idx": torch.arange(5).view(1, 5),
        "sigma": torch.tensor([0.1]),
        "name": ["a"],
    }
    (cut,) = list(FrameCap([batch], 2))
    assert cut["lq"].shape[1] == cut["gt"].shape[1] == cut["frame_idx"].shape[1] == 2
    assert cut["sigma"].shape == (1,) and cut["name"] == ["a"]


def test_comparison_writes_table_csv_and_both_plots(tmp_path):
    pytest.importorskip("matplotlib")

    def entry(label, kind, rate, psnr, bpp):
        rows = [
            {
                "sequence": "mean",
                "sigma": s,
                "num_frames": 3,
                "psnr": psnr - s / 10,
                "ssim": 0.9,
                "bpp": bpp,
            }
            for s in (10, 30)
        ]
        return {"label": label, "kind": kind, "rate_weight": rate, "rows": rows}

    entries = [
        entry("a/last", "checkpoint", 0.01, 33.0, 0.2),
        entry("b/last", "checkpoint", 0.1, 32.0, 0.05),
        entry("bm3d", "method", None, 31.0, 0.0),
    ]
    result = write_comparison(entries, "rgb", tmp_path)
    assert "| a/last | 32.00/0.9000 | 30.00/0.9000 | 0.2000 |" in result["markdown"]
    with open(tmp_path / "comparison.csv") as f:
        written = list(csv.DictReader(f))
    assert len(written) == 6 and float(written[0]["rate_weight"]) == 0.01
    for name in ("psnr_vs_sigma.png", "rate_distortion.png"):
        assert (tmp_path / name).stat().st_size > 1000
