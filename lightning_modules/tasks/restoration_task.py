"""RestorationTask: trains a video restoration network with loss = Charbonnier + λ·bpp.

The network follows the contract of ``lightning_modules/stages/network.py`` (docs/ARCHITECTURE.md):
``net(lq (B,T,3,H,W), noise_level (B,) | None, return_maps) -> out`` with ``out.restored``,
``out.bpp``, ``out.bpp_y``, ``out.bpp_z`` and ``out.maps``; ``net.noise_channel`` (bool) says
whether it takes σ, and ``net.flow`` (optional) is the optical-flow stage, which gets its own
param group (``flow_lr_scale``) and can be frozen for the first ``freeze_flow_steps`` steps.

Logged keys (``stage`` = train / val / test): ``loss``, ``distortion``, ``bpp``, ``bpp_y``,
``bpp_z``, ``psnr``, ``ssim`` (val / test only) and ``train/rate_weight``. Learning rates are
left to Lightning's ``LearningRateMonitor`` callback (param groups are named ``net`` and
``flow``).
"""

import math
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from lightning_modules.tasks.finite_steps import STATE_KEY, FiniteStepGuard, check_finite_state
from lightning_modules.tasks.losses import charbonnier, clean_warp_loss
from lightning_modules.tasks.lr_schedules import (
    check_optimizer_arguments,
    configure_optimizer_and_scheduler,
)
from lightning_modules.tasks.metrics import METRIC_SPACES, ClipQualityMetrics, frame_psnr
from lightning_modules.tasks.network_inputs import flow_inputs, network_inputs
from lightning_modules.tasks.run_length import TimeBudgetSteps, time_budget_timer

OptimizerFactory = Callable[..., torch.optim.Optimizer]


@torch.no_grad()
def flow_is_untrained(flow: nn.Module | None) -> bool:
    """True for a flow stage with parameters (e.g. a zero-initialised SpyNet) that returns an
    all-zero flow for a pair of frames moving by 2 pixels; False for fixed estimators (no
    parameters: DIS, or the deliberate ``ZeroFlow`` ablation)."""
    if flow is None or not any(True for _ in flow.parameters()):
        return False
    parameter = next(flow.parameters())
    generator = torch.Generator().manual_seed(0)
    texture = torch.rand(1, 3, 64, 68, generator=generator)
    texture = torch.nn.functional.avg_pool2d(texture, 3, stride=1, padding=1)
    previous, current = texture[..., 2:], texture[..., :-2]
    was_training = flow.training
    flow.eval()
    try:
        motion = flow(current.to(parameter), previous.to(parameter))
    except (TypeError, ValueError, RuntimeError):  # not a flow(ref, supp) stage: cannot tell
        return False
    finally:
        flow.train(was_training)
    return bool(motion.abs().max() == 0)


SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


def _as_scalar(value: Any, like: torch.Tensor) -> torch.Tensor:
    """Net outputs such as ``bpp`` may be Python numbers for codec-free nets; make them tensors."""
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


class RestorationTask(pl.LightningModule):
    """Rate-regularised video restoration training, validation and testing.

    Args:
        net: the restoration network (see module docstring for its contract).
        optimizer: a partial ``params -> Optimizer`` (Hydra ``_partial_: true``); it receives
            param groups named ``net`` and ``flow``.
        scheduler: a partial ``optimizer -> LR scheduler`` or None. A ``total_steps`` argument
            left None is filled from ``trainer.estimated_stepping_batches``
            (see ``lr_schedules.warmup_cosine``).
        rate_weight: λ in ``loss = Charbonnier(restored, gt) + λ · bpp + β · align``.
        align_weight: β, the weight of the alignment loss ``losses.clean_warp_loss``: the
            network's refined flows warping the clean frame t-1 onto the clean frame t. It
            gives motion refinement (and a trainable flow stage) a motion target; the
            restoration loss alone taught refinement to add motion that is not there (see
            docs/ARCHITECTURE.md). Needs a network that returns ``out.flows``.
        rate_delay_steps: λ = 0 for the first N optimizer steps, so the recurrence can learn to
            carry the past in y before the rate term prices it (y's rate collapses to ~0 bits
            when λ > 0 from step 0; docs/ARCHITECTURE.md).
        rate_warmup_steps: after the delay, λ ramps linearly from 0 to ``rate_weight`` over these
            optimizer steps (0: full λ at once). Validation and test losses always use the full λ.
            A run too short for delay + warm-up gets both scaled down so that λ is full at half the
            run (logged): the default sample run still trains its entropy model. A run that
            ``trainer.max_time`` may end first is measured for its first steps and fitted to the
            steps its time allows (``run_length.TimeBudgetSteps``), so the schedule keeps its
            shape on slower and faster machines.
        charbonnier_eps: ε of the Charbonnier distortion ``sqrt(d² + ε²)``.
        flow_lr_scale: learning-rate multiplier of ``net.flow``'s parameters (own param group).
        freeze_flow_steps: ``net.flow`` is not updated during the first N optimizer steps.
        metric_space: ``"rgb"`` or ``"y"`` (BT.601 studio-range luma) for PSNR/SSIM.
        crop_border: pixels dropped at each side of every frame before the metrics.
        metric_edge_frames: frames left out of the TEST metrics at each end of every test clip
            (S2VD's NTURain convention drops 2; with whole-sequence test clips, as the data
            configs use, that is per sequence). Validation scores every frame.
        scheduler_interval: ``"step"`` or ``"epoch"``: when Lightning steps the scheduler.
        max_bad_steps: a step with a NaN/inf loss or gradient is skipped (``train/skipped_steps``);
            this many in a row stop training (``lightning_modules/tasks/finite_steps.py``).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        rate_weight: float = 0.01,
        align_weight: float = 0.0,
        rate_warmup_steps: int = 0,
        rate_delay_steps: int = 0,
        charbonnier_eps: float = 1e-3,
        flow_lr_scale: float = 0.125,
        freeze_flow_steps: int = 0,
        metric_space: str = "rgb",
        crop_border: int = 0,
        scheduler_interval: str = "step",
        metric_edge_frames: int = 0,
        max_bad_steps: int = 10,
    ) -> None:
        super().__init__()
        self.finite_steps = FiniteStepGuard(max_bad_steps, "RestorationTask")
        bounds = {  # name: (value, smallest allowed, whether the bound itself is allowed)
            "rate_weight": (rate_weight, 0, True),
            "align_weight": (align_weight, 0, True),
            "rate_warmup_steps": (rate_warmup_steps, 0, True),
            "rate_delay_steps": (rate_delay_steps, 0, True),
            "charbonnier_eps": (charbonnier_eps, 0, False),
            "flow_lr_scale": (flow_lr_scale, 0, True),
            "freeze_flow_steps": (freeze_flow_steps, 0, True),
            "crop_border": (crop_border, 0, True),
            "metric_edge_frames": (metric_edge_frames, 0, True),
        }
        for name, (value, low, inclusive) in bounds.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"RestorationTask: {name} must be a number, got {value!r}")
            if value < low or (value == low and not inclusive):
                raise ValueError(
                    f"RestorationTask: {name} must be {'>=' if inclusive else '>'} "
                    f"{low}, got {value}"
                )
        if metric_space not in METRIC_SPACES:
            raise ValueError(
                f"RestorationTask: metric_space must be one of {METRIC_SPACES}, got "
                f"{metric_space!r}"
            )
        check_optimizer_arguments("RestorationTask", optimizer, scheduler_interval)
        # The optimizer/scheduler partials stay out of the checkpoint's hyper_parameters: a
        # functools.partial there makes torch.load(weights_only=True), the default of torch >= 2.6
        # used by Trainer(ckpt_path=...), refuse the checkpoint. The resolved Hydra config
        # (stored by train.py) records them instead.
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.val_metrics = ClipQualityMetrics(metric_space, crop_border)
        self.test_metrics = ClipQualityMetrics(metric_space, crop_border, metric_edge_frames)
        self.test_records: list[dict[str, Any]] = []
        self.rate_schedule = (rate_delay_steps, rate_warmup_steps)  # (delay, warm-up) in use
        self.time_budget_steps = TimeBudgetSteps()

    # ----------------------------------------------------------------------------- network
    def forward(
        self,
        lq: torch.Tensor,
        noise_level: torch.Tensor | None = None,
        return_maps: bool = False,
        **flows: torch.Tensor,
    ) -> Any:
        """The network on a clip; ``flows``: ``flow_inputs`` of the batch (given flows)."""
        return self.net(lq, noise_level=noise_level, return_maps=return_maps, **flows)

    def _run_net(self, batch: dict[str, Any], return_maps: bool = False) -> Any:
        lq, noise_level = network_inputs(batch, self.net)
        flows = flow_inputs(batch, self.net)
        return self(lq, noise_level=noise_level, return_maps=return_maps, **flows)

    @staticmethod
    def _require_gt(batch: dict[str, Any], stage: str) -> torch.Tensor:
        gt = batch.get("gt")
        if gt is None:
            raise KeyError(
                f"RestorationTask: {stage} needs clean targets but the batch has no "
                f"'gt' key (use a paired data set for {stage})"
            )
        if gt.shape != batch["lq"].shape:
            raise ValueError(
                f"RestorationTask: batch['gt'] {tuple(gt.shape)} must match "
                f"batch['lq'] {tuple(batch['lq'].shape)}"
            )
        return gt

    def rate_weight_at(self, step: int) -> float:
        """λ after ``step`` optimizer steps: 0 for ``rate_delay_steps``, then a linear ramp from 0
        over ``rate_warmup_steps``: λ · clip((step − delay) / warmup, 0, 1)."""
        delay, warmup = self.rate_schedule
        since = step - delay
        if since < 0:
            return 0.0
        if warmup <= 0:
            return float(self.hparams.rate_weight)
        return float(self.hparams.rate_weight) * min(1.0, since / warmup)

    # ---------------------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        gt = self._require_gt(batch, "training")
        out = self._run_net(batch)
        distortion = charbonnier(out.restored, gt, eps=self.hparams.charbonnier_eps)
        rate_weight = self.rate_weight_at(self.global_step)
        bpp = _as_scalar(out.bpp, distortion)
        loss = distortion + rate_weight * bpp
        align = None
        if self.hparams.align_weight > 0 and getattr(out, "flows", None) is not None:
            align = clean_warp_loss(out.flows, gt, self.hparams.charbonnier_eps)
            loss = loss + self.hparams.align_weight * align
        self.finite_steps.observe_loss(loss)
        psnr = frame_psnr(out.restored, gt, self.hparams.metric_space, self.hparams.crop_border)
        values = {
            "loss": loss.detach(),
            "distortion": distortion.detach(),
            "bpp": bpp.detach(),
            "bpp_y": _as_scalar(out.bpp_y, distortion).detach(),
            "bpp_z": _as_scalar(out.bpp_z, distortion).detach(),
            "psnr": psnr.mean(),
            "rate_weight": rate_weight,  # a float: Lightning puts it on the module device
        }
        if align is not None:
            values["align"] = align.detach()
        batch_size = gt.shape[0]
        for key, value in values.items():
            self.log(
                f"train/{key}",
                value,
                on_step=True,
                on_epoch=False,
                sync_dist=True,
                prog_bar=key in ("loss", "psnr"),
                batch_size=batch_size,
            )
        return loss

    def on_fit_start(self) -> None:
        """Fit the rate schedule to the run's length (see ``rate_delay_steps``); warn (once, rank
        zero) when the flow stage is a learnable one that reports no motion."""
        self.rate_schedule = (self.hparams.rate_delay_steps, self.hparams.rate_warmup_steps)
        self.time_budget_steps.reset()
        self._fit_rate_schedule(self.trainer.estimated_stepping_batches, "")
        if flow_is_untrained(getattr(self.net, "flow", None)):
            rank_zero_warn(
                "the flow stage outputs zero flow on moving frames: it has no pretrained weights, "
                "so the recurrence starts unaligned and may add little on moving video. Use "
                "model/flow=dis (no training needed), or model.flow.pretrained=<SPyNet "
                "checkpoint> (python train.py experiment=flow_pretrain makes one).",
                category=UserWarning,
            )

    def _fit_rate_schedule(self, total: float, how: str) -> None:
        """Scale the configured delay + warm-up down so that λ is full at half a run of
        ``total`` steps, when they do not fit in it (``how`` says where ``total`` came from)."""
        delay, warmup = self.hparams.rate_delay_steps, self.hparams.rate_warmup_steps
        if delay + warmup > 0 and math.isfinite(total) and delay + warmup >= total:
            scale = (total // 2) / (delay + warmup)
            self.rate_schedule = (int(delay * scale), int(warmup * scale))
            rank_zero_info(  # expected in short runs (the default sample run): not a warning
                f"RestorationTask: the rate delay + warm-up ({delay} + {warmup} steps) is not "
                f"shorter than the run ({int(total)} steps{how}); using {self.rate_schedule[0]} "
                f"+ {self.rate_schedule[1]} so that λ is full at half the run"
            )

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """In a run that ``trainer.max_time`` may end, fit the rate schedule to the steps the
        time allows, once, after the first ``run_length.MEASURE_STEPS`` steps are timed."""
        timer = time_budget_timer(self.trainer)
        if timer is None or self.time_budget_steps.done:
            return
        total = self.time_budget_steps.observe(
            self.global_step, timer.time_elapsed(), timer.time_remaining()
        )
        if total is None:
            return
        # Every rank gets here at the same step; rank 0's clock decides for all of them.
        total = self.trainer.strategy.broadcast(total, src=0)
        bound = self.trainer.estimated_stepping_batches
        if total < bound:
            seconds = timer.time_remaining() + timer.time_elapsed()
            self._fit_rate_schedule(
                total, f", estimated: {seconds / 60:g} min of trainer.max_time at this pace"
            )

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Freeze ``net.flow`` during the first ``freeze_flow_steps`` optimizer steps.

        Its gradients are dropped (set to None) just before the step, so the optimizer skips
        those parameters entirely (no update, no weight decay, no moment statistics). This keeps
        requires_grad unchanged, which DDP needs (its reducer is built once), and works with
        any scheduler, which would overwrite a zero learning rate. A step with a NaN/inf loss or
        gradient is skipped the same way (``finite_steps.FiniteStepGuard``).
        """
        if not self.finite_steps.check(self, optimizer):
            return
        if self.global_step < self.hparams.freeze_flow_steps:
            for param in self._flow_parameters():
                param.grad = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_finite_state(checkpoint["state_dict"], "RestorationTask")
        checkpoint[STATE_KEY] = self.finite_steps.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.finite_steps.load_state_dict(checkpoint.get(STATE_KEY, {}))

    def _flow_parameters(self) -> list[nn.Parameter]:
        flow = getattr(self.net, "flow", None)
        if not isinstance(flow, nn.Module):
            return []
        return [p for p in flow.parameters() if p.requires_grad]

    def configure_optimizers(self) -> dict[str, Any]:
        flow_params = self._flow_parameters()
        flow_ids = {id(p) for p in flow_params}
        net_params = [p for p in self.parameters() if p.requires_grad and id(p) not in flow_ids]
        groups = [{"params": net_params, "name": "net"}]
        if flow_params:
            groups.append({"params": flow_params, "name": "flow"})
        optimizer = self.optimizer_factory(groups)
        if flow_params:
            optimizer.param_groups[1]["lr"] = (
                optimizer.param_groups[0]["lr"] * self.hparams.flow_lr_scale
            )
        return configure_optimizer_and_scheduler(
            optimizer, self.scheduler_factory, self.trainer, self.hparams.scheduler_interval
        )

    # ------------------------------------------------------------------ validation and test
    def _evaluate(
        self, batch: dict[str, Any], stage: str, metrics: ClipQualityMetrics, return_maps: bool
    ) -> tuple[Any, torch.Tensor | None, torch.Tensor | None]:
        """Run the net, log rate (and distortion/quality when ``gt`` exists); per-frame values."""
        out = self._run_net(batch, return_maps=return_maps)
        batch_size = batch["lq"].shape[0]
        like = out.restored
        logged = {
            "bpp": _as_scalar(out.bpp, like),
            "bpp_y": _as_scalar(out.bpp_y, like),
            "bpp_z": _as_scalar(out.bpp_z, like),
        }
        psnr = ssim = None
        if batch.get("gt") is not None:
            gt = self._require_gt(batch, stage)
            distortion = charbonnier(out.restored, gt, eps=self.hparams.charbonnier_eps)
            logged["distortion"] = distortion
            logged["loss"] = distortion + self.hparams.rate_weight * logged["bpp"]
            psnr, ssim = metrics.update(out.restored, gt)
            self.log(
                f"{stage}/psnr",
                metrics.psnr,
                on_step=False,
                on_epoch=True,
                prog_bar=True,
                batch_size=batch_size,
            )
            self.log(
                f"{stage}/ssim", metrics.ssim, on_step=False, on_epoch=True, batch_size=batch_size
            )
        for key, value in logged.items():
            self.log(
                f"{stage}/{key}",
                value,
                on_step=False,
                on_epoch=True,
                sync_dist=True,
                batch_size=batch_size,
            )
        return out, psnr, ssim

    def validation_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._evaluate(batch, "val", self.val_metrics, return_maps=False)

    def on_test_epoch_start(self) -> None:
        self.test_records = []

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        """Log test metrics and append one record per clip to ``test_records``.

        Record keys: ``name``, ``sigma`` (float, [0, 1] units), ``psnr``/``ssim`` (means of the
        per-frame values over the scored frames, see ``metric_edge_frames``; NaN without ``gt``),
        ``num_frames`` (frames scored), ``psnr_per_frame``/``ssim_per_frame`` and ``frame_idx``
        (every frame of the clip) and ``bpp``. The net reports one bpp per batch, so
        ``bpp`` is per clip only with test batch size 1 (as eval uses). Sequences split into
        several clips are averaged per frame by grouping records on ``name``.
        """
        out, psnr, ssim = self._evaluate(batch, "test", self.test_metrics, return_maps=False)
        lq = batch["lq"]
        batch_size, num_frames = lq.shape[:2]
        names = batch.get("name") or [f"clip{batch_idx}_{i}" for i in range(batch_size)]
        sigma = batch.get("sigma")
        sigma = (
            torch.as_tensor(sigma).reshape(-1).tolist() if sigma is not None else [0.0] * batch_size
        )
        frame_idx = batch.get("frame_idx")
        bpp = float(_as_scalar(out.bpp, out.restored))
        nan_frames = [math.nan] * num_frames
        scored = self.test_metrics.scored_frames(num_frames)
        num_scored = scored.stop - scored.start
        for i in range(batch_size):
            psnr_frames = psnr[i].tolist() if psnr is not None else nan_frames
            ssim_frames = ssim[i].tolist() if ssim is not None else nan_frames
            self.test_records.append(
                {
                    "name": names[i],
                    "sigma": float(sigma[i]),
                    "psnr": sum(psnr_frames[scored]) / num_scored,
                    "ssim": sum(ssim_frames[scored]) / num_scored,
                    "bpp": bpp,
                    "num_frames": int(num_scored),
                    "psnr_per_frame": psnr_frames,
                    "ssim_per_frame": ssim_frames,
                    "frame_idx": (
                        frame_idx[i].tolist() if frame_idx is not None else list(range(num_frames))
                    ),
                }
            )

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Restored clip (B, T, 3, H, W), clamped to [0, 1]."""
        return self._run_net(batch).restored.clamp(0.0, 1.0)
