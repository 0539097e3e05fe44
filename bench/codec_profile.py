"""Where a training step's codec time goes: forward + backward of each codec part, per frame.

    python bench/codec_profile.py                       # adaptive_q, batch 4, 96x96, 2 threads
    python bench/codec_profile.py --preset channel_q --batch-size 8 --patch-size 128

Builds the preset's network (DIS flow, channels_last), runs one training forward + backward on
a random clip of 5 frames to capture what the codec receives at its last call (the aligned
features and the context), then times forward + backward of each codec part on those inputs
(median of ``--repeats``), each part on the detached output of the one before: g_a (analysis),
h_a, the z density (noise + likelihood), h_s (the hyper-decoder: q, μ, σ), quantization with the
y rate, g_s (synthesis), and the whole codec. Also the whole network's training step and the
codec's share of it (codec calls per clip: frames with a past, T − 1). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from machine_info import describe_machine  # noqa: E402

from lightning_modules.run.acceleration import set_channels_last  # noqa: E402
from lightning_modules.run.compose import build_network  # noqa: E402
from lightning_modules.stages.entropy_models import bits  # noqa: E402

FRAMES = 5


def median_ms(fn: Callable[[], None], repeats: int) -> float:
    """Median wall time of ``fn`` in ms, after two warm-up calls."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().requires_grad_()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="adaptive_q")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--patch-size", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = set_channels_last(build_network(args.preset, ["model/flow=dis"]).train(), True)
    codec = net.codec
    if codec is None or getattr(codec, "chunks", 0) == 0:
        raise SystemExit(f"codec_profile: preset {args.preset!r} has no quantizing codec")
    size = args.patch_size
    clip = torch.rand(args.batch_size, FRAMES, 3, size, size)
    level = torch.full((args.batch_size,), 30 / 255)
    seen = []
    hook = codec.register_forward_pre_hook(lambda module, inputs: seen.append(inputs))

    def net_step() -> None:
        out = net(clip, noise_level=level)
        (out.restored.mean() + 1e-4 * out.bpp).backward()

    net_step()
    hook.remove()
    feats = [leaf(f) for f in seen[-1][0]]
    context = seen[-1][1].detach()
    y, context_grid = codec.analyse(feats, context)
    y = leaf(y)
    z = leaf(codec.hyper_encoder(y))
    z_hat = leaf(codec.z_density(z)[0])
    q_raw, mu, sigma = (leaf(t) for t in codec.hyper_parameters(z_hat, context_grid))
    y_hat = leaf(codec.quantize_with_rate(y, mu, sigma, q_raw)[0])

    def whole() -> None:
        out = codec(feats, context)
        (sum(f.mean() for f in out.features) + 1e-4 * (out.bits_y + out.bits_z)).backward()

    def analysis() -> None:
        codec.analyse(feats, context)[0].mean().backward()

    def hyper_analysis() -> None:
        codec.hyper_encoder(y).mean().backward()

    def z_density() -> None:
        noisy, likelihood = codec.z_density(z)
        (noisy.mean() + bits(likelihood)).backward()

    def hyper_synthesis() -> None:
        sum(t.mean() for t in codec.hyper_parameters(z_hat, context_grid)).backward()

    def quantize_with_rate() -> None:
        quantized, likelihood, _ = codec.quantize_with_rate(y, mu, sigma, q_raw)
        (quantized.mean() + bits(likelihood)).backward()

    def synthesis() -> None:
        sum(d.mean() for d in codec.decoder(y_hat)).backward()

    parts = {
        "g_a (analysis)": analysis,
        "h_a (hyper-encoder)": hyper_analysis,
        "z density": z_density,
        "h_s (hyper-decoder)": hyper_synthesis,
        "quantize + y rate": quantize_with_rate,
        "g_s (synthesis)": synthesis,
        "whole codec": whole,
    }
    times = {name: median_ms(fn, args.repeats) for name, fn in parts.items()}
    step_ms = median_ms(net_step, max(3, args.repeats // 4))
    codec_ms = times["whole codec"] * (FRAMES - 1)
    print(
        f"Codec training cost, {args.preset}, batch {args.batch_size}, {FRAMES}x{size}x{size} "
        f"({describe_machine('cpu', args.threads)}); forward + backward per codec call, "
        f"median of {args.repeats}\n"
    )
    print("| part | ms per call | share of the codec |")
    print("|---|---|---|")
    for name, ms in times.items():
        print(f"| {name} | {ms:.1f} | {ms / times['whole codec']:.0%} |")
    print(
        f"\nTraining step (whole network, fwd + bwd): {step_ms:.0f} ms; the codec's {FRAMES - 1} "
        f"calls: {codec_ms:.0f} ms ({codec_ms / step_ms:.0%})."
    )


if __name__ == "__main__":
    main()
