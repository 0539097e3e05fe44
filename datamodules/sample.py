"""The embedded sample set: short clips rendered from photographs bundled with scikit-image.

No download and no files: ``scan_sample`` turns real photographs (``skimage.data``: astronaut,
coffee, rocket, motorcycle for training; chelsea for validation and test, with different camera
trajectories) into clips seen by a smoothly moving virtual camera, and returns them as
``Sequence`` objects with in-memory frame sources. ``conf/data/sample.yaml`` builds the default
``VideoDataModule`` from it, so ``python train.py`` runs anywhere.

Camera model, per frame t (u = t − (T − 1)/2, centred so the path is symmetric):
``p_src = c(u) + z(u)·R(θ(u))·(p_out − centre_out)`` for each output pixel, where the
translation c, rotation θ and log-zoom log z each follow ``v·u + a·sin(ω·u + φ)`` with random
v, a, ω, φ bounded so that the per-frame change never exceeds ``max_shift`` pixels,
``max_rotation`` degrees and ``max_zoom`` (relative). The photograph is first resized
(antialiased) so that the window the whole path sweeps just fits inside it; no border shows.
Frames are rendered with ``kornia.geometry.transform.warp_affine`` (bilinear, sub-pixel).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from kornia.geometry.transform import resize, warp_affine

from datamodules.clip_dataset import derive_seed
from datamodules.sequence import Sequence

SPLIT_PHOTOS = {
    "train": ("astronaut", "coffee", "rocket", "motorcycle"),
    "val": ("chelsea",),
    "test": ("chelsea",),
}


def _load_photo_array(name: str) -> np.ndarray:
    from skimage import data  # local import: scikit-image is only needed for the sample set

    if name == "motorcycle":
        return data.stereo_motorcycle()[0]
    loader = getattr(data, name, None)
    if loader is None:
        raise ValueError(f"scan_sample: unknown scikit-image photograph {name!r}")
    return loader()


@lru_cache(maxsize=16)
def load_photo(name: str) -> torch.Tensor:
    """A bundled scikit-image photograph as float (3, H, W) in [0, 1] (gray -> 3 channels)."""
    array = _load_photo_array(name)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] < 3:
        raise ValueError(f"scan_sample: photograph {name!r} is not an RGB image: {array.shape}")
    return torch.from_numpy(np.ascontiguousarray(array[:, :, :3])).permute(2, 0, 1).float() / 255.0


class TensorFrames:
    """In-memory frame source (``datamodules.sequence.FrameSource``) over a (N, 3, H, W) tensor."""

    def __init__(self, frames: torch.Tensor, name: str = "tensor") -> None:
        if frames.ndim != 4 or frames.shape[1] != 3 or not frames.is_floating_point():
            raise ValueError(
                f"TensorFrames {name!r}: expected float (N, 3, H, W), "
                f"got {tuple(frames.shape)} {frames.dtype}"
            )
        self.frames = frames
        self.name = name

    def __len__(self) -> int:
        return self.frames.shape[0]

    def __repr__(self) -> str:
        return f"TensorFrames({self.name!r}, {len(self)} frames {tuple(self.frames.shape[-2:])})"

    def read(self, indices: list[int]) -> torch.Tensor:
        for index in indices:
            if not 0 <= index < len(self):
                raise IndexError(
                    f"frame index {index} out of range [0, {len(self)}) for {self.name!r}"
                )
        return self.frames[list(indices)].clone()

    def describe(self, index: int) -> str:
        return f"{self.name}#{index}"


def _smooth_path(num_frames: int, max_step: float, generator: torch.Generator) -> torch.Tensor:
    """``v·u + a·sin(ω·u + φ)`` over centred frame times u, with |per-frame change| <= max_step:
    the drift v takes up to 70% of the budget, the oscillation (a·ω) the rest."""
    draws = torch.rand(4, generator=generator, dtype=torch.float64)
    velocity = (2 * draws[0] - 1) * 0.7 * max_step
    omega = 0.2 + 0.4 * draws[1]
    amplitude = draws[2] * 0.3 * max_step / omega
    phase = 2 * math.pi * draws[3]
    u = torch.arange(num_frames, dtype=torch.float64) - (num_frames - 1) / 2
    return velocity * u + amplitude * torch.sin(omega * u + phase)


def camera_path(
    num_frames: int,
    generator: torch.Generator,
    max_shift: float = 1.5,
    max_rotation: float = 0.5,
    max_zoom: float = 0.01,
) -> torch.Tensor:
    """Per-frame output->source maps as (T, 2, 3) ``[z·R(θ) | c]`` (pixels, relative to the
    centres of the output frame and the source)."""
    shift_x = _smooth_path(num_frames, max_shift, generator)
    shift_y = _smooth_path(num_frames, max_shift, generator)
    theta = torch.deg2rad(_smooth_path(num_frames, max_rotation, generator))
    zoom = torch.exp(_smooth_path(num_frames, math.log1p(max_zoom), generator))
    cos, sin = zoom * torch.cos(theta), zoom * torch.sin(theta)
    return torch.stack(
        [torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1
    )


def render_clip(photo: torch.Tensor, path: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Frames (T, 3, H, W) of ``photo`` seen along ``path`` (from ``camera_path``).

    The photograph is resized so the swept window (plus a 2-pixel margin for bilinear
    interpolation) fits inside it, then each frame is warped from it."""
    height, width = size
    corners = torch.tensor(
        [[sx * (width - 1) / 2, sy * (height - 1) / 2] for sx in (-1, 1) for sy in (-1, 1)],
        dtype=torch.float64,
    )
    linear, offset = path[:, :, :2], path[:, :, 2]
    reach = (torch.einsum("tij,cj->tci", linear, corners) + offset[:, None, :]).abs()
    half_x, half_y = reach[..., 0].max().item() + 2, reach[..., 1].max().item() + 2
    src_h, src_w = photo.shape[-2:]
    scale = max((2 * half_x + 1) / src_w, (2 * half_y + 1) / src_h)
    resized_size = (math.ceil(src_h * scale), math.ceil(src_w * scale))
    source = resize(photo[None], resized_size, interpolation="bilinear", antialias=scale < 1)
    source = source.clamp(0.0, 1.0)
    centre_src = torch.tensor(
        [(resized_size[1] - 1) / 2, (resized_size[0] - 1) / 2], dtype=torch.float64
    )
    centre_out = torch.tensor([(width - 1) / 2, (height - 1) / 2], dtype=torch.float64)
    # warp_affine wants the source->output map: p_out = L^-1 (p_src - centre_src - c) + centre_out.
    inverse = torch.linalg.inv(linear)
    translation = centre_out - torch.einsum("tij,tj->ti", inverse, centre_src + offset)
    src_to_out = torch.cat([inverse, translation[:, :, None]], dim=2).float()
    frames = warp_affine(
        source.expand(path.shape[0], -1, -1, -1), src_to_out, (height, width), align_corners=True
    )
    return frames.clamp(0.0, 1.0)


def scan_sample(
    split: str = "train",
    num_sequences: int = 4,
    num_frames: int = 16,
    size: tuple[int, int] = (96, 128),
    seed: int = 0,
    photos: list[str] | None = None,
    max_shift: float = 1.5,
    max_rotation: float = 0.5,
    max_zoom: float = 0.01,
) -> list[Sequence]:
    """``num_sequences`` clean clips of ``num_frames`` frames of ``size`` (H, W).

    Sequence i shows ``photos[i % len(photos)]`` (default: the split's photographs in
    ``SPLIT_PHOTOS``) along a camera path seeded from (seed, split, i); names look like
    ``sample-train/00_astronaut``. Same arguments, same frames.
    """
    if split not in SPLIT_PHOTOS:
        raise ValueError(f"scan_sample: split must be one of {sorted(SPLIT_PHOTOS)}, got {split!r}")
    height, width = (int(v) for v in size)
    if num_sequences < 1 or num_frames < 1 or height < 8 or width < 8:
        raise ValueError(
            f"scan_sample: need num_sequences >= 1, num_frames >= 1 and size >= (8, 8), got "
            f"{num_sequences}, {num_frames}, {tuple(size)}"
        )
    photos = list(photos) if photos is not None else list(SPLIT_PHOTOS[split])
    if not photos:
        raise ValueError("scan_sample: photos must name at least one scikit-image photograph")
    sequences = []
    for i in range(num_sequences):
        photo_name = photos[i % len(photos)]
        generator = torch.Generator().manual_seed(derive_seed(seed, split, i))
        path = camera_path(num_frames, generator, max_shift, max_rotation, max_zoom)
        frames = render_clip(load_photo(photo_name), path, (height, width))
        name = f"sample-{split}/{i:02d}_{photo_name}"
        sequences.append(Sequence(name=name, gt=TensorFrames(frames, name)))
    return sequences
