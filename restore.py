"""Restore a video with a trained model:
``python restore.py ckpt_path=<file.ckpt> input=noisy.mp4 output=clean.mp4`` (σ estimated).

``input`` is a video file (anything FFmpeg/PyAV reads), a folder of frames (png/jpg/bmp/tif,
natural order) or one image, read by the training loader's reader
(``datamodules/frame_sources.py``: gray, RGBA and 16-bit images come out as RGB in [0, 1]).
``output`` ending in a video extension is encoded with PyAV (``codec``, default H.264 8-bit
4:2:0, quality ``crf``) at the input's frame rate, with the input's audio stream copied (not
re-encoded); anything else is a folder of PNG frames ``00000.png, ...`` (16-bit when
``bit_depth=16``). ``sigma`` (0-255 scale, within [0, 255]) is the noise level given to a
denoising model and ignored by others; ``null`` (the default) or ``auto`` estimates it from the
first ``sigma_frames`` frames (``datamodules/noise_estimate.py``) and logs it.

The output is written under a hidden temporary name in its own folder (created first, so an
unwritable output stops the run before the model is even loaded) and renamed onto ``output``
when every frame is written: a failure or a kill never leaves a partial video or folder there.

Forward-recurrent models stream: the network's step API carries the recurrent state from each
frame to the next across the whole video, so every frame is computed once, the output equals
one whole-clip forward pass, and memory does not depend on the video's length. Bidirectional
models need future frames and run on windows: ``chunk_size`` frames plus up to
``context_frames`` frames before and after (overlap: 2·context_frames frames between
neighbouring windows; those frames' outputs are dropped, they only warm up both recurrences).

``tile`` (an int, or ``auto`` from free memory) restores each frame in spatial tiles of that
size overlapping by ``tile_overlap`` pixels, blended smoothly, one recurrent state per tile.
Frames (or tiles) are padded (replicate) to a multiple of ``pad_multiple`` and cropped back.
``precision=bf16`` runs the model under bf16 autocast. A progress bar (frames, frames/s, ETA)
shows on a terminal unless ``progress=false``.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
import time
from collections import deque
from collections.abc import Iterator
from contextlib import nullcontext
from fractions import Fraction
from pathlib import Path

import av
import hydra
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from PIL import Image
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from datamodules.degradations import sigma_from_255
from datamodules.frame_sources import (
    IMAGE_EXTENSIONS,
    DatasetLayoutError,
    ImageFiles,
    VideoFrames,
    list_frames,
)
from datamodules.noise_estimate import estimate_sigma_255
from lightning_modules.run.acceleration import set_channels_last
from lightning_modules.run.atomic_files import commit, discard, make_temp, remove_stale_temps
from lightning_modules.run.checkpoints import build_task_from_checkpoint
from lightning_modules.run.entry_point import InputError, job, reported_errors
from lightning_modules.run.resolvers import register_resolvers
from lightning_modules.run.structured_configs import register_configs
from lightning_modules.stages.latent_file import LatentFileWriter
from lightning_modules.stages.tiling import run_tiled

log = logging.getLogger(__name__)
register_resolvers()
register_configs()

VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v"}
DEFAULT_FPS = 25
# tile=auto: bytes of working memory per pixel of a tile, and the share of the free memory a
# tile may use. The slope of peak RSS over frame area (1-frame restores at 448x256 and 1344x768
# on CPU) is 430 B/pixel for the N = 16 test model; activations scale with the channels, so the
# default N = 64 presets get ~4x that, rounded up (an estimate, not measured for N = 64).
BYTES_PER_PIXEL = 2_000
MEMORY_SHARE = 0.5


# ----------------------------------------------------------------------------- reading
def open_input(path: Path) -> ImageFiles | VideoFrames:
    """``path`` as a frame source of the training loader (``frame_sources.py``): a folder of
    frames (natural order), one image, or a video file; ``InputError`` naming what is wrong."""
    try:
        if path.is_dir():
            return ImageFiles(list_frames(path, check_contiguous=False))
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            return ImageFiles([path])
        return VideoFrames(path)
    except DatasetLayoutError as error:
        raise InputError(f"input: {error}") from error


def read_frames(
    path: Path | ImageFiles | VideoFrames, block: int = 16, clips: bool = False
) -> Iterator[torch.Tensor]:
    """Float (3, H, W) RGB frames in [0, 1] of ``path`` (or of a source ``open_input`` made),
    one at a time (``clips``: the (block, 3, H, W) blocks), decoded ``block`` frames at a time
    (a video seeks once per block)."""
    source = open_input(path) if isinstance(path, Path) else path
    if isinstance(source, VideoFrames) and not clips:
        yield from _decode_video(source)
        return
    for start in range(0, len(source), block):
        try:
            clip = source.read(list(range(start, min(len(source), start + block))))
        except DatasetLayoutError as error:
            raise InputError(f"input: {error}") from error
        if clips:
            yield clip
        else:
            yield from clip


def _decode_video(source: VideoFrames) -> Iterator[torch.Tensor]:
    """The frames of a video in one decoding pass, converted like ``VideoFrames.read`` (rgb24
    / 255). Hand-written because ``read`` seeks to the key frame before each block, which
    decodes a whole group of pictures again per block of a long-GOP video."""
    try:
        with av.open(str(source.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                rgb = frame.to_ndarray(format="rgb24").transpose(2, 0, 1)
                yield torch.from_numpy(rgb.astype(np.float32) / np.float32(255.0))
    except av.FFmpegError as error:
        raise InputError(f"input: cannot decode video {source.path}: {error}") from error


def is_video_file(path: Path) -> bool:
    return not path.is_dir() and path.suffix.lower() not in IMAGE_EXTENSIONS


def input_fps(path: Path) -> Fraction | None:
    """The exact frame rate of a video input; None for frames on disk."""
    if not is_video_file(path):
        return None
    with av.open(str(path)) as container:
        rate = container.streams.video[0].average_rate
    return Fraction(rate) if rate else None


# ----------------------------------------------------------------------------- writing
class FrameWriter:
    """Writes float (3, H, W) frames in [0, 1] to a video file (PyAV: ``codec``, 8-bit, ``crf``;
    the audio of ``audio_from`` copied) or to a folder of PNG frames (8 or 16 bits)."""

    def __init__(
        self,
        path: Path,
        fps: Fraction | float,
        crf: int,
        codec: str = "libx264",
        bit_depth: int = 8,
        audio_from: Path | None = None,
    ):
        self.path, self.fps, self.crf, self.codec = path, Fraction(fps), crf, codec
        self.bit_depth, self.audio_from = bit_depth, audio_from
        self.is_video = path.suffix.lower() in VIDEO_SUFFIXES
        self.count = 0
        self.container = self.stream = self.audio_source = self.audio_stream = None
        if not self.is_video:
            path.mkdir(parents=True, exist_ok=True)

    def write(self, frame: torch.Tensor) -> None:
        image = frame.float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
        if not self.is_video:
            name = self.path / f"{self.count:05d}.png"
            if self.bit_depth == 16:
                _write_png16(name, (image * 65535.0).round().astype(np.uint16))
            else:
                Image.fromarray((image * 255.0).round().astype(np.uint8)).save(name)
        else:
            rgb = (image * 255.0).round().astype(np.uint8)
            if self.container is None:
                self._open(rgb.shape[1], rgb.shape[0])
            video_frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            for packet in self.stream.encode(video_frame):
                self.container.mux(packet)
        self.count += 1

    def _open(self, width: int, height: int) -> None:
        self.container = av.open(str(self.path), mode="w")
        self.stream = self.container.add_stream(self.codec, rate=self.fps.limit_denominator(1001))
        self.stream.width, self.stream.height = width, height
        # 4:2:0 needs even sizes; odd-sized frames are kept whole in 4:4:4.
        self.stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        self.stream.options = {"crf": str(self.crf)}
        if self.audio_from is not None:
            self._add_audio()

    def _add_audio(self) -> None:
        """Add a stream for the input's first audio stream (before anything is muxed: the
        container's header is written then)."""
        self.audio_source = av.open(str(self.audio_from))
        if not self.audio_source.streams.audio:
            return
        try:
            self.audio_stream = self.container.add_stream_from_template(
                self.audio_source.streams.audio[0]
            )
        except (ValueError, av.FFmpegError) as error:
            log.warning("audio: not copied (%s cannot hold it: %s)", self.path.suffix, error)

    def _copy_audio(self) -> None:
        """Remux the input's audio packets as they are (no re-encoding)."""
        if self.audio_stream is not None:
            for packet in self.audio_source.demux(self.audio_source.streams.audio[0]):
                if packet.dts is None:  # the demuxer's end-of-stream marker
                    continue
                packet.stream = self.audio_stream
                self.container.mux(packet)
        self.audio_source.close()

    def close(self) -> None:
        if self.container is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
            if self.audio_source is not None:
                self._copy_audio()
            self.container.close()


def _write_png16(path: Path, rgb: np.ndarray) -> None:
    """A 16-bit RGB PNG of (H, W, 3) uint16 with FFmpeg's PNG encoder (PIL cannot write RGB
    with 16 bits a channel)."""
    encoder = av.CodecContext.create("png", "w")
    encoder.width, encoder.height, encoder.pix_fmt = rgb.shape[1], rgb.shape[0], "rgb48be"
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb48le")
    packets = [*encoder.encode(frame.reformat(format="rgb48be")), *encoder.encode(None)]
    path.write_bytes(b"".join(bytes(packet) for packet in packets))


# ----------------------------------------------------------------------------- restoring
def windows(frames: Iterator, chunk_size: int, context: int):
    """Yield (window, first, count): ``window`` holds up to ``context`` frames before the chunk,
    the chunk (``count`` frames starting at window index ``first``) and up to ``context`` after."""
    history: deque[np.ndarray] = deque(maxlen=context)
    ahead: deque[np.ndarray] = deque()
    exhausted = False
    while True:
        while not exhausted and len(ahead) < chunk_size + context:
            try:
                ahead.append(next(frames))
            except StopIteration:
                exhausted = True
        if not ahead:
            return
        count = min(chunk_size, len(ahead))
        window = [*history, *ahead]
        yield window, len(history), count
        for _ in range(count):
            history.append(ahead.popleft())


def _pad(x: torch.Tensor, multiple: int) -> torch.Tensor:
    pad_h, pad_w = (-x.shape[-2]) % multiple, (-x.shape[-1]) % multiple
    if not (pad_h or pad_w):
        return x
    flat = x.reshape(-1, *x.shape[-3:])  # replicate padding takes (N, C, H, W)
    padded = F.pad(flat, (0, pad_w, 0, pad_h), mode="replicate")
    return padded.reshape(*x.shape[:-2], *padded.shape[-2:])


class Restorer:
    """Restores frames one at a time, float (3, H, W) in [0, 1] in and out.

    Streaming (``net.step``, forward-recurrent nets): ``__call__`` per frame, the recurrent
    state kept per tile. Windowed (bidirectional nets): ``window`` restores a list of frames
    with ``predict_step``."""

    def __init__(self, task, sigma: float | None, cfg: DictConfig, device: torch.device):
        self.task, self.net, self.device = task, task.net, device
        self.pad_multiple, self.overlap = cfg.pad_multiple, cfg.tile_overlap
        self.tile: int | None = None
        self.level = None
        if sigma is not None:
            self.level = torch.tensor([sigma_from_255(sigma)], device=device)
        self.states: dict[int, object] = {}
        self.bf16 = cfg.precision == "bf16"
        self.with_rate = bool(cfg.get("save_latents"))  # the latent file reads the codec's bits
        self.streaming = hasattr(self.net, "step") and not getattr(self.net, "bidirectional", True)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _step_tile(self, index: int, crop: torch.Tensor) -> torch.Tensor:
        height, width = crop.shape[-2:]
        with self._autocast():
            restored, self.states[index] = self.net.step(
                _pad(crop, self.pad_multiple)[None],
                self.level,
                self.states.get(index),
                with_rate=self.with_rate,
            )
        return restored[0, :, :height, :width].float()

    @torch.inference_mode()
    def __call__(self, frame: torch.Tensor) -> torch.Tensor:
        frame = frame.to(self.device)
        return run_tiled(self._step_tile, frame, self.tile, self.overlap).clamp(0, 1)

    def _window_tile(self, index: int, clip: torch.Tensor) -> torch.Tensor:
        height, width = clip.shape[-2:]
        batch = {"lq": _pad(clip, self.pad_multiple)[None], "sigma": self.level}
        with self._autocast():
            restored = self.task.predict_step(batch, 0)
        return restored[0, :, :, :height, :width].float()

    @torch.inference_mode()
    def window(self, frames: list[torch.Tensor]) -> torch.Tensor:
        """(T, 3, H, W) restored ``frames`` (one forward pass per tile, no state kept)."""
        clip = torch.stack(frames).to(self.device)
        return run_tiled(self._window_tile, clip, self.tile, self.overlap).clamp(0, 1)


def free_memory(device: torch.device) -> int:
    """Bytes free for the model: the GPU's free memory, or MemAvailable of /proc/meminfo."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):  # not Linux: the physical memory
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def auto_tile(free_bytes: int, pad_multiple: int, overlap: int) -> int:
    """The largest square tile (a multiple of ``pad_multiple``) whose working memory
    (``BYTES_PER_PIXEL`` a pixel) fits in ``MEMORY_SHARE`` of ``free_bytes``."""
    side = math.isqrt(int(free_bytes * MEMORY_SHARE / BYTES_PER_PIXEL))
    side = side // pad_multiple * pad_multiple
    return max(side, (2 * overlap // pad_multiple + 1) * pad_multiple)


class _Speed(ProgressColumn):
    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("?" if speed is None else f"{speed:.2f} frames/s")


def progress_bar(enabled: bool) -> Progress:
    """A rich bar with frames done, frames/s and ETA; disabled unless ``enabled`` and stderr is
    a terminal."""
    return Progress(
        TextColumn("restoring"),
        BarColumn(),
        MofNCompleteColumn(),
        _Speed(),
        TimeRemainingColumn(),
        disable=not (enabled and sys.stderr.isatty()),
        console=Console(stderr=True),
    )


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def check_options(cfg: DictConfig) -> None:
    """``InputError`` naming the option out of range: σ (a number in [0, 255], ``auto`` or
    null), window and tile sizes, ``bit_depth``, ``precision``, ``codec``."""
    sigma = cfg.sigma
    if sigma is not None and sigma != "auto":
        try:
            number = float(sigma)
        except (TypeError, ValueError):
            number = float("nan")
        if not 0.0 <= number <= 255.0:  # also refuses nan
            raise InputError(
                "sigma: expected a noise level on the 0-255 scale within [0, 255], got "
                f"{sigma} (or auto / null to estimate it)"
            )
    for name in ("chunk_size", "pad_multiple", "sigma_frames"):
        if cfg[name] < 1:
            raise InputError(f"{name}: expected an int >= 1, got {cfg[name]}")
    for name in ("context_frames", "tile_overlap"):
        if cfg[name] < 0:
            raise InputError(f"{name}: expected an int >= 0, got {cfg[name]}")
    tile = cfg.tile
    bad_int = not isinstance(tile, int) or isinstance(tile, bool) or tile <= 2 * cfg.tile_overlap
    if tile is not None and tile != "auto" and bad_int:
        raise InputError(
            f"tile: expected null, 'auto' or an int > 2 * tile_overlap "
            f"({2 * cfg.tile_overlap}), got {tile}"
        )
    if tile is not None and cfg.save_latents:
        raise InputError("save_latents: cannot be combined with tile (one latent per frame)")
    is_video = Path(str(cfg.output)).suffix.lower() in VIDEO_SUFFIXES
    if cfg.bit_depth not in (8, 16) or (cfg.bit_depth == 16 and is_video):
        raise InputError(
            f"bit_depth: expected 8, or 16 for a folder of PNG frames, got {cfg.bit_depth}"
            + (" for a video output" if is_video else "")
        )
    if cfg.precision not in ("32", "bf16"):
        raise InputError(f"precision: expected '32' or 'bf16', got {cfg.precision}")
    try:
        av.Codec(cfg.codec, "w")
    except (av.codec.codec.UnknownCodecError, ValueError) as error:
        raise InputError(
            f"codec: FFmpeg has no encoder named '{cfg.codec}' (e.g. libx264, libx265)"
        ) from error


def check_output(target: Path, overwrite: bool) -> None:
    """Refuse an existing ``output`` (without ``overwrite``) or one of the wrong kind."""
    is_video = target.suffix.lower() in VIDEO_SUFFIXES
    if not target.exists() and not target.is_symlink():
        return
    if is_video and target.is_dir():
        raise InputError(f"output: '{target}' is a folder; expected a video file path")
    if not is_video and not target.is_dir():
        raise InputError(
            f"output: '{target}' is a file; expected a folder for PNG frames (or a video "
            f"name ending in {', '.join(sorted(VIDEO_SUFFIXES))})"
        )
    if target.is_dir() and not any(target.iterdir()):
        return
    if not overwrite:
        raise InputError(f"output: '{target}' already exists (pass overwrite=true to replace it)")
    if target.is_dir() and any(p.suffix.lower() != ".png" for p in target.iterdir()):
        raise InputError(
            f"output: '{target}' holds files other than PNG frames; not replaced (expected a "
            "folder of PNG frames, or a new output path)"
        )


def create_output(target: Path) -> tuple[Path, Path | None]:
    """Create the output's folder and its temporary output (see the module docstring).

    Returns (temporary path, the outermost folder created for it or None): both are removed
    when the run fails. ``InputError`` naming ``output`` when either cannot be created."""
    missing = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    blocking = next((p for p in (target.parent, *target.parent.parents) if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise InputError(
            f"output: cannot write '{target}': '{blocking}' is a file; expected a path in a "
            "writable folder"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(target)
        temp = make_temp(target, folder=target.suffix.lower() not in VIDEO_SUFFIXES)
    except OSError as error:
        raise InputError(
            f"output: cannot write '{target}' ({error.strerror or error}); expected a path in "
            "a writable folder"
        ) from error
    return temp, missing[-1] if missing else None


def restore(cfg: DictConfig) -> Path:
    """Restore ``cfg.input`` into ``cfg.output``; returns the output path.

    Inputs and the output are checked before the model is loaded; the output appears at
    ``cfg.output`` only complete (module docstring)."""
    source, target = Path(cfg.input), Path(cfg.output)
    check_options(cfg)
    if not source.exists():
        raise FileNotFoundError(f"input: '{source}' does not exist")
    frames = open_input(source)  # set-up checks: no frames, unreadable video, ...
    check_output(target, cfg.overwrite)
    temp, created = create_output(target)
    began = time.perf_counter()
    try:
        count, run_cfg = _restore_into(cfg, source, frames, temp)
        commit(temp, target)
    except BaseException:
        discard(temp)
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    seconds = time.perf_counter() - began
    log.info(
        "restored %d frames of %s into %s in %.1f s, %.2f frames/s with loading the model, "
        "reading and writing (model: %s)",
        count,
        source,
        target,
        seconds,
        count / seconds,
        run_cfg.model.task._target_,
    )
    return target


def resolve_sigma(cfg: DictConfig, net, frames: ImageFiles | VideoFrames) -> float | None:
    """The σ (0-255) given to ``net``: None for a net without a noise input; ``cfg.sigma``, or,
    when it is null or ``auto``, the estimate from the first ``sigma_frames`` frames (logged)."""
    if not getattr(net, "noise_channel", False):
        return None
    if cfg.sigma is not None and cfg.sigma != "auto":
        return float(cfg.sigma)
    sample = next(read_frames(frames, min(cfg.sigma_frames, len(frames)), clips=True), [])
    sigma = estimate_sigma_255(sample)
    log.info("sigma: estimated %.2f (0-255 scale) from the first %d frame(s)", sigma, len(sample))
    return sigma


def _restore_into(
    cfg: DictConfig, source: Path, frames: ImageFiles | VideoFrames, temp: Path
) -> tuple[int, DictConfig]:
    """Restore every frame of ``frames`` (read from ``source``) into ``temp``; returns (frames
    written, run config)."""
    task, run_cfg = build_task_from_checkpoint(cfg.ckpt_path)
    if not hasattr(task, "predict_step") or not hasattr(task, "net"):
        raise InputError(
            f"ckpt_path: '{cfg.ckpt_path}' holds a {type(task).__name__}, not a restoration model"
        )
    device = _device(cfg.device)
    set_channels_last(task.to(device).eval(), bool(cfg.channels_last))
    restorer = Restorer(task, resolve_sigma(cfg, task.net, frames), cfg, device)
    if cfg.tile == "auto":
        restorer.tile = auto_tile(free_memory(device), cfg.pad_multiple, cfg.tile_overlap)
        log.info("tile: %d pixels (auto, from free memory)", restorer.tile)
    elif cfg.tile is not None:
        restorer.tile = int(cfg.tile)
    fps = cfg.fps or input_fps(source) or DEFAULT_FPS
    latents = None  # save_latents: the coded temporal features (stages/latent_file.py)
    if cfg.save_latents:
        latents = LatentFileWriter(cfg.save_latents, task.net, cfg.overwrite)
    audio = source if is_video_file(source) else None
    writer = FrameWriter(temp, fps, cfg.crf, cfg.codec, cfg.bit_depth, audio)
    try:
        with progress_bar(cfg.progress) as progress:
            bar = progress.add_task("restore", total=len(frames))
            if restorer.streaming:  # every frame once, the state carried across the video
                for index, frame in enumerate(read_frames(frames)):
                    coded = latents.window(0, 1, 1, past=index > 0) if latents else nullcontext()
                    with coded:
                        writer.write(restorer(frame))
                    progress.advance(bar)
            else:
                for window, first, count in windows(
                    read_frames(frames, cfg.chunk_size), cfg.chunk_size, cfg.context_frames
                ):
                    with latents.window(first, count, len(window)) if latents else nullcontext():
                        restored = restorer.window(window)
                    for frame in restored[first : first + count]:
                        writer.write(frame)
                    progress.advance(bar, count)
    finally:
        writer.close()
        if latents is not None:
            latents.close()
            log.info(
                "latents: %d of %d frames coded (a frame without a past sends nothing), "
                "%d bits: %s",
                latents.entries,
                latents.frames,
                latents.bits,
                latents.path,
            )
    if writer.count == 0:
        raise InputError(f"input: '{source}' has no frames")
    return writer.count, run_cfg


@hydra.main(version_base="1.3", config_path="conf", config_name="restore")
def main(cfg: DictConfig) -> None:
    with job():  # expected errors: one line; a failed run leaves no run folder
        restore(cfg)


if __name__ == "__main__":
    with reported_errors():
        main()
