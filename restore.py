"""Restore a video with a trained model:
``python restore.py ckpt_path=<file.ckpt> input=noisy.mp4 output=clean.mp4 sigma=25``.

``input`` is a video file (anything FFmpeg/PyAV reads), a folder of frames (png/jpg/bmp/tif,
natural order) or one image, read by the training loader's reader
(``datamodules/frame_sources.py``: gray, RGBA and 16-bit images come out as RGB in [0, 1]);
``output`` ending in a video extension is encoded with PyAV (H.264), anything else is a folder of
PNG frames ``00000.png, ...``. ``sigma`` (0-255 scale, within [0, 255]) is the noise level given
to a denoising model and ignored by others.

The output is written under a hidden temporary name in its own folder (created first, so an
unwritable output stops the run before the model is even loaded) and renamed onto ``output``
when every frame is written: a failure or a kill never leaves a partial video or folder there.

Frames are streamed: the model sees windows of ``chunk_size`` frames plus up to
``context_frames`` already-restored frames before and upcoming frames after (their outputs are
dropped; they only warm up the recurrent state and, for bidirectional models, give lookahead), so
memory depends on chunk_size + 2·context_frames, not on the video's length. Frames are padded
(replicate) to a multiple of ``pad_multiple`` and cropped back.
"""

from __future__ import annotations

import logging
import shutil
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

from datamodules.degradations import sigma_from_255
from datamodules.frame_sources import (
    IMAGE_EXTENSIONS,
    DatasetLayoutError,
    ImageFiles,
    VideoFrames,
    list_frames,
)
from lightning_modules.run.atomic_files import commit, discard, make_temp, remove_stale_temps
from lightning_modules.run.checkpoints import build_task_from_checkpoint
from lightning_modules.run.entry_point import InputError, job, reported_errors
from lightning_modules.run.resolvers import register_resolvers
from lightning_modules.run.structured_configs import register_configs
from lightning_modules.stages.latent_file import LatentFileWriter

log = logging.getLogger(__name__)
register_resolvers()
register_configs()

VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v"}
DEFAULT_FPS = 25


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


def read_frames(path: Path | ImageFiles | VideoFrames, block: int = 16) -> Iterator[torch.Tensor]:
    """Float (3, H, W) RGB frames in [0, 1] of ``path`` (or of a source ``open_input`` made),
    one at a time, decoded ``block`` frames at a time (a video seeks once per block)."""
    source = open_input(path) if isinstance(path, Path) else path
    for start in range(0, len(source), block):
        try:
            clip = source.read(list(range(start, min(len(source), start + block))))
        except DatasetLayoutError as error:
            raise InputError(f"input: {error}") from error
        yield from clip


def input_fps(path: Path) -> float | None:
    """The frame rate of a video input; None for frames on disk."""
    if path.is_dir() or path.suffix.lower() in IMAGE_EXTENSIONS:
        return None
    with av.open(str(path)) as container:
        rate = container.streams.video[0].average_rate
    return float(rate) if rate else None


# ----------------------------------------------------------------------------- writing
class FrameWriter:
    """Writes uint8 (H, W, 3) frames to a video file (PyAV, H.264) or a PNG folder."""

    def __init__(self, path: Path, fps: float, crf: int):
        self.path, self.fps, self.crf = path, fps, crf
        self.is_video = path.suffix.lower() in VIDEO_SUFFIXES
        self.count = 0
        self.container = self.stream = None
        if not self.is_video:
            path.mkdir(parents=True, exist_ok=True)

    def write(self, frame: np.ndarray) -> None:
        if not self.is_video:
            Image.fromarray(frame).save(self.path / f"{self.count:05d}.png")
        else:
            if self.container is None:
                self._open(frame.shape[1], frame.shape[0])
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            for packet in self.stream.encode(video_frame):
                self.container.mux(packet)
        self.count += 1

    def _open(self, width: int, height: int) -> None:
        self.container = av.open(str(self.path), mode="w")
        self.stream = self.container.add_stream(
            "libx264", rate=Fraction(self.fps).limit_denominator(1001)
        )
        self.stream.width, self.stream.height = width, height
        # 4:2:0 needs even sizes; odd-sized frames are kept whole in 4:4:4.
        self.stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        self.stream.options = {"crf": str(self.crf)}

    def close(self) -> None:
        if self.container is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.container.close()


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


@torch.inference_mode()
def restore_window(
    task, frames: list[torch.Tensor], sigma: float, pad_multiple: int, device: torch.device
) -> np.ndarray:
    """Restore a list of float (3, H, W) frames in [0, 1]; returns (T, H, W, 3) uint8."""
    clip = torch.stack(frames).to(device)
    height, width = clip.shape[-2:]
    pad_h, pad_w = (-height) % pad_multiple, (-width) % pad_multiple
    if pad_h or pad_w:
        clip = F.pad(clip, (0, pad_w, 0, pad_h), mode="replicate")
    batch = {"lq": clip[None], "sigma": torch.tensor([sigma_from_255(sigma)], device=device)}
    restored = task.predict_step(batch, 0)[0, :, :, :height, :width]
    return (restored.clamp(0, 1) * 255.0).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def check_options(cfg: DictConfig) -> None:
    """``InputError`` for a σ outside [0, 255] or a window option out of range."""
    if not 0.0 <= cfg.sigma <= 255.0:  # also refuses nan
        raise InputError(
            f"sigma: expected a noise level on the 0-255 scale within [0, 255], got {cfg.sigma}"
        )
    for name, value in (("chunk_size", cfg.chunk_size), ("pad_multiple", cfg.pad_multiple)):
        if value < 1:
            raise InputError(f"{name}: expected an int >= 1, got {value}")
    if cfg.context_frames < 0:
        raise InputError(f"context_frames: expected an int >= 0, got {cfg.context_frames}")


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
        raise FileExistsError(
            f"output: '{target}' already exists (pass overwrite=true to replace it)"
        )
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
    try:
        count, run_cfg = _restore_into(cfg, source, frames, temp)
        commit(temp, target)
    except BaseException:
        discard(temp)
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    log.info(
        "restored %d frames of %s into %s (model: %s)",
        count,
        source,
        target,
        run_cfg.model.task._target_,
    )
    return target


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
    task.to(device)
    fps = cfg.fps or input_fps(source) or DEFAULT_FPS
    latents = None  # save_latents: the coded temporal features (stages/latent_file.py)
    if cfg.save_latents:
        latents = LatentFileWriter(cfg.save_latents, task.net, cfg.overwrite)
    writer = FrameWriter(temp, fps, cfg.crf)
    try:
        for window, first, count in windows(
            read_frames(frames, cfg.chunk_size), cfg.chunk_size, cfg.context_frames
        ):
            with latents.window(first, count, len(window)) if latents else nullcontext():
                restored = restore_window(task, window, cfg.sigma, cfg.pad_multiple, device)
            for frame in restored[first : first + count]:
                writer.write(frame)
    finally:
        writer.close()
        if latents is not None:
            latents.close()
            log.info("latents: %d frames, %d bits: %s", latents.frames, latents.bits, latents.path)
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
