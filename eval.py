"""Evaluate a trained checkpoint: ``python eval.py ckpt_path=<file.ckpt> [data=set8]``.

The model is rebuilt from the config stored in the checkpoint (nothing else is needed); ``data``
defaults to the data config the model was trained with (its test split). Writes ``results.md``
and ``results.csv`` into the run folder (each complete or not at all: written to a temporary name
and renamed) and prints the tables:

- per sequence and noise level σ: PSNR / SSIM (in the dataset's metric space: RGB, or BT.601
  studio-range Y for the rain sets), averaged over the frames of the sequence, and mean bpp;
- per σ: the mean over sequences (the paper-style row), and over everything;
- with ``entropy_coding=true``: the codec's latents are range-coded (``callbacks/actual_bits.py``)
  and a third table (and CSV columns) gives actual bpp and its ratio to the estimate, y and z.

``method=noisy|nlm|bm3d`` evaluates a classical per-frame denoiser instead of a checkpoint (then
``data=`` is needed). ``ckpt_path`` and ``method`` also take lists: with several entries each
gets its tables in a sub-folder and the run folder gets the comparison (methods x σ, markdown,
CSV, PSNR-versus-σ and rate-distortion plots; ``lightning_modules/run/eval_methods.py``).
``max_frames=N`` scores the first N frames of every test clip.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig

from callbacks.actual_bits import COLUMNS as CODING_COLUMNS
from callbacks.actual_bits import RECORD_KEYS as CODING_KEYS
from callbacks.actual_bits import ActualBits, add_ratios
from callbacks.actual_bits import markdown_table as coding_table
from datamodules.degradations import sigma_to_255
from lightning_modules.run.acceleration import set_channels_last
from lightning_modules.run.atomic_files import atomic_output
from lightning_modules.run.checkpoints import (
    build_task_from_checkpoint,
    read_checkpoint,
    stored_config,
)
from lightning_modules.run.entry_point import InputError, job, reported_errors
from lightning_modules.run.eval_methods import (
    checkpoint_label,
    method_task,
    requested,
    test_loader,
    unique_labels,
    write_comparison,
    write_csv,
)
from lightning_modules.run.instantiate import instantiate, instantiate_collection
from lightning_modules.run.resolvers import register_resolvers
from lightning_modules.run.structured_configs import register_configs

log = logging.getLogger(__name__)
register_resolvers()
register_configs()

COLUMNS = ("sequence", "sigma", "num_frames", "psnr", "ssim", "bpp")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of (sequence, σ) averaged over their frames, then one ``mean`` row per σ (mean over
    sequences) and an ``all`` row (mean over every sequence row). Records carry σ in [0, 1]
    units; the rows show it on the papers' 0-255 scale (rounded)."""
    if not records:
        raise ValueError("the test run produced no records (is the test set empty?)")
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[(record["name"], round(sigma_to_255(record["sigma"])))].append(record)
    rows = []
    for (name, sigma), clips in sorted(groups.items(), key=lambda item: (item[0][1], item[0][0])):
        frames = sum(c["num_frames"] for c in clips)

        def weighted(key: str, clips=clips, frames=frames) -> float:
            return sum(c[key] * c["num_frames"] for c in clips) / frames

        rows.append(
            {
                "sequence": name,
                "sigma": sigma,
                "num_frames": frames,
                "psnr": weighted("psnr"),
                "ssim": weighted("ssim"),
                "bpp": weighted("bpp"),
                **{k: weighted(k) for k in CODING_KEYS if k in clips[0]},  # entropy_coding
            }
        )
    sequence_rows = list(rows)
    for sigma in sorted({r["sigma"] for r in sequence_rows}):
        same = [r for r in sequence_rows if r["sigma"] == sigma]
        rows.append(_average_row("mean", sigma, same))
    rows.append(_average_row("all", "all", sequence_rows))
    add_ratios(rows)
    return rows


def _average_row(name: str, sigma: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "sequence": name,
        "sigma": sigma,
        "num_frames": sum(r["num_frames"] for r in rows),
        **{
            k: _mean([r[k] for r in rows])
            for k in ("psnr", "ssim", "bpp", *CODING_KEYS)
            if k in rows[0]
        },
    }


def markdown_tables(rows: list[dict[str, Any]], metric_space: str) -> str:
    """Paper-style table (sequences x σ, cells PSNR/SSIM) and a per-σ summary with bpp."""
    sequence_rows = [r for r in rows if r["sequence"] not in ("mean", "all")]
    sigmas = sorted({r["sigma"] for r in sequence_rows})
    names = list(dict.fromkeys(r["sequence"] for r in sequence_rows))
    cell = {(r["sequence"], r["sigma"]): r for r in sequence_rows}
    means = {r["sigma"]: r for r in rows if r["sequence"] == "mean"}
    label = "Y" if metric_space == "y" else "RGB"
    header = [f"sequence (PSNR/SSIM, {label})"] + [f"σ={s}" for s in sigmas]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def fmt(r: dict[str, Any] | None) -> str:
        return "—" if r is None else f"{r['psnr']:.2f}/{r['ssim']:.4f}"

    for name in names:
        lines.append("| " + " | ".join([name] + [fmt(cell.get((name, s))) for s in sigmas]) + " |")
    lines.append("| **average** | " + " | ".join(fmt(means[s]) for s in sigmas) + " |")
    lines += ["", "| σ | sequences | frames | PSNR | SSIM | bpp |", "|---|---|---|---|---|---|"]
    for r in rows:
        if r["sequence"] in ("mean", "all"):
            count = len({s["sequence"] for s in sequence_rows if r["sigma"] in ("all", s["sigma"])})
            lines.append(
                f"| {r['sigma']} | {count} | {r['num_frames']} | {r['psnr']:.2f} | "
                f"{r['ssim']:.4f} | {r['bpp']:.4f} |"
            )
    return "\n".join(lines) + "\n"


def write_results(rows: list[dict[str, Any]], metric_space: str, out_dir: Path) -> str:
    """Write results.csv and results.md into ``out_dir``; returns the markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = COLUMNS + (CODING_COLUMNS if "bpp_actual" in rows[0] else ())
    write_csv(out_dir / "results.csv", rows, columns)
    text = markdown_tables(rows, metric_space)
    if "bpp_actual" in rows[0]:
        text += "\nActual bits (entropy_coding=true) against the estimate:\n\n"
        text += coding_table(rows)
    with atomic_output(out_dir / "results.md") as temp:
        temp.write_text(text)
    return text


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``ckpt_path`` and/or ``method`` (each one or a list): one entry writes its tables
    into the run folder; several write theirs into sub-folders and the comparison into the run
    folder. Returns the entry's result, or ``entries`` and the comparison."""
    checkpoints, methods = requested(cfg)
    out_dir = Path(cfg.paths.output_dir)
    if len(checkpoints) + len(methods) == 1:
        if checkpoints:
            return evaluate_checkpoint(cfg, checkpoints[0], out_dir)
        return evaluate_method(cfg, methods[0], out_dir)
    labels = unique_labels([checkpoint_label(c) for c in checkpoints] + methods)
    data_cfg = cfg.data
    entries = []
    for index, (label, source) in enumerate(zip(labels, [*checkpoints, *methods])):
        sub_dir = out_dir / label.replace("/", "_")
        if index < len(checkpoints):
            result = evaluate_checkpoint(cfg, source, sub_dir)
            data_cfg = data_cfg if data_cfg is not None else result["data_cfg"]
        else:
            result = evaluate_method(cfg, source, sub_dir, data_cfg)
        entries.append({"label": label, **result})
    comparison = write_comparison(entries, entries[0]["metric_space"], out_dir)
    print(comparison["markdown"])
    log.info("comparison written to %s", out_dir / "comparison.md")
    return {"entries": entries, **comparison}


def _report(
    task: Any, metrics: dict[str, float], metric_space: str, out_dir: Path, seconds: float
) -> dict:
    """Print and write the tables of ``task.test_records``; ``seconds``: the test loop's wall
    time, reported as frames/s (reading, restoring and scoring every test frame)."""
    rows = summarize(task.test_records)
    text = write_results(rows, metric_space, out_dir)
    print(text)
    frames = sum(record["num_frames"] for record in task.test_records)
    speed = frames / seconds if seconds > 0 else math.nan
    print(f"{frames} frames in {seconds:.1f} s: {speed:.2f} frames/s (reading, restoring, scoring)")
    log.info("results written to %s", out_dir / "results.md")
    return {
        "metrics": metrics,
        "rows": rows,
        "markdown": text,
        "metric_space": metric_space,
        "frames_per_s": speed,
    }


def evaluate_method(
    cfg: DictConfig, method: str, out_dir: Path, data_cfg: DictConfig | None = None
) -> dict[str, Any]:
    """Test a classical per-frame method (``eval_methods.METHODS``) on ``cfg.data`` (or
    ``data_cfg``); writes its tables into ``out_dir``."""
    data_cfg = cfg.data if cfg.get("data") is not None else data_cfg
    if data_cfg is None:
        raise InputError(
            f"method={method}: no checkpoint to take the data from; give data=<name> "
            "(e.g. data=set8 data.root=/data/Set8)"
        )
    if cfg.seed is not None:
        pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(data_cfg, "data")
    task = method_task(method, datamodule, data_cfg)
    trainer: pl.Trainer = instantiate(cfg.trainer, "trainer", logger=False)
    began = time.perf_counter()
    results = trainer.test(task, dataloaders=test_loader(datamodule, cfg.max_frames))
    seconds = time.perf_counter() - began
    metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
    result = _report(task, metrics, getattr(datamodule, "metric_space", "rgb"), out_dir, seconds)
    return {**result, "kind": "method", "rate_weight": None, "data_cfg": data_cfg}


def evaluate_checkpoint(cfg: DictConfig, ckpt_path: str, out_dir: Path) -> dict[str, Any]:
    """Test the checkpoint's model on ``cfg.data`` (or its own data); returns metrics and rows."""
    checkpoint = read_checkpoint(ckpt_path)
    checkpoint_cfg = stored_config(checkpoint, ckpt_path)
    if cfg.seed is not None:
        pl.seed_everything(cfg.seed, workers=True)
    data_cfg = cfg.data if cfg.get("data") is not None else checkpoint_cfg.data
    datamodule = instantiate(data_cfg, "data")
    overrides = {}
    if "metric_space" in checkpoint_cfg.model.task and hasattr(datamodule, "metric_space"):
        overrides["metric_space"] = datamodule.metric_space
    trained_task = checkpoint_cfg.data.get("task")
    if trained_task is not None and getattr(datamodule, "task", trained_task) != trained_task:
        log.warning(
            "the model was trained for %s but the data is %s", trained_task, datamodule.task
        )
    task, _ = build_task_from_checkpoint(ckpt_path, overrides, checkpoint)
    if not hasattr(task, "test_records"):
        raise InputError(
            f"ckpt_path: '{ckpt_path}' holds a {type(task).__name__}, which keeps no per-clip "
            "test records; eval.py evaluates restoration models"
        )
    set_channels_last(task, bool(cfg.channels_last))
    loggers = instantiate_collection(cfg.get("logger"), "logger")
    callbacks = [ActualBits()] if cfg.entropy_coding else None
    trainer: pl.Trainer = instantiate(
        cfg.trainer, "trainer", logger=loggers or False, callbacks=callbacks
    )
    began = time.perf_counter()
    if cfg.max_frames is None:
        results = trainer.test(task, datamodule=datamodule)
    else:
        results = trainer.test(task, dataloaders=test_loader(datamodule, cfg.max_frames))
    seconds = time.perf_counter() - began
    metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
    result = _report(task, metrics, overrides.get("metric_space", "rgb"), out_dir, seconds)
    result.update(
        kind="checkpoint",
        rate_weight=checkpoint_cfg.model.get("rate_weight"),
        data_cfg=data_cfg,
    )
    if cfg.purification:
        result["purification"] = write_purification(task, datamodule, out_dir)
    return result


def write_purification(task: pl.LightningModule, datamodule: Any, out_dir: Path) -> float | None:
    """The purification ratio of the first test clip (callbacks/purification.py), printed, and its
    t-SNE picture written to ``purification_tsne.png``; None when the clip has no clean frames."""
    from PIL import Image

    from callbacks.purification import purification, tsne_image

    batch = next(iter(datamodule.test_dataloader()))
    result = purification(task.net.eval(), batch)
    if result is None:
        log.warning("purification: the first test clip has no clean frames or a single frame")
        return None
    with atomic_output(out_dir / "purification_tsne.png") as temp:
        Image.fromarray(tsne_image(result)).save(temp)
    print(
        f"purification ratio (temporal features to clean-video features, after / before the "
        f"codec; < 1: the codec purifies): {result.ratio:.4f}; relative to each set's own "
        f"clean version: {result.relative_ratio:.4f}; t-SNE: "
        f"{out_dir / 'purification_tsne.png'}"
    )
    return result.ratio


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    results = Path(cfg.paths.output_dir) / "results.md"
    with job(started=results.exists):  # expected errors: one line; no folder from a failed run
        evaluate(cfg)


if __name__ == "__main__":
    with reported_errors():
        main()
