"""Time of the DIS flow stage per training step: one call per frame against one call per clip.

    python bench/flow_stage_speed.py            # the shapes below, best of --repeats
    python bench/flow_stage_speed.py --repeats 20

A training step estimates the flow of B·(T-1) frame pairs. Before issue 9's change the network
called the flow stage once per frame (T-1 calls of B pairs, DIS running the pairs one after the
other on OpenCV's own threads); now it calls it once per clip and DIS runs one pair per thread of
a pool, with OpenCV's threads off (``DISFlow._calc_pairs``). Rows: the default config (sample
data, batch 4, clips of 5, 64x64 crops), the temporal-gain benchmark's (96x96), the GPU speed
check's (batch 8, clips of 7, 128x128), and one streaming 854x480 pair (restore.py's case, one
pair per call: unchanged). Frames: a bundled photograph under a per-frame shift, σ = 30 noise.
Prints ms per step (the flow stage's whole forward, zero-motion check included) and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from machine_info import describe_machine  # noqa: E402

from datamodules.sample import load_photo  # noqa: E402
from lightning_modules.stages.dis_flow import DISFlow  # noqa: E402

# (name, batch, clip length, height, width)
SHAPES = [
    ("default config (sample data)", 4, 5, 64, 64),
    ("temporal-gain benchmark", 4, 5, 96, 96),
    ("GPU speed check's clips", 8, 7, 128, 128),
    ("streaming 854x480 (restore.py)", 1, 2, 480, 854),
]


class PerPairDIS(DISFlow):
    """The flow stage as it ran before: the pairs one after the other on OpenCV's threads."""

    def _calc_pairs(self, refs, supps):
        dis = self._estimator()
        return [dis.calc(r, s, None) for r, s in zip(refs, supps)]


def noisy_clip(batch: int, frames: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(B, T, 3, H, W): crops of a photograph moving 2 px right and 1 px down per frame, σ = 30."""
    photo = load_photo("astronaut")
    photo = F.interpolate(photo[None], size=(max(height, 256) + 64, max(width, 256) + 64))[0]
    gen = torch.Generator().manual_seed(seed)
    clips = []
    for b in range(batch):
        top, left = 4 * b, 3 * b
        clips.append(
            torch.stack(
                [
                    photo[:, top + t : top + t + height, left + 2 * t : left + 2 * t + width]
                    for t in range(frames)
                ]
            )
        )
    clip = torch.stack(clips)
    return clip + 30 / 255 * torch.randn(clip.shape, generator=gen)


def per_frame(flow: DISFlow, lq: torch.Tensor) -> None:
    for t in range(1, lq.shape[1]):
        flow(lq[:, t], lq[:, t - 1])


def per_clip(flow: DISFlow, lq: torch.Tensor) -> None:
    flow(lq[:, 1:].flatten(0, 1), lq[:, :-1].flatten(0, 1))


def best_ms(estimate, flow: DISFlow, lq: torch.Tensor, repeats: int) -> float:
    """Best wall time of ``estimate(flow, lq)`` over ``repeats`` runs after one warm-up, in ms."""
    estimate(flow, lq)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        estimate(flow, lq)
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per row (best kept)")
    parser.add_argument("--scale", type=float, default=0.5, help="DIS scale (model/flow=dis)")
    args = parser.parse_args(argv)

    print(f"Machine: {describe_machine('cpu')}")
    print(f"DIS flow stage (scale {args.scale}, medium, zero check), ms per training step")
    print()
    print("| clips | pairs per step | per frame, OpenCV's threads (before) | per clip, pooled |")
    print("|---|---|---|---|")
    before, now = PerPairDIS(scale=args.scale), DISFlow(scale=args.scale)
    with torch.no_grad():
        for name, batch, frames, height, width in SHAPES:
            lq = noisy_clip(batch, frames, height, width)
            old = best_ms(per_frame, before, lq, args.repeats)
            new = best_ms(per_clip, now, lq, args.repeats)
            size = f"{batch}x{frames}x{height}x{width}"
            print(
                f"| {name} ({size}) | {batch * (frames - 1)} | {old:.1f} | "
                f"{new:.1f} ({old / new:.2f}x) |"
            )
        lq = noisy_clip(*SHAPES[2][1:])
        pairs = lq[:, 1:].flatten(0, 1), lq[:, :-1].flatten(0, 1)
        same = np.array_equal(before(*pairs).numpy(), now(*pairs).numpy())
    print(f"\nThe same flows from both on the {SHAPES[2][0]}: {same}")


if __name__ == "__main__":
    main()
