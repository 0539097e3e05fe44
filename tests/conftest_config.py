"""Helpers shared by the config / entry-point tests: compose the real config tree, shrink it.

Import from the test modules (``from tests.conftest_config import ...``; pytest puts the
repository root on ``sys.path`` through ``pythonpath`` in pyproject.toml).

``compose_config`` (from ``lightning_modules.run.compose``) composes ``conf/<name>.yaml`` as an
entry point would. ``tiny_overrides(preset, out_dir)`` shrinks a run to seconds on a CPU:
N = 16 channels, 32x32 patches of 3-frame clips, batch 1, one σ at test, 2 training steps;
``tiny_network(preset)`` builds a preset's network at that size from the real config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from lightning_modules.run.compose import CONF_DIR, build_network, compose_config

__all__ = ["CONF_DIR", "compose_config"]
PRESETS = ("adaptive_q", "channel_q", "fixed_q", "no_codec", "flow_pretrain")

DATA_TINY = [
    "data.train_sequences.num_sequences=2",
    "data.train_sequences.num_frames=4",
    "data.train_sequences.size=[40,40]",
    "data.val_sequences.num_sequences=1",
    "data.val_sequences.num_frames=3",
    "data.val_sequences.size=[32,32]",
    "data.test_sequences.num_sequences=1",
    "data.test_sequences.num_frames=3",
    "data.test_sequences.size=[32,32]",
    "data.clip_len=3",
    "data.patch_size=32",
    "data.batch_size=1",
    "data.val_batch_size=1",
    "data.test_sigmas=[25]",
    "data.temporal_strides=[1]",
    "data.num_workers=0",
]
TRAINER_TINY = [
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
    "callbacks.rich_progress_bar=null",
    "callbacks.rich_model_summary=null",
]


def model_tiny(preset: str) -> list[str]:
    """Overrides shrinking a model preset (the flow preset has no N / codec / refinement; the
    restoration presets' DIS flow stage has nothing to shrink)."""
    if preset == "flow_pretrain":
        return ["model.flow.num_levels=3", "model.warmup_steps=0"]
    tiny = ["model.warmup_steps=0", "model.channels=16", "model.mv_refine.channels=8"]
    if preset != "no_codec":
        tiny += ["model.codec.latent_channels=16", "model.codec.hyper_channels=16"]
    return tiny


# The flow pre-training's own data (synthetic pairs with known flow), shrunk.
FLOW_DATA_TINY = [
    "data=flow_pairs",
    "data.size=48",
    "data.batch_size=1",
    "data.val_batch_size=1",
    "data.train_length=4",
    "data.val_length=2",
]


def tiny_overrides(preset: str, out_dir: Path, logger: str = "csv") -> list[str]:
    """All overrides for a seconds-long CPU run of ``preset`` (on its data) into ``out_dir``."""
    return [
        f"model={preset}",
        f"logger={logger}",
        f"paths.output_dir={out_dir}",
        f"paths.log_dir={out_dir}/logs",
        *(FLOW_DATA_TINY if preset == "flow_pretrain" else DATA_TINY),
        *TRAINER_TINY,
        *model_tiny(preset),
    ]


def tiny_network(preset: str = "adaptive_q", overrides: list[str] = ()) -> nn.Module:
    """A preset's network from ``conf/``, shrunk: N = 16, 3-level SPyNet, small latent.

    A stage picked by an override (``model/mv_refine=none``, ``model/flow=zero``) gets none of
    the shrinking keys of that stage."""
    off = {o.split("=")[0].split("/")[-1] for o in overrides if o.startswith("model/")}
    tiny = [
        o for o in model_tiny(preset) if o != "model.warmup_steps=0" and o.split(".")[1] not in off
    ]
    return build_network(preset, [*tiny, *overrides])


_CACHE: dict[str, Any] = {}


def tiny_training_run(tmp_path_factory) -> dict[str, Any]:
    """Train the tiny adaptive_q model once per session: output dir, checkpoints, metrics."""
    if "run" not in _CACHE:
        from hydra import initialize_config_dir

        import train

        out_dir = tmp_path_factory.mktemp("tiny_run")
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            cfg = compose_config("train", tiny_overrides("adaptive_q", out_dir))
            metrics, objects = train.train(cfg)
        _CACHE["run"] = {
            "out_dir": out_dir,
            "metrics": metrics,
            "best": Path(objects["checkpoints"]["best"]),
            "last": Path(objects["checkpoints"]["last"]),
            "records": list(objects["model"].test_records),
            "global_step": objects["trainer"].global_step,
        }
    return _CACHE["run"]
