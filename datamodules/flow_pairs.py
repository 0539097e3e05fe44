"""Synthetic optical-flow pairs with exact ground truth, rendered on the fly (Flying Chairs style).

``SyntheticFlowPairs[i]`` renders one pair (frame 1 = x_{t-1}, frame 2 = x_t) deterministically
from (seed, i) and returns::

    {"lq":    (2, 3, H, W) float32  degraded pair [frame 1, frame 2] (the network input),
     "gt":    (2, 3, H, W) float32  clean pair, in [0, 1],
     "flow":  (2, H, W)    float32  backward flow of frame 2 in pixels (ch 0 = x, ch 1 = y),
     "valid": (1, H, W)    float32  1 where the flow can be checked photometrically, else 0,
     "sigma": ()           float32  noise std in [0, 1] units (0 without noise),
     "name":  str}

Scene: a background layer and 0..N foreground layers (ellipses and star-shaped polygons, hard or
soft edged). Textures are the bundled scikit-image photographs, or random frames of any list of
``Sequence``; the foreground layers take theirs from images other than the background's (a pool
of ``fg_textures`` images per item, each layer showing its own random region).

Layer l has a texture placement P_l (frame-1 pixel -> texture pixel, affine) and a motion D_l
(frame-2 pixel -> frame-1 pixel: a homography for the background, an affine map about the shape
centre for foreground layers). Both frames are rendered by inverse mapping, with the shape alpha
a_l evaluated in frame-1 coordinates:

    frame 1:  colour_l(p) = Tex_l(P_l(p)),       alpha_l(p) = a_l(p)
    frame 2:  colour_l(p) = Tex_l(P_l(D_l(p))),  alpha_l(p) = a_l(D_l(p))

and composited bottom to top (``c = c·(1 − alpha) + colour·alpha``). With A_1 = P_l and
A_2 = P_l ∘ D_l, the flow of a pixel owned by layer l (the topmost layer with alpha >= 1/2) is

    flow(p) = A_1^{-1}(A_2(p)) − p = D_l(p) − p,

so ``flow_warp(frame1, flow) ≈ frame2`` (``lightning_modules.stages.warp``), up to bilinear
interpolation of frame 1. A zero motion is the identity matrix, giving a flow of exactly 0.

valid(p) = 1 iff frame 2 at p shows layer l alone (alpha_l = 1, every layer above has alpha 0),
q = p + flow(p) lies inside frame 1 (0 <= q_x <= W − 1, 0 <= q_y <= H − 1), and the (up to) four
pixels of frame 1 that bilinear sampling at q reads (floor/ceil of q) show layer l alone too. So
occluded, disoccluded, out-of-frame and soft-edge pixels are 0: the mask is the erosion the
warp check needs, computed exactly from the rasterised layers.

Motion magnitude: per item a scale s is 0 with probability ``zero_motion_prob`` (all layers
static, flow exactly 0), else log-uniform in [``min_motion_scale``, 1]; every motion parameter
of every layer is drawn uniformly in ±s·(its maximum). With the default min scale 0.01, half
of the moving pairs have s < 0.1 (sub-pixel to few-pixel motion).

Inputs only (``lq``): per frame, photometric jitter (brightness/contrast/gamma, with probability
``jitter_prob``) and Gaussian blur (probability ``blur_prob`` per frame), then one degradation
drawn per item from ``degradations`` (or none, with probability ``clean_prob``): the callables
of ``datamodules.degradations`` applied to the 2-frame clip, so noise is i.i.d. per frame and
rain/haze are per clip, as they define it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from collections.abc import Sequence as ListLike
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.clip_dataset import derive_seed
from datamodules.frame_sources import frame_size, location
from datamodules.sample import TensorFrames, load_photo
from datamodules.sequence import Sequence

DEFAULT_PHOTOS = ("astronaut", "coffee", "rocket", "motorcycle", "chelsea")
PHOTO_PREFIX = "photo:"  # texture sequence name of a bundled photograph
#: Texture rotation (degrees) of the background; foreground textures take any angle.
BACKGROUND_TEXTURE_ROTATION = 15.0
#: Angular jitter of polygon vertices (fraction of the even spacing 2π/K): below 1/4 every gap
#: stays under π, so the centre sees each edge from inside (needed by ``PolygonShape.sdf``).
POLYGON_ANGLE_JITTER = 0.2


# ---------------------------------------------------------------------------------------------
# Geometry


def motion_matrix(
    center: tuple[float, float],
    translation: tuple[float, float] = (0.0, 0.0),
    rotation: float = 0.0,
    zoom: float = 1.0,
    shear: float = 0.0,
    perspective: tuple[float, float] = (0.0, 0.0),
) -> Tensor:
    """Homography D (3, 3) float64, frame-2 pixel -> frame-1 pixel, about ``center`` (x, y):

    ``D = T(center + translation) · [[zoom·R(rotation°)·[[1, shear], [0, 1]], 0], [k, 1]] ·
    T(−center)`` with k = ``perspective`` (per pixel). D(p) − p is the flow; the defaults give
    the identity exactly, and a pure ``translation`` t gives the constant flow t.
    """
    theta = math.radians(rotation)
    cos, sin = zoom * math.cos(theta), zoom * math.sin(theta)
    linear = torch.tensor([[cos, -sin], [sin, cos]], dtype=torch.float64)
    linear = linear @ torch.tensor([[1.0, shear], [0.0, 1.0]], dtype=torch.float64)
    core = torch.eye(3, dtype=torch.float64)
    core[:2, :2] = linear
    core[2, :2] = torch.tensor(perspective, dtype=torch.float64)
    cx, cy = center
    return _translation(cx + translation[0], cy + translation[1]) @ core @ _translation(-cx, -cy)


def _translation(tx: float, ty: float) -> Tensor:
    matrix = torch.eye(3, dtype=torch.float64)
    matrix[0, 2], matrix[1, 2] = tx, ty
    return matrix


def apply_homography(matrix: Tensor, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """``matrix`` (3, 3) applied to pixel coordinates ``x``, ``y`` (same shape, float32)."""
    m = matrix.tolist()
    out_x = m[0][0] * x + m[0][1] * y + m[0][2]
    out_y = m[1][0] * x + m[1][1] * y + m[1][2]
    if m[2] != [0.0, 0.0, 1.0]:
        w = m[2][0] * x + m[2][1] * y + m[2][2]
        out_x, out_y = out_x / w, out_y / w
    return out_x, out_y


class EllipseShape:
    """Ellipse with semi-axes (a, b), rotated by ``angle`` (radians) about ``center``."""

    def __init__(self, center: tuple[float, float], axes: tuple[float, float], angle: float):
        self.center, self.axes, self.angle = center, axes, angle
        self.radius = max(axes)

    def sdf(self, x: Tensor, y: Tensor) -> Tensor:
        """Approximate signed distance in pixels, > 0 inside: (1 − r)/|∇r|, r the normalised
        radius (exact on the boundary, where the alpha ramp lives)."""
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        dx, dy = x - self.center[0], y - self.center[1]
        u, v = (cos * dx + sin * dy) / self.axes[0], (cos * dy - sin * dx) / self.axes[1]
        r = torch.sqrt(u * u + v * v)
        grad = torch.sqrt((u / self.axes[0]) ** 2 + (v / self.axes[1]) ** 2) / r.clamp_min(1e-6)
        return (1.0 - r) / grad.clamp_min(1e-6)


class PolygonShape:
    """Star-shaped polygon: vertices at increasing ``angles`` (radians, gaps < π) and ``radii``
    (pixels) around ``center``."""

    def __init__(self, center: tuple[float, float], angles: Tensor, radii: Tensor):
        self.center = center
        order = torch.argsort(angles)
        self.angles, radii = angles[order].float(), radii[order].float()
        self.radius = float(radii.max())
        vx = center[0] + radii * torch.cos(self.angles)
        vy = center[1] + radii * torch.sin(self.angles)
        ex, ey = torch.roll(vx, -1) - vx, torch.roll(vy, -1) - vy
        length = torch.sqrt(ex * ex + ey * ey)
        # Vertices run by increasing atan2 angle (counter-clockwise in x, y), so the left normal
        # (−ey, ex) of edge k (vertex k -> k+1) points inwards: the centre is on its + side.
        self.nx, self.ny = -ey / length, ex / length
        self.vx, self.vy = vx, vy

    def sdf(self, x: Tensor, y: Tensor) -> Tensor:
        """Signed distance (> 0 inside) to the line of the edge crossed by the ray from the
        centre through the point: exact inside test, exact distance except near vertices."""
        dx, dy = x - self.center[0], y - self.center[1]
        start = self.angles[0]
        theta = start + torch.remainder(torch.atan2(dy, dx) - start, 2 * math.pi)
        edge = (torch.bucketize(theta, self.angles, right=True) - 1) % len(self.angles)
        return self.nx[edge] * (x - self.vx[edge]) + self.ny[edge] * (y - self.vy[edge])


@dataclass
class Layer:
    """One textured layer: texture (1, 3, h, w); placement (3, 3) frame-1 pixel -> texture
    pixel (affine); motion D (3, 3) frame-2 pixel -> frame-1 pixel; shape None = background
    (opaque everywhere), else an ``EllipseShape``/``PolygonShape`` in frame-1 coordinates with
    an alpha ramp of ``softness`` pixels (alpha = clamp(1/2 + sdf/softness, 0, 1))."""

    texture: Tensor
    placement: Tensor
    motion: Tensor
    shape: EllipseShape | PolygonShape | None = None
    softness: float = 1.0


@dataclass
class RenderedPair:
    """Output of ``render_layers``: frames (2, 3, H, W), flow (2, H, W), valid (1, H, W)."""

    frames: Tensor
    flow: Tensor
    valid: Tensor


def _sample(texture: Tensor, placement: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Bilinear texture values (B, 3, h, w) at placement(x, y), x and y of shape (B, h, w);
    reflection outside the texture keeps the texture a continuous function of position."""
    tex_x, tex_y = apply_homography(placement, x, y)
    height, width = texture.shape[-2:]
    grid = torch.stack(
        (tex_x * (2.0 / max(width - 1, 1)) - 1.0, tex_y * (2.0 / max(height - 1, 1)) - 1.0), -1
    )
    batch, rows, cols = x.shape
    # The B grids stacked as rows of one grid: no B-fold copy of a (possibly large) texture.
    out = F.grid_sample(
        texture,
        grid.reshape(1, batch * rows, cols, 2),
        mode="bilinear",
        padding_mode="reflection",
        align_corners=True,
    )
    return out.reshape(3, batch, rows, cols).transpose(0, 1)


def _layer_box(layer: Layer, frame: int, size: tuple[int, int]) -> tuple[int, ...] | None:
    """(y0, y1, x0, x1) pixel box outside which the layer's alpha is 0 in frame 1
    (``frame`` = 0) or frame 2 (``frame`` = 1); None when the layer is outside the frame."""
    cx, cy = layer.shape.center
    reach = layer.shape.radius + layer.softness / 2 + 1.0
    xs = torch.tensor([cx - reach, cx + reach, cx - reach, cx + reach], dtype=torch.float64)
    ys = torch.tensor([cy - reach, cy - reach, cy + reach, cy + reach], dtype=torch.float64)
    if frame == 1:  # frame-2 pixels whose D-image falls in the square: D^{-1}(corners)
        xs, ys = apply_homography(torch.linalg.inv(layer.motion), xs, ys)
    height, width = size
    x0, x1 = max(0, math.floor(xs.min())), min(width, math.ceil(xs.max()) + 1)
    y0, y1 = max(0, math.floor(ys.min())), min(height, math.ceil(ys.max()) + 1)
    return (y0, y1, x0, x1) if x0 < x1 and y0 < y1 else None


def render_layers(layers: list[Layer], size: tuple[int, int]) -> RenderedPair:
    """Render frames 1 and 2 of ``layers`` (background first, then bottom to top) at ``size``
    (H, W), with the exact backward flow of frame 2 and its validity mask (module docstring)."""
    if not layers or layers[0].shape is not None:
        raise ValueError("render_layers: the first layer must be the background (shape=None)")
    if any(layer.shape is None for layer in layers[1:]):
        raise ValueError("render_layers: only the first layer may be a background (shape=None)")
    height, width = size
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32),
        torch.arange(width, dtype=torch.float32),
        indexing="ij",
    )
    background = layers[0]
    bg_x, bg_y = apply_homography(background.motion, xs, ys)
    colour = _sample(
        background.texture, background.placement, torch.stack((xs, bg_x)), torch.stack((ys, bg_y))
    )
    frames = [colour[0], colour[1]]
    flow = torch.stack((bg_x - xs, bg_y - ys))
    owners = [torch.zeros(height, width, dtype=torch.int16) for _ in range(2)]
    pures = [torch.ones(height, width, dtype=torch.bool) for _ in range(2)]
    for index, layer in enumerate(layers[1:], start=1):
        for frame in (0, 1):
            box = _layer_box(layer, frame, size)
            if box is None:
                continue
            y0, y1, x0, x1 = box
            px, py = xs[y0:y1, x0:x1], ys[y0:y1, x0:x1]
            lx, ly = (px, py) if frame == 0 else apply_homography(layer.motion, px, py)
            alpha = (0.5 + layer.shape.sdf(lx, ly) / layer.softness).clamp(0.0, 1.0)
            colour = _sample(layer.texture, layer.placement, lx[None], ly[None])[0]
            region = frames[frame][:, y0:y1, x0:x1]
            region.mul_(1.0 - alpha).add_(colour * alpha)
            cover = alpha >= 0.5
            owners[frame][y0:y1, x0:x1].masked_fill_(cover, index)
            pure = pures[frame][y0:y1, x0:x1]
            pure.masked_fill_((alpha > 0) & (alpha < 1), False).masked_fill_(alpha >= 1, True)
            if frame == 1:
                patch = flow[:, y0:y1, x0:x1]
                patch.copy_(torch.where(cover, torch.stack((lx - px, ly - py)), patch))
    qx, qy = xs + flow[0], ys + flow[1]
    valid = pures[1] & (qx >= 0) & (qx <= width - 1) & (qy >= 0) & (qy <= height - 1)
    # Frame-1 owner where a single layer shows, −1 where layers mix; gathered at q's neighbours.
    pure_owner1 = owners[0].masked_fill(~pures[0], -1).flatten()
    columns = [n.clamp(0, width - 1).long() for n in (qx.floor(), qx.ceil())]
    rows = [n.clamp(0, height - 1).long() * width for n in (qy.floor(), qy.ceil())]
    for row in rows:
        for column in columns:
            valid &= pure_owner1[row + column] == owners[1]
    return RenderedPair(torch.stack(frames), flow, valid[None].float())


# ---------------------------------------------------------------------------------------------
# Dataset


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=generator, dtype=torch.float64).item()


def _symmetric(generator: torch.Generator, bound: float) -> float:
    return _uniform(generator, -bound, bound)


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """Uniform int in [low, high]."""
    return low + int(torch.randint(high - low + 1, (), generator=generator))


def _describe_source(source: object) -> str:
    if source is None:
        return f"scikit-image photographs {list(DEFAULT_PHOTOS)}"
    if isinstance(source, functools.partial):
        func = source.func
        args = ", ".join(
            [repr(v) for v in source.args] + [f"{k}={v!r}" for k, v in source.keywords.items()]
        )
        return f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', func)}({args})"
    if callable(source):
        return repr(source)
    if _is_list(source) and source and all(isinstance(s, str) for s in source):
        return f"scikit-image photographs {list(source)}"
    if _is_list(source):
        return f"a list of {len(source)} sequences"
    return repr(source)


def _is_list(value: object) -> bool:
    """A list, tuple or Hydra ListConfig (not a string)."""
    return isinstance(value, ListLike) and not isinstance(value, str)


def _photo_sequences(names: list[str]) -> list[Sequence]:
    sequences = []
    for name in names:
        photo = load_photo(name)
        sequences.append(Sequence(name=PHOTO_PREFIX + name, gt=TensorFrames(photo[None], name)))
    return sequences


class SyntheticFlowPairs(Dataset):
    """Pairs with exact backward flow, ``length`` items rendered from (``seed``, index).

    Args:
        size: crop (H, W) of the rendered pair (an int for a square).
        length: items per epoch.
        seed: item i is a function of (seed, i) only.
        source: textures: None (bundled photographs ``DEFAULT_PHOTOS``), a list of photograph
            names, a list of ``Sequence`` (a random frame of a random sequence per texture), or
            a callable returning such a list (a Hydra ``_partial_`` scanner).
        degradations: degradation callables ``deg(clip, generator) -> (lq, info)``, one drawn
            per item; None for clean inputs.
        clean_prob: probability of no degradation when ``degradations`` are given.
        max_translation: background/foreground translation bound, a fraction of H (y) and W (x).
        max_rotation: rotation bound in degrees.
        max_zoom: relative zoom bound (zoom in [1/(1+z), 1+z], log-uniform).
        max_shear: shear bound.
        max_perspective: background perspective bound: ±bound over half the longer side.
        layers_range: number of foreground layers, uniform in [low, high].
        layer_size: foreground radius range, a fraction of min(H, W).
        texture_scale: texture pixels per output pixel (<= 1 magnifies the texture).
        fg_textures: distinct foreground texture images per item (bounds reads per item).
        zero_motion_prob: probability that nothing moves (flow exactly 0).
        min_motion_scale: lower end of the log-uniform motion scale.
        hard_edge_prob: probability that a foreground layer has a 1-pixel (antialiased) edge
            instead of a soft ramp of 1.5-6 pixels.
        jitter_prob, jitter: probability and strength of per-frame photometric jitter
            (contrast 1 ± j, brightness ± j/2, gamma exp(± j)).
        blur_prob: per-frame probability of a Gaussian blur (σ in [0.3, 1.5] pixels).
    """

    def __init__(
        self,
        size: tuple[int, int] = (256, 256),
        length: int = 10_000,
        seed: int = 0,
        source: list[Sequence] | list[str] | Callable[[], list[Sequence]] | None = None,
        degradations: list[Callable] | None = None,
        clean_prob: float = 0.2,
        max_translation: float = 0.12,
        max_rotation: float = 8.0,
        max_zoom: float = 0.1,
        max_shear: float = 0.05,
        max_perspective: float = 0.05,
        layers_range: tuple[int, int] = (1, 5),
        layer_size: tuple[float, float] = (0.08, 0.3),
        texture_scale: tuple[float, float] = (0.5, 1.0),
        fg_textures: int = 2,
        zero_motion_prob: float = 0.1,
        min_motion_scale: float = 0.01,
        hard_edge_prob: float = 0.5,
        jitter_prob: float = 0.5,
        jitter: float = 0.1,
        blur_prob: float = 0.1,
    ) -> None:
        owner = "SyntheticFlowPairs"
        if isinstance(size, int):
            size = (size, size)
        if (
            not _is_list(size)
            or len(size) != 2
            or not all(isinstance(v, int) and v >= 16 for v in size)
        ):
            raise ValueError(f"{owner}: size must be (H, W) with ints >= 16, got {size!r}")
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"{owner}: length must be an int >= 1, got {length!r}")
        for name, value in (
            ("clean_prob", clean_prob),
            ("zero_motion_prob", zero_motion_prob),
            ("hard_edge_prob", hard_edge_prob),
            ("jitter_prob", jitter_prob),
            ("blur_prob", blur_prob),
        ):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{owner}: {name} must be in [0, 1], got {value!r}")
        for name, value in (
            ("max_translation", max_translation),
            ("max_rotation", max_rotation),
            ("max_zoom", max_zoom),
            ("max_shear", max_shear),
            ("max_perspective", max_perspective),
            ("jitter", jitter),
        ):
            if not 0.0 <= float(value) < math.inf:
                raise ValueError(f"{owner}: {name} must be finite and >= 0, got {value!r}")
        if not 0.0 < float(min_motion_scale) <= 1.0:
            raise ValueError(f"{owner}: min_motion_scale must be in (0, 1], got {min_motion_scale}")
        low, high = (int(v) for v in layers_range)
        if not 0 <= low <= high:
            raise ValueError(
                f"{owner}: layers_range must satisfy 0 <= low <= high, got {layers_range}"
            )
        for name, pair in (("layer_size", layer_size), ("texture_scale", texture_scale)):
            a, b = (float(v) for v in pair)
            if not 0.0 < a <= b:
                raise ValueError(f"{owner}: {name} must satisfy 0 < low <= high, got {pair!r}")
        if not isinstance(fg_textures, int) or fg_textures < 1:
            raise ValueError(f"{owner}: fg_textures must be an int >= 1, got {fg_textures!r}")
        if degradations is not None:
            degradations = list(degradations)
            bad = [d for d in degradations if not callable(d)]
            if bad or not degradations:
                raise ValueError(
                    f"{owner}: degradations must be a non-empty list of callables "
                    f"deg(clip, generator) -> (lq, info), or None; got {degradations!r}"
                )
        self.size = (size[0], size[1])
        self.length = length
        self.seed = seed
        self.degradations = degradations
        self.clean_prob = float(clean_prob)
        self.max_translation = float(max_translation)
        self.max_rotation = float(max_rotation)
        self.max_zoom = float(max_zoom)
        self.max_shear = float(max_shear)
        self.max_perspective = float(max_perspective)
        self.layers_range = (low, high)
        self.layer_size = (float(layer_size[0]), float(layer_size[1]))
        self.texture_scale = (float(texture_scale[0]), float(texture_scale[1]))
        self.fg_textures = fg_textures
        self.zero_motion_prob = float(zero_motion_prob)
        self.min_motion_scale = float(min_motion_scale)
        self.hard_edge_prob = float(hard_edge_prob)
        self.jitter_prob = float(jitter_prob)
        self.jitter = float(jitter)
        self.blur_prob = float(blur_prob)
        self.sequences = self._resolve_source(source)

    def _resolve_source(self, source: object) -> list[Sequence]:
        """The texture sequences, checked: >= 2 frames in all, every frame >= the crop."""
        where = f"SyntheticFlowPairs: texture source {_describe_source(source)}"
        if source is None or (
            _is_list(source) and source and all(isinstance(s, str) for s in source)
        ):
            try:
                sequences = _photo_sequences(list(source or DEFAULT_PHOTOS))
            except ValueError as error:
                raise ValueError(f"{where}: {error}") from error
        else:
            sequences = source() if callable(source) else source
            if not _is_list(sequences) or not all(isinstance(s, Sequence) for s in sequences):
                raise TypeError(
                    f"{where}: expected None, a list of photograph names, a list of Sequence or "
                    f"a callable returning a list of Sequence; got {type(sequences).__name__}"
                )
            sequences = list(sequences)
        height, width = self.size
        for sequence in sequences:
            if sequence.gt is None:
                raise ValueError(f"{where}: sequence {sequence.name!r} has no clean frames (gt)")
            frame_h, frame_w = frame_size(sequence.gt)
            if frame_h < height or frame_w < width:
                if sequence.name.startswith(PHOTO_PREFIX):
                    what = f"photograph {sequence.name[len(PHOTO_PREFIX) :]!r} is"
                else:
                    what = f"sequence {sequence.name!r} ({location(sequence.gt)}) has frames of"
                raise ValueError(
                    f"{where}: {what} {frame_h}x{frame_w} (HxW), smaller than the crop "
                    f"{height}x{width}; use a smaller size or larger frames"
                )
        total = sum(len(sequence.gt) for sequence in sequences)
        if total < 2:
            raise ValueError(
                f"{where}: needs at least 2 frames in all to texture a background and a "
                f"different foreground, got {total} in {len(sequences)} sequence(s)"
            )
        return sequences

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        return (
            f"SyntheticFlowPairs(size={self.size}, length={self.length}, seed={self.seed}, "
            f"{len(self.sequences)} texture sequences)"
        )

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"SyntheticFlowPairs: index {index} out of range [0, {self.length})")
        generator = torch.Generator().manual_seed(derive_seed(self.seed, "flow_pairs", index))
        layers, texture_name = self.draw_layers(generator)
        pair = render_layers(layers, self.size)
        gt = pair.frames.clamp(0.0, 1.0)
        lq, sigma = self._degrade(gt, generator)
        return {
            "lq": lq.float(),
            "gt": gt,
            "flow": pair.flow,
            "valid": pair.valid,
            "sigma": torch.tensor(sigma, dtype=torch.float32),
            "name": f"flowpairs-{self.seed}/{index:06d}_{texture_name}",
        }

    # -- scene ---------------------------------------------------------------------------------

    def motion_scale(self, generator: torch.Generator) -> float:
        """0 with probability ``zero_motion_prob``, else log-uniform in [min_motion_scale, 1]."""
        if torch.rand((), generator=generator).item() < self.zero_motion_prob:
            return 0.0
        return self.min_motion_scale ** torch.rand((), generator=generator).item()

    def _texture(
        self, generator: torch.Generator, avoid: tuple[int, int] | None
    ) -> tuple[tuple[int, int], str, Tensor]:
        """(key, name, texture (1, 3, h, w)): a random frame of a random sequence, from another
        sequence than ``avoid`` (or, with one sequence, another frame)."""
        count = len(self.sequences)
        if count >= 2:
            seq = _randint(generator, 0, count - 1 - (avoid is not None))
            seq += avoid is not None and seq >= avoid[0]
            frame = _randint(generator, 0, len(self.sequences[seq].gt) - 1)
        else:
            seq, length = 0, len(self.sequences[0].gt)
            frame = _randint(generator, 0, length - 1 - (avoid is not None))
            frame += avoid is not None and frame >= avoid[1]
        sequence = self.sequences[seq]
        if isinstance(sequence.gt, TensorFrames):  # in memory: a view, textures are read-only
            texture = sequence.gt.frames[frame : frame + 1]
        else:
            texture = sequence.gt.read([frame])
        name = sequence.name if len(sequence.gt) == 1 else f"{sequence.name}#{frame}"
        return (seq, frame), name, texture

    def _placement(
        self,
        generator: torch.Generator,
        texture: Tensor,
        center: tuple[float, float],
        half_extent: tuple[float, float],
        max_angle: float,
    ) -> Tensor:
        """Affine frame-1 pixel -> texture pixel map (3, 3): random scale and angle, texture
        point chosen so the window of ``half_extent`` around ``center`` fits when it can."""
        scale = _uniform(generator, *self.texture_scale)
        angle = math.radians(_symmetric(generator, max_angle))
        cos, sin = math.cos(angle), math.sin(angle)
        reach_x = scale * (abs(cos) * half_extent[0] + abs(sin) * half_extent[1])
        reach_y = scale * (abs(sin) * half_extent[0] + abs(cos) * half_extent[1])
        tex_h, tex_w = texture.shape[-2:]
        targets = []
        for reach, extent in ((reach_x, tex_w - 1), (reach_y, tex_h - 1)):
            targets.append(
                _uniform(generator, reach, extent - reach) if 2 * reach <= extent else extent / 2
            )
        return motion_matrix(
            center, (targets[0] - center[0], targets[1] - center[1]), math.degrees(angle), scale
        )

    def _motion(
        self,
        generator: torch.Generator,
        scale: float,
        center: tuple[float, float],
        perspective: bool,
    ) -> Tensor:
        """Random D about ``center`` with every parameter in ±scale·(its bound)."""
        height, width = self.size
        if scale == 0.0:
            return torch.eye(3, dtype=torch.float64)
        bound = scale * self.max_perspective / (max(height, width) / 2) if perspective else 0.0
        return motion_matrix(
            center,
            translation=(
                _symmetric(generator, scale * self.max_translation * width),
                _symmetric(generator, scale * self.max_translation * height),
            ),
            rotation=_symmetric(generator, scale * self.max_rotation),
            zoom=math.exp(_symmetric(generator, scale * math.log1p(self.max_zoom))),
            shear=_symmetric(generator, scale * self.max_shear),
            perspective=(_symmetric(generator, bound), _symmetric(generator, bound)),
        )

    def _shape(self, generator: torch.Generator) -> EllipseShape | PolygonShape:
        height, width = self.size
        radius = _uniform(generator, *self.layer_size) * min(height, width)
        center = (_uniform(generator, 0, width - 1), _uniform(generator, 0, height - 1))
        if torch.rand((), generator=generator).item() < 0.5:
            minor = radius * _uniform(generator, 0.35, 1.0)
            return EllipseShape(center, (radius, minor), _uniform(generator, 0, math.pi))
        corners = _randint(generator, 3, 8)
        spacing = 2 * math.pi / corners
        jitter = torch.rand(corners, generator=generator, dtype=torch.float64) * 2 - 1
        angles = _uniform(generator, 0, spacing) + spacing * (
            torch.arange(corners, dtype=torch.float64) + POLYGON_ANGLE_JITTER * jitter
        )
        radii = radius * (
            0.45 + 0.55 * torch.rand(corners, generator=generator, dtype=torch.float64)
        )
        radii[torch.argmax(radii)] = radius
        return PolygonShape(center, angles, radii)

    def draw_layers(self, generator: torch.Generator) -> tuple[list[Layer], str]:
        """Background + foreground layers of one item, and the background texture's name."""
        height, width = self.size
        scale = self.motion_scale(generator)
        frame_center = ((width - 1) / 2, (height - 1) / 2)
        key, name, texture = self._texture(generator, None)
        background = Layer(
            texture=texture,
            placement=self._placement(
                generator, texture, frame_center, frame_center, BACKGROUND_TEXTURE_ROTATION
            ),
            motion=self._motion(generator, scale, frame_center, perspective=True),
        )
        layers = [background]
        count = _randint(generator, *self.layers_range)
        pool = [self._texture(generator, key)[2] for _ in range(min(count, self.fg_textures))]
        for _ in range(count):
            texture = pool[_randint(generator, 0, len(pool) - 1)]
            shape = self._shape(generator)
            hard = torch.rand((), generator=generator).item() < self.hard_edge_prob
            layers.append(
                Layer(
                    texture=texture,
                    placement=self._placement(
                        generator, texture, shape.center, (shape.radius, shape.radius), 180.0
                    ),
                    motion=self._motion(generator, scale, shape.center, perspective=False),
                    shape=shape,
                    softness=1.0 if hard else _uniform(generator, 1.5, 6.0),
                )
            )
        return layers, name

    # -- inputs --------------------------------------------------------------------------------

    def _degrade(self, clean: Tensor, generator: torch.Generator) -> tuple[Tensor, float]:
        """Jitter and blur per frame, then one degradation: (lq (2, 3, H, W), σ in [0, 1])."""
        frames = []
        for frame in clean:
            if torch.rand((), generator=generator).item() < self.jitter_prob:
                contrast = 1.0 + _symmetric(generator, self.jitter)
                brightness = _symmetric(generator, self.jitter / 2)
                gamma = math.exp(_symmetric(generator, self.jitter))
                frame = ((frame**gamma - 0.5) * contrast + 0.5 + brightness).clamp(0.0, 1.0)
            if torch.rand((), generator=generator).item() < self.blur_prob:
                sigma = _uniform(generator, 0.3, 1.5)
                ksize = 2 * math.ceil(3 * sigma) + 1
                frame = gaussian_blur2d(frame[None], (ksize, ksize), (sigma, sigma))[0]
            frames.append(frame)
        lq = torch.stack(frames)
        if (
            self.degradations is None
            or torch.rand((), generator=generator).item() < self.clean_prob
        ):
            return lq, 0.0
        degradation = self.degradations[_randint(generator, 0, len(self.degradations) - 1)]
        lq, info = degradation(lq, generator)
        return lq, float(info.get("sigma", 0.0))
