"""Data loading throughput vs the training step's consumption rate.

    python bench/data_throughput.py                     # shared DAVIS + Vimeo samples, CPU step
    python bench/data_throughput.py --workers 0 2 4 --batches 20 --device cuda

For each sample set (read from disk through the real scanners and ``ClipDataset``: decode,
crop, flip, noise) it measures clips/s with each worker count at the default training settings
(clip_len 7, patch 128, batch 8), and clips/s of a forward + backward pass of
``build_network("adaptive_q")`` on a batch of the same shape. ratio = loading / training:
above 1 the loader keeps up. Numbers are printed, not asserted (see README: figures live in
bench output). Sample data: ``../shared/data`` or ``$NCFL_SHARED_DATA``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, DataLoader

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a script from anywhere

from datamodules.clip_dataset import ClipDataset  # noqa: E402
from datamodules.datasets.davis import scan_davis  # noqa: E402
from datamodules.datasets.vimeo import scan_vimeo  # noqa: E402
from datamodules.degradations import build_degradation  # noqa: E402

SHARED_DATA = Path(os.environ.get("NCFL_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def sample_sets(clip_len: int) -> dict[str, list]:
    """The shared samples that exist: DAVIS 480p JPEG (3 x 20 frames), Vimeo PNG (6 clips)."""
    sets = {}
    davis = SHARED_DATA / "davis2017_480p"
    if davis.is_dir():
        sets["davis 854x480 jpg"] = scan_davis(davis, min_len=clip_len)
    vimeo = SHARED_DATA / "vimeo90k_septuplet"
    if vimeo.is_dir():
        sets["vimeo 448x256 png"] = scan_vimeo(vimeo, "subset_trainlist.txt", min_len=clip_len)
    return sets


def loader_clips_per_second(dataset, batch_size: int, workers: int, batches: int) -> float:
    """Clips/s over ``batches`` batches after one warm-up batch (worker start-up excluded)."""
    repeats = -(-batch_size // len(dataset))  # the Vimeo sample has fewer clips than a batch
    loader = DataLoader(
        ConcatDataset([dataset] * repeats),
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0),
    )
    iterator = _endless(loader)
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(iterator)
    elapsed = time.perf_counter() - start
    assert batch["lq"].shape[0] == batch_size
    return batches * batch_size / elapsed


def _endless(loader):
    while True:
        yield from loader


def train_clips_per_second(shape: tuple[int, ...], device: str, steps: int) -> float | str:
    """Clips/s of forward + backward of the default network, or why it could not run."""
    try:
        from lightning_modules.run.compose import build_network
    except ImportError as error:
        return f"n/a (lightning_modules.run.compose: {error})"
    torch.manual_seed(0)
    net = build_network("adaptive_q").to(device).train()
    lq = torch.rand(shape, device=device)
    gt = torch.rand(shape, device=device)
    sigma = torch.full((shape[0],), 25 / 255, device=device)

    def step():
        out = net(lq, noise_level=sigma)
        loss = torch.sqrt((out.restored - gt) ** 2 + 1e-6).mean() + 0.01 * out.bpp
        loss.backward()
        net.zero_grad(set_to_none=True)

    step()  # warm-up (allocations, cudnn autotuning)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps * shape[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip-len", type=int, default=7)
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batches", type=int, default=6, help="timed batches per setting")
    parser.add_argument("--steps", type=int, default=1, help="timed training steps")
    parser.add_argument("--device", default="cpu", help="device of the training step")
    args = parser.parse_args()

    sets = sample_sets(args.clip_len)
    if not sets:
        sys.exit(f"no shared sample data at {SHARED_DATA} (set NCFL_SHARED_DATA)")
    shape = (args.batch_size, args.clip_len, 3, args.patch, args.patch)
    train_rate = train_clips_per_second(shape, args.device, args.steps)
    train_text = f"{train_rate:.2f}" if isinstance(train_rate, float) else train_rate
    print(
        f"clip_len {args.clip_len}, patch {args.patch}, batch {args.batch_size}, "
        f"torch threads {torch.get_num_threads()}, cpu cores {os.cpu_count()}"
    )
    print(f"training step (adaptive_q fwd+bwd, {args.device}): {train_text} clips/s\n")
    print(f"{'data':<20} {'workers':>7} {'load clips/s':>13} {'train clips/s':>14} {'ratio':>7}")
    for name, sequences in sets.items():
        dataset = ClipDataset(
            sequences,
            clip_len=args.clip_len,
            train=True,
            patch_size=args.patch,
            degradation=build_degradation("noise", sigma_range=(0, 50)),
            seed=0,
        )
        for workers in args.workers:
            rate = loader_clips_per_second(dataset, args.batch_size, workers, args.batches)
            ratio = f"{rate / train_rate:.1f}x" if isinstance(train_rate, float) else "n/a"
            print(f"{name:<20} {workers:>7} {rate:>13.1f} {train_text:>14} {ratio:>7}")


if __name__ == "__main__":
    main()
