"""bench/temporal_gain.py: the means over several evaluated checkpoints."""

import importlib.util
import math
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "temporal_gain.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("temporal_gain_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(config: str, flow: str, psnr: float, gain: float) -> dict:
    return {
        "config": config,
        "flow": flow,
        "steps": "-",
        "val_temporal_gain_db": math.nan,
        "clip": {"psnr": psnr, "gain": gain},
    }


def test_checkpoint_means_average_each_flow_separately():
    bench = load_bench()
    results = [
        row("a.ckpt", "DISFlow", 30.0, 0.5),
        row("a.ckpt", "zero", 29.0, -0.1),
        row("b.ckpt", "DISFlow", 31.0, 1.5),
        row("b.ckpt", "zero", 28.0, 0.3),
    ]
    means = bench.checkpoint_means(results)
    assert [(m["config"], m["flow"]) for m in means] == [
        ("mean of 2", "DISFlow"),
        ("mean of 2", "zero"),
    ]
    assert means[0]["clip"] == {"psnr": 30.5, "gain": 1.0}
    assert means[1]["clip"]["psnr"] == 28.5 and math.isclose(means[1]["clip"]["gain"], 0.1)


def test_one_checkpoint_gets_no_mean_row():
    bench = load_bench()
    assert bench.checkpoint_means([row("a.ckpt", "DISFlow", 30.0, 0.5)]) == []
