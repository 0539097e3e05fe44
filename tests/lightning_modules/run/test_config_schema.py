"""Config checks: unread and misspelled keys, renamed spellings, types, instantiate errors."""

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from lightning_modules.run.config_schema import (
    ConfigError,
    check_overrides,
    interpolation_references,
    renamed_spelling,
    validate_config,
)
from lightning_modules.run.instantiate import instantiate, instantiate_collection
from lightning_modules.run.resolvers import channel_pyramid, wandb_offline
from tests.conftest_config import compose_config


def _error(overrides: list[str]) -> str:
    cfg = compose_config("train", ["paths.output_dir=/nonexistent/run", *overrides])
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    return str(info.value)


def _instantiate_error(overrides: list[str], node: str) -> str:
    cfg = compose_config("train", ["paths.output_dir=/nonexistent/run", *overrides])
    with pytest.raises(ConfigError) as info:
        instantiate(OmegaConf.select(cfg, node), node)
    return str(info.value)


def test_default_config_is_valid(tmp_path):
    validate_config(compose_config("train", [f"paths.output_dir={tmp_path}"]))


def test_misspelled_model_key_is_named_with_a_suggestion():
    message = _error(["+model.rate_wieght=0.1"])
    assert "unknown key 'model.rate_wieght'" in message
    assert "did you mean 'rate_weight'" in message


def test_misspelled_stage_key_names_the_target_and_suggests():
    message = _instantiate_error(["+model.codec.latent_chanels=8"], "model.codec")
    assert message.startswith("model.codec.latent_chanels:")
    assert "FeatureCodec" in message and "did you mean 'latent_channels'" in message


def test_misspelled_trainer_and_data_keys_fail_when_instantiated():
    assert "did you mean 'max_epochs'" in _instantiate_error(["+trainer.max_epoch=3"], "trainer")
    assert "did you mean 'patch_size'" in _instantiate_error(["+data.patch_sise=32"], "data")


def test_misspelled_top_level_key():
    message = _error(["+optimised_metric=val/ssim"])
    assert "unknown top-level key 'optimised_metric'" in message
    assert "did you mean 'optimized_metric'" in message


def test_command_line_typo_without_plus_is_rejected_by_hydra():
    with pytest.raises(ConfigCompositionException) as info:
        compose_config("train", ["model.rate_wieght=0.1"])
    assert "model.rate_wieght" in str(info.value)


def test_top_level_types_are_checked_by_the_structured_config():
    for override in ("seed=twelve", "train=maybe"):
        with pytest.raises(ConfigCompositionException, match=override.split("=")[0]):
            compose_config("train", [override])


def test_wrong_value_types_name_the_key():
    message = _instantiate_error(["model.rate_weight=abc"], "model.task")
    assert "rate_weight" in message and "'abc'" in message
    message = _instantiate_error(["model.codec.latent_stride=4.5"], "model.codec")
    assert message.startswith("model.codec") and "latent_stride" in message


def test_bad_target_is_named():
    message = _instantiate_error(
        ["model.codec._target_=lightning_modules.stages.codec.NoSuchCodec"], "model.codec"
    )
    assert message.startswith("model.codec") and "NoSuchCodec" in message


def test_missing_mandatory_value():
    cfg = compose_config("restore", ["paths.output_dir=/nonexistent/run"])
    assert all(OmegaConf.is_missing(cfg, key) for key in ("ckpt_path", "input", "output"))
    cfg = compose_config("eval", ["paths.output_dir=/nonexistent/run"])
    assert cfg.ckpt_path is None and cfg.method is None  # eval.py asks for one of them


def test_renamed_spellings_say_what_to_write_now():
    assert "model=flow_pretrain" in renamed_spelling("model=flow")
    assert "model=flow_pretrain" in renamed_spelling("model=adaptive_q,flow")  # a sweep list
    assert "experiment=phased" in renamed_spelling("experiment=staged")
    assert "model/fusion=concat" in renamed_spelling("model.attention=false")
    assert "model/mv_refine=none" in renamed_spelling("model.mv_refine=null")
    assert "model.rate_warmup_steps=5" in renamed_spelling("model.task.rate_warmup_steps=5")
    assert "model.warmup_steps=0" in renamed_spelling("model.task.scheduler.warmup_steps=0")
    assert renamed_spelling("model=adaptive_q") is None
    assert renamed_spelling("model/flow=spynet") is None
    with pytest.raises(ConfigError, match="'model=flow' is no longer accepted"):
        check_overrides(["data=vimeo", "model=flow"])
    assert "training_phases" in _error(["+training_stages=[]"])


def test_unread_key_check_follows_relative_interpolations():
    cfg = OmegaConf.create(
        {"model": {"a": 1, "b": 2, "task": {"x": "${..a}", "y": "${model.b}"}}, "z": 1}
    )
    refs = interpolation_references(cfg)
    assert {"model.a", "model.b", "model"} <= refs
    validate_config(cfg)  # all container keys read
    cfg.model.c = 3
    with pytest.raises(ConfigError, match="unknown key 'model.c'"):
        validate_config(cfg)


def test_every_task_knob_of_a_preset_has_one_name_under_model():
    CONSTANTS = ("betas", "total_steps", "foreach")  # of the method or its implementation
    for preset in ("adaptive_q", "flow_pretrain"):
        cfg = compose_config("train", [f"model={preset}", "paths.output_dir=/nonexistent"])

        def leaves(node, path):
            for key in node:
                if OmegaConf.is_interpolation(node, key):
                    continue
                value = node._get_node(key)
                if OmegaConf.is_dict(value):
                    yield from leaves(value, f"{path}.{key}")
                elif not str(key).startswith("_") and key not in CONSTANTS:
                    yield f"{path}.{key}"

        fixed = set(leaves(cfg.model.task, "model.task"))
        assert fixed <= {"model.task.scheduler_interval"}, (preset, fixed)


def test_channel_pyramid():
    assert channel_pyramid(64) == [16, 32, 64]
    with pytest.raises(ValueError, match="multiple of 4"):
        channel_pyramid(10)


def test_wandb_offline_detection(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert wandb_offline() is True  # no key anywhere
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    assert wandb_offline() is False  # `wandb login` writes this
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_offline() is True
    monkeypatch.setenv("WANDB_MODE", "online")
    (tmp_path / "netrc").unlink()
    assert wandb_offline() is False


def test_instantiate_collection_skips_nulls_and_names_bad_entries():
    cfg = OmegaConf.create(
        {
            "first": {"_target_": "collections.OrderedDict", "a": 1},
            "off": None,
            "second": {"_target_": "fractions.Fraction", "numerator": 3, "denominator": 4},
        }
    )
    objects = instantiate_collection(cfg, "callbacks")
    assert [type(o).__name__ for o in objects] == ["OrderedDict", "Fraction"]
    assert objects[1] == 0.75
    assert instantiate_collection(None, "logger") == []
    with pytest.raises(ConfigError, match="callbacks.bad"):
        instantiate_collection(OmegaConf.create({"bad": {"a": 1}}), "callbacks")
    with pytest.raises(ConfigError, match="logger: expected a mapping"):
        instantiate_collection(OmegaConf.create([1]), "logger")
