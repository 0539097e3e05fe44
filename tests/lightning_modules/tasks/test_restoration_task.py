"""RestorationTask: loss identity, λ ramp, flow param group and freezing, overfitting, test records.

A small stand-in network honours the VideoRestorationNet contract (docs/ARCHITECTURE.md), so the
task is tested independently of the real stages.
"""

import functools
import logging
import re

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from callbacks.validation_visuals import clip_visuals
from lightning_modules.stages.network import NetworkOutput
from lightning_modules.tasks.losses import clean_warp_loss
from lightning_modules.tasks.lr_schedules import warmup_cosine
from lightning_modules.tasks.metrics import frame_psnr_ssim
from lightning_modules.tasks.restoration_task import RestorationTask
from tests.conftest_config import tiny_network
from tests.lightning_helpers import one_intra_op_thread, tiny_trainer  # noqa: F401 (autouse)


class StandInNet(nn.Module):
    """Residual conv on [frame, previous frame, σ map]; a learnable 'rate' and a flow stage."""

    noise_channel = True

    def __init__(self) -> None:
        super().__init__()
        self.flow = nn.Conv2d(6, 2, 3, padding=1)
        self.body = nn.Conv2d(3 + 3 + 2 + 1, 3, 3, padding=1)
        self.log_rate = nn.Parameter(torch.zeros(()))
        self.seen_noise_levels = []

    def forward(self, lq, noise_level=None, return_maps=False):
        self.seen_noise_levels.append(noise_level)
        b, t, c, h, w = lq.shape
        frames = lq.flatten(0, 1)
        previous = torch.cat([lq[:, :1], lq[:, :-1]], dim=1).flatten(0, 1)
        flow = self.flow(torch.cat([frames, previous], dim=1))
        sigma = noise_level.view(b, 1).expand(b, t).reshape(-1, 1, 1, 1).expand(-1, 1, h, w)
        restored = frames + self.body(torch.cat([frames, previous, flow, sigma], dim=1))
        bpp_y = torch.exp(self.log_rate)
        bpp_z = 0.25 * torch.exp(self.log_rate)
        pixels = b * t * h * w
        maps = []
        if return_maps:
            flows = flow.detach().view(b, t, 2, h, w)
            for i in range(t):
                latent = torch.rand(b, 4, h // 4, w // 4)
                maps.append(
                    {
                        "q": latent + 0.5,
                        "mu": latent - 0.5,
                        "sigma": latent + 0.11,
                        "bits": latent * 3,
                        "flow": flows[:, i],
                        "flow_refined": flows[:, i] + 0.5,
                    }
                )
        return NetworkOutput(
            restored.view(b, t, c, h, w),
            bpp_y * pixels,
            bpp_z * pixels,
            bpp_y + bpp_z,
            bpp_y,
            bpp_z,
            maps,
        )


class FixedOutputNet(nn.Module):
    """restored = lq + offset (offset starts at 0); bpp = 0.5 + 0·offset (known answers)."""

    noise_channel = False

    def __init__(self) -> None:
        super().__init__()
        self.offset = nn.Parameter(torch.zeros(()))

    def forward(self, lq, noise_level=None, return_maps=False):
        assert noise_level is None
        bpp = 0.5 + 0.0 * self.offset
        return NetworkOutput(lq + self.offset, bpp, bpp * 0, bpp, 0.8 * bpp, 0.2 * bpp)


class ClipSet(Dataset):
    """Fixed tiny noisy clips: dict items as the datamodules produce them."""

    def __init__(self, count=2, frames=3, size=16, sigma=25 / 255, with_gt=True, seed=0):
        gen = torch.Generator().manual_seed(seed)
        self.gt = torch.rand(count, frames, 3, size, size, generator=gen)
        self.lq = self.gt + sigma * torch.randn(self.gt.shape, generator=gen)
        self.sigma, self.with_gt, self.frames = sigma, with_gt, frames

    def __len__(self):
        return len(self.gt)

    def __getitem__(self, i):
        item = {
            "lq": self.lq[i],
            "sigma": torch.tensor(self.sigma),
            "name": f"seq{i}",
            "frame_idx": torch.arange(self.frames),
        }
        if self.with_gt:
            item["gt"] = self.gt[i]
        return item


def _adam(lr=1e-2):
    return functools.partial(torch.optim.Adam, lr=lr)


def test_loss_is_distortion_plus_rate_weight_times_bpp(tmp_path):
    torch.manual_seed(0)
    data = ClipSet(count=2, sigma=0.0)
    data.lq = data.gt + 0.3  # Charbonnier = sqrt(0.3² + ε²) exactly
    task = RestorationTask(FixedOutputNet(), _adam(), rate_weight=0.1, charbonnier_eps=0.01)
    trainer = tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(task, DataLoader(data, batch_size=2))
    metrics = trainer.callback_metrics
    distortion = (0.3**2 + 0.01**2) ** 0.5
    assert metrics["train/distortion"].item() == pytest.approx(distortion, rel=1e-5)
    assert metrics["train/bpp"].item() == pytest.approx(0.5)
    assert metrics["train/bpp_y"].item() == pytest.approx(0.4)
    assert metrics["train/loss"].item() == pytest.approx(distortion + 0.1 * 0.5, rel=1e-5)
    psnr, _ = frame_psnr_ssim(data.lq, data.gt)
    assert metrics["train/psnr"].item() == pytest.approx(psnr.mean().item(), rel=1e-5)


class _RateWeights(pl.Callback):
    """Records the logged λ and (loss, distortion, bpp) after every training step."""

    def __init__(self):
        self.rate_weights, self.losses = [], []

    def on_train_batch_end(self, trainer, *args):
        metrics = trainer.callback_metrics
        self.rate_weights.append(metrics["train/rate_weight"].item())
        self.losses.append(
            tuple(metrics[f"train/{k}"].item() for k in ("loss", "distortion", "bpp"))
        )


def test_rate_weight_ramps_linearly_from_zero(tmp_path):
    task = RestorationTask(StandInNet(), _adam(), rate_weight=0.2, rate_warmup_steps=4)
    assert [task.rate_weight_at(s) for s in (0, 1, 2, 4, 10)] == pytest.approx(
        [0.0, 0.05, 0.1, 0.2, 0.2]
    )
    seen = _RateWeights()
    trainer = tiny_trainer(tmp_path, max_steps=5, limit_val_batches=0, callbacks=[seen])
    trainer.fit(task, DataLoader(ClipSet(count=1), batch_size=1))
    assert seen.rate_weights == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    for weight, (loss, distortion, bpp) in zip(seen.rate_weights, seen.losses):
        assert loss == pytest.approx(distortion + weight * bpp, rel=1e-5)
    assert RestorationTask(StandInNet(), _adam(), rate_weight=0.2).rate_weight_at(0) == 0.2


def test_rate_delay_holds_lambda_at_zero_then_ramps(tmp_path):
    task = RestorationTask(
        StandInNet(), _adam(), rate_weight=0.2, rate_delay_steps=3, rate_warmup_steps=4
    )
    assert [task.rate_weight_at(s) for s in (0, 2, 3, 4, 5, 7, 100)] == pytest.approx(
        [0.0, 0.0, 0.0, 0.05, 0.1, 0.2, 0.2]
    )
    sharp = RestorationTask(StandInNet(), _adam(), rate_weight=0.2, rate_delay_steps=3)
    assert [sharp.rate_weight_at(s) for s in (2, 3)] == [0.0, 0.2]
    seen = _RateWeights()
    trainer = tiny_trainer(tmp_path, max_steps=8, limit_val_batches=0, callbacks=[seen])
    trainer.fit(task, DataLoader(ClipSet(count=1), batch_size=1))
    assert seen.rate_weights == pytest.approx([0.0, 0.0, 0.0, 0.0, 0.05, 0.1, 0.15, 0.2])
    for loss, distortion, bpp in seen.losses[:4]:  # inside the delay: the distortion alone
        assert bpp > 0 and loss == pytest.approx(distortion)
    with pytest.raises(ValueError, match="rate_delay_steps must be >= 0"):
        RestorationTask(StandInNet(), _adam(), rate_delay_steps=-1)


def test_rate_schedule_longer_than_the_run_is_scaled_to_half_of_it(tmp_path, caplog):
    task = RestorationTask(
        StandInNet(), _adam(), rate_weight=0.2, rate_delay_steps=30, rate_warmup_steps=10
    )
    trainer = tiny_trainer(tmp_path, max_steps=8, limit_val_batches=0)
    with caplog.at_level(logging.INFO):
        trainer.fit(task, DataLoader(ClipSet(count=1), batch_size=1))
    assert re.search(r"\(30 \+ 10 steps\).*run \(8 steps\); using 3 \+ 1", caplog.text)
    assert task.rate_schedule == (3, 1)
    assert [task.rate_weight_at(s) for s in (2, 3, 4)] == pytest.approx([0.0, 0.0, 0.2])
    assert trainer.callback_metrics["train/rate_weight"].item() == pytest.approx(0.2)


class _StepClockTimer(pl.callbacks.Timer):
    """A Timer whose clock advances ``seconds_per_step`` at every training batch: what
    ``trainer.max_time`` builds, on a clock the test controls."""

    def __init__(self, seconds: float, seconds_per_step: float) -> None:
        super().__init__(duration={"seconds": seconds}, interval="step")
        self.now, self.seconds_per_step = 0.0, seconds_per_step

    def on_train_batch_start(self, *args) -> None:
        self.now += self.seconds_per_step

    def time_elapsed(self, stage="train") -> float:
        return self.now


def test_rate_schedule_is_fitted_to_the_steps_a_time_budget_allows(tmp_path, caplog):
    """100 s at 1 s per step: 100 steps, so 60 + 40 becomes 30 + 20 after 21 timed steps."""
    task = RestorationTask(
        StandInNet(), _adam(), rate_weight=0.2, rate_delay_steps=60, rate_warmup_steps=40
    )
    seen = _RateWeights()
    timer = _StepClockTimer(seconds=100, seconds_per_step=1.0)
    trainer = tiny_trainer(
        tmp_path, max_steps=-1, max_epochs=-1, limit_val_batches=0, callbacks=[timer, seen]
    )
    with caplog.at_level(logging.INFO):
        trainer.fit(task, DataLoader(ClipSet(count=1), batch_size=1))
    assert trainer.global_step == 100
    assert re.search(r"\(60 \+ 40 steps\).*run \(100 steps, estimated: 1\.66667 min", caplog.text)
    assert task.rate_schedule == (30, 20)
    assert seen.rate_weights[:30] == [0.0] * 30  # both delays: the configured one, the fitted one
    assert seen.rate_weights[40] == pytest.approx(0.2 * 10 / 20)
    assert seen.rate_weights[-1] == pytest.approx(0.2)
    # A time budget longer than the steps: the step bound's fit stands, nothing is re-fitted.
    caplog.clear()
    task = RestorationTask(
        StandInNet(), _adam(), rate_weight=0.2, rate_delay_steps=60, rate_warmup_steps=40
    )
    trainer = tiny_trainer(
        tmp_path,
        max_steps=30,
        limit_val_batches=0,
        callbacks=[_StepClockTimer(seconds=1000, seconds_per_step=1.0)],
    )
    with caplog.at_level(logging.INFO):
        trainer.fit(task, DataLoader(ClipSet(count=1), batch_size=1))
    assert task.rate_schedule == (9, 6)
    assert "estimated" not in caplog.text


def test_noise_level_comes_from_batch_sigma(tmp_path):
    net = StandInNet()
    task = RestorationTask(net, _adam())
    tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(
        task, DataLoader(ClipSet(count=2, sigma=30 / 255), batch_size=2)
    )
    assert torch.allclose(net.seen_noise_levels[0], torch.full((2,), 30 / 255))


class _Snapshots(pl.Callback):
    def __init__(self):
        self.flow, self.body = [], []

    def on_train_batch_end(self, trainer, pl_module, *args):
        self.flow.append(pl_module.net.flow.weight.detach().clone())
        self.body.append(pl_module.net.body.weight.detach().clone())


def test_flow_has_own_scaled_param_group_and_is_frozen_first(tmp_path):
    torch.manual_seed(0)
    net = StandInNet()
    initial_flow = net.flow.weight.detach().clone()
    initial_body = net.body.weight.detach().clone()
    scheduler = functools.partial(warmup_cosine, warmup_steps=2, total_steps=None)
    task = RestorationTask(
        net, _adam(1e-2), scheduler=scheduler, flow_lr_scale=0.25, freeze_flow_steps=2
    )
    snapshots = _Snapshots()
    trainer = tiny_trainer(tmp_path, max_steps=4, limit_val_batches=0, callbacks=[snapshots])
    trainer.fit(task, DataLoader(ClipSet(count=1), batch_size=1))

    groups = trainer.optimizers[0].param_groups
    assert [g["name"] for g in groups] == ["net", "flow"]
    flow_ids = {id(p) for p in net.flow.parameters()}
    assert {id(p) for p in groups[1]["params"]} == flow_ids
    assert not flow_ids & {id(p) for p in groups[0]["params"]}
    assert groups[1]["lr"] == pytest.approx(0.25 * groups[0]["lr"])
    assert groups[1]["initial_lr"] == pytest.approx(0.25 * 1e-2)

    assert torch.equal(snapshots.flow[0], initial_flow)  # after step 1
    assert torch.equal(snapshots.flow[1], initial_flow)  # after step 2
    assert not torch.equal(snapshots.flow[2], initial_flow)  # step 3 updates the flow
    assert not torch.equal(snapshots.body[0], initial_body)  # the rest trains from step 1


def test_overfits_a_fixed_tiny_batch(tmp_path):
    torch.manual_seed(0)
    task = RestorationTask(StandInNet(), _adam(1e-2), rate_weight=0.01)
    losses = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, *args):
            losses.append(float(outputs["loss"]))

    trainer = tiny_trainer(tmp_path, max_steps=40, limit_val_batches=0, callbacks=[Record()])
    trainer.fit(task, DataLoader(ClipSet(count=2), batch_size=2))
    assert len(losses) == 40
    assert losses[-1] < 0.5 * losses[0]


def test_validation_logs_every_metric(tmp_path):
    torch.manual_seed(0)
    task = RestorationTask(StandInNet(), _adam())
    trainer = tiny_trainer(tmp_path, max_steps=1)
    data = DataLoader(ClipSet(count=2), batch_size=1)
    trainer.validate(task, data, verbose=False)
    for key in ("loss", "distortion", "bpp", "bpp_y", "bpp_z", "psnr", "ssim"):
        assert torch.isfinite(trainer.callback_metrics[f"val/{key}"]), key


def test_test_records_per_clip(tmp_path):
    torch.manual_seed(0)
    task = RestorationTask(StandInNet(), _adam(), metric_space="y", crop_border=1)
    data = ClipSet(count=3, sigma=30 / 255)
    trainer = tiny_trainer(tmp_path)
    trainer.test(task, DataLoader(data, batch_size=1), verbose=False)
    records = task.test_records
    assert [r["name"] for r in records] == ["seq0", "seq1", "seq2"]
    assert all(r["sigma"] == pytest.approx(30 / 255) and r["num_frames"] == 3 for r in records)
    assert records[0]["frame_idx"] == [0, 1, 2]
    with torch.no_grad():
        restored = task.net(data.lq[:1], noise_level=torch.tensor([30 / 255])).restored
    psnr, ssim = frame_psnr_ssim(restored, data.gt[:1], metric_space="y", crop_border=1)
    assert records[0]["psnr_per_frame"] == pytest.approx(psnr[0].tolist(), rel=1e-5)
    assert records[0]["psnr"] == pytest.approx(psnr.mean().item(), rel=1e-5)
    assert records[0]["ssim"] == pytest.approx(ssim.mean().item(), rel=1e-5)
    mean_psnr = sum(r["psnr"] for r in records) / 3
    assert trainer.callback_metrics["test/psnr"].item() == pytest.approx(mean_psnr, rel=1e-5)
    assert records[0]["bpp"] == pytest.approx(trainer.callback_metrics["test/bpp"].item())


def test_test_records_leave_out_edge_frames(tmp_path):
    """NTURain-style scoring: frames [k:T-k] of each test clip count, every frame is kept."""
    torch.manual_seed(0)
    task = RestorationTask(StandInNet(), _adam(), metric_edge_frames=1)
    data = ClipSet(count=2, frames=4, sigma=30 / 255)
    trainer = tiny_trainer(tmp_path)
    trainer.test(task, DataLoader(data, batch_size=1), verbose=False)
    record = task.test_records[0]
    assert record["num_frames"] == 2 and len(record["psnr_per_frame"]) == 4
    assert record["psnr"] == pytest.approx(sum(record["psnr_per_frame"][1:3]) / 2, rel=1e-6)
    mean_psnr = sum(r["psnr"] for r in task.test_records) / 2
    assert trainer.callback_metrics["test/psnr"].item() == pytest.approx(mean_psnr, rel=1e-5)


def test_sets_without_gt_evaluate_rate_only_and_cannot_train(tmp_path):
    task = RestorationTask(StandInNet(), _adam())
    trainer = tiny_trainer(tmp_path)
    trainer.test(task, DataLoader(ClipSet(count=1, with_gt=False), batch_size=1), verbose=False)
    assert "test/psnr" not in trainer.callback_metrics
    assert torch.isfinite(trainer.callback_metrics["test/bpp"])
    assert task.test_records[0]["psnr"] != task.test_records[0]["psnr"]  # NaN
    with pytest.raises(KeyError, match="'gt'"):
        tiny_trainer(tmp_path, max_steps=1).fit(
            task, DataLoader(ClipSet(count=1, with_gt=False), batch_size=1)
        )


def test_bad_arguments_and_batches():
    with pytest.raises(ValueError, match="metric_space"):
        RestorationTask(StandInNet(), _adam(), metric_space="yuv")
    with pytest.raises(ValueError, match="rate_weight"):
        RestorationTask(StandInNet(), _adam(), rate_weight=-1)
    with pytest.raises(ValueError, match="charbonnier_eps"):
        RestorationTask(StandInNet(), _adam(), charbonnier_eps=0)
    with pytest.raises(ValueError, match="scheduler_interval"):
        RestorationTask(StandInNet(), _adam(), scheduler_interval="batch")
    with pytest.raises(TypeError, match="optimizer"):
        RestorationTask(StandInNet(), optimizer=None)
    task = RestorationTask(StandInNet(), _adam())
    with pytest.raises(ValueError, match=r"batch\['lq'\]"):
        task._run_net({"lq": torch.zeros(1, 3, 8, 8)})
    with pytest.raises(KeyError, match="sigma"):
        task._run_net({"lq": torch.zeros(1, 2, 3, 8, 8)})


def test_checkpoint_reloads_with_weights_only(tmp_path):
    task = RestorationTask(StandInNet(), _adam(), rate_weight=0.05)
    trainer = tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(task, DataLoader(ClipSet(count=1), batch_size=1))
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)  # the torch >= 2.6 default
    assert checkpoint["hyper_parameters"]["rate_weight"] == 0.05
    assert "optimizer" not in checkpoint["hyper_parameters"]
    assert any(k.startswith("net.flow.") for k in checkpoint["state_dict"])


def test_real_network_trains_and_gives_codec_maps(tmp_path):
    torch.manual_seed(0)
    net = tiny_network(
        "adaptive_q",
        [
            "model.channels=8",
            "model.codec.latent_channels=8",
            "model.restoration.num_blocks=[1,1,1]",
        ],
    )
    task = RestorationTask(net, _adam(2e-3), freeze_flow_steps=2)
    losses = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, *args):
            losses.append(float(outputs["loss"]))

    data = ClipSet(count=2, frames=2, size=32)
    trainer = tiny_trainer(tmp_path, max_steps=8, limit_val_batches=0, callbacks=[Record()])
    trainer.fit(task, DataLoader(data, batch_size=2))
    assert losses[-1] < losses[0]
    evaluator = tiny_trainer(tmp_path)
    evaluator.validate(task, DataLoader(data, batch_size=1), verbose=False)
    val_bpp = evaluator.callback_metrics["val/bpp"]
    assert torch.isfinite(val_bpp) and val_bpp > 0
    last = clip_visuals(task.eval(), next(iter(DataLoader(data, batch_size=2)))).maps[-1]
    assert {"q", "mu", "sigma", "bits", "flow", "flow_refined"} <= set(last)
    assert last["q"].min() >= 0.5  # the adaptive step's lower bound


@pytest.mark.slow
def test_validation_metrics_are_synced_across_two_processes(tmp_path):
    """ddp_spawn on 2 CPU processes: val/psnr is the mean over all clips of both ranks."""
    torch.manual_seed(0)
    net = tiny_network(
        "no_codec",
        [
            "model.channels=8",
            "model.restoration.num_blocks=[1,1,1]",
            "model.noise_channel=false",
            "model/mv_refine=none",
        ],
    )
    data = ClipSet(count=4, frames=2, size=16, sigma=0.0)
    data.lq = data.gt + 0.1 * torch.arange(1, 5).view(4, 1, 1, 1, 1) * torch.randn(data.gt.shape)
    items = [{"lq": data.lq[i], "gt": data.gt[i], "name": f"c{i}"} for i in range(4)]
    task = RestorationTask(net, _adam())
    trainer = tiny_trainer(tmp_path, devices=2, strategy="ddp_spawn")
    trainer.validate(task, DataLoader(items, batch_size=1), verbose=False)
    with torch.no_grad():
        psnr, _ = frame_psnr_ssim(net(data.lq).restored, data.gt)
    per_clip = psnr.mean(dim=1)
    assert per_clip.max() - per_clip.min() > 3  # the clips differ, so a per-rank mean would show
    assert trainer.callback_metrics["val/psnr"].item() == pytest.approx(
        per_clip.mean().item(), rel=1e-5
    )


def test_an_untrained_learnable_flow_stage_is_detected():
    from lightning_modules.stages.spynet import SpyNet
    from lightning_modules.stages.zero_flow import ZeroFlow
    from lightning_modules.tasks.restoration_task import flow_is_untrained

    spynet = SpyNet(num_levels=3, scale=0.5)
    assert flow_is_untrained(spynet)  # zero-initialised last convs: no motion at all
    with torch.no_grad():
        spynet.basic_module[-1].basic_module[-1].bias.fill_(0.5)
    assert not flow_is_untrained(spynet)
    assert not flow_is_untrained(ZeroFlow())  # the deliberate ablation: no warning
    assert not flow_is_untrained(None)


def test_flow_from_the_batch_reaches_the_network():
    """A batch's "flow" (the loader's full-frame flow) is what the network aligns with."""
    net = tiny_network("no_codec", ["model.restoration.num_blocks=[1,1,1]"]).eval()
    task = RestorationTask(net, _adam(), rate_weight=0.0)
    batch = {"lq": torch.rand(1, 3, 3, 16, 16), "sigma": torch.tensor([0.1])}
    flows = 2.0 * torch.randn(1, 3, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        restored = task._run_net({**batch, "flow": flows}).restored
        expected = net(batch["lq"], batch["sigma"], flows=flows).restored
        own = task._run_net(batch).restored
    torch.testing.assert_close(restored, expected)
    assert not torch.allclose(restored[:, 1:], own[:, 1:])


def test_flow_from_the_batch_with_a_trainable_flow_stage_is_refused():
    task = RestorationTask(StandInNet(), _adam(), rate_weight=0.0)
    batch = {**ClipSet()[0], "flow": torch.zeros(3, 2, 16, 16)}
    batch = {k: v[None] if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    with pytest.raises(ValueError, match=r"flow stage Conv2d has trainable weights \(weight"):
        task._run_net(batch)


def test_alignment_loss_is_added_and_trains_motion_refinement(tmp_path):
    """loss = distortion + λ·bpp + β·clean_warp_loss(out.flows, gt); its gradient reaches the
    motion refinement, which the restoration loss alone barely steers."""
    torch.manual_seed(0)
    net = tiny_network("no_codec", ["model.restoration.num_blocks=[1,1,1]", "model/flow=zero"])
    task = RestorationTask(net, _adam(), rate_weight=0.0, align_weight=2.0)
    trainer = tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(task, DataLoader(ClipSet(count=1, size=32), batch_size=1))
    metrics = trainer.callback_metrics
    assert metrics["train/align"].item() > 0.05  # zero flow between random frames
    assert metrics["train/loss"].item() == pytest.approx(
        metrics["train/distortion"].item() + 2.0 * metrics["train/align"].item(), rel=1e-5
    )
    batch = {k: v[None] for k, v in ClipSet(count=1, size=32)[0].items() if k != "name"}
    out = task._run_net(batch)
    refine = net.mv_refine.to_residual.weight
    (align_grad,) = torch.autograd.grad(clean_warp_loss(out.flows, batch["gt"]), refine)
    assert align_grad.abs().sum() > 0
