"""Bad input, end to end (issue 12): each case runs a real entry point (``train.py``, ``eval.py``,
``restore.py``) in a subprocess. A bad input must exit non-zero with exactly one stderr line
``error: ...`` naming the problem, no traceback, no run folder and no partial output left. The
cases that must work (a warm-up longer than the run, a 1-frame input of a size the strides do
not divide, gray/RGBA/16-bit frames) are checked on their outputs' values.

The subprocesses (~5 s of imports each) run in parallel once per session (``outcomes``); each
test only reads its outcome. The models are tiny; one checkpoint serves every case.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import initialize_config_dir
from PIL import Image
from torch._utils import ExceptionWrapper

import restore
from datamodules.frame_sources import DatasetLayoutError
from lightning_modules.run.config_schema import ConfigError
from lightning_modules.run.entry_point import error_line, is_expected
from tests.conftest_config import CONF_DIR, compose_config, tiny_training_run

REPO_ROOT = Path(__file__).resolve().parents[1]

# Lines a failing run may print to stderr beside its one error line. Lightning's start-up INFO
# lines ("GPU available", tips) go through Hydra's job logging to stdout (conf/hydra/default.yaml)
# and Lightning's own deprecation noise is silenced by the entry points, so this stays empty
# unless a library adds a new line no setting of ours can avoid.
HARMLESS_STDERR: tuple[str, ...] = ()

# A training run of seconds: tiny frames, clips and network, no logger, no validation/test.
TRAIN_TINY = [
    "model=no_codec",
    "model.channels=16",
    "model.warmup_steps=0",
    "~logger",
    "test=false",
    "data.val_sequences=null",
    "data.clip_len=3",
    "data.patch_size=16",
    "data.batch_size=1",
    "data.num_workers=0",
    "data.pin_memory=false",
    "trainer.accelerator=cpu",
    "trainer.limit_val_batches=0",
    "trainer.max_steps=2",
    "trainer.enable_progress_bar=false",
    "callbacks.rich_progress_bar=null",
    "callbacks.rich_model_summary=null",
]


def _png(path: Path, height: int = 24, width: int = 24, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _frames(folder: Path, count: int, suffix: str = ".png", **size) -> list[Path]:
    return [_png(folder / f"{i:05d}{suffix}", seed=i, **size) for i in range(count)]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _folder_data(
    root: Path, gt_count: int = 4, lq_count: int = 4, lq_height: int = 24, suffix: str = ".png"
) -> Path:
    """``data=folder`` layout: root/train/{gt,lq}/seq/<frames>."""
    _frames(root / "train" / "gt" / "seq", gt_count, suffix)
    _frames(root / "train" / "lq" / "seq", lq_count, suffix, height=lq_height)
    return root


def _train(*overrides: str) -> tuple[str, list[str]]:
    return "train.py", [*TRAIN_TINY, *overrides]


def _folder_train(root: Path, *overrides: str) -> tuple[str, list[str]]:
    return _train("data=folder", f"data.root={root}", *overrides)


# ----------------------------------------------------------------------------- the cases
@dataclass
class Case:
    """``setup(dir, ckpt) -> (script, args)``; ``expect``: substrings of the error line (None:
    the run must succeed); ``output``: a path (relative to dir) that must not exist after."""

    setup: Callable[[Path, Path], tuple[str, list[str]]]
    expect: tuple[str, ...] | None
    output: str | None = None
    env: dict[str, str] = field(default_factory=dict)


def _missing_root(d: Path, ckpt: Path):
    return _train("data=davis", f"data.root={d / 'DAVIS'}")


def _missing_vimeo_list(d: Path, ckpt: Path):
    _frames(d / "vimeo" / "sequences" / "00001" / "0001", 7)
    return _train("data=vimeo", f"data.root={d / 'vimeo'}")


def _corrupt_png(d: Path, ckpt: Path):
    root = _folder_data(d / "data")
    (root / "train" / "lq" / "seq" / "00002.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 8)
    return _folder_train(root)


def _truncated_jpeg(d: Path, ckpt: Path):
    """Headers intact, so set-up passes; the first clip read hits a truncated frame. One
    DataLoader worker: the error comes back through torch's worker re-raise."""
    root = _folder_data(d / "data", suffix=".jpg")
    for frame in root.glob("train/*/seq/*.jpg"):
        _truncate(frame)
    return _folder_train(root, "data.num_workers=1")


def _short_sequence(d: Path, ckpt: Path):
    return _folder_train(_folder_data(d / "data", gt_count=2, lq_count=2))


def _size_mismatch(d: Path, ckpt: Path):
    return _folder_train(_folder_data(d / "data", lq_height=20))


def _unreadable_video(d: Path, ckpt: Path):
    (d / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\xff" * 200)
    return _train("data=video", f"data.root={d / 'broken.mp4'}")


def _foreign_checkpoint(d: Path, ckpt: Path):
    torch.save({"state_dict": {"layer.weight": torch.zeros(2)}, "epoch": 3}, d / "other.ckpt")
    return "eval.py", [f"ckpt_path={d / 'other.ckpt'}", "trainer.accelerator=cpu"]


def _truncated_checkpoint(d: Path, ckpt: Path):
    (d / "cut.ckpt").write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    return "eval.py", [f"ckpt_path={d / 'cut.ckpt'}", "trainer.accelerator=cpu"]


def _pickled_code(d: Path, ckpt: Path):
    torch.save({"state_dict": {}, "hook": os.system}, d / "code.ckpt")
    return _restore(d, d / "code.ckpt", _frames(d / "in", 2)[0].parent, d / "out.mp4")


def _restore(d: Path, ckpt: Path, source: Path, target: Path, *extra: str):
    args = [f"ckpt_path={ckpt}", f"input={source}", f"output={target}", "device=cpu", *extra]
    return "restore.py", args


def _sigma(value: str):
    def setup(d: Path, ckpt: Path):
        return _restore(d, ckpt, _frames(d / "in", 2)[0].parent, d / "out", f"sigma={value}")

    return setup


def _output_under_a_file(d: Path, ckpt: Path):
    """The second frame is damaged: an output error (not a decode error) proves the output was
    checked before any frame was restored."""
    frames = _frames(d / "in", 3, height=64, width=64)
    _truncate(frames[1])
    (d / "notes.txt").write_text("a file, not a folder")
    return _restore(d, ckpt, d / "in", d / "notes.txt" / "clean.mp4")


def _writable(folder: Path) -> bool:
    """Whether a file can be created in ``folder`` (``os.access`` says yes to root)."""
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return False
    return True


def _read_only_output(d: Path, ckpt: Path):
    locked = d / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if _writable(locked):  # root ignores the mode: use a file system that refuses files
        if _writable(Path("/sys")):
            pytest.skip("no unwritable folder on this machine (root, and /sys takes files)")
        locked = Path("/sys")
    return _restore(d, ckpt, _frames(d / "in", 2)[0].parent, locked / "clean.mp4")


def _one_frame_odd_size(d: Path, ckpt: Path):  # 37x53: not a multiple of any stride
    return _restore(d, ckpt, _png(d / "in" / "only.png", 37, 53), d / "out")


CASES: dict[str, Case] = {
    "missing dataset root": Case(_missing_root, ("DAVIS root not found", "DAVIS")),
    "missing vimeo list file": Case(
        _missing_vimeo_list, ("list file not found", "sep_trainlist.txt")
    ),
    "corrupt png": Case(_corrupt_png, ("cannot decode frame", "00002.png")),
    "truncated jpeg": Case(_truncated_jpeg, ("cannot decode frame", ".jpg", "truncated")),
    "sequence shorter than the clip": Case(_short_sequence, ("has 2 frames but at least 3",)),
    "lq/gt size mismatch": Case(_size_mismatch, ("24x20", "24x24", "same frame size")),
    "unreadable video": Case(_unreadable_video, ("cannot read video", "broken.mp4")),
    "checkpoint of another model": Case(
        _foreign_checkpoint, ("other.ckpt", "carries no run config")
    ),
    "truncated checkpoint": Case(
        _truncated_checkpoint, ("cut.ckpt", "not a readable PyTorch checkpoint")
    ),
    "pickled-code checkpoint": Case(_pickled_code, ("code.ckpt", "could run code"), "out.mp4"),
    "unknown config key": Case(
        lambda d, c: _train("model.rate_wieght=1"), ("model.rate_wieght", "not in struct")
    ),
    "unknown top-level key": Case(
        lambda d, c: ("eval.py", ["ckpt_pth=x.ckpt"]), ("ckpt_pth", "not in 'EvalConfig'")
    ),
    "wrong type for a numeric key": Case(
        lambda d, c: _train("seed=abc"), ("seed", "could not be converted to Integer")
    ),
    "text for a trainer number": Case(
        lambda d, c: _train("trainer.max_steps=abc"), ("trainer.max_steps", "expected int", "abc")
    ),
    "weight-averaging decay out of range": Case(
        lambda d, c: _train("callbacks=[ema,default]", "callbacks.ema.decay=2"),
        ("callbacks.ema.decay", "(0, 1)", "got 2"),
    ),
    "wrong type for restore's chunk_size": Case(
        lambda d, c: ("restore.py", ["chunk_size=1.5x"]), ("chunk_size", "Integer")
    ),
    "sigma above 255": Case(_sigma("300"), ("sigma", "[0, 255]", "300"), "out"),
    "sigma below 0": Case(_sigma("-5"), ("sigma", "[0, 255]", "-5"), "out"),
    "output under a file, found before any frame": Case(
        _output_under_a_file, ("output", "notes.txt", "is a file"), "notes.txt/clean.mp4"
    ),
    "output folder not writable": Case(
        _read_only_output, ("output", "cannot write", "clean.mp4"), "locked/clean.mp4"
    ),
    # HYDRA_FULL_ERROR=1: the whole traceback, as Hydra does
    "sigma above 255, full error": Case(_sigma("300"), None, env={"HYDRA_FULL_ERROR": "1"}),
    # must work
    "warm-up longer than the run": Case(lambda d, c: _train("model.warmup_steps=20"), None),
    "1-frame restore, size not divisible by the strides": Case(_one_frame_odd_size, None),
}


def _run(case: Case, case_dir: Path, ckpt: Path) -> dict:
    try:
        script, args = case.setup(case_dir, ckpt)
    except pytest.skip.Exception as skip:
        return {"skip": str(skip)}
    env = {
        k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "NCFL_ONE_LINE_ERRORS")
    }
    env.update(OMP_NUM_THREADS="1", WANDB_MODE="offline", WANDB_SILENT="true", **case.env)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / script), *args, f"paths.log_dir={case_dir / 'logs'}"],
        cwd=case_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return {"result": result, "dir": case_dir, "seconds": time.perf_counter() - start}


@pytest.fixture(scope="session")
def outcomes(tmp_path_factory) -> dict[str, dict]:
    """Every case run once, in parallel (the subprocesses mostly wait on imports)."""
    ckpt = Path(tiny_training_run(tmp_path_factory)["last"])
    root = tmp_path_factory.mktemp("bad_input")
    dirs = {}
    for index, name in enumerate(CASES):
        dirs[name] = root / f"case{index}"
        dirs[name].mkdir()
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {name: pool.submit(_run, CASES[name], dirs[name], ckpt) for name in CASES}
        return {name: future.result() for name, future in futures.items()}


def _run_folders(case_dir: Path) -> list[Path]:
    return [p for p in (case_dir / "logs").glob("*/runs/*") if p.is_dir()]


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.expect is not None])
def test_bad_input_fails_with_one_line(outcomes, name):
    outcome = outcomes[name]
    if "skip" in outcome:
        pytest.skip(outcome["skip"])
    result, case_dir, case = outcome["result"], outcome["dir"], CASES[name]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    unexplained = [line for line in lines if not any(h in line for h in HARMLESS_STDERR)]
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    assert len(unexplained) == 1 and unexplained[0].startswith("error: "), result.stderr
    for part in case.expect:
        assert part in unexplained[0], (part, unexplained[0])
    assert _run_folders(case_dir) == [], "a failed run left its run folder"
    if case.output is not None:
        target = case_dir / case.output
        assert not target.exists()
        if target.parent.is_dir():
            assert not [p for p in target.parent.iterdir() if ".partial-" in p.name]


@pytest.mark.slow
def test_full_error_shows_the_traceback(outcomes):
    outcome = outcomes["sigma above 255, full error"]
    assert outcome["result"].returncode != 0
    assert "Traceback (most recent call last)" in outcome["result"].stderr
    assert "InputError: sigma: expected" in outcome["result"].stderr
    assert _run_folders(outcome["dir"]) == []


@pytest.mark.slow
def test_warm_up_longer_than_the_run_works_with_one_warning(outcomes):
    result = outcomes["warm-up longer than the run"]["result"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert "error:" not in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.count("warm-up (20 steps) is not shorter than the run (2 steps)") == 1
    (folder,) = _run_folders(outcomes["warm-up longer than the run"]["dir"])
    assert (folder / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_one_frame_of_an_odd_size_is_restored(outcomes):
    outcome = outcomes["1-frame restore, size not divisible by the strides"]
    assert outcome["result"].returncode == 0, outcome["result"].stderr[-3000:]
    frames = sorted((outcome["dir"] / "out").iterdir())
    assert [p.name for p in frames] == ["00000.png"]
    restored = np.asarray(Image.open(frames[0]))
    assert restored.shape == (37, 53, 3) and restored.dtype == np.uint8
    assert 0 < restored.mean() < 255


# ----------------------------------------------------------------------------- frame formats
@pytest.fixture(scope="module")
def restore_one(tmp_path_factory):
    """Restore one image in-process (the subprocess path is covered above); (H, W, 3) uint8."""
    ckpt = Path(tiny_training_run(tmp_path_factory)["last"])
    out_root = tmp_path_factory.mktemp("formats")

    def run(image: Image.Image, name: str) -> np.ndarray:
        source = out_root / f"{name}.png"
        image.save(source)
        target = out_root / f"{name}_out"
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            cfg = compose_config(
                "restore",
                [
                    f"ckpt_path={ckpt}",
                    f"input={source}",
                    f"output={target}",
                    "device=cpu",
                    f"paths.output_dir={out_root}",
                ],
            )
            restore.restore(cfg)
        return np.asarray(Image.open(target / "00000.png"))

    return run


def _gray(seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (24, 40), dtype=np.uint8)


def test_gray_png_restores_like_the_same_rgb(restore_one):
    gray = _gray()
    as_gray = restore_one(Image.fromarray(gray, "L"), "gray")
    as_rgb = restore_one(Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2)), "gray_rgb")
    assert as_gray.shape == (24, 40, 3)
    np.testing.assert_array_equal(as_gray, as_rgb)


def test_rgba_png_restores_like_its_rgb(restore_one):
    rgb = np.random.default_rng(4).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    alpha = np.random.default_rng(5).integers(0, 256, (24, 40, 1), dtype=np.uint8)
    as_rgba = restore_one(Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA"), "rgba")
    np.testing.assert_array_equal(as_rgba, restore_one(Image.fromarray(rgb), "rgba_rgb"))


def test_16_bit_png_keeps_its_values(restore_one):
    """A 16-bit frame restores like its 8-bit rounding (it came out nearly white when PIL's
    convert("RGB") clipped it to 255)."""
    gray = _gray(6)
    noise = np.random.default_rng(7).integers(-100, 100, gray.shape)
    deep = np.clip(gray.astype(np.int64) * 257 + noise, 0, 65535)
    as_16 = restore_one(Image.fromarray(deep.astype(np.uint16)), "deep")
    as_8 = restore_one(Image.fromarray(np.round(deep / 257).astype(np.uint8), "L"), "deep8")
    assert np.abs(as_16.astype(int) - as_8.astype(int)).max() <= 2
    assert as_16.mean() < 200  # a clipped input would restore to nearly white


# ----------------------------------------------------------------------------- classifying
def _raised(error: Exception) -> Exception:
    try:
        raise error
    except Exception as caught:
        return caught


def test_expected_errors_are_told_from_bugs():
    assert is_expected(_raised(ConfigError("model.x: unknown")))
    assert is_expected(_raised(ValueError("ckpt_path: not a checkpoint")))  # raised in the repo
    try:
        np.zeros(2) + np.zeros(3)  # a ValueError raised inside a library: a bug
    except ValueError as error:
        assert not is_expected(error)
    assert not is_expected(_raised(RuntimeError("shape mismatch")))
    denied = PermissionError(13, "Permission denied", "/data/out.mp4")
    assert is_expected(denied)
    assert error_line(denied) == "error: Permission denied: '/data/out.mp4'"
    long = error_line(_raised(ValueError("x" * 1000)))
    assert len(long) < 700 and "400 more characters" in long


def test_an_error_from_a_dataloader_worker_is_one_line():
    """torch re-raises a worker's error with its traceback in the message: only the original
    message is kept."""
    try:
        raise DatasetLayoutError("cannot decode frame /d/00002.png: truncated")
    except DatasetLayoutError:
        wrapper = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(DatasetLayoutError) as caught:
        wrapper.reraise()
    assert "Traceback" in str(caught.value)
    assert is_expected(caught.value)
    assert error_line(caught.value) == "error: cannot decode frame /d/00002.png: truncated"
