"""Restore a video with a trained model:
``python restore.py ckpt_path=<file.ckpt> input=noisy.mp4 output=clean.mp4 sigma=25``.

``input`` is a video file (anything FFmpeg/PyAV reads) or a folder of frames (png/jpg/bmp/tif,
natural order); ``output`` ending in a video extension is encoded with PyAV (H.264), anything
else is a folder of PNG frames ``00000.png, ...``. ``sigma`` (0-255 scale) is the noise level
given to a denoising model and ignored by others.

Frames are streamed: the model sees windows of ``chunk_size`` frames plus up to
``context_frames`` already-restored frames before and upcoming frames after (their outputs are
dropped; they only warm up the recurrent state and, for bidirectional models, give lookahead), so
memory depends on chunk_size + 2·context_frames, not on the video's length. Frames are padded
(replicate) to a multiple of ``pad_multiple`` and cropped back.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
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
from datamodules.natural_sort import natural_sorted
from lightning_modules.run.checkpoints import build_task_from_checkpoint
from lightning_modules.run.resolvers import register_resolvers
from lightning_modules.run.structured_configs import register_configs

log = logging.getLogger(__name__)
register_resolvers()
register_configs()

VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
DEFAULT_FPS = 25


# ----------------------------------------------------------------------------- reading
def frame_folder_paths(folder: Path) -> list[Path]:
    paths = natural_sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(
            f"input: no image frames ({', '.join(sorted(IMAGE_SUFFIXES))}) in '{folder}'"
        )
    return paths


def read_frames(path: Path) -> Iterator[np.ndarray]:
    """(H, W, 3) uint8 RGB frames of a video file or an image folder, one at a time."""
    if path.is_dir():
        size = None
        for frame_path in frame_folder_paths(path):
            frame = np.asarray(Image.open(frame_path).convert("RGB"))
            if size is not None and frame.shape != size:
                raise ValueError(
                    f"input: frame '{frame_path}' is {frame.shape[1]}x"
                    f"{frame.shape[0]}, the first frame is {size[1]}x{size[0]}"
                )
            size = frame.shape
            yield frame
        return
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as err:
        raise ValueError(f"input: '{path}' is not a readable video ({err})") from err
    with container:
        if not container.streams.video:
            raise ValueError(f"input: '{path}' has no video stream")
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def input_fps(path: Path) -> float | None:
    if path.is_dir():
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
def windows(frames: Iterator[np.ndarray], chunk_size: int, context: int):
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
    task, frames: list[np.ndarray], sigma: float, pad_multiple: int, device: torch.device
) -> np.ndarray:
    """Restore a list of uint8 frames; returns (T, H, W, 3) uint8."""
    clip = torch.from_numpy(np.stack(frames)).to(device).permute(0, 3, 1, 2).float() / 255.0
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


def restore(cfg: DictConfig) -> Path:
    """Restore ``cfg.input`` into ``cfg.output``; returns the output path."""
    source, target = Path(cfg.input), Path(cfg.output)
    if not source.exists():
        raise FileNotFoundError(f"input: '{source}' does not exist")
    if target.exists() and not (target.is_dir() and not any(target.iterdir())):
        if not cfg.overwrite:
            raise FileExistsError(
                f"output: '{target}' already exists (pass overwrite=true to replace it)"
            )
        if target.is_dir():
            for old in target.iterdir():
                if old.suffix.lower() == ".png":
                    old.unlink()
    for name, value in (("chunk_size", cfg.chunk_size), ("pad_multiple", cfg.pad_multiple)):
        if value < 1:
            raise ValueError(f"{name}: expected an int >= 1, got {value}")
    if cfg.context_frames < 0:
        raise ValueError(f"context_frames: expected an int >= 0, got {cfg.context_frames}")
    task, run_cfg = build_task_from_checkpoint(cfg.ckpt_path)
    if not hasattr(task, "predict_step") or not hasattr(task, "net"):
        raise ValueError(
            f"ckpt_path: '{cfg.ckpt_path}' holds a {type(task).__name__}, not a restoration model"
        )
    device = _device(cfg.device)
    task.to(device)
    fps = cfg.fps or input_fps(source) or DEFAULT_FPS
    target.parent.mkdir(parents=True, exist_ok=True)
    writer = FrameWriter(target, fps, cfg.crf)
    try:
        for window, first, count in windows(
            read_frames(source), cfg.chunk_size, cfg.context_frames
        ):
            restored = restore_window(task, window, cfg.sigma, cfg.pad_multiple, device)
            for frame in restored[first : first + count]:
                writer.write(frame)
    finally:
        writer.close()
    if writer.count == 0:
        raise ValueError(f"input: '{source}' has no frames")
    log.info(
        "restored %d frames of %s into %s (model: %s)",
        writer.count,
        source,
        target,
        run_cfg.model.task._target_,
    )
    return target


@hydra.main(version_base="1.3", config_path="conf", config_name="restore")
def main(cfg: DictConfig) -> None:
    restore(cfg)


if __name__ == "__main__":
    main()
