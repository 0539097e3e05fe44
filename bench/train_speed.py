"""Training throughput of a train.py config: steps/s, clips/s, data-wait share and peak memory.

    python bench/train_speed.py                                  # default config (sample data)
    python bench/train_speed.py --overrides model=no_codec --steps 40
    python bench/train_speed.py --overrides data=davis data.root=../shared/data/davis2017_480p \\
        data.train_sequences.split=null --modes fp32 bf16 compile --device cuda

Each mode trains ``--warmup + --steps`` steps of ``train.py`` with the given overrides in its own
process (so peak memory is its own), without validation, test, checkpoints or progress bar, and
with ``callbacks.step_timing`` (``callbacks/step_timing.py``) timing every step. Modes:

- ``fp32``:          the config as it is (``trainer.precision=32-true``);
- ``bf16``:          ``trainer.precision=bf16-mixed`` (rate terms stay float32);
- ``compile``:       ``compile=true`` (torch.compile of the network; its compile time falls in
                     the warm-up steps, which are not measured);
- ``bf16_compile``: both;
- ``nchw``:          ``channels_last=false``, the ablation of the default memory layout.

Figures are steady state (after ``--warmup`` steps, first batch of each epoch excluded):
steps/s and clips/s over wall time, the share of it spent outside the training step (waiting for
the next batch plus the loop's own work), and peak memory (CPU: the process's max RSS; CUDA:
``torch.cuda.max_memory_allocated``). Prints a markdown table with the machine; ``--out FILE``
appends it to FILE (e.g. bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from machine_info import describe_machine  # noqa: E402

MODES = {
    "fp32": ["trainer.precision=32-true"],
    "bf16": ["trainer.precision=bf16-mixed"],
    "compile": ["compile=true"],
    "bf16_compile": ["trainer.precision=bf16-mixed", "compile=true"],
    "nchw": ["channels_last=false"],
}


def bench_overrides(args: argparse.Namespace, out_dir: Path) -> list[str]:
    """train.py overrides: the user's config, trained for warm-up + measured steps only."""
    return [
        *args.overrides,
        f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}",
        f"trainer.max_steps={args.warmup + args.steps}",
        "trainer.max_epochs=-1",
        "trainer.limit_val_batches=0",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false",
        "test=false",
        "logger=csv",
        f"paths.output_dir={out_dir}",
        f"paths.log_dir={out_dir}/logs",
        "callbacks.model_checkpoint=null",
        "callbacks.rich_progress_bar=null",
        "callbacks.rich_model_summary=null",
        "+callbacks.step_timing._target_=callbacks.step_timing.StepTiming",
        f"+callbacks.step_timing.skip_steps={args.warmup}",
        "+callbacks.step_timing.synchronize=true",
    ]


def measure_one(args: argparse.Namespace) -> dict:
    """Train one mode in this process and return its figures."""
    from hydra import initialize_config_dir

    import train
    from callbacks.step_timing import StepTiming
    from lightning_modules.run.compose import CONF_DIR, compose_config

    torch.set_num_threads(args.threads)
    with (
        tempfile.TemporaryDirectory() as tmp,
        initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)),
    ):
        cfg = compose_config("train", [*bench_overrides(args, Path(tmp)), *MODES[args.one]])
        _, objects = train.train(cfg)
    timing = next(c for c in objects["trainer"].callbacks if isinstance(c, StepTiming))
    result = {"mode": args.one, **timing.summary()}
    if args.device == "cuda":
        result["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def run_mode(mode: str, args: argparse.Namespace) -> dict:
    """``measure_one`` in a fresh process (its own peak memory); figures or the error."""
    command = [sys.executable, __file__, "--one", mode, *sys.argv[1:]]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        error = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"mode": mode, "error": error[:160]}
    return json.loads(lines[-1][len("RESULT ") :])


def machine(args: argparse.Namespace) -> str:
    return describe_machine(args.device, args.threads)


def table(results: list[dict], args: argparse.Namespace) -> str:
    memory = "peak CUDA MB" if args.device == "cuda" else "peak RSS MB"
    first = results[0]["mode"]
    lines = [
        f"| mode | steps/s | clips/s | data wait share | step s | {memory} | vs {first} |",
        "|---|---|---|---|---|---|---|",
    ]
    base = results[0].get("steps_per_s")
    for r in results:
        if "error" in r:
            lines.append(f"| {r['mode']} | failed: {r['error']} | | | | | |")
            continue
        ratio = f"{r['steps_per_s'] / base:.2f}x" if base else "–"
        lines.append(
            f"| {r['mode']} | {r['steps_per_s']:.2f} | {r['clips_per_s']:.2f} | "
            f"{r['data_wait_share']:.1%} | {r['step_s']:.3f} | {r['peak_mb']:.0f} | {ratio} |"
        )
    config = " ".join(args.overrides) or "(default config)"
    return (
        f"Training speed, `train.py {config}`, {args.steps} steps after {args.warmup} warm-up "
        f"steps ({machine(args)})\n\n" + "\n".join(lines) + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--overrides", nargs="*", default=[], help="train.py overrides")
    parser.add_argument("--modes", nargs="+", default=["fp32", "bf16", "compile"],
                        choices=list(MODES))  # fmt: skip
    parser.add_argument("--steps", type=int, default=30, help="measured steps per mode")
    parser.add_argument("--warmup", type=int, default=8, help="unmeasured steps first")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=None, help="append the table to this file")
    parser.add_argument("--one", choices=list(MODES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(measure_one(args)), flush=True)
        return
    results = [run_mode(mode, args) for mode in args.modes]
    text = table(results, args)
    print(text)
    if args.out is not None:
        with args.out.open("a") as handle:
            handle.write("\n" + text)


if __name__ == "__main__":
    main()
