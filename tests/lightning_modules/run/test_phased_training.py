"""Phased training: phase parsing, override merging, weight transfer, a tiny phased run."""

import pytest
import torch
from hydra import initialize_config_dir
from omegaconf import OmegaConf, open_dict
from torch import nn

import train
from lightning_modules.run.checkpoints import read_checkpoint
from lightning_modules.run.phased_training import (
    load_weights_non_strict,
    merge_overrides,
    parse_phases,
)
from tests.conftest_config import (
    CONF_DIR,
    DATA_TINY,
    TRAINER_TINY,
    compose_config,
    model_tiny,
)


def test_parse_phases_defaults_and_errors():
    phases = parse_phases(
        [
            {"name": "a"},
            {"name": "b", "overrides": ["model=x"], "init_from": "none", "checkpoint": "last"},
            {"name": "c", "flow_from": "a"},
        ]
    )
    assert phases[0].init_from == "previous" and phases[0].checkpoint == "best"
    assert phases[1].overrides == ["model=x"] and phases[1].init_from == "none"
    assert phases[2].flow_from == "a" and phases[0].flow_from is None
    with pytest.raises(ValueError, match="non-empty list"):
        parse_phases([])
    with pytest.raises(ValueError, match=r"training_phases\[0\]: unknown key\(s\) \['overides'\]"):
        parse_phases([{"name": "a", "overides": []}])
    with pytest.raises(ValueError, match=r"training_phases\[1\].init_from"):
        parse_phases([{"name": "a"}, {"name": "b", "init_from": "first"}])
    with pytest.raises(ValueError, match=r"training_phases\[0\].name"):
        parse_phases([{"name": "a/b"}])
    with pytest.raises(ValueError, match="overrides: expected a list"):
        parse_phases(OmegaConf.create([{"name": "a", "overrides": "model=x"}]))
    with pytest.raises(ValueError, match=r"flow_from: expected the name of an earlier phase"):
        parse_phases([{"name": "a", "flow_from": "b"}, {"name": "b"}])
    with pytest.raises(ValueError, match="inherit: expected a list"):
        parse_phases([{"name": "a", "inherit": "trainer"}])
    with pytest.raises(ValueError, match="key_map is gone: use flow_from"):
        parse_phases([{"name": "a", "key_map": {"flow.": "net.flow."}}])


def test_phase_overrides_replace_command_line_ones_for_the_same_key():
    base = ["model=adaptive_q", "trainer.max_epochs=3", "+model.x=1", "data=vimeo"]
    merged = merge_overrides(base, ["model=flow_pretrain", "model.x=2", "trainer.max_epochs=1"])
    assert merged == ["data=vimeo", "model=flow_pretrain", "model.x=2", "trainer.max_epochs=1"]
    base = ["data=davis", "data.root=/d", "trainer=gpu", "trainer.max_steps=9", "seed=3"]
    merged = merge_overrides(base, ["data=flow_pairs"], inherit=["trainer", "seed"])
    assert merged == ["trainer=gpu", "trainer.max_steps=9", "seed=3", "data=flow_pairs"]


class _Pair(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.net = nn.ModuleDict({"flow": nn.Linear(2, 2), "codec": nn.Linear(width, width)})


def test_non_strict_load_copies_matching_names_and_shapes(tmp_path):
    torch.manual_seed(0)
    source = _Pair(4)
    source.net["extra"] = nn.Linear(5, 5)
    torch.save({"state_dict": source.state_dict()}, tmp_path / "source.ckpt")
    target = _Pair(6)  # same flow, a codec of another shape
    codec_before = target.net.codec.weight.clone()
    report = load_weights_non_strict(target, tmp_path / "source.ckpt")
    assert torch.equal(target.net.flow.weight, source.net.flow.weight)
    assert torch.equal(target.net.codec.weight, codec_before)  # another shape: keeps its init
    assert report["loaded"] == ["net.flow.bias", "net.flow.weight"]
    assert {"net.extra.weight", "net.codec.weight", "net.codec.bias"} <= set(report["unused"])
    torch.save({"state_dict": nn.Linear(7, 7).state_dict()}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="no weight matches the model"):
        load_weights_non_strict(target, tmp_path / "other.ckpt")


@pytest.mark.slow
def test_phased_experiment_runs_end_to_end(tmp_path):
    """experiment=phased, shrunk: 4 phases, each in its own folder, each seeded by the last."""
    base = [
        "experiment=phased",
        "logger=csv",
        f"paths.output_dir={tmp_path}",
        f"paths.log_dir={tmp_path}/logs",
        *DATA_TINY,
        *TRAINER_TINY,
    ]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose_config("train", base)
        with open_dict(cfg):
            for phase in cfg.training_phases:  # shrink each phase's own model
                preset = next(o for o in phase.overrides if o.startswith("model=")).split("=")[1]
                keys = {o.split("=")[0] for o in phase.overrides}
                tiny = [o for o in model_tiny(preset) if o.split("=")[0] not in keys]
                if "data=flow_pairs" in phase.overrides:  # its own data: shrink it too
                    tiny += ["data.size=64", "data.batch_size=2", "data.val_batch_size=2"]
                if "model/flow=spynet" in phase.overrides:  # phase 1's 3-level SPyNet
                    tiny.append("model.flow.num_levels=3")
                phase.overrides = [*phase.overrides, *tiny]
        torch.manual_seed(0)
        metric = train.run(cfg)
    dirs = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("phase"))
    assert dirs == ["phase1_flow", "phase2_no_codec", "phase3_full", "phase4_finetune"]
    for name in dirs:
        assert (tmp_path / name / "checkpoints" / "last.ckpt").is_file(), name
    flow_path = next((tmp_path / "phase1_flow" / "checkpoints").glob("best*.ckpt"))
    flow = read_checkpoint(flow_path)
    phase2 = read_checkpoint(tmp_path / "phase2_no_codec" / "checkpoints" / "last.ckpt")
    assert flow["run_config"]["model"]["task"]["_target_"].endswith("FlowPretrainTask")
    assert phase2["run_config"]["model"]["task"]["net"]["codec"] is None
    # phase 2's flow stage loaded phase 1's checkpoint through model.flow.pretrained
    assert phase2["run_config"]["model"]["flow"]["pretrained"] == str(flow_path)
    key = "basic_module.0.basic_module.0.weight"
    moved = (phase2["state_dict"][f"net.flow.{key}"] - flow["state_dict"][f"flow.{key}"]).abs()
    assert moved.max() < 1e-2 and flow["state_dict"][f"flow.{key}"].abs().max() > 0.05
    phase3 = read_checkpoint(tmp_path / "phase3_full" / "checkpoints" / "last.ckpt")
    assert phase3["run_config"]["model"]["task"]["rate_warmup_steps"] == 200
    assert phase3["run_config"]["model"]["task"]["rate_delay_steps"] == 0  # recurrence trained
    assert any(k.startswith("net.codec.") for k in phase3["state_dict"])
    assert 0 < metric < 60  # best val/psnr of the last phase, what sweeps would read
