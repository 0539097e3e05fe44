"""A flow stage that needs no training and no download: OpenCV's DIS optical flow.

``DISFlow(scale=0.5)(ref, supp)`` returns the backward flow v (B, 2, H, W, pixels) with
``flow_warp(supp, v) ≈ ref``, like ``SpyNet``: both frames are resized by ``scale``
(antialiased, which also averages out noise), turned into 8-bit grey images, and
``cv2.DISOpticalFlow.calc(ref, supp)`` (Kroeger et al., ECCV 2016: dense inverse search with
variational refinement) gives u with ref(p) ≈ supp(p + u(p)), i.e. our backward flow; it is then
resized back with its vectors rescaled.

Zero-motion check (``zero_check=True``): on noisy, nearly static video DIS invents motion from the
noise (on the shared tennis clip at σ = 30 its warp error is 2.2x zero flow's). So each pixel keeps
the DIS vector only where it explains the frames better than no motion does:

    r(v) = G_w * | G_p * ref − warp(G_p * supp, v) |        (channel mean; G = Gaussian blur)
    flow = v_DIS where r(v_DIS) < m·r(0), else 0        (m = ``zero_margin``, default 0.9)

with G_p (σ = 1 px) taming the noise and G_w (σ = 4 px) pooling the evidence; the frames are
blurred first so that bilinear warping, which itself averages noise, does not favour fractional
vectors. Measured (bench/flow_quality.py, σ = 30, scale 0.25), m = 1: tennis 2.21 → 1.08 of zero
flow's warp error, Set8 0.60 → 0.54, DAVIS unchanged at 0.30. The margin asks a vector to
explain the frames clearly better than no motion: over 5 frames at σ = 30, m = 1 / 0.97 / 0.93 /
0.9 / 0.85 gave tennis 1.08 / 0.91 / 0.79 / 0.76 / 0.75, Set8 hypersmooth 0.550 / 0.549 / 0.550 /
0.552 / 0.557, DAVIS blackswan 0.443 / 0.444 / 0.449 / 0.455 / 0.469 (bmx-trees and
car-roundabout within 0.005). A network trained with static clips gained +0.79 dB on tennis
with m = 1 and +1.08 dB with zero flow (issue 8), so near-static video is where this matters.

Scale (default 0.5): on noisy frames (σ = 30) the warp error, as RMS on in-bounds pixels and a
share of zero flow's, with its time per 854x480-class pair on one thread, was at scale 0.25 /
0.5 / 1.0 (``medium``): Set8 hypersmooth 0.553 / 0.514 / 0.490 (86 / 95 / 124 ms), tennis
0.611 / 0.514 / 0.503, Vimeo 00002/0004 0.267 / 0.211 / 0.198, DAVIS bmx-trees 0.317 / 0.275 /
0.246 (60 / 55 / 102 ms); the ``fast`` preset at 1.0 is as good as ``medium`` at 0.5. Until the
estimator was made fresh per call, training's DIS had silently run at 0.25 with ``medium``'s
finest pyramid level lowered to 0 (see ``_estimator``), about what 0.5 now does by design.

Why a hand-off to OpenCV rather than a torch module: DIS is a well-kept, fast CPU implementation
with no weights, so a user without internet has working motion estimation at once (SPyNet needs
pretrained weights or a long pre-training). It is not differentiable and has no parameters: the
restoration network trains around it (motion refinement still learns), and it runs on the CPU
(frames are copied there and the flow copied back). Needs ``opencv-python-headless``.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.stages.warp import flow_warp, resize_flow

PRESETS = ("ultrafast", "fast", "medium")
MIN_SIZE = 16
# ITU-R BT.601 luma weights, as cv2.COLOR_RGB2GRAY uses.
_GREY = (0.299, 0.587, 0.114)
# cv2.setNumThreads is process-wide: one pooled batch at a time changes and restores it.
_OPENCV_THREADS = threading.Lock()


def _require_cv2():
    try:
        import cv2
    except ImportError as error:
        raise ImportError("DISFlow needs OpenCV: pip install opencv-python-headless") from error
    return cv2


class DISFlow(nn.Module):
    """DIS optical flow on frames resized by ``scale``; see the module docstring.

    Args:
        scale: estimate the flow on frames resized by this factor (0 < scale <= 1).
        preset: DIS speed/quality preset, ``ultrafast``, ``fast`` or ``medium``.
        zero_check: keep a vector only where it beats zero motion (see the module docstring).
    """

    def __init__(
        self,
        scale: float = 0.5,
        preset: str = "medium",
        zero_check: bool = True,
        zero_margin: float = 0.9,
    ) -> None:
        super().__init__()
        if not (isinstance(scale, (int, float)) and 0.0 < float(scale) <= 1.0):
            raise ValueError(f"DISFlow: scale must be in (0, 1], got {scale!r}")
        if not (isinstance(zero_margin, (int, float)) and 0.0 < float(zero_margin) <= 1.0):
            raise ValueError(f"DISFlow: zero_margin must be in (0, 1], got {zero_margin!r}")
        if preset not in PRESETS:
            raise ValueError(f"DISFlow: preset must be one of {PRESETS}, got {preset!r}")
        _require_cv2()
        self.scale = float(scale)
        self.preset = preset
        self.zero_check = bool(zero_check)
        self.zero_margin = float(zero_margin)

    def _estimator(self):
        """A fresh estimator (~10 µs). Not cached: OpenCV's DIS rewrites its own finest scale and
        patch size when a frame is small for its pyramid (a 24-pixel training crop at scale 0.25
        moves ``medium`` from finest scale 1 to 0), and keeps them for every later frame, so a
        cached one made the flow depend on what it had seen before (training's flow differed from
        a fresh process's, e.g. restore.py's). Also keeps the module picklable (ddp_spawn)."""
        cv2 = _require_cv2()
        return cv2.DISOpticalFlow_create(
            getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{self.preset.upper()}")
        )

    def extra_repr(self) -> str:
        return f"scale={self.scale}, preset={self.preset!r}, zero_check={self.zero_check}"

    def _grey_uint8(self, frames: Tensor) -> np.ndarray:
        """(B, 3, h, w) float -> (B, h, w) uint8 grey, clipped to [0, 1] first."""
        weights = frames.new_tensor(_GREY).view(1, 3, 1, 1)
        grey = (frames.float() * weights).sum(1).clamp(0.0, 1.0)
        return (grey * 255.0).round().to(torch.uint8).cpu().numpy()

    @torch.no_grad()
    def forward(self, ref: Tensor, supp: Tensor) -> Tensor:
        """Flow (B, 2, H, W) in pixels with ``flow_warp(supp, flow) ≈ ref``."""
        for name, frame in (("ref", ref), ("supp", supp)):
            if not isinstance(frame, Tensor) or frame.dim() != 4 or frame.shape[1] != 3:
                shape = tuple(frame.shape) if isinstance(frame, Tensor) else type(frame).__name__
                raise ValueError(f"DISFlow: {name} must be a (B, 3, H, W) RGB tensor, got {shape}")
        if ref.shape != supp.shape:
            raise ValueError(
                f"DISFlow: ref {tuple(ref.shape)} and supp {tuple(supp.shape)} differ in shape"
            )
        height, width = ref.shape[-2:]
        # DIS needs >= 12 pixels a side; below MIN_SIZE the frames are resized up to it.
        inner = (
            max(MIN_SIZE, round(height * self.scale)),
            max(MIN_SIZE, round(width * self.scale)),
        )
        pair = torch.cat((ref, supp))
        if inner != (height, width):
            shrinking = inner[0] < height or inner[1] < width
            pair = F.interpolate(
                pair.float(), size=inner, mode="bilinear", align_corners=False, antialias=shrinking
            )
        grey = self._grey_uint8(pair)
        batch = ref.shape[0]
        flows = self._calc_pairs(list(grey[:batch]), list(grey[batch:]))
        flow = torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2).to(ref.device, ref.dtype)
        flow = resize_flow(flow, (height, width))
        return self._keep_where_better_than_zero(flow, ref, supp) if self.zero_check else flow

    def _calc_pairs(self, refs: list[np.ndarray], supps: list[np.ndarray]) -> list[np.ndarray]:
        """DIS on each pair (ref_i, supp_i). One pair (streaming) runs on OpenCV's own threads.
        Several run one pair per thread of a pool as wide as torch's intra-op threads, with
        OpenCV's threads off meanwhile: the pairs are independent, and on training-sized frames
        OpenCV's row-parallel loops cost more than they save (2 CPUs, 32 pairs of 64x64: 28 ms
        on its 2 threads, 13-15 ms pooled; 4 pairs of 240x427: 44 vs 42 ms). OpenCV releases the
        GIL in ``calc``. The flows are the same either way (tested)."""
        cv2 = _require_cv2()
        workers = min(len(refs), torch.get_num_threads())
        if workers <= 1:
            dis = self._estimator()
            return [dis.calc(r, s, None) for r, s in zip(refs, supps)]

        def one_pair(index: int) -> np.ndarray:
            # a DIS object keeps per-call buffers: one per pair, never shared between threads
            return self._estimator().calc(refs[index], supps[index], None)

        with _OPENCV_THREADS:
            previous = cv2.getNumThreads()
            cv2.setNumThreads(1)
            try:
                # a pool per call: a module-level one would be left without its threads in a
                # forked data-loader worker (the loader's flow estimator runs there)
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    return list(pool.map(one_pair, range(len(refs))))
            finally:
                cv2.setNumThreads(previous)

    def _keep_where_better_than_zero(self, flow: Tensor, ref: Tensor, supp: Tensor) -> Tensor:
        """flow where r(flow) < m·r(0), else 0 (the zero-motion check of the module docstring)."""
        ref, supp = (
            kornia.filters.gaussian_blur2d(x.float(), (7, 7), (1.0, 1.0), "replicate")
            for x in (ref, supp)
        )

        def residual(warped: Tensor) -> Tensor:
            error = (ref - warped).abs().mean(1, keepdim=True)
            # replicate: reflect padding needs a frame larger than the kernel
            return kornia.filters.gaussian_blur2d(error, (25, 25), (4.0, 4.0), "replicate")

        better = residual(flow_warp(supp, flow.float())) < self.zero_margin * residual(supp)
        return torch.where(better, flow, torch.zeros_like(flow))
