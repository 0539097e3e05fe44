"""FLOPs, parameters and CPU speed of the network presets; prints a markdown table.

GFLOPs per frame are counted with ``torch.utils.flop_counter.FlopCounterMode`` at 854x480 as the
steady-state cost of one frame: FLOPs(T=2 clip) − FLOPs(T=1 clip). (Frame 0 has no previous frame,
so it skips the flow; the difference is what every later frame of a long clip costs.)
FlopCounterMode counts convolutions and matmuls (1 multiply-add = 2 FLOPs) but **not**
``grid_sample`` (warping) nor element-wise ops; the design budget is <= ~80 GFLOPs per frame.

Speed: frames/s of CPU inference (``torch.no_grad``, eval mode) on a 256x256 clip, threads = the
cores available to this process, best of a few runs after a warm-up clip.

    .venv/bin/python bench/flops.py [--variants adaptive_q no_codec] [--frames 4 --repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_modules.run.compose import build_network  # noqa: E402

FLOP_SIZE = (480, 854)
SPEED_SIZE = (256, 256)
# Stage name -> submodule prefixes of VideoRestorationNet, for the per-stage breakdown.
STAGES = {
    "flow": ("flow",),
    "mv_refine": ("mv_refine",),
    "codec": ("codec",),
    "fusion": ("fusion", "backward_fusion"),
    "restoration": ("restoration",),
}
# Row name -> (conf/model preset, config overrides): the networks users train, from conf/.
PRESETS = {
    "adaptive_q": ("adaptive_q", []),
    "channel_q": ("channel_q", []),
    "fixed_q": ("fixed_q", []),
    "no_codec": ("no_codec", []),
    "adaptive_q_bidirectional": ("adaptive_q", ["model.bidirectional=true"]),
}


def count_flops(net: torch.nn.Module, num_frames: int) -> dict[str, float]:
    """FLOPs of one no-grad forward on a (1, T, 3, 480, 854) clip: total and per stage."""
    lq = torch.rand(1, num_frames, 3, *FLOP_SIZE)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(lq, torch.full((1,), 0.1))
    per_module = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    result = {"total": float(counter.get_total_flops())}
    for stage, prefixes in STAGES.items():
        result[stage] = float(
            sum(_outermost(per_module, f"VideoRestorationNet.{p}") for p in prefixes)
        )
    return result


def _outermost(per_module: dict[str, int], prefix: str) -> int:
    """FLOPs under ``prefix``, summing only the outermost called modules (no double counting).

    FlopCounterMode attributes FLOPs to modules through forward hooks, so a container that is
    never called itself (a ModuleList, or the U-Net whose encode/decode are methods) has no
    entry of its own; its called children do, and each includes its descendants.
    """
    names = [n for n in per_module if n == prefix or n.startswith(prefix + ".")]
    name_set = set(names)

    def has_counted_ancestor(name: str) -> bool:
        parts = name.split(".")
        return any(".".join(parts[:i]) in name_set for i in range(1, len(parts)))

    return sum(per_module[n] for n in names if not has_counted_ancestor(n))


def frames_per_second(net: torch.nn.Module, num_frames: int, repeats: int) -> float:
    """CPU inference speed on a 256x256 clip: best of ``repeats`` runs after a warm-up.

    The best run is reported because other processes only ever slow a run down.
    """
    noise = torch.full((1,), 0.1)
    lq = torch.rand(1, num_frames, 3, *SPEED_SIZE)
    with torch.no_grad():
        net(lq[:, :2], noise)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            net(lq, noise)
            best = min(best, time.perf_counter() - start)
    return num_frames / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="*", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--frames", type=int, default=4, help="clip length for the speed column")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best is shown")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: available cores)"
    )
    args = parser.parse_args()

    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    threads = args.threads or available or os.cpu_count() or 1
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    print(
        f"GFLOPs per frame at {FLOP_SIZE[1]}x{FLOP_SIZE[0]} (FlopCounterMode, steady state "
        "T=2 minus T=1; grid_sample warping is NOT counted); "
        f"CPU speed at {SPEED_SIZE[1]}x{SPEED_SIZE[0]} (best of {args.repeats}), "
        f"{threads} threads, "
        f"torch {torch.__version__}\n"
    )
    header = (
        "| variant | params (M) | GFLOPs/frame | flow | mv_refine | codec | fusion | restoration "
        "| flow share | frames/s (CPU) |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name in args.variants:
        variant, overrides = PRESETS[name]
        net = build_network(variant, overrides).eval()
        params = sum(p.numel() for p in net.parameters()) / 1e6
        two, one = count_flops(net, 2), count_flops(net, 1)
        per_frame = {k: (two[k] - one[k]) / 1e9 for k in two}
        fps = frames_per_second(net, args.frames, args.repeats)
        stages = " | ".join(f"{per_frame[s]:.2f}" for s in STAGES)
        share = per_frame["flow"] / per_frame["total"]
        print(
            f"| {name} | {params:.3f} | {per_frame['total']:.2f} | {stages} | {share:.1%} "
            f"| {fps:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
