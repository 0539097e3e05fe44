"""What ``eval.py`` evaluates besides one checkpoint: classical references and comparisons.

Classical per-frame denoisers, run through the same ``RestorationTask`` test step (same metrics,
records and tables as a trained model; bits = 0) by wrapping them as a network:

- ``noisy``: the degraded input itself;
- ``nlm``: scikit-image's non-local means at the known σ (no ``estimate_sigma``):
  ``denoise_nl_means(frame, h=NLM_H·σ, sigma=σ, patch_size=NLM_PATCH, patch_distance=NLM_DISTANCE,
  fast_mode=True, channel_axis=-1)``, the settings of scikit-image's own denoising example
  (h = 0.6σ with σ subtracted from the patch distances, 5x5 patches, 13x13 search window);
- ``bm3d``: ``bm3d.bm3d_rgb(frame, sigma_psd=σ)`` from the optional ``bm3d`` package
  (``pip install 'ncfl-video[classical]'``).

σ = 0 returns the frame unchanged for every method. ``FrameCap`` keeps the first
``max_frames`` frames of every test clip (for checkpoints too, so a comparison is like for
like). ``write_comparison`` writes the methods x σ table (markdown and CSV), the PSNR-versus-σ
plot and, for checkpoints that differ in λ, the rate-distortion plot (bpp of the latent against
PSNR); the plots need matplotlib (``pip install 'ncfl-video[plots]'``).
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig
from torch import Tensor, nn

from lightning_modules.run.atomic_files import atomic_output
from lightning_modules.run.entry_point import InputError
from lightning_modules.stages.network import NetworkOutput

log = logging.getLogger(__name__)

METHODS = ("noisy", "nlm", "bm3d")
NLM_H = 0.6  # h = NLM_H · σ
NLM_PATCH = 5
NLM_DISTANCE = 6


def _as_list(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, ListConfig)):
        return [str(v) for v in value]
    if isinstance(value, str):
        return [value]
    raise InputError(f"{key}: expected a string or a list, got {value!r}")


def requested(cfg: DictConfig) -> tuple[list[str], list[str]]:
    """(checkpoint paths, method names) from ``ckpt_path`` and ``method`` (each a string or a
    list); one clear error for neither, an unknown method, or a missing optional package."""
    checkpoints = _as_list(cfg.get("ckpt_path"), "ckpt_path")
    methods = _as_list(cfg.get("method"), "method")
    if not checkpoints and not methods:
        raise InputError(
            "eval.py: give ckpt_path=<file.ckpt> (or a list) and/or method=<"
            + "|".join(METHODS)
            + "> (or a list)"
        )
    for method in methods:
        if method not in METHODS:
            raise InputError(f"method: unknown {method!r}; expected one of {', '.join(METHODS)}")
        if method == "bm3d":
            try:
                import bm3d  # noqa: F401
            except ImportError as error:
                raise InputError(
                    "method=bm3d: the bm3d package is missing; pip install 'ncfl-video[classical]'"
                ) from error
    max_frames = cfg.get("max_frames")
    if max_frames is not None and (isinstance(max_frames, bool) or int(max_frames) < 1):
        raise InputError(f"max_frames: expected null or an integer >= 1, got {max_frames!r}")
    return checkpoints, methods


def denoise_frame(method: str, frame: np.ndarray, sigma: float) -> np.ndarray:
    """One RGB frame (H, W, 3) in [0, 1] denoised by ``method`` at noise level σ ([0, 1] units)."""
    if method == "noisy" or sigma <= 0:
        return frame
    if method == "nlm":
        from skimage.restoration import denoise_nl_means

        return denoise_nl_means(
            frame,
            h=NLM_H * sigma,
            sigma=sigma,
            patch_size=NLM_PATCH,
            patch_distance=NLM_DISTANCE,
            fast_mode=True,
            channel_axis=-1,
        )
    if method == "bm3d":
        import bm3d

        return np.clip(bm3d.bm3d_rgb(frame, sigma_psd=sigma), 0.0, 1.0)
    raise ValueError(f"method: unknown {method!r}; expected one of {', '.join(METHODS)}")


class ClassicalDenoiser(nn.Module):
    """A per-frame classical denoiser behind the network contract (``stages/network.py``):
    ``net(lq, noise_level) -> NetworkOutput`` with zero bits; logs its progress per frame."""

    noise_channel = True

    def __init__(self, method: str) -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method: unknown {method!r}; expected one of {', '.join(METHODS)}")
        self.method = method
        self.frames_done = 0

    def forward(
        self, lq: Tensor, noise_level: Tensor | None = None, return_maps: bool = False
    ) -> NetworkOutput:
        batch, frames = lq.shape[:2]
        levels = noise_level.reshape(-1).tolist() if noise_level is not None else [0.0] * batch
        restored = torch.empty_like(lq)
        clip = lq.detach().permute(0, 1, 3, 4, 2).cpu().double().numpy()
        for b in range(batch):
            for t in range(frames):
                start = time.perf_counter()
                out = denoise_frame(self.method, clip[b, t], float(levels[b]))
                restored[b, t] = torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1)
                self.frames_done += 1
                if self.method != "noisy":
                    log.info(
                        "%s: frame %d/%d of this clip (σ=%.0f), %.1f s, %d frames so far",
                        self.method,
                        t + 1,
                        frames,
                        levels[b] * 255,
                        time.perf_counter() - start,
                        self.frames_done,
                    )
        zero = lq.new_zeros(())
        return NetworkOutput(restored, zero, zero, zero, zero, zero)


def method_task(method: str, datamodule: Any, data_cfg: DictConfig) -> Any:
    """A ``RestorationTask`` around ``ClassicalDenoiser(method)`` with the data's metric
    conventions (metric space, edge frames); never trained (its optimizer is never built)."""
    from lightning_modules.tasks.restoration_task import RestorationTask

    if method != "noisy" and getattr(datamodule, "task", "denoise") != "denoise":
        raise InputError(
            f"method={method}: a Gaussian denoiser, but data.task is {datamodule.task!r}; "
            "use method=noisy or a denoising data config"
        )
    return RestorationTask(
        ClassicalDenoiser(method),
        optimizer=torch.optim.SGD,  # required by the task's signature; never called in test
        rate_weight=0.0,
        metric_space=getattr(datamodule, "metric_space", "rgb"),
        metric_edge_frames=int(data_cfg.get("metric_edge_frames") or 0),
    )


class FrameCap:
    """The test batches of ``loader`` cut to their first ``max_frames`` frames (every tensor
    whose first two dimensions are lq's (B, T)); ``max_frames=None`` passes them through."""

    def __init__(self, loader: Any, max_frames: int | None) -> None:
        self.loader = loader
        self.max_frames = max_frames

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.loader:
            if self.max_frames is not None:
                lead = tuple(batch["lq"].shape[:2])
                batch = {
                    k: v[:, : self.max_frames]
                    if isinstance(v, Tensor) and v.dim() >= 2 and tuple(v.shape[:2]) == lead
                    else v
                    for k, v in batch.items()
                }
            yield batch


def test_loader(datamodule: Any, max_frames: int | None) -> FrameCap:
    """The datamodule's test loader (set up here) behind a ``FrameCap``."""
    datamodule.prepare_data()
    datamodule.setup("test")
    return FrameCap(datamodule.test_dataloader(), max_frames)


# --------------------------------------------------------------------------- comparisons
def checkpoint_label(path: str) -> str:
    """``<run folder>/<file stem>`` for ``<run>/checkpoints/<file>.ckpt``, else the stem."""
    file = Path(path)
    if file.parent.name == "checkpoints":
        return f"{file.parent.parent.name}/{file.stem}"
    return file.stem


def unique_labels(labels: Sequence[str]) -> list[str]:
    """``labels`` with repeats numbered (``a``, ``a#2``)."""
    seen: dict[str, int] = {}
    result = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        result.append(label if seen[label] == 1 else f"{label}#{seen[label]}")
    return result


def comparison_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (entry, σ) from each entry's per-σ ``mean`` rows: label, kind, λ, σ, PSNR,
    SSIM, bpp. ``results`` items: ``label``, ``kind`` (checkpoint/method), ``rate_weight``
    (None for methods) and ``rows`` (``eval.summarize`` output)."""
    rows = []
    for entry in results:
        for row in entry["rows"]:
            if row["sequence"] != "mean":
                continue
            rows.append(
                {
                    "label": entry["label"],
                    "kind": entry["kind"],
                    "rate_weight": entry["rate_weight"],
                    "sigma": row["sigma"],
                    "num_frames": row["num_frames"],
                    "psnr": row["psnr"],
                    "ssim": row["ssim"],
                    "bpp": row["bpp"],
                }
            )
    return rows


def comparison_markdown(rows: list[dict[str, Any]], metric_space: str) -> str:
    """Methods x σ (cells PSNR/SSIM, mean over sequences) and the mean bpp of each method."""
    sigmas = sorted({r["sigma"] for r in rows})
    labels = list(dict.fromkeys(r["label"] for r in rows))
    cell = {(r["label"], r["sigma"]): r for r in rows}
    space = "Y" if metric_space == "y" else "RGB"
    header = [f"method (PSNR/SSIM, {space})"] + [f"σ={s}" for s in sigmas] + ["bpp"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label in labels:
        mine = [r for r in rows if r["label"] == label]
        cells = [
            "—"
            if (label, s) not in cell
            else f"{cell[(label, s)]['psnr']:.2f}/{cell[(label, s)]['ssim']:.4f}"
            for s in sigmas
        ]
        bpp = sum(r["bpp"] for r in mine) / len(mine)
        lines.append("| " + " | ".join([label, *cells, f"{bpp:.4f}"]) + " |")
    return "\n".join(lines) + "\n"


def _pyplot() -> Any | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("plots skipped: matplotlib is not installed (pip install 'ncfl-video[plots]')")
        return None
    return plt


def _save_plot(plt: Any, figure: Any, axes: Any, xlabel: str, ylabel: str, path: Path) -> Path:
    """Label, grid and legend ``axes``, write ``figure`` to ``path`` (PNG, atomically), close it."""
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    with atomic_output(path) as temp:
        figure.savefig(temp, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path


def write_csv(path: Path, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    """``rows`` as CSV with ``columns`` (floats with 6 decimals), written atomically."""
    with atomic_output(path) as temp, open(temp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for r in rows:
            writer.writerow(
                {k: (f"{r[k]:.6f}" if isinstance(r[k], float) else r[k]) for k in columns}
            )


def write_comparison(
    results: list[dict[str, Any]], metric_space: str, out_dir: Path
) -> dict[str, Any]:
    """Write comparison.md/.csv, psnr_vs_sigma.png and (≥ 2 checkpoints with different λ)
    rate_distortion.png into ``out_dir``; returns the rows, the markdown and the written files."""
    rows = comparison_rows(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = ("label", "kind", "rate_weight", "sigma", "num_frames", "psnr", "ssim", "bpp")
    write_csv(out_dir / "comparison.csv", rows, columns)
    text = comparison_markdown(rows, metric_space)
    with atomic_output(out_dir / "comparison.md") as temp:
        temp.write_text(text)
    written = [out_dir / "comparison.md", out_dir / "comparison.csv"]
    plt = _pyplot()
    if plt is not None:
        figure, axes = plt.subplots(figsize=(6, 4))
        for label in dict.fromkeys(r["label"] for r in rows):
            mine = sorted((r for r in rows if r["label"] == label), key=lambda r: r["sigma"])
            axes.plot([r["sigma"] for r in mine], [r["psnr"] for r in mine], "o-", label=label)
        ylabel = f"PSNR (dB, {metric_space.upper()})"
        path = out_dir / "psnr_vs_sigma.png"
        written.append(_save_plot(plt, figure, axes, "σ (0-255)", ylabel, path))
        coded = [r for r in rows if r["kind"] == "checkpoint" and r["rate_weight"] is not None]
        if len({r["rate_weight"] for r in coded}) >= 2:
            figure, axes = plt.subplots(figsize=(6, 4))
            for sigma in sorted({r["sigma"] for r in coded}):
                points = sorted((r for r in coded if r["sigma"] == sigma), key=lambda r: r["bpp"])
                axes.plot(
                    [r["bpp"] for r in points],
                    [r["psnr"] for r in points],
                    "o-",
                    label=f"σ={sigma}",
                )
                for r in points:
                    axes.annotate(f"λ={r['rate_weight']:g}", (r["bpp"], r["psnr"]), fontsize=7)
            path = out_dir / "rate_distortion.png"
            written.append(_save_plot(plt, figure, axes, "bpp of the latent", ylabel, path))
    return {"rows": rows, "markdown": text, "files": written}
