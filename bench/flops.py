"""FLOPs, parameters and CPU speed of the network presets; prints a markdown table.

GFLOPs per frame are counted with ``torch.utils.flop_counter.FlopCounterMode`` at 854x480 as the
steady-state cost of one frame: FLOPs(T=2 clip) − FLOPs(T=1 clip). (Frame 0 has no previous frame,
so it skips the flow and alignment; the difference is what every later frame of a long clip
costs.) FlopCounterMode counts convolutions and matmuls (1 multiply-add = 2 FLOPs) but neither
``grid_sample`` nor element-wise ops. Warping and deformable sampling (both ``grid_sample``) are
added by formula, for every model alike: each sampled value costs its interpolation taps as
multiply-adds (bilinear 4 -> 8 FLOPs, bicubic 16 -> 32, nearest 0), counted on the output of every
``aten.grid_sampler_2d`` call (``SAMPLING_FLOPS``); the ``sampling`` column shows that part. The
OpenCV DIS flow (the presets' default flow stage) runs outside torch and is not counted.
``basicvsr_pp`` (the BasicVSR++ baseline) is measured in the same run; ``vs basicvsr_pp`` is each
row's GFLOPs/frame over basicvsr_pp's. The design budget is <= ~80 GFLOPs per frame.

Speed: frames/s of CPU inference (``torch.no_grad``, eval mode) on a 256x256 clip, threads = the
cores available to this process, best of a few runs after a warm-up clip.

    .venv/bin/python bench/flops.py [--variants adaptive_q basicvsr_pp] [--frames 4 --repeats 3]
"""

from __future__ import annotations

import argparse
import math
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
    "basicvsr_pp": ("basicvsr_pp", []),
    "basicvsr_pp_small": ("basicvsr_pp_small", []),
}
REFERENCE = "basicvsr_pp"  # the ratio column divides by this row's GFLOPs/frame
# FLOPs per sampled output value of grid_sample by interpolation mode (0 bilinear, 1 nearest,
# 2 bicubic): 2 per multiply-add over the interpolation taps.
SAMPLING_FLOPS = {0: 8, 1: 0, 2: 32}


def _grid_sample_flops(input_shape, grid_shape, interpolation_mode=0, *args, out_shape, **kwargs):
    """FlopCounterMode formula for ``aten.grid_sampler_2d`` (see the module docstring)."""
    return SAMPLING_FLOPS[int(interpolation_mode)] * math.prod(out_shape)


def _counter() -> FlopCounterMode:
    return FlopCounterMode(
        display=False, custom_mapping={torch.ops.aten.grid_sampler_2d: _grid_sample_flops}
    )


def count_flops(
    net: torch.nn.Module, num_frames: int, size: tuple[int, int] = FLOP_SIZE
) -> dict[str, float]:
    """FLOPs of one no-grad forward on a (1, T, 3, H, W) clip (``size`` = (H, W), 480x854 by
    default): total (grid_sample by formula included), the grid_sample part (``sampling``) and
    per stage (stages of VideoRestorationNet; for another network only ``flow`` is split off,
    the rest is ``restoration``)."""
    lq = torch.rand(1, num_frames, 3, *size)
    with torch.no_grad(), _counter() as counter:
        net(lq, torch.full((1,), 0.1))
    counts = counter.get_flop_counts()
    root = type(net).__name__
    per_module = {name: sum(ops.values()) for name, ops in counts.items()}
    sampling = counts.get("Global", {}).get(torch.ops.aten.grid_sampler_2d, 0)
    result = {"total": float(counter.get_total_flops()), "sampling": float(sampling)}
    if root == "VideoRestorationNet":
        for stage, prefixes in STAGES.items():
            result[stage] = float(sum(_outermost(per_module, f"{root}.{p}") for p in prefixes))
    else:
        result.update({stage: math.nan for stage in STAGES})
        result["flow"] = float(_outermost(per_module, f"{root}.flow"))
        result["restoration"] = result["total"] - result["flow"]
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
        "T=2 minus T=1; FlopCounterMode does not count grid_sample, so warping and deformable "
        "sampling are added by formula, 8 FLOPs per bilinear sample, for every model: the "
        "'sampling' column; OpenCV DIS flow is not counted); "
        f"CPU speed at {SPEED_SIZE[1]}x{SPEED_SIZE[0]} (best of {args.repeats}), "
        f"{threads} threads, "
        f"torch {torch.__version__}\n"
    )
    header = (
        "| variant | params (M) | GFLOPs/frame | vs basicvsr_pp | sampling | flow | mv_refine "
        "| codec | fusion | restoration | flow share | frames/s (CPU) |"
    )
    variants = list(dict.fromkeys([REFERENCE, *args.variants]))  # the reference first, always
    rows = []
    for name in variants:
        variant, overrides = PRESETS[name]
        net = build_network(variant, overrides).eval()
        params = sum(p.numel() for p in net.parameters()) / 1e6
        two, one = count_flops(net, 2), count_flops(net, 1)
        per_frame = {k: (two[k] - one[k]) / 1e9 for k in two}
        fps = frames_per_second(net, args.frames, args.repeats)
        rows.append((name, params, per_frame, fps))
        print(f"measured {name}", file=sys.stderr, flush=True)
    reference = rows[0][2]["total"]
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name, params, per_frame, fps in rows:
        stages = " | ".join(
            "—" if math.isnan(per_frame[s]) else f"{per_frame[s]:.2f}" for s in STAGES
        )
        share = per_frame["flow"] / per_frame["total"]
        print(
            f"| {name} | {params:.3f} | {per_frame['total']:.2f} | "
            f"{per_frame['total'] / reference:.2f}x | {per_frame['sampling']:.2f} | {stages} "
            f"| {share:.1%} | {fps:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
