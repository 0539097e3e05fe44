"""Quality at the same budget: train models for equal wall-clock time, then compare them with
the classical denoisers on real sequences none of them trained on.

    python bench/quality_budget.py                                   # ~60 min on 2 CPU cores
    python bench/quality_budget.py --minutes 5 --device cuda --batch-size 8 --patch-size 128
    python bench/quality_budget.py --models adaptive_q basicvsr_pp_small --seeds 0 1

Each model is ``train.py model=<name>`` on the shared DAVIS frames (σ ~ U[0, 50]) for
``--minutes`` (``trainer.max_time``), with the same data, clip, patch, batch and seed
(``bench/temporal_gain.py: run_overrides``); the shared Vimeo septuplets are too few to add
(a dozen clips) and no data config mixes two layouts yet. Then, at σ = 30 (fixed noise seed), on
the held-out clips of ``bench/temporal_gain.py`` (Set8 ``hypersmooth``, the tennis clip and the
Vimeo test clip 00002/0004; the first ``--frames`` frames of each): PSNR/SSIM (RGB,
all frames), bits per pixel of the latent, and restore speed (frames/s of the whole-clip forward
on ``--device``). The rows ``noisy``, ``nlm`` and ``bm3d`` (``eval.py method=``'s denoisers,
per frame at the known σ) are measured on the first ``--classical-frames`` frames only (BM3D
takes ~35-100 s per 960x540 frame on 2 cores) and say so. With several ``--seeds`` each model
row is the mean over seeds. Prints a markdown table; ``--out FILE`` also writes it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from hydra import initialize_config_dir  # noqa: E402
from temporal_gain import (  # noqa: E402
    add_run_arguments,
    held_out_sequences,
    machine,
    run_overrides,
)

import train  # noqa: E402
from lightning_modules.run.compose import CONF_DIR, compose_config  # noqa: E402
from lightning_modules.run.eval_methods import denoise_frame  # noqa: E402
from lightning_modules.tasks.metrics import frame_psnr_ssim  # noqa: E402

SIGMA = 30 / 255
MODELS = ["adaptive_q", "no_codec", "basicvsr_pp"]
CLASSICAL = ["noisy", "nlm", "bm3d"]


def noisy_clip(frames: torch.Tensor) -> torch.Tensor:
    """(T, 3, H, W) frames + σ = 30 Gaussian noise from a fixed seed (the same for every row)."""
    noise = torch.Generator().manual_seed(0)
    return frames + SIGMA * torch.randn(frames.shape, generator=noise)


def score(restored: torch.Tensor, frames: torch.Tensor) -> tuple[float, float]:
    psnr, ssim = frame_psnr_ssim(restored[None].clamp(0, 1), frames[None])
    return psnr.mean().item(), ssim.mean().item()


@torch.no_grad()
def evaluate_model(net: torch.nn.Module, frames: torch.Tensor, device: str) -> dict[str, float]:
    """PSNR/SSIM, bpp and frames/s of the whole-clip forward at σ = 30."""
    lq = noisy_clip(frames)[None].to(device)
    sigma = torch.tensor([SIGMA], device=device) if getattr(net, "noise_channel", True) else None
    began = time.perf_counter()
    out = net(lq, sigma)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    psnr, ssim = score(out.restored[0].cpu(), frames)
    return {"psnr": psnr, "ssim": ssim, "bpp": float(out.bpp), "fps": len(frames) / seconds}


def evaluate_classical(method: str, frames: torch.Tensor) -> dict[str, float]:
    """PSNR/SSIM and frames/s of a per-frame classical denoiser at the known σ = 30."""
    lq = noisy_clip(frames)  # unclipped, as the models and eval.py get it
    began = time.perf_counter()
    restored = [
        torch.from_numpy(
            np.ascontiguousarray(denoise_frame(method, f.permute(1, 2, 0).numpy(), SIGMA))
        ).permute(2, 0, 1)
        for f in lq
    ]
    seconds = time.perf_counter() - began
    psnr, ssim = score(torch.stack(restored).float(), frames)
    return {"psnr": psnr, "ssim": ssim, "bpp": float("nan"), "fps": len(frames) / seconds}


def train_model(name: str, seed: int, args: argparse.Namespace) -> tuple[torch.nn.Module, dict]:
    run_args = argparse.Namespace(**{**vars(args), "seed": seed, "max_steps": None})
    out_dir = args.work_dir / f"{name}_seed{seed}"
    overrides = [*run_overrides(run_args, out_dir), f"model={name}", *args.overrides]
    began = time.perf_counter()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose_config("train", overrides)
        metrics, objects = train.train(cfg)
    info = {
        "minutes": (time.perf_counter() - began) / 60,
        "steps": objects["trainer"].global_step,
        "val_psnr": metrics.get("val/psnr", float("nan")),
    }
    return objects["model"].net.to(args.device).eval(), info


def mean_rows(rows: list[dict]) -> dict:
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}


def table(results: dict[str, dict], sequences: list[str], notes: dict[str, str]) -> str:
    header = ["method", "training"]
    for sequence in sequences:
        header += [f"{sequence} PSNR", "SSIM", "frames/s"]
    header += ["bpp (Set8)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, result in results.items():
        cells = [method, notes[method]]
        for sequence in sequences:
            r = result[sequence]
            cells += [f"{r['psnr']:.2f}", f"{r['ssim']:.3f}", f"{r['fps']:.2f}"]
        bpp = result[sequences[0]]["bpp"]
        cells.append("–" if np.isnan(bpp) else f"{bpp:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--classical", nargs="*", default=CLASSICAL, choices=CLASSICAL)
    parser.add_argument("--minutes", type=float, default=18.0, help="training budget per model")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--frames", type=int, default=10, help="frames per held-out sequence")
    parser.add_argument("--classical-frames", type=int, default=2)
    add_run_arguments(parser, work_dir="bench_quality")
    args = parser.parse_args()
    if not (args.data_root / "davis2017_480p").is_dir():
        raise SystemExit(f"--data-root: no shared sample data (davis2017_480p) in {args.data_root}")
    torch.set_num_threads(args.threads)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    held_out = {k: v[: args.frames] for k, v in held_out_sequences(args.data_root).items()}
    sequences = list(held_out)

    results, notes = {}, {}
    for method in args.classical:
        results[method] = {
            s: evaluate_classical(method, frames[: args.classical_frames])
            for s, frames in held_out.items()
        }
        notes[method] = f"none (first {args.classical_frames} frames)"
    for name in args.models:
        per_seed, infos = [], []
        for seed in args.seeds:
            net, info = train_model(name, seed, args)
            per_seed.append({s: evaluate_model(net, f, args.device) for s, f in held_out.items()})
            infos.append(info)
        results[name] = {s: mean_rows([r[s] for r in per_seed]) for s in sequences}
        steps = "/".join(str(i["steps"]) for i in infos)
        notes[name] = f"{args.minutes:g} min, {steps} steps"
    (args.work_dir / "quality_budget.json").write_text(json.dumps(results, indent=1))
    text = (
        f"Quality at {args.minutes:g} min of training per model ({machine(args)}; DAVIS, "
        f"σ ~ U[0, 50]; clip {args.clip_len}, patch {args.patch_size}, batch "
        f"{args.batch_size}; seeds {args.seeds}). Held-out sequences at σ = 30, first "
        f"{args.frames} frames.\n\n{table(results, sequences, notes)}\n"
    )
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
