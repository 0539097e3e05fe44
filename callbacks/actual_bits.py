"""Actual bits of the codec, next to the estimate: a test-time callback and eval's columns.

``ActualBits`` entropy-codes every codec call of each test batch (``LatentRecorder`` in
``lightning_modules/stages/entropy_coding.py``: a forward hook, the model's output is unchanged;
each call is decoded again and must give ŷ bit-identical) and adds to the batch's test records
``bpp_actual`` (= ``bpp_actual_y + bpp_actual_z``) and the estimate split into ``bpp_y`` and
``bpp_z``, all per pixel of the batch like the net's ``bpp``. ``add_ratios`` turns eval's rows into
actual/estimate ratios; ``markdown_table`` prints them.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl

from lightning_modules.stages.entropy_coding import LatentRecorder, require_constriction

RECORD_KEYS = ("bpp_actual", "bpp_actual_y", "bpp_actual_z", "bpp_y", "bpp_z")
RATIO_KEYS = ("ratio", "ratio_y", "ratio_z")
COLUMNS = (*RECORD_KEYS, *RATIO_KEYS)


class ActualBits(pl.Callback):
    """Adds actual and estimated bits per pixel to ``pl_module.test_records`` (module doc)."""

    def __init__(self, verify: bool = True) -> None:
        require_constriction()  # fail before the test run, naming the extra
        self.verify = verify
        self._recorder: LatentRecorder | None = None
        self._first = 0

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        codec = getattr(getattr(pl_module, "net", None), "codec", None)
        if codec is None:
            raise ValueError(
                "entropy_coding: the model has no feature codec (model/codec=none), so there "
                "are no latents to code; run without entropy_coding=true"
            )
        self._recorder = LatentRecorder(codec, verify=self.verify).__enter__()

    def on_test_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, *args: Any
    ) -> None:
        self._recorder.calls.clear()
        self._first = len(pl_module.test_records)

    def on_test_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, *args
    ) -> None:
        totals = self._recorder.totals()
        batch_size, frames, _, height, width = batch["lq"].shape
        pixels = batch_size * frames * height * width
        values = {
            "bpp_actual": (totals["actual_y"] + totals["actual_z"]) / pixels,
            "bpp_actual_y": totals["actual_y"] / pixels,
            "bpp_actual_z": totals["actual_z"] / pixels,
            "bpp_y": totals["estimate_y"] / pixels,
            "bpp_z": totals["estimate_z"] / pixels,
        }
        for record in pl_module.test_records[self._first :]:
            record.update(values)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._recorder is not None:
            self._recorder.__exit__()
            self._recorder = None


def _ratio(actual: float, estimate: float) -> float:
    return actual / estimate if estimate > 0 else math.nan


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Add ``ratio`` (actual / estimated bpp), ``ratio_y`` and ``ratio_z`` to the rows that
    carry actual bits (NaN where the estimate is 0)."""
    for row in rows:
        if "bpp_actual" in row:
            row["ratio"] = _ratio(row["bpp_actual"], row["bpp"])
            row["ratio_y"] = _ratio(row["bpp_actual_y"], row["bpp_y"])
            row["ratio_z"] = _ratio(row["bpp_actual_z"], row["bpp_z"])


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Per sequence and σ (and the mean rows): estimated and actual bpp and their ratios."""
    lines = [
        "| sequence | σ | bpp (estimate) | bpp (actual) | actual/estimate | y | z |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['sequence']} | {r['sigma']} | {r['bpp']:.5f} | {r['bpp_actual']:.5f} | "
            f"{r['ratio']:.4f} | {r['ratio_y']:.4f} | {r['ratio_z']:.4f} |"
        )
    return "\n".join(lines) + "\n"
