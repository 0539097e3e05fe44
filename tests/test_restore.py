"""restore.py: video and frame-folder I/O, streaming (state carried, each frame once), windows,
tiling, σ estimate, errors, atomic outputs (complete or absent; a rerun after a failure or a
kill works)."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from hydra import initialize_config_dir
from PIL import Image

import restore  # noqa: E402
from lightning_modules.run.atomic_files import temp_prefix
from lightning_modules.run.checkpoints import build_task_from_checkpoint
from lightning_modules.run.entry_point import InputError
from lightning_modules.stages.network import VideoRestorationNet
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
    """The output does not depend on the window options: the forward-recurrent model streams
    (chunk_size / context_frames only shape a bidirectional model's windows)."""
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
    with pytest.raises(InputError, match="output: .* already exists .*overwrite=true"):
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


def _read16(folder: Path) -> torch.Tensor:
    """(T, 3, H, W) float of a folder of 16-bit RGB PNGs, decoded by FFmpeg (PIL, and so the
    training loader, reads 16-bit RGB as 8-bit)."""
    frames = []
    for path in sorted(folder.glob("*.png")):
        with av.open(str(path)) as container:
            (frame,) = container.decode(video=0)
            frames.append(torch.from_numpy(frame.to_ndarray(format="rgb48le").astype(np.float32)))
    return torch.stack(frames).permute(0, 3, 1, 2) / 65535.0


def _counting_steps(monkeypatch) -> list[int]:
    """Count the network's forward steps (one per frame computed)."""
    calls = []
    original = VideoRestorationNet._forward_step

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(VideoRestorationNet, "_forward_step", counted)
    return calls


def test_streaming_equals_the_whole_clip_forward_and_computes_each_frame_once(
    tiny_run, tmp_path, monkeypatch
):
    source = tmp_path / "frames"
    _write_folder(source, _frames(4))
    steps = _counting_steps(monkeypatch)
    target = _restore(tiny_run["last"], source, tmp_path / "out", "sigma=25", "bit_depth=16")
    assert len(steps) == NUM_FRAMES  # no chunks, no context frames computed again
    streamed = _read16(target)
    task, _ = build_task_from_checkpoint(str(tiny_run["last"]))
    whole = restore.Restorer(task.eval(), 25.0, _cfg_like(), torch.device("cpu")).window(
        list(restore.read_frames(source))
    )
    torch.testing.assert_close(streamed, whole, rtol=0, atol=1.01 / 65535)  # 16-bit rounding


def _cfg_like(**extra):
    from omegaconf import OmegaConf

    return OmegaConf.create({"pad_multiple": 16, "tile_overlap": 8, "precision": "32", **extra})


def test_tiled_matches_untiled_within_tolerance(tiny_run, tmp_path):
    """Tiles of 32 px overlapping by 12 on 32×64 frames (multiples of the padding, so both runs
    see the same borders): flow, U-Net context and the per-tile states differ only near the
    seams, where the blend averages; max |Δ| ≤ 0.1, mean ≤ 0.01 (of 1)."""
    source = tmp_path / "frames"
    rng = np.random.default_rng(5)
    base = rng.integers(0, 256, (32 + NUM_FRAMES, 64, 3), dtype=np.uint8)
    _write_folder(source, [base[t : t + 32] for t in range(NUM_FRAMES)])
    whole = _restore(tiny_run["last"], source, tmp_path / "whole", "sigma=25", "bit_depth=16")
    tiled = _restore(
        tiny_run["last"],
        source,
        tmp_path / "tiled",
        "sigma=25",
        "bit_depth=16",
        "tile=32",
        "tile_overlap=12",
    )
    a, b = _read16(whole), _read16(tiled)
    print("tiled vs untiled: max", float((a - b).abs().max()), "mean", float((a - b).abs().mean()))
    assert float((a - b).abs().max()) <= 0.1 and float((a - b).abs().mean()) <= 0.01


def test_sigma_is_estimated_and_logged_when_not_given(tiny_run, tmp_path, caplog):
    rng = np.random.default_rng(0)
    flat = [np.clip(128 + rng.normal(0, 20, (HEIGHT, WIDTH, 3)), 0, 255).astype(np.uint8)] * 3
    _write_folder(tmp_path / "frames", flat)
    with caplog.at_level("INFO", logger="restore"):
        _restore(tiny_run["last"], tmp_path / "frames", tmp_path / "out", "sigma=auto")
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("sigma:")]
    assert abs(float(line.split()[2]) - 20) <= 2, line


def test_mp4_keeps_rate_and_copies_audio(tiny_run, tmp_path):
    source = tmp_path / "talk.mp4"
    with av.open(str(source), mode="w") as container:
        video = container.add_stream("libx264", rate=Fraction(30000, 1001))
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        audio = container.add_stream("aac", rate=16000)
        for frame in _frames()[:3]:
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        samples = np.zeros((1, 1024), np.float32)
        for i in range(8):
            chunk = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 16000, i * 1024
            for packet in audio.encode(chunk):
                container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode():
                container.mux(packet)
    target = _restore(tiny_run["last"], source, tmp_path / "clean.mp4", "sigma=10", "crf=30")
    with av.open(str(source)) as src, av.open(str(target)) as out:
        assert out.streams.video[0].average_rate == Fraction(30000, 1001)
        assert out.streams.video[0].codec_context.name == "h264"
        assert out.streams.audio[0].codec_context.name == "aac"
        src_audio = [bytes(p) for p in src.demux(audio=0) if p.size]
        out_audio = [bytes(p) for p in out.demux(audio=0) if p.size]
        assert out_audio == src_audio  # copied, not re-encoded


def test_bf16_on_cpu_is_close_to_float32(tiny_run, tmp_path):
    source = tmp_path / "frames"
    _write_folder(source, _frames(6)[:2])
    full = _restore(tiny_run["last"], source, tmp_path / "f32", "sigma=25")
    half = _restore(tiny_run["last"], source, tmp_path / "bf16", "sigma=25", "precision=bf16")
    a = torch.stack(list(restore.read_frames(full)))
    b = torch.stack(list(restore.read_frames(half)))
    print("bf16 vs f32 max", float((a - b).abs().max()))
    assert float((a - b).abs().mean()) <= 0.02


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("sigma=loud", r"sigma: expected .* within \[0, 255\], got loud \(or auto"),
        ("tile=8", r"tile: expected null, 'auto' or an int > 2 \* tile_overlap"),
        ("bit_depth=12", "bit_depth: expected 8, or 16"),
        ("precision=fp8", "precision: expected '32' or 'bf16'"),
        ("codec=nope264", "codec: FFmpeg has no encoder named 'nope264'"),
    ],
)
def test_bad_options_are_named_before_anything_is_read(tmp_path, option, message):
    with pytest.raises(InputError, match=message):
        _restore(tmp_path / "any.ckpt", tmp_path / "missing", tmp_path / "out", option)
    assert not (tmp_path / "out").exists()


def test_progress_bar_is_off_unless_asked_on_a_terminal():
    assert restore.progress_bar(False).disable
    assert restore.progress_bar(True).disable  # pytest captures stderr: not a terminal


def test_auto_tile_fits_the_free_memory():
    tile = restore.auto_tile(4 * 2**30, 16, 32)
    assert tile % 16 == 0 and tile**2 * restore.BYTES_PER_PIXEL <= 4 * 2**30 * 0.5
    assert restore.auto_tile(0, 16, 32) > 64  # never below 2·overlap


def test_a_video_is_decoded_in_one_pass_like_the_training_reader(tmp_path):
    source = tmp_path / "clip.mp4"
    _write_mp4(source, _frames(7))
    streamed = torch.stack(list(restore.read_frames(source)))
    reader = restore.open_input(source)
    torch.testing.assert_close(streamed, reader.read(list(range(len(reader)))), rtol=0, atol=0)
