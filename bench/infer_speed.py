"""Inference speed per preset: frames/s, GFLOP/s against a same-run conv peak, and how cost grows.

    python bench/infer_speed.py                               # adaptive_q, no_codec; CPU
    python bench/infer_speed.py --presets adaptive_q --layouts channels_last nchw
    python bench/infer_speed.py --device cuda --precision 32 bf16

Each network runs as ``restore.py`` runs it (the fast path): eval mode, ``torch.inference_mode``,
channels-last weights (``--layouts``), frame by frame through ``net.step`` (the likelihoods are
skipped, the frames are those of ``forward``); a bidirectional net or BasicVSR++ runs ``forward``
on the whole clip. Per (preset, size): seconds per steady frame (frames 2..T, which warp and code
a past; best of ``--repeats`` clips, since other processes only slow a run down), frames/s, and
GFLOP/s = GFLOPs per frame (``bench/flops.py``'s count at that size: convolutions and matmuls,
grid_sample by formula; OpenCV DIS flow runs outside torch and is not counted, though its time is)
divided by a 64->64 3x3 convolution's best GFLOP/s on a (1, 64, H/2, W/2) input (best layout),
sampled before every timed clip (``ConvPeak``): the ``vs conv peak`` column.

Scaling (first preset, first layout): seconds per steady frame for T = 5, 10, 20 at the first
size (ratio to T = 5: constant per-frame cost), seconds per megapixel at every size (ratio to the
first: linear in pixels), and the peak RSS (CPU; CUDA: peak allocated) of restoring T = 5 and
T = 20 frames at the last size, each in its own process (ratio: memory independent of T).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from flops import count_flops  # noqa: E402
from machine_info import describe_machine  # noqa: E402

from lightning_modules.run.acceleration import set_channels_last  # noqa: E402
from lightning_modules.run.compose import build_network  # noqa: E402

SIGMA = 30 / 255


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 480x854, got {text!r}") from error
    return height, width


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


OVERRIDES: list[str] = []  # --overrides, applied to every preset


def build(preset: str, layout: str, device: str) -> torch.nn.Module:
    net = build_network(preset, OVERRIDES).eval().to(device)
    return set_channels_last(net, layout == "channels_last")


def clip_seconds(
    net: torch.nn.Module, frames: torch.Tensor, device: str, precision: str
) -> list[float]:
    """Seconds per frame of one pass over ``frames`` (T, 3, H, W): streamed with ``net.step``,
    or one ``forward`` over the clip (each frame its share) for nets that cannot stream."""
    sigma = torch.full((1,), SIGMA, device=device)
    autocast = (
        torch.autocast(device, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    )
    streaming = hasattr(net, "step") and not getattr(net, "bidirectional", True)
    with torch.inference_mode(), autocast:
        if not streaming:
            _sync(device)
            start = time.perf_counter()
            net(frames[None], sigma if getattr(net, "noise_channel", True) else None)
            _sync(device)
            return [(time.perf_counter() - start) / len(frames)] * len(frames)
        level = sigma if net.noise_channel else None
        state, seconds = None, []
        for frame in frames:
            _sync(device)
            start = time.perf_counter()
            _, state = net.step(frame[None], level, state)
            _sync(device)
            seconds.append(time.perf_counter() - start)
    return seconds


def steady_seconds(net, size, num_frames, repeats, device, precision, peak=None) -> float:
    """Best over ``repeats`` clips of the mean seconds per frame over frames 2..T; ``peak``
    (a ``ConvPeak``) is sampled before each clip."""
    frames = torch.rand(num_frames, 3, *size, generator=torch.Generator().manual_seed(0))
    frames = frames.to(device)
    clip_seconds(net, frames[:2], device, precision)  # warm-up: allocator, oneDNN kernels
    best = float("inf")
    for _ in range(repeats):
        if peak is not None:
            peak.sample()
        seconds = clip_seconds(net, frames, device, precision)[1:]
        best = min(best, sum(seconds) / len(seconds))
    return best


class ConvPeak:
    """Best GFLOP/s seen of a 64->64 3x3 conv on (1, 64, H/2, W/2), best layout.

    This VM's speed drifts by tens of percent within seconds (the same conv measured 148 and
    197 GFLOP/s a minute apart), so one measurement before the run made the ratio swing with it
    (0.48-0.64 for the same network time). The peak is instead sampled before every timed clip,
    and the best network time is compared with the best conv time seen in the same windows.
    """

    def __init__(self, size: tuple[int, int], device: str) -> None:
        height, width = size[0] // 2, size[1] // 2
        self.flops = 2 * 64 * 64 * 9 * height * width
        self.device = device
        self.best_seconds = float("inf")
        self.inputs = []
        for layout in (torch.contiguous_format, torch.channels_last):
            x = torch.rand(1, 64, height, width, device=device).contiguous(memory_format=layout)
            weight = torch.rand(64, 64, 3, 3, device=device).contiguous(memory_format=layout)
            self.inputs.append((x, weight))

    def sample(self, repeats: int = 3) -> None:
        """Time the conv ``repeats`` times per layout (after one untimed run); keep the best."""
        with torch.inference_mode():
            for x, weight in self.inputs:
                F.conv2d(x, weight, padding=1)
                for _ in range(repeats):
                    _sync(self.device)
                    start = time.perf_counter()
                    F.conv2d(x, weight, padding=1)
                    _sync(self.device)
                    self.best_seconds = min(self.best_seconds, time.perf_counter() - start)

    @property
    def gflops_per_s(self) -> float:
        return self.flops / self.best_seconds / 1e9


def gflops_per_frame(preset: str, size: tuple[int, int]) -> float:
    """Steady-state GFLOPs per frame at ``size``: FLOPs(T=2) − FLOPs(T=1)."""
    net = build_network(preset, OVERRIDES).eval()
    return (count_flops(net, 2, size)["total"] - count_flops(net, 1, size)["total"]) / 1e9


def peak_memory_mb(args: argparse.Namespace) -> float:
    """Peak memory of streaming ``args.memory_frames`` frames of the last size (this process)."""
    preset, layout = args.presets[0], args.layouts[0]
    net = build(preset, layout, args.device)
    frames = torch.rand(args.memory_frames, 3, *args.sizes[-1]).to(args.device)
    clip_seconds(net, frames, args.device, args.precision[0])
    if args.device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_for(num_frames: int) -> float:
    command = [sys.executable, __file__, *sys.argv[1:], "--memory-frames", str(num_frames)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"]


def machine(args: argparse.Namespace) -> str:
    return describe_machine(args.device, args.threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["adaptive_q", "no_codec"])
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(256, 256), (480, 854)])
    parser.add_argument("--layouts", nargs="+", default=["channels_last"],
                        choices=["channels_last", "nchw"])  # fmt: skip
    parser.add_argument("--precision", nargs="+", default=["32"], choices=["32", "bf16"])
    parser.add_argument("--frames", type=int, default=6, help="frames per timed clip")
    parser.add_argument("--repeats", type=int, default=3, help="timed clips; the best is kept")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="default: available cores")
    parser.add_argument("--no-scaling", action="store_true", help="skip the scaling section")
    parser.add_argument(
        "--overrides",
        nargs="*",
        default=[],
        help="config overrides for every preset, e.g. model/output_filter=none",
    )
    parser.add_argument("--memory-frames", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    OVERRIDES[:] = args.overrides
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    torch.set_num_threads(args.threads or available or os.cpu_count() or 1)
    torch.manual_seed(0)
    if args.memory_frames is not None:
        print(json.dumps({"peak_mb": peak_memory_mb(args)}))
        return

    extra = f", overrides {' '.join(OVERRIDES)}" if OVERRIDES else ""
    print(
        f"Inference speed ({machine(args)}{extra}), best of {args.repeats} clips of {args.frames}\n"
    )
    print("| preset | size | layout | precision | s/frame | frames/s | GFLOPs/frame | GFLOP/s "
          "| conv peak GFLOP/s | vs conv peak |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    peaks = {size: ConvPeak(size, args.device) for size in args.sizes}
    for preset in args.presets:
        for size in args.sizes:
            gflops = gflops_per_frame(preset, size)
            for layout in args.layouts:
                net = build(preset, layout, args.device)
                for precision in args.precision:
                    seconds = steady_seconds(
                        net, size, args.frames, args.repeats, args.device, precision, peaks[size]
                    )
                    rate, peak = gflops / seconds, peaks[size].gflops_per_s
                    print(
                        f"| {preset} | {size[1]}x{size[0]} | {layout} | {precision} | "
                        f"{seconds:.4f} | {1 / seconds:.2f} | {gflops:.2f} | {rate:.1f} | "
                        f"{peak:.1f} | {rate / peak:.2f} |",
                        flush=True,
                    )
    if args.no_scaling:
        return
    preset, layout, precision = args.presets[0], args.layouts[0], args.precision[0]
    net = build(preset, layout, args.device)
    print(f"\nScaling of {preset} ({layout}, {precision}):\n")
    print("| measure | values | ratios |")
    print("|---|---|---|")
    first = args.sizes[0]
    by_length = {
        t: steady_seconds(net, first, t, args.repeats, args.device, precision) for t in (5, 10, 20)
    }
    values = ", ".join(f"T={t}: {s:.4f}" for t, s in by_length.items())
    ratios = ", ".join(f"{s / by_length[5]:.2f}" for s in by_length.values())
    print(f"| s/steady frame at {first[1]}x{first[0]} | {values} | {ratios} |")
    per_mp = {
        size: steady_seconds(net, size, args.frames, args.repeats, args.device, precision)
        / (size[0] * size[1] / 1e6)
        for size in args.sizes
    }
    values = ", ".join(f"{s[1]}x{s[0]}: {v:.4f}" for s, v in per_mp.items())
    ratios = ", ".join(f"{v / per_mp[first]:.2f}" for v in per_mp.values())
    print(f"| s/frame per megapixel | {values} | {ratios} |")
    memory = {t: memory_for(t) for t in (5, 20)}
    last = args.sizes[-1]
    kind = "peak allocated MB" if args.device == "cuda" else "peak RSS MB"
    print(
        f"| {kind}, streaming at {last[1]}x{last[0]} | T=5: {memory[5]:.0f}, "
        f"T=20: {memory[20]:.0f} | {memory[20] / memory[5]:.2f} |"
    )


if __name__ == "__main__":
    main()
