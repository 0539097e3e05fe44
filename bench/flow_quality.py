"""Flow quality of flow estimators: warp error on real clips, end-point error on synthetic pairs.

    python bench/flow_quality.py                               # zero flow, DIS, SPyNet (random)
    python bench/flow_quality.py --spynet runs/flow/last.ckpt --spynet basicsr=spynet.pth
    python bench/flow_quality.py --max-pairs-per-seq 4 --synthetic-pairs 50 --out flow.md

Rows: zero flow; OpenCV DIS (preset MEDIUM, grey uint8 frames, full resolution); the DIS flow
stage as the network runs it (``model/flow=dis`` at ``--flow-scale``); SPyNet at random init (its
last convs are zero, so it returns zero flow: a check of the pipeline); SPyNet from each
``--spynet`` checkpoint (``SpyNet.load_pretrained``), at ``--flow-scale``. Every flow is the
*backward* flow of docs/ARCHITECTURE.md: v_t with ``flow_warp(x_{t-1}, v_t) ≈ x_t``.

Columns:
- real clips (the shared samples: DAVIS 3 x 854x480, Vimeo-90K 7 x 448x256, Set8 hypersmooth
  960x540, tennis 352x240; full resolution): warp error = mean |x_t − flow_warp(x_{t-1}, v_t)|
  over the pixels whose p + v(p) lies inside the frame, averaged over all consecutive pairs of a
  set; v estimated from the clean frames, and from σ = 30 noisy frames (fixed seed) with the
  error still measured on the clean frames. In brackets: the ratio to zero flow's error;
- synthetic pairs (``datamodules.flow_pairs.SyntheticFlowPairs`` from the bundled photographs,
  seed ``SYNTHETIC_SEED`` kept out of training, no jitter or blur): average end-point error on
  valid pixels, clean and σ = 30 noisy inputs.

A second table gives motion statistics (mean and 95th percentile of |v| in pixels): DIS flow on
the clean real clips, ground truth on the synthetic pairs, so their motion ranges can be
compared. Numbers are printed, not asserted. Sample data: ``--data-root`` (default
``../shared/data`` beside the checkout, or ``$NCFL_SHARED_DATA``).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a script from anywhere

from datamodules.clip_dataset import derive_seed  # noqa: E402
from datamodules.datasets.davis import scan_davis  # noqa: E402
from datamodules.datasets.folder import scan_folder  # noqa: E402
from datamodules.datasets.set8 import scan_set8  # noqa: E402
from datamodules.datasets.vimeo import scan_vimeo  # noqa: E402
from datamodules.flow_pairs import SyntheticFlowPairs  # noqa: E402
from datamodules.sequence import Sequence  # noqa: E402
from lightning_modules.stages.dis_flow import DISFlow  # noqa: E402
from lightning_modules.stages.spynet import SpyNet  # noqa: E402
from lightning_modules.stages.warp import flow_warp  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import cpu_name  # noqa: E402

SHARED_DATA = Path(os.environ.get("NCFL_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
NOISE_SIGMA = 30 / 255
#: Seed of the held-out synthetic pairs; training runs must use another one.
SYNTHETIC_SEED = 90_210_017
#: Pairs per forward pass (bounds memory at 960x540).
BATCH = 8

FlowFn = Callable[[Tensor, Tensor], Tensor]  # (cur, prev) (B, 3, H, W) -> backward flow


# ---------------------------------------------------------------------------------------------
# Metrics and estimators (importable)


def in_bounds(flow: Tensor) -> Tensor:
    """(B, 1, H, W) bool: p + flow(p) lies inside the frame (0 <= x <= W − 1, 0 <= y <= H − 1)."""
    height, width = flow.shape[-2:]
    xs = torch.arange(width, dtype=flow.dtype).view(1, 1, width) + flow[:, 0]
    ys = torch.arange(height, dtype=flow.dtype).view(1, height, 1) + flow[:, 1]
    return ((xs >= 0) & (xs <= width - 1) & (ys >= 0) & (ys <= height - 1))[:, None]


def warp_error(prev: Tensor, cur: Tensor, flow: Tensor) -> Tensor:
    """(B,) mean |cur − flow_warp(prev, flow)| over channels and in-bounds pixels."""
    error = (cur - flow_warp(prev, flow)).abs().mean(1, keepdim=True)
    mask = in_bounds(flow).to(error.dtype)
    return (error * mask).sum((1, 2, 3)) / mask.sum((1, 2, 3)).clamp_min(1)


def endpoint_error(flow: Tensor, gt_flow: Tensor, valid: Tensor) -> Tensor:
    """(B,) mean ‖flow − gt_flow‖₂ over pixels where ``valid`` (B, 1, H, W) is nonzero."""
    distance = (flow - gt_flow).norm(dim=1, keepdim=True)
    mask = (valid > 0).to(distance.dtype)
    return (distance * mask).sum((1, 2, 3)) / mask.sum((1, 2, 3)).clamp_min(1)


def _grey_uint8(frame: Tensor) -> np.ndarray:
    import cv2

    rgb = (frame.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def dis_flow_fn(preset: str = "MEDIUM") -> FlowFn:
    """OpenCV DIS optical flow as a backward-flow estimator (cur, prev) -> (B, 2, H, W).

    ``calc(I0, I1)`` returns u with I0(p) ≈ I1(p + u(p)), so I0 = x_t and I1 = x_{t−1} give our
    backward flow. Frames are clipped, rounded to uint8 and converted to grey.
    """
    import cv2

    dis = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{preset}"))

    def estimate(cur: Tensor, prev: Tensor) -> Tensor:
        flows = [
            torch.from_numpy(dis.calc(_grey_uint8(c), _grey_uint8(p), None)).permute(2, 0, 1)
            for c, p in zip(cur, prev)
        ]
        return torch.stack(flows).float()

    return estimate


def spynet_flow_fn(net: torch.nn.Module) -> FlowFn:
    """A flow stage (SPyNet, DISFlow; eval, no grad) as a backward-flow estimator:
    ``net(ref=cur, supp=prev)``."""
    net.eval()

    def estimate(cur: Tensor, prev: Tensor) -> Tensor:
        with torch.inference_mode():
            return net(cur, prev)

    return estimate


def translation_check(estimate: FlowFn, shift: tuple[int, int] = (-5, 3)) -> Tensor:
    """Median flow (2,) of ``estimate`` on a photograph crop shifted so that x_t(p) =
    x_{t−1}(p + shift): a backward-flow estimator returns ``shift``, a forward one −shift."""
    from datamodules.sample import load_photo

    photo = load_photo("astronaut")
    top, left, size = 100, 100, 192
    prev = photo[:, top : top + size, left : left + size]
    cur = photo[:, top + shift[1] : top + shift[1] + size, left + shift[0] : left + shift[0] + size]
    flow = estimate(cur[None], prev[None])[0, :, 16:-16, 16:-16]
    return flow.flatten(1).median(dim=1).values


# ---------------------------------------------------------------------------------------------
# Benchmark


@dataclass
class Row:
    """One estimator: its flow function, per-column lists of per-pair errors, and its time."""

    name: str
    estimate: FlowFn
    errors: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, column: str, values: Tensor) -> None:
        self.errors.setdefault(column, []).extend(values.tolist())

    def mean(self, column: str) -> float | None:
        values = self.errors.get(column)
        return sum(values) / len(values) if values else None


def real_sets(root: Path) -> dict[str, list[Sequence]]:
    """The shared sample clips that exist under ``root``, by column name."""
    sets = {}
    if (root / "davis2017_480p").is_dir():
        sets["DAVIS"] = scan_davis(root / "davis2017_480p", split=None)
    vimeo = root / "vimeo90k_septuplet"
    if vimeo.is_dir():
        sets["Vimeo"] = scan_vimeo(vimeo, "subset_trainlist.txt") + scan_vimeo(
            vimeo, "subset_testlist.txt"
        )
    if (root / "set8" / "hypersmooth").is_dir():
        sets["Set8"] = scan_set8(root / "set8", sequences=["hypersmooth"])
    if (root / "tennis_videnn" / "original").is_dir():
        sets["tennis"] = scan_folder(gt_root=root / "tennis_videnn" / "original")
    return sets


def evaluate_real(
    rows: list[Row], sets: dict[str, list[Sequence]], max_pairs: int | None, motion: dict
) -> None:
    """Add warp errors (clean / σ = 30 inputs) of every row on every set; DIS motion stats."""
    for set_name, sequences in sets.items():
        magnitudes = []
        for sequence in sequences:
            count = len(sequence) if max_pairs is None else min(len(sequence), max_pairs + 1)
            frames = sequence.gt.read(list(range(count)))
            noise = torch.Generator().manual_seed(derive_seed("flow_quality", sequence.name))
            noisy = frames + NOISE_SIGMA * torch.randn(frames.shape, generator=noise)
            for start in range(1, count, BATCH):
                cur = slice(start, min(start + BATCH, count))
                prev = slice(start - 1, cur.stop - 1)
                for row in rows:
                    began = time.perf_counter()
                    flow = row.estimate(frames[cur], frames[prev])
                    row.add(f"{set_name} clean", warp_error(frames[prev], frames[cur], flow))
                    if row.name.startswith("DIS"):
                        magnitudes.append(flow.norm(dim=1).flatten())
                    flow = row.estimate(noisy[cur], noisy[prev])
                    row.add(f"{set_name} σ30", warp_error(frames[prev], frames[cur], flow))
                    row.seconds += time.perf_counter() - began
        if magnitudes:
            motion[f"{set_name} (DIS, clean)"] = torch.cat(magnitudes)


def evaluate_synthetic(rows: list[Row], pairs: int, size: int, motion: dict) -> float:
    """Add end-point errors on held-out synthetic pairs; returns the rendering time."""
    began = time.perf_counter()
    dataset = SyntheticFlowPairs(
        size=(size, size), length=pairs, seed=SYNTHETIC_SEED, jitter_prob=0.0, blur_prob=0.0
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many small ops: extra threads only add overhead (as in workers)
    items = [dataset[i] for i in range(pairs)]
    torch.set_num_threads(threads)
    noise = torch.Generator().manual_seed(derive_seed("flow_quality", "synthetic"))
    render_seconds = time.perf_counter() - began
    gt_magnitudes = []
    for start in range(0, pairs, BATCH):
        batch = items[start : start + BATCH]
        clean = torch.stack([item["gt"] for item in batch])
        noisy = clean + NOISE_SIGMA * torch.randn(clean.shape, generator=noise)
        gt_flow = torch.stack([item["flow"] for item in batch])
        valid = torch.stack([item["valid"] for item in batch])
        gt_magnitudes.append(gt_flow.norm(dim=1)[valid[:, 0] > 0])
        for row in rows:
            began = time.perf_counter()
            for column, pair in (("synthetic clean", clean), ("synthetic σ30", noisy)):
                flow = row.estimate(pair[:, 1], pair[:, 0])
                row.add(column, endpoint_error(flow, gt_flow, valid))
            row.seconds += time.perf_counter() - began
    motion[f"synthetic {size}x{size} (ground truth, valid)"] = torch.cat(gt_magnitudes)
    return render_seconds


def parse_spynet(values: list[str]) -> list[tuple[str, Path]]:
    """``PATH`` or ``LABEL=PATH`` -> (label, path); the label defaults to the file name."""
    parsed = []
    for value in values:
        label, sep, path = value.partition("=")
        if not sep or Path(value).is_file():
            label, path = Path(value).name, value
        parsed.append((label, Path(path)))
    return parsed


def machine() -> str:
    model = cpu_name()
    import cv2

    return (
        f"{model}; {os.cpu_count()} logical CPUs, {torch.get_num_threads()} threads used; "
        f"torch {torch.__version__}, OpenCV {cv2.__version__}, Python {platform.python_version()}"
    )


def results_table(rows: list[Row], columns: list[str]) -> str:
    """Markdown: warp errors with their ratio to zero flow, synthetic EPE, seconds per row."""
    header = ["estimator", *columns, "time (s)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    zero = rows[0]
    for row in rows:
        cells = [row.name]
        for column in columns:
            value = row.mean(column)
            if value is None:
                cells.append("–")
            elif column.startswith("synthetic"):
                cells.append(f"{value:.3f} px")
            else:
                base = zero.mean(column.replace("σ30", "clean"))
                cells.append(f"{value:.4f} ({value / base:.2f})")
        cells.append(f"{row.seconds:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def motion_table(motion: dict[str, Tensor]) -> str:
    lines = ["| flow magnitude (px) | mean | p95 | max |", "|---|---|---|---|"]
    for name, values in motion.items():
        p95 = torch.quantile(values[torch.randperm(len(values))[:1_000_000]], 0.95).item()
        lines.append(
            f"| {name} | {values.mean().item():.2f} | {p95:.2f} | {values.max().item():.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=SHARED_DATA)
    parser.add_argument("--max-pairs-per-seq", type=int, default=None, help="default: all")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--synthetic-pairs", type=int, default=200)
    parser.add_argument("--synthetic-size", type=int, default=256)
    parser.add_argument("--flow-scale", type=float, default=0.25)
    parser.add_argument(
        "--spynet", action="append", default=[], metavar="[LABEL=]PATH", help="repeatable"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the tables here")
    args = parser.parse_args()

    try:
        import cv2
    except ImportError:
        sys.exit("bench/flow_quality.py needs OpenCV: pip install opencv-python-headless")
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    torch.manual_seed(0)

    rows = [
        Row("zero flow", lambda cur, prev: cur.new_zeros(cur.shape[0], 2, *cur.shape[-2:])),
        Row("DIS medium (OpenCV)", dis_flow_fn("MEDIUM")),
        Row(
            f"DIS flow stage (model/flow=dis), scale {args.flow_scale}",
            spynet_flow_fn(DISFlow(scale=args.flow_scale)),
        ),
        Row(
            f"SPyNet random init, scale {args.flow_scale}",
            spynet_flow_fn(SpyNet(scale=args.flow_scale)),
        ),
    ]
    for label, path in parse_spynet(args.spynet):
        net = SpyNet(scale=args.flow_scale)
        net.load_pretrained(path)
        rows.append(Row(f"SPyNet {label}, scale {args.flow_scale}", spynet_flow_fn(net)))

    median = translation_check(rows[1].estimate)
    print(
        f"DIS convention check: median flow ({median[0]:.2f}, {median[1]:.2f}) for a (-5, 3) shift"
    )
    if not torch.allclose(median, torch.tensor([-5.0, 3.0]), atol=0.5):
        sys.exit("DIS does not return the backward flow (flow_warp(x_prev, v) = x_cur)")
    total = time.perf_counter()
    sets = real_sets(args.data_root)
    if not sets:
        print(f"no shared sample clips under {args.data_root}: real-clip columns skipped")
    motion: dict[str, Tensor] = {}
    evaluate_real(rows, sets, args.max_pairs_per_seq, motion)
    render_seconds = 0.0
    if args.synthetic_pairs > 0:
        render_seconds = evaluate_synthetic(rows, args.synthetic_pairs, args.synthetic_size, motion)
    columns = [f"{name} {kind}" for name in sets for kind in ("clean", "σ30")]
    if args.synthetic_pairs > 0:
        columns += ["synthetic clean", "synthetic σ30"]
    pair_counts = ", ".join(f"{name} {len(rows[0].errors[f'{name} clean'])}" for name in sets)
    report = "\n".join(
        [
            f"Machine: {machine()}",
            f"Data: {args.data_root} (pairs: {pair_counts}); synthetic: {args.synthetic_pairs} "
            f"pairs {args.synthetic_size}x{args.synthetic_size}, seed {SYNTHETIC_SEED} "
            f"(rendered in {render_seconds:.1f} s); noise σ = 30/255; flow scale "
            f"{args.flow_scale}.",
            "Real clips: warp error mean |x_t − warp(x_{t−1}, v)| on in-bounds pixels (ratio to "
            "zero flow); σ30 = flow from noisy inputs, error on clean frames. Synthetic: "
            "end-point error on valid pixels. time = seconds spent on that row.",
            "",
            results_table(rows, columns),
            "",
            motion_table(motion),
            "",
            f"Total wall time: {time.perf_counter() - total:.1f} s",
        ]
    )
    print(report)
    if args.out is not None:
        args.out.write_text(report + "\n")


if __name__ == "__main__":
    main()
