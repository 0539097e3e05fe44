"""Synthetic rain streaks that fall coherently through a clip.

Per clip: one fall angle φ (from vertical, positive = drifting right) shared by all layers, and
1..N streak layers, each with its own density, streak length, speed and intensity (near rain:
long, fast, bright; far rain: short, slow, faint — drawn independently here).

Per layer: sparse random drops (amplitude U[0.5, 1]) on a canvas larger than the frame are
smeared into streaks along φ with a line kernel (``kornia.filters.get_motion_kernel2d``,
rescaled so a streak keeps its drop's amplitude), softened by a small Gaussian blur, then
scaled by the layer intensity. The layer is drawn ONCE per clip; frame t sees the canvas window
moved by ``t·v``, with v the integer per-frame velocity ``round(speed·(sin φ, cos φ))``. So the
rain of frame t+1 is exactly the rain of frame t shifted by v (new streaks enter at the border),
never redrawn. Layers and frames are combined by a screen blend, which stays in [0, 1]:
``rain = 1 − Π(1 − layer_i)``, ``lq = 1 − (1 − gt)(1 − rain)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d, get_motion_kernel2d

from datamodules.clip_transforms import check_clip
from datamodules.degradations.sampling import check_range, uniform


class SyntheticRain:
    """Per-clip random rain made of streak layers moving at constant velocity.

    Args:
        layers_range: number of streak layers, an int drawn uniformly in [low, high].
        angle_range: fall angle φ in degrees from vertical.
        density_range: fraction of canvas pixels that start a streak, per layer.
        length_range: streak length in pixels (rounded to an odd int >= 3).
        speed_range: fall speed in pixels per frame (the velocity is rounded to whole pixels).
        intensity_range: peak brightness added by a layer's streaks.
        width_sigma: std (pixels) of the Gaussian blur giving streaks their soft width.

    ``__call__(gt_clip (T, 3, H, W), generator) -> (lq_clip, info)`` with info
    ``{"rain": (T, 1, H, W) combined layer, "angle": φ, "velocities": [(vx, vy), ...]}``.
    """

    def __init__(
        self,
        layers_range: tuple[int, int] = (1, 3),
        angle_range: tuple[float, float] = (-30.0, 30.0),
        density_range: tuple[float, float] = (0.002, 0.008),
        length_range: tuple[float, float] = (9.0, 31.0),
        speed_range: tuple[float, float] = (4.0, 14.0),
        intensity_range: tuple[float, float] = (0.4, 0.9),
        width_sigma: float = 0.6,
    ) -> None:
        low, high = (int(v) for v in layers_range)
        if not 1 <= low <= high:
            raise ValueError(
                f"SyntheticRain: layers_range must satisfy 1 <= low <= high, got {layers_range!r}"
            )
        self.layers_range = (low, high)
        owner = "SyntheticRain"  # named in the range errors
        self.angle_range = check_range(owner, "angle_range", angle_range, -80.0, 80.0)
        self.density_range = check_range(owner, "density_range", density_range, 0.0, 1.0)
        self.length_range = check_range(owner, "length_range", length_range, 1.0, math.inf)
        self.speed_range = check_range(owner, "speed_range", speed_range, 0.0, math.inf)
        self.intensity_range = check_range(owner, "intensity_range", intensity_range, 0.0, 1.0)
        if float(width_sigma) <= 0:
            raise ValueError(f"SyntheticRain: width_sigma must be > 0, got {width_sigma!r}")
        self.width_sigma = float(width_sigma)

    def __repr__(self) -> str:
        return (
            f"SyntheticRain(layers_range={self.layers_range}, angle_range={self.angle_range}, "
            f"density_range={self.density_range}, speed_range={self.speed_range})"
        )

    def _streak_canvas(
        self,
        shape: tuple[int, int],
        angle: float,
        length: int,
        density: float,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """(1, 1, H, W) canvas of streaks along ``angle`` (degrees from vertical), peak ~1."""
        drops = torch.rand((1, 1, *shape), generator=generator)
        amplitude = 0.5 + 0.5 * torch.rand((1, 1, *shape), generator=generator)
        drops = (drops < density).float() * amplitude
        # kornia's motion angle is anti-clockwise from horizontal; ours is from vertical, y down.
        kernel = get_motion_kernel2d(length, angle - 90.0)[0]
        # Sum of shifted copies over the kernel's nonzero taps, each streak pixel keeping its
        # drop's amplitude. Hand-written because filter2d runs a dense length x length
        # convolution although a line kernel has only ~length taps (45x slower at length 31).
        half = length // 2
        padded = F.pad(drops, (half, half, half, half))
        streaks = torch.zeros_like(drops)
        for dy, dx in torch.nonzero(kernel > 0).tolist():
            streaks += padded[..., dy : dy + shape[0], dx : dx + shape[1]]
        ksize = 2 * math.ceil(2.5 * self.width_sigma) + 1
        # The blur spreads a 1-px line over ~2.5 sigma; rescale so the streak core stays ~1.
        gain = math.sqrt(2 * math.pi) * self.width_sigma
        soft = gaussian_blur2d(streaks, (ksize, ksize), (self.width_sigma, self.width_sigma))
        return (soft * gain).clamp(0.0, 1.0)

    def __call__(
        self, gt_clip: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict]:
        check_clip(gt_clip, "SyntheticRain input")
        frames, _, height, width = gt_clip.shape
        angle = uniform(generator, *self.angle_range)
        low, high = self.layers_range
        num_layers = low + int(torch.randint(high - low + 1, (), generator=generator))
        clear = torch.ones(frames, 1, height, width)  # Π(1 − layer_i)
        velocities = []
        for _ in range(num_layers):
            density = uniform(generator, *self.density_range)
            length = max(3, 2 * round(uniform(generator, *self.length_range) / 2) + 1)
            speed = uniform(generator, *self.speed_range)
            intensity = uniform(generator, *self.intensity_range)
            vx = round(speed * math.sin(math.radians(angle)))
            vy = round(speed * math.cos(math.radians(angle)))
            margin = length // 2 + 2 * math.ceil(self.width_sigma) + 1
            canvas_shape = (
                height + 2 * margin + (frames - 1) * abs(vy),
                width + 2 * margin + (frames - 1) * abs(vx),
            )
            canvas = intensity * self._streak_canvas(
                canvas_shape, angle, length, density, generator
            )
            for t in range(frames):
                # Window offset moves by -v per frame, so content moves by +v in the frame.
                top = margin + (frames - 1) * max(vy, 0) - t * vy
                left = margin + (frames - 1) * max(vx, 0) - t * vx
                clear[t] *= 1.0 - canvas[0, :, top : top + height, left : left + width]
            velocities.append((vx, vy))
        rain = (1.0 - clear).to(gt_clip)
        rainy = 1.0 - (1.0 - gt_clip.clamp(0.0, 1.0)) * (1.0 - rain)
        return rainy, {"rain": rain, "angle": angle, "velocities": velocities}
