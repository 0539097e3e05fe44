"""Does the recurrence help? Train configurations for the same wall-clock budget, then measure.

    python bench/temporal_gain.py                        # 3 configs x 20 min on a CPU
    python bench/temporal_gain.py --minutes 5 --device cuda --batch-size 8 --patch-size 128
    python bench/temporal_gain.py --configs no_codec_flow --flow spynet=<flow checkpoint>
    python bench/temporal_gain.py --evaluate logs/.../best.ckpt   # held-out only, own vs zero flow
    python bench/temporal_gain.py --evaluate A.ckpt B.ckpt C.ckpt  # + their means, per flow
    python bench/temporal_gain.py --evaluate A.ckpt --flow-input clean  # flow of the clean frames
    python bench/temporal_gain.py --evaluate A.ckpt --output-filter  # + an untrained output filter

Each configuration is ``train.py`` with ``data=davis`` on the shared DAVIS frames (3 sequences of
``../shared/data``, σ ~ U[0, 50], half the clips static as ``data=davis`` has it), validated on
a 256x256 centre crop of Set8 ``hypersmooth`` at σ = 30 (the ``val/temporal_gain_db`` it logs),
for ``--minutes`` of training (``trainer.max_time``). Configurations (``--configs``):

- ``no_codec_zero``:  ``model=no_codec model/flow=zero``  (the previous state used unaligned);
- ``no_codec_flow``:  ``model=no_codec`` with the flow stage of ``--flow``;
- ``adaptive_q_flow``: ``model=adaptive_q`` with the flow stage of ``--flow``;
- ``no_codec_flow_blend`` / ``adaptive_q_flow_blend``: the same with the motion-compensated
  recursive blend (``model/blend=recursive``), not run unless named;
- ``no_codec_flow_previous`` / ``adaptive_q_flow_previous``: the same with the aligned previous
  degraded frame as an encoder input (``model.previous_input=true``), not run unless named;
- ``no_codec_flow_bidirectional`` / ``adaptive_q_flow_bidirectional``: the same with a backward
  recurrence as well (``model.bidirectional=true``, ~1.7x the step time), not run unless named;
- ``adaptive_q_flow_no_refine``: ``adaptive_q_flow`` without the motion refinement
  (``model/mv_refine=none``: the flow stage's vectors align the state), not run unless named;
- ``adaptive_q_flow_no_filter``: ``adaptive_q_flow`` without the presets' motion-compensated
  recursive filter of the restored frames (``model/output_filter=none``, the paper's network),
  not run unless named;
- ``adaptive_q_flow_clean_teacher``: ``adaptive_q_flow`` trained on flow that the data loader
  estimates on the *clean* frames with 64 px of context (``data.clean_flow_prob=1``: alignment as
  good as the flow stage gets on real motion); validation and the held-out clips use the
  network's own flow on the noisy frames, as inference does. Not run unless named.

``--overrides`` adds train.py overrides to every configuration (e.g.
``model.blend.detector=mean_abs``). ``--max-steps N`` also stops each configuration at N steps:
on a shared, noisy machine equal steps compare configurations more fairly than equal minutes.

``--flow``: ``dis`` (OpenCV DIS, no training), or ``spynet=PATH`` (a pretrained SPyNet
checkpoint: ``experiment=flow_pretrain``, BasicSR or mmagic).

After training, on sequences not used in training, with σ = 30 noise (fixed seed): Set8
``hypersmooth`` (10 frames, 960x540), the tennis clip (10 frames, 352x240) and the Vimeo-90K
test clip 00002/0004 (7 frames, 448x256, in the official test list): PSNR of the
recurrent output and of the same network run on each frame alone (zero temporal state) over
frames 2..T, their difference (the temporal gain), and the bits per pixel of the latent (y and
y+z). With weight averaging on (``--overrides 'callbacks=[ema,default]'``) the trained network
is the average, and a second row gives the same run's raw final weights. Prints a markdown table;
``--out FILE`` also writes it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from math import nan
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from hydra import initialize_config_dir  # noqa: E402

import train  # noqa: E402
from callbacks.purification import purification  # noqa: E402
from callbacks.weight_ema import WarmupEMA  # noqa: E402
from datamodules.datasets.folder import scan_folder  # noqa: E402
from datamodules.datasets.set8 import scan_set8  # noqa: E402
from datamodules.datasets.vimeo import scan_vimeo  # noqa: E402
from lightning_modules.run.checkpoints import build_task_from_checkpoint  # noqa: E402
from lightning_modules.run.compose import CONF_DIR, compose_config  # noqa: E402
from lightning_modules.stages.dis_flow import DISFlow  # noqa: E402
from lightning_modules.stages.output_filter import RecursiveOutputFilter  # noqa: E402
from lightning_modules.stages.zero_flow import ZeroFlow  # noqa: E402
from lightning_modules.tasks.metrics import frame_psnr_ssim  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import describe_machine  # noqa: E402

SHARED_DATA = Path(os.environ.get("NCFL_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
SIGMA = 30 / 255
CONFIGS = {
    "no_codec_zero": ["model=no_codec", "model/flow=zero"],
    "no_codec_flow": ["model=no_codec"],
    "adaptive_q_flow": ["model=adaptive_q"],
    "no_codec_flow_blend": ["model=no_codec", "model/blend=recursive"],
    "adaptive_q_flow_blend": ["model=adaptive_q", "model/blend=recursive"],
    "no_codec_flow_previous": ["model=no_codec", "model.previous_input=true"],
    "adaptive_q_flow_previous": ["model=adaptive_q", "model.previous_input=true"],
    "no_codec_flow_bidirectional": ["model=no_codec", "model.bidirectional=true"],
    "adaptive_q_flow_bidirectional": ["model=adaptive_q", "model.bidirectional=true"],
    "adaptive_q_flow_no_refine": ["model=adaptive_q", "model/mv_refine=none"],
    "adaptive_q_flow_no_filter": ["model=adaptive_q", "model/output_filter=none"],
    "adaptive_q_flow_clean_teacher": [
        "model=adaptive_q",
        "+data.flow_estimator=${model.flow}",
        "+data.clean_flow_prob=1.0",
    ],
}
DEFAULT_CONFIGS = ["no_codec_zero", "no_codec_flow", "adaptive_q_flow"]


def flow_overrides(flow: str) -> list[str]:
    """Overrides that select the flow stage ``dis`` or ``spynet=PATH``."""
    if flow == "dis":
        return ["model/flow=dis"]
    name, _, path = flow.partition("=")
    if name != "spynet" or not path:
        raise SystemExit(f"--flow: expected 'dis' or 'spynet=PATH', got {flow!r}")
    return ["model/flow=spynet", f"model.flow.pretrained={Path(path).resolve()}"]


def run_overrides(args: argparse.Namespace, out_dir: Path) -> list[str]:
    """The train.py overrides shared by every configuration."""
    data = args.data_root
    minutes = args.minutes
    budget = f"00:{int(minutes // 60):02d}:{int(minutes % 60):02d}:{round(minutes % 1 * 60):02d}"
    return [
        "data=davis",
        f"data.root={data / 'davis2017_480p'}",
        "data.train_sequences.split=null",
        "data.val_sequences._target_=datamodules.datasets.set8.scan_set8",
        f"data.val_sequences.root={data / 'set8'}",
        "+data.val_sequences.sequences=[hypersmooth]",
        "~data.val_sequences.split",
        "data.test_sequences=null",
        "test=false",
        "data.val_sigma=30",
        "data.val_clip_len=10",
        "data.val_patch_size=256",
        "data.max_val_clips=null",
        f"data.clip_len={args.clip_len}",
        f"data.patch_size={args.patch_size}",
        f"data.batch_size={args.batch_size}",
        f"data.num_workers={args.workers}",
        f"data.seed={args.seed}",
        f"seed={args.seed}",
        f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}",
        f"trainer.max_time={budget}",
        *([f"trainer.max_steps={args.max_steps}"] if args.max_steps else []),
        "trainer.max_epochs=-1",
        # one epoch = one validation interval, whatever the data config's clips_per_epoch
        f"data.clips_per_epoch={args.batch_size * args.val_every}",
        "trainer.check_val_every_n_epoch=1",
        "trainer.enable_progress_bar=false",
        "logger=csv",
        f"paths.output_dir={out_dir}",
        f"paths.log_dir={out_dir}/logs",
        "callbacks.rich_progress_bar=null",
        "callbacks.rich_model_summary=null",
        "callbacks.restoration_strips=null",
        "callbacks.codec_maps=null",
        "callbacks.flow_views=null",
    ]


def held_out_sequences(root: Path) -> dict[str, torch.Tensor]:
    """Clean frames (T, 3, H, W) of the sequences the networks never trained on (≤ 10 each)."""
    set8 = scan_set8(root / "set8", sequences=["hypersmooth"])[0]
    tennis = scan_folder(gt_root=root / "tennis_videnn" / "original")[0]
    vimeo = scan_vimeo(root / "vimeo90k_septuplet", list_file="subset_testlist.txt")[0]
    sequences = {"Set8 hypersmooth": set8, "tennis": tennis, "Vimeo 00002/0004": vimeo}
    return {name: s.gt.read(list(range(min(10, len(s))))) for name, s in sequences.items()}


FLOW_INPUTS = ("noisy", "clean", "restored")


@torch.no_grad()
def temporal_gain(
    net: torch.nn.Module, frames: torch.Tensor, device: str, flow_input: str = "noisy"
) -> dict[str, float]:
    """Recurrent and frame-alone PSNR (frames 2..T) at σ = 30, their gain, and the latent bpp.
    ``flow_input``: the frames the network's flow stage runs on for the recurrent pass: the
    noisy ones (inference), the clean ones (an oracle: how much better alignment is worth), or
    the network's own frame-alone outputs (two passes over the clip)."""
    if flow_input not in FLOW_INPUTS:
        raise ValueError(f"flow_input: expected one of {FLOW_INPUTS}, got {flow_input!r}")
    noise = torch.Generator().manual_seed(0)
    lq = (frames + SIGMA * torch.randn(frames.shape, generator=noise))[None].to(device)
    gt = frames[None, 1:].to(device)
    sigma = torch.tensor([SIGMA], device=device) if net.noise_channel else None
    first = 0 if flow_input == "restored" else 1  # frame 0 alone only to estimate flow on it
    alone = torch.cat([net(lq[:, t : t + 1], sigma).restored for t in range(first, lq.shape[1])], 1)
    given = {"noisy": None, "clean": frames[None].to(device), "restored": alone}[flow_input]
    recurrent = net(lq, sigma, flows=None if given is None else net._clip_flows(given))
    alone = alone[:, 1 - first :]
    psnr = frame_psnr_ssim(recurrent.restored[:, 1:], gt)[0].mean().item()
    psnr_alone = frame_psnr_ssim(alone, gt)[0].mean().item()
    noisy = frame_psnr_ssim(lq[:, 1:].clamp(0, 1), gt)[0].mean().item()
    purified = (  # without a codec the ratio is 1 by definition
        purification(net, {"lq": lq, "gt": frames[None].to(device), "sigma": sigma})
        if getattr(net, "codec", None) is not None
        else None
    )
    return {
        "psnr": psnr,
        "psnr_alone": psnr_alone,
        "gain": psnr - psnr_alone,
        "noisy": noisy,
        "bpp_y": float(recurrent.bpp_y),
        "bpp": float(recurrent.bpp),
        "purification": purified.ratio if purified is not None else float("nan"),
        "relative": purified.relative_ratio if purified is not None else float("nan"),
    }


def run_config(name: str, args: argparse.Namespace) -> list[dict]:
    """Train one configuration, then its held-out results: one row, and a second for the raw
    final weights when the run validated an average of them (``callbacks=[ema,default]``)."""
    out_dir = args.work_dir / name
    overrides = [*run_overrides(args, out_dir), *CONFIGS[name]]
    if name != "no_codec_zero":
        overrides += flow_overrides(args.flow)
    overrides += args.overrides
    began = time.perf_counter()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose_config("train", overrides)
        metrics, objects = train.train(cfg)
    result = {
        "config": name,
        "flow": "zero" if name == "no_codec_zero" else args.flow,
        "minutes": (time.perf_counter() - began) / 60,
        "steps": objects["trainer"].global_step,
        "val_temporal_gain_db": metrics.get("val/temporal_gain_db", float("nan")),
        "val_psnr": metrics.get("val/psnr", float("nan")),
    }
    sequences = held_out_sequences(args.data_root)
    net = objects["model"].net.to(args.device).eval()
    for sequence, frames in sequences.items():
        result[sequence] = temporal_gain(net, frames, args.device)
    results = [result]
    averaging = [c for c in objects["trainer"].callbacks if isinstance(c, WarmupEMA)]
    if averaging and averaging[0].final_weights is not None:  # the same run's raw weights too
        objects["model"].load_state_dict(averaging[0].final_weights)
        raw_result = {**result, "config": f"{name} (raw weights)"}
        raw_result.update({s: temporal_gain(net, f, args.device) for s, f in sequences.items()})
        results.append(raw_result)
    (args.work_dir / f"{name}.json").write_text(json.dumps(results, indent=1))
    return results


def evaluate_checkpoint(path: Path, args: argparse.Namespace) -> list[dict]:
    """Held-out results of a trained checkpoint with its own flow stage and with zero flow
    swapped in at inference (does the network's gain come from the motion it is given?)."""
    net = build_task_from_checkpoint(path)[0].net.to(args.device).eval()
    own_flow = type(net.flow).__name__
    if args.dis_scale is not None:
        if not isinstance(net.flow, DISFlow):
            raise SystemExit(f"--dis-scale: {path} has a {own_flow} flow stage, not DISFlow")
        net.flow.scale = args.dis_scale
        own_flow += f" (scale {args.dis_scale:g})"
    if args.output_filter:
        if net.output_filter is not None:
            raise SystemExit(f"--output-filter: {path} already has a trained output filter")
        net.output_filter = RecursiveOutputFilter().to(args.device)
        own_flow += " + untrained output filter"
    sequences = held_out_sequences(args.data_root)
    results = []
    if args.flow_input != "noisy":
        own_flow += f" on {args.flow_input} frames"
    for flow_name, flow_stage in ((own_flow, net.flow), ("ZeroFlow (at inference)", ZeroFlow())):
        net.flow = flow_stage
        result = {"config": path.name, "flow": flow_name, "steps": "-", "val_temporal_gain_db": nan}
        for sequence, frames in sequences.items():
            result[sequence] = temporal_gain(net, frames, args.device, args.flow_input)
        results.append(result)
        if args.flow_input != "noisy":  # zero flow is the same whatever it runs on
            break
    return results


def checkpoint_means(results: list[dict]) -> list[dict]:
    """One row per flow label that several rows share: the mean of each held-out figure over
    those rows (the checkpoints of one run, whose spread is large from one to the next)."""
    means = []
    for flow in dict.fromkeys(r["flow"] for r in results):
        rows = [r for r in results if r["flow"] == flow]
        if len(rows) < 2:
            continue
        mean = {"config": f"mean of {len(rows)}", "flow": flow, "steps": "-"}
        mean["val_temporal_gain_db"] = nan
        for sequence in (k for k in rows[0] if isinstance(rows[0][k], dict)):
            mean[sequence] = {
                key: sum(r[sequence][key] for r in rows) / len(rows) for key in rows[0][sequence]
            }
        means.append(mean)
    return means


def table(results: list[dict]) -> str:
    sequences = [k for k in results[0] if isinstance(results[0][k], dict)]
    header = ["config", "flow", "steps", "val/temporal_gain_db"]
    for sequence in sequences:
        header += [f"{sequence} PSNR", "alone", "gain (dB)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        cells = [r["config"], r["flow"], str(r["steps"]), f"{r['val_temporal_gain_db']:+.3f}"]
        for sequence in sequences:
            s = r[sequence]
            cells += [f"{s['psnr']:.2f}", f"{s['psnr_alone']:.2f}", f"{s['gain']:+.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    noisy = ", ".join(f"{s} {results[0][s]['noisy']:.2f} dB" for s in sequences)
    latent = [
        "",
        "Latent per sequence (bpp_y / bpp; purification ratio / relative ratio, < 1: the codec "
        "brings the temporal features closer to the clean clip's; callbacks/purification.py):",
        "",
    ]
    latent += [
        "| config | flow | " + " | ".join(sequences) + " |",
        "|" + "---|" * (2 + len(sequences)),
    ]
    for r in results:
        cells = [
            f"{r[s]['bpp_y']:.4f} / {r[s]['bpp']:.4f}; {r[s]['purification']:.3f} / "
            f"{r[s]['relative']:.3f}"
            for s in sequences
        ]
        latent.append(f"| {r['config']} | {r['flow']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\nNoisy input (σ = 30): {noisy}.\n" + "\n".join(latent)


def machine(args: argparse.Namespace) -> str:
    return describe_machine(args.device, args.threads)


def add_run_arguments(parser: argparse.ArgumentParser, work_dir: str) -> None:
    """The training-run and output arguments ``run_overrides`` reads (shared by the benches)."""
    parser.add_argument("--clip-len", type=int, default=5)
    parser.add_argument("--patch-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--val-every", type=int, default=120, help="steps between validations")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-root", type=Path, default=SHARED_DATA)
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / "logs" / work_dir)
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    parser.add_argument(
        "--overrides", nargs="*", default=[], help="more train.py overrides, applied last"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, choices=list(CONFIGS))
    parser.add_argument("--flow", default="dis", help="dis, or spynet=PATH")
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget per config")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=None, help="also stop at this step")
    parser.add_argument(
        "--evaluate",
        nargs="+",
        type=Path,
        default=None,
        help="train nothing: evaluate these train.py checkpoints, with their flow and zero flow "
        "(several: also the means over them)",
    )
    parser.add_argument(
        "--dis-scale",
        type=float,
        default=None,
        help="with --evaluate: run a DIS flow stage at this scale instead of the stored one",
    )
    parser.add_argument(
        "--flow-input",
        choices=FLOW_INPUTS,
        default="noisy",
        help="with --evaluate: the frames the flow stage runs on in the recurrent pass: noisy "
        "(inference), clean (an oracle) or the network's frame-alone outputs (two passes)",
    )
    parser.add_argument(
        "--output-filter",
        action="store_true",
        help="with --evaluate: attach an output filter at its initial parameters (untrained, "
        "model/output_filter=recursive's) to checkpoints trained without one (before 2026-12-02, "
        "or with model/output_filter=none)",
    )
    add_run_arguments(parser, work_dir="bench_temporal_gain")
    args = parser.parse_args()
    if not (args.data_root / "davis2017_480p").is_dir():
        raise SystemExit(f"--data-root: no shared sample data (davis2017_480p) in {args.data_root}")
    torch.set_num_threads(args.threads)
    if args.evaluate:
        results = [r for path in args.evaluate for r in evaluate_checkpoint(path, args)]
        results += checkpoint_means(results)
        text = (
            f"Held-out temporal gain of trained checkpoints ({machine(args)})\n\n{table(results)}\n"
        )
        print(text)
        if args.out is not None:
            args.out.write_text(text)
        return
    results = [row for name in args.configs for row in run_config(name, args)]
    text = (
        f"Temporal gain after {args.minutes:g} min"
        f"{f' or {args.max_steps} steps' if args.max_steps else ''} of training per config "
        f"({machine(args)}; clip {args.clip_len}, patch {args.patch_size}, "
        f"batch {args.batch_size}, seed {args.seed})\n\n{table(results)}\n"
    )
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
