"""Staged training: stage parsing, override merging, non-strict weight transfer, a tiny run."""

import pytest
import torch
from hydra import initialize_config_dir
from omegaconf import OmegaConf, open_dict
from torch import nn

import train  # noqa: E402
from lightning_modules.checkpoint_config import read_checkpoint  # noqa: E402
from lightning_modules.staged_training import (  # noqa: E402
    load_weights_non_strict,
    merge_overrides,
    parse_stages,
    rename_keys,
)
from tests.conftest_config import (  # noqa: E402
    CONF_DIR,
    DATA_TINY,
    TRAINER_TINY,
    compose_config,
    model_tiny,
)


def test_parse_stages_defaults_and_errors():
    stages = parse_stages(
        [
            {"name": "a"},
            {"name": "b", "overrides": ["model=flow"], "init_from": "none", "checkpoint": "last"},
        ]
    )
    assert stages[0].init_from == "previous" and stages[0].checkpoint == "best"
    assert stages[1].overrides == ["model=flow"] and stages[1].init_from == "none"
    with pytest.raises(ValueError, match="non-empty list"):
        parse_stages([])
    with pytest.raises(ValueError, match=r"training_stages\[0\]: unknown key\(s\) \['overides'\]"):
        parse_stages([{"name": "a", "overides": []}])
    with pytest.raises(ValueError, match=r"training_stages\[1\].init_from"):
        parse_stages([{"name": "a"}, {"name": "b", "init_from": "first"}])
    with pytest.raises(ValueError, match=r"training_stages\[0\].name"):
        parse_stages([{"name": "a/b"}])
    with pytest.raises(ValueError, match="overrides: expected a list"):
        parse_stages(OmegaConf.create([{"name": "a", "overrides": "model=flow"}]))


def test_stage_overrides_replace_command_line_ones_for_the_same_key():
    base = ["model=adaptive_q", "trainer.max_epochs=3", "+model.x=1", "data=vimeo"]
    merged = merge_overrides(base, ["model=flow", "model.x=2", "trainer.max_epochs=1"])
    assert merged == ["data=vimeo", "model=flow", "model.x=2", "trainer.max_epochs=1"]


def test_rename_keys_uses_the_first_matching_prefix():
    state = {"flow.a": 1, "flow_extra": 2, "net.flow.b": 3}
    assert rename_keys(state, {"flow.": "net.flow."}) == {
        "net.flow.a": 1,
        "flow_extra": 2,
        "net.flow.b": 3,
    }


class _Pair(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.net = nn.ModuleDict({"flow": nn.Linear(2, 2), "codec": nn.Linear(width, 3)})


def test_non_strict_load_copies_matching_names_and_shapes(tmp_path):
    torch.manual_seed(0)
    source = nn.ModuleDict({"flow": nn.Linear(2, 2), "other": nn.Linear(5, 5)})
    torch.save({"state_dict": source.state_dict()}, tmp_path / "flow.ckpt")
    target = _Pair(4)
    codec_before = target.net.codec.weight.clone()
    report = load_weights_non_strict(target, tmp_path / "flow.ckpt", {"flow.": "net.flow."})
    assert torch.equal(target.net.flow.weight, source.flow.weight)
    assert torch.equal(target.net.codec.weight, codec_before)  # new part keeps its init
    assert report["loaded"] == ["net.flow.bias", "net.flow.weight"]
    assert set(report["unused"]) == {"other.weight", "other.bias"}
    # same names, another shape: skipped, not an error
    torch.save({"state_dict": _Pair(6).state_dict()}, tmp_path / "wide.ckpt")
    report = load_weights_non_strict(target, tmp_path / "wide.ckpt")
    assert "net.codec.weight" in report["unused"] and "net.flow.weight" in report["loaded"]
    with pytest.raises(ValueError, match="no weight matches the model"):
        load_weights_non_strict(target, tmp_path / "flow.ckpt")  # flow.* without the key map


@pytest.mark.slow
def test_staged_experiment_runs_end_to_end(tmp_path):
    """experiment=staged, shrunk: 4 stages, each in its own folder, each seeded by the last."""
    base = [
        "experiment=staged",
        "logger=csv",
        f"paths.output_dir={tmp_path}",
        f"paths.log_dir={tmp_path}/logs",
        *DATA_TINY,
        *TRAINER_TINY,
    ]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose_config("train", base)
        with open_dict(cfg):
            for stage in cfg.training_stages:  # shrink each stage's own model
                preset = next(o for o in stage.overrides if o.startswith("model=")).split("=")[1]
                keys = {o.split("=")[0] for o in stage.overrides}
                tiny = [o for o in model_tiny(preset) if o.split("=")[0] not in keys]
                stage.overrides = [*stage.overrides, *tiny]
        torch.manual_seed(0)
        metric = train.run(cfg)
    dirs = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("stage"))
    assert dirs == ["stage1_flow", "stage2_no_codec", "stage3_full", "stage4_finetune"]
    for name in dirs:
        assert (tmp_path / name / "checkpoints" / "last.ckpt").is_file(), name
    flow = read_checkpoint(next((tmp_path / "stage1_flow" / "checkpoints").glob("best*.ckpt")))
    stage2 = read_checkpoint(tmp_path / "stage2_no_codec" / "checkpoints" / "last.ckpt")
    assert flow["run_config"]["model"]["task"]["_target_"].endswith("FlowPretrainTask")
    assert stage2["run_config"]["model"]["task"]["net"]["codec"] is None
    # stage 2 started from stage 1's flow (flow.* -> net.flow.*): 2 small steps later, still close
    key = "basic_module.0.basic_module.0.weight"
    moved = (stage2["state_dict"][f"net.flow.{key}"] - flow["state_dict"][f"flow.{key}"]).abs()
    assert moved.max() < 1e-2 and flow["state_dict"][f"flow.{key}"].abs().max() > 0.05
    stage3 = read_checkpoint(tmp_path / "stage3_full" / "checkpoints" / "last.ckpt")
    assert stage3["run_config"]["model"]["task"]["rate_warmup_steps"] == 200
    assert any(k.startswith("net.codec.") for k in stage3["state_dict"])
    assert 0 < metric < 60  # best val/psnr of the last stage, what sweeps would read
