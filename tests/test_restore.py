"""restore.py: video and frame-folder I/O, streaming windows, errors, chunking invariance,
atomic outputs (complete or absent; a rerun after a failure or a kill works)."""

from pathlib import Path

import av
import numpy as np
import pytest
from hydra import initialize_config_dir
from PIL import Image

import restore  # noqa: E402
from lightning_modules.run.atomic_files import temp_prefix
from lightning_modules.run.entry_point import InputError
from tests.conftest_config import CONF_DIR, compose_config, tiny_training_run  # noqa: E402

NUM_FRAMES, HEIGHT, WIDTH = 7, 36, 52  # not multiples of the padding: exercises pad + crop


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    return tiny_training_run(tmp_path_factory)


def _frames(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (HEIGHT + NUM_FRAMES, WIDTH, 3), dtype=np.uint8)
    return [base[t : t + HEIGHT] for t in range(NUM_FRAMES)]  # a vertical pan


def _write_mp4(path: Path, frames: list[np.ndarray]) -> None:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_folder(path: Path, frames: list[np.ndarray]) -> None:
    path.mkdir()
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(path / f"frame_{t}.png")  # natural order: 2 before 10


def _restore(ckpt: Path, source: Path, target: Path, *extra: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose_config(
            "restore",
            [
                f"ckpt_path={ckpt}",
                f"input={source}",
                f"output={target}",
                "device=cpu",
                f"paths.output_dir={target.parent}",
                *extra,
            ],
        )
        return restore.restore(cfg)


@pytest.mark.slow
def test_mp4_in_mp4_out_keeps_frame_count_size_and_rate(tiny_run, tmp_path):
    source = tmp_path / "noisy.mp4"
    _write_mp4(source, _frames())
    target = _restore(
        tiny_run["last"], source, tmp_path / "out" / "clean.mp4", "chunk_size=3", "context_frames=2"
    )
    with av.open(str(target)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert float(stream.average_rate) == pytest.approx(10)
    assert len(frames) == NUM_FRAMES
    assert frames[0].shape == (HEIGHT, WIDTH, 3)


@pytest.mark.slow
def test_chunked_streaming_matches_one_pass(tiny_run, tmp_path):
    """With context covering the whole past, chunks of 2 restore exactly like one window."""
    source = tmp_path / "frames"
    _write_folder(source, _frames(1))
    one = _restore(tiny_run["last"], source, tmp_path / "one", "chunk_size=64")
    chunked = _restore(
        tiny_run["last"], source, tmp_path / "chunked", "chunk_size=2", "context_frames=16"
    )
    names = sorted(p.name for p in one.iterdir())
    assert names == [f"{t:05d}.png" for t in range(NUM_FRAMES)]
    for name in names:
        a = np.asarray(Image.open(one / name)).astype(int)
        b = np.asarray(Image.open(chunked / name)).astype(int)
        assert a.shape == (HEIGHT, WIDTH, 3)
        assert np.abs(a - b).max() <= 1, name


def test_windows_emit_every_frame_once_with_bounded_memory():
    frames = iter([np.full((1, 1, 3), t, np.uint8) for t in range(11)])
    emitted, sizes = [], []
    for window, first, count in restore.windows(frames, chunk_size=3, context=2):
        sizes.append(len(window))
        chunk = [int(f[0, 0, 0]) for f in window[first : first + count]]
        if emitted:
            assert int(window[first - 1][0, 0, 0]) == emitted[-1]  # history precedes the chunk
        emitted += chunk
    assert emitted == list(range(11))
    assert max(sizes) <= 3 + 2 * 2


@pytest.mark.slow
def test_existing_output_needs_overwrite(tiny_run, tmp_path):
    source = tmp_path / "frames"
    _write_folder(source, _frames())
    target = tmp_path / "clean.mp4"
    target.write_bytes(b"old")
    with pytest.raises(FileExistsError, match="output: .* already exists .*overwrite=true"):
        _restore(tiny_run["last"], source, target)
    _restore(tiny_run["last"], source, target, "overwrite=true")
    with av.open(str(target)) as container:
        assert sum(1 for _ in container.decode(video=0)) == NUM_FRAMES


def test_missing_or_empty_input_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="input: .*does not exist"):
        _restore(tmp_path / "any.ckpt", tmp_path / "missing.mp4", tmp_path / "out.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="input: no image frames .* in folder .*empty"):
        list(restore.read_frames(tmp_path / "empty"))
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(InputError, match="input: cannot read video .*bad.mp4"):
        list(restore.read_frames(tmp_path / "bad.mp4"))
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize("sigma", [-5, 255.5, 300, float("nan")])
def test_sigma_outside_0_255_is_refused_before_anything_is_read(tmp_path, sigma):
    with pytest.raises(InputError, match=r"sigma: expected .* within \[0, 255\], got"):
        _restore(tmp_path / "any.ckpt", tmp_path / "missing", tmp_path / "out", f"sigma={sigma}")
    assert not (tmp_path / "out").exists()


def test_unwritable_output_is_found_before_the_model_is_loaded(tmp_path):
    """The checkpoint does not exist: an output error proves the output was checked first."""
    _write_folder(tmp_path / "frames", _frames()[:2])
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(InputError, match=r"output: cannot write .*file/clean.mp4.*is a file"):
        _restore(tmp_path / "none.ckpt", tmp_path / "frames", tmp_path / "file" / "clean.mp4")
    (tmp_path / "clip.mp4").mkdir()
    with pytest.raises(InputError, match=r"output: .*clip.mp4' is a folder"):
        _restore(tmp_path / "none.ckpt", tmp_path / "frames", tmp_path / "clip.mp4")


def test_sixteen_bit_gray_and_rgba_frames_are_read_like_the_training_loader(tmp_path):
    deep = np.arange(6 * 5, dtype=np.uint16).reshape(6, 5) * 2000
    Image.fromarray(deep).save(tmp_path / "a.png")
    (frame,) = restore.read_frames(tmp_path / "a.png")
    assert frame.shape == (3, 6, 5)
    np.testing.assert_allclose(frame[1].numpy(), deep / 65535.0, atol=1e-6)
    rgba = np.random.default_rng(0).integers(0, 256, (6, 5, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "b.png")
    (frame,) = restore.read_frames(tmp_path / "b.png")
    np.testing.assert_allclose(frame.permute(1, 2, 0).numpy(), rgba[..., :3] / 255.0, atol=1e-6)


@pytest.mark.slow
def test_failure_midway_leaves_no_output_and_a_rerun_works(tiny_run, tmp_path):
    frames = _frames(2)
    _write_folder(tmp_path / "frames", frames)
    good = (tmp_path / "frames" / "frame_5.png").read_bytes()
    (tmp_path / "frames" / "frame_5.png").write_bytes(good[: len(good) // 2])
    target = tmp_path / "new" / "clean.mp4"
    with pytest.raises(InputError, match=r"input: cannot decode frame .*frame_5.png"):
        # chunks of 2 frames, no look-ahead: 4 frames are written before frame 5 is read
        _restore(tiny_run["last"], tmp_path / "frames", target, "chunk_size=2", "context_frames=0")
    assert not (tmp_path / "new").exists()  # the folder made for the output went too
    (tmp_path / "frames" / "frame_5.png").write_bytes(good)
    target.parent.mkdir()
    stale = target.parent / f"{temp_prefix(target)}killed.mp4"  # what a SIGKILL leaves
    stale.write_bytes(b"partial")
    _restore(tiny_run["last"], tmp_path / "frames", target, "chunk_size=2")
    assert sorted(p.name for p in target.parent.iterdir()) == ["clean.mp4"]
    with av.open(str(target)) as container:
        assert sum(1 for _ in container.decode(video=0)) == NUM_FRAMES


@pytest.mark.slow
def test_png_folder_output_is_replaced_whole(tiny_run, tmp_path):
    _write_folder(tmp_path / "frames", _frames(3)[:3])
    target = tmp_path / "out"
    target.mkdir()
    for name in ("00000.png", "00007.png"):  # an older, longer restore
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(target / name)
    _restore(tiny_run["last"], tmp_path / "frames", target, "overwrite=true")
    assert sorted(p.name for p in target.iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert [p.name for p in tmp_path.iterdir() if ".partial-" in p.name] == []
    (target / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="holds files other than PNG frames"):
        _restore(tiny_run["last"], tmp_path / "frames", target, "overwrite=true")
