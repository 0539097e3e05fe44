"""The config tree: every yaml composes and validates; presets, stage swaps and switches work."""

import hydra
import pytest
import torch
from hydra import initialize_config_dir
from omegaconf import OmegaConf

from lightning_modules.run.config_schema import validate_config
from lightning_modules.stages.attention import ConcatFusion
from tests.conftest_config import CONF_DIR, PRESETS, compose_config

ENTRY_CONFIGS = {"train.yaml", "eval.yaml", "restore.yaml"}
# Options that only make sense with another one (the flow pre-training's data and its model).
COMPANIONS = {("data", "flow_pairs"): ["model=flow_pretrain"]}


def _group_options() -> list[tuple[str, str]]:
    """(group, option) for every yaml below conf/, e.g. ('model/codec', 'fixed')."""
    options = []
    for path in sorted(CONF_DIR.rglob("*.yaml")):
        relative = path.relative_to(CONF_DIR)
        if str(relative) in ENTRY_CONFIGS:
            continue
        options.append((str(relative.parent), relative.stem))
    return options


@pytest.fixture()
def hydra_ctx():
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        yield


def test_every_config_group_is_found():
    groups = {group for group, _ in _group_options()}
    expected = {
        "model",
        "model/flow",
        "model/codec",
        "model/alignment",
        "model/restoration",
        "model/mv_refine",
        "model/fusion",
        "trainer",
        "callbacks",
        "logger",
        "paths",
        "hydra",
        "hydra/launcher",
        "experiment",
        "hparams_search",
        "debug",
        "data",
    }
    assert expected <= groups
    assert {"adaptive_q", "channel_q", "fixed_q", "no_codec", "flow_pretrain"} <= {
        option for group, option in _group_options() if group == "model"
    }


@pytest.mark.parametrize(("group", "option"), _group_options(), ids=lambda v: str(v))
def test_every_yaml_composes_and_validates(hydra_ctx, tmp_path, group, option):
    """Compose train.yaml with the option selected, resolve every value, validate the keys."""
    overrides = [f"paths.output_dir={tmp_path}"]
    if (group, option) != ("hydra", "default"):
        overrides.append(f"{group}={option}")
    overrides += COMPANIONS.get((group, option), [])
    cfg = compose_config("train", overrides)
    container = OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    assert container["model"]["task"]["_target_"]
    validate_config(cfg)


def test_entry_configs_compose(hydra_ctx, tmp_path):
    cfg = compose_config("eval", ["ckpt_path=x.ckpt", f"paths.output_dir={tmp_path}"])
    validate_config(cfg)
    assert cfg.get("data") is None  # eval falls back to the checkpoint's data config
    cfg = compose_config("eval", ["ckpt_path=x.ckpt", "data=set8", f"paths.output_dir={tmp_path}"])
    validate_config(cfg)
    assert "set8" in str(cfg.data.test_sequences._target_)
    cfg = compose_config(
        "restore",
        ["ckpt_path=x.ckpt", "input=a.mp4", "output=b.mp4", f"paths.output_dir={tmp_path}"],
    )
    validate_config(cfg)
    assert cfg.sigma is None and cfg.overwrite is False  # None: σ is estimated from the frames


def test_codec_swaps_from_the_command_line(hydra_ctx, tmp_path):
    quantizers = {}
    for option in ("adaptive", "channel", "fixed"):
        cfg = compose_config("train", [f"model/codec={option}", f"paths.output_dir={tmp_path}"])
        quantizers[option] = cfg.model.task.net.codec.quantizer
    assert quantizers == {"adaptive": "adaptive", "channel": "channel", "fixed": "fixed"}
    assert compose_config("train", ["model/codec=none"]).model.task.net.codec is None
    assert compose_config("train", ["model=no_codec"]).model.task.net.codec is None
    assert compose_config("train", ["model=fixed_q"]).model.codec.quantizer == "fixed"
    assert compose_config("train", ["model=channel_q"]).model.codec.quantizer == "channel"


def test_shared_channels_and_switches_reach_the_stages(hydra_ctx):
    cfg = compose_config(
        "train",
        [
            "model.channels=32",
            "model/mv_refine=none",
            "model/fusion=concat",
            "model.bidirectional=true",
            "model.rate_weight=0.05",
            "model.lr=1e-3",
        ],
    )
    net = cfg.model.task.net
    assert list(net.restoration.channels) == [8, 16, 32]
    assert list(net.codec.channels) == [8, 16, 32] and net.codec.context_channels == 32
    assert net.mv_refine is None and net.bidirectional is True
    assert cfg.model.task.rate_weight == 0.05 and cfg.model.task.optimizer.lr == 1e-3
    built = hydra.utils.instantiate(net)
    assert all(isinstance(f, ConcatFusion) for f in built.fusion) and built.mv_refine is None


def test_noise_input_follows_the_data_task(hydra_ctx):
    denoise = compose_config("train", [])
    assert denoise.model.noise_channel is True and denoise.model.restoration.extra_channels == 1
    derain = compose_config("train", ["data.degradation=rain"])  # the task follows
    assert derain.data.task == "derain"
    assert derain.model.noise_channel is False and derain.model.restoration.extra_channels == 0
    assert compose_config("train", ["data.degradation=haze"]).data.task == "dehaze"
    with pytest.raises(Exception, match="implies no task; set data.task"):
        compose_config("train", ["data.degradation=none"]).data.task  # noqa: B018
    nturain = compose_config("train", ["data=nturain"]).model.task
    assert nturain.metric_space == "y" and nturain.metric_edge_frames == 2
    assert compose_config("train", []).model.task.metric_edge_frames == 0


def test_optimized_metric_follows_the_model(hydra_ctx):
    cfg = compose_config("train", [])
    assert cfg.optimized_metric == "val/psnr" and cfg.callbacks.model_checkpoint.mode == "max"
    cfg = compose_config("train", ["model=flow_pretrain"])
    assert cfg.callbacks.model_checkpoint.monitor == cfg.optimized_metric
    assert cfg.callbacks.model_checkpoint.mode == "min"


@pytest.mark.parametrize("preset", PRESETS)
def test_model_presets_instantiate(hydra_ctx, preset):
    torch.manual_seed(0)
    overrides = [f"model={preset}"]
    if preset != "flow_pretrain":
        overrides.append("model.channels=16")
    cfg = compose_config("train", overrides)
    task = hydra.utils.instantiate(cfg.model.task)
    if preset == "flow_pretrain":
        assert type(task).__name__ == "FlowPretrainTask"
        return
    assert type(task).__name__ == "RestorationTask"
    assert (task.net.codec is None) == (preset == "no_codec")
    with torch.no_grad():
        out = task.net(torch.rand(1, 2, 3, 32, 32), noise_level=torch.tensor([0.1]))
    assert out.restored.shape == (1, 2, 3, 32, 32)
    assert (float(out.bpp) == 0.0) == (preset == "no_codec")


def test_flow_pretrained_path_loads_weights(hydra_ctx, tmp_path):
    """model.flow.pretrained=PATH loads a BasicSR-style SPyNet file into the net's flow stage."""
    torch.manual_seed(0)
    spynet = "model/flow=spynet"
    source = hydra.utils.instantiate(compose_config("train", [spynet]).model.flow)
    for parameter in source.parameters():
        torch.nn.init.normal_(parameter)
    torch.save({"params": source.state_dict()}, tmp_path / "spynet.pth")
    cfg = compose_config(
        "train", [spynet, f"model.flow.pretrained={tmp_path / 'spynet.pth'}", "model.channels=16"]
    )
    task = hydra.utils.instantiate(cfg.model.task)
    for key, value in source.state_dict().items():
        assert torch.equal(task.net.flow.state_dict()[key], value), key
    # a Lightning checkpoint of the flow pre-training task (weights under flow.*)
    flow_state = {f"flow.{k}": -v for k, v in source.state_dict().items()}
    torch.save({"state_dict": flow_state, "epoch": 3}, tmp_path / "flow_task.ckpt")
    cfg = compose_config(
        "train", ["model=flow_pretrain", f"model.flow.pretrained={tmp_path}/flow_task.ckpt"]
    )
    flow = hydra.utils.instantiate(cfg.model.flow)
    for key, value in source.state_dict().items():
        assert torch.equal(flow.state_dict()[key], -value), key


def test_wandb_logger_is_offline_without_login(hydra_ctx, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no_netrc"))
    assert compose_config("train", []).logger.wandb.offline is True
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert compose_config("train", []).logger.wandb.offline is False
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert compose_config("train", []).logger.wandb.offline is True


def test_checkpoints_and_hydra_dirs_live_in_the_run_dir(hydra_ctx, tmp_path):
    cfg = compose_config("train", [f"paths.output_dir={tmp_path}"])
    assert cfg.callbacks.model_checkpoint.dirpath == f"{tmp_path}/checkpoints"
    assert cfg.logger.wandb.save_dir == str(tmp_path)
    assert cfg.trainer.default_root_dir == str(tmp_path)


def test_early_stopping_is_off_by_default_and_can_be_added(hydra_ctx):
    assert "early_stopping" not in compose_config("train", []).callbacks
    cfg = compose_config("train", ["callbacks=[default,early_stopping]", "model=flow_pretrain"])
    assert {"model_checkpoint", "early_stopping"} <= set(cfg.callbacks)
    assert cfg.callbacks.early_stopping.monitor == cfg.optimized_metric
    assert cfg.callbacks.early_stopping.mode == "min"
