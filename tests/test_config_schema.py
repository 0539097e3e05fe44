"""Start-up validation: misspelled keys, wrong types and missing values fail naming the key."""

from typing import Literal

import pytest
from hydra import initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from lightning_modules.config_schema import (  # noqa: E402
    ConfigError,
    TrainSchema,
    _channel_pyramid,
    _type_ok,
    _wandb_offline,
    interpolation_references,
    validate_config,
)
from lightning_modules.instantiate import instantiate_collection  # noqa: E402
from tests.conftest_config import CONF_DIR, compose_config  # noqa: E402


@pytest.fixture()
def hydra_ctx():
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        yield


def _error(overrides: list[str]) -> str:
    cfg = compose_config("train", ["paths.output_dir=/nonexistent/run", *overrides])
    with pytest.raises(ConfigError) as info:
        validate_config(cfg, TrainSchema)
    return str(info.value)


def test_default_config_is_valid(hydra_ctx, tmp_path):
    validate_config(compose_config("train", [f"paths.output_dir={tmp_path}"]), TrainSchema)


def test_misspelled_model_key_is_named_with_a_suggestion(hydra_ctx):
    message = _error(["+model.rate_wieght=0.1"])
    assert "unknown key 'model.rate_wieght'" in message
    assert "did you mean 'rate_weight'" in message


def test_misspelled_stage_key_names_the_target(hydra_ctx):
    message = _error(["+model.codec.latent_chanels=8"])
    assert "'model.codec.latent_chanels'" in message and "FeatureCodec" in message
    assert "did you mean 'latent_channels'" in message


def test_misspelled_trainer_and_data_keys(hydra_ctx):
    assert "did you mean 'max_epochs'" in _error(["+trainer.max_epoch=3"])
    assert "did you mean 'patch_size'" in _error(["+data.patch_sise=32"])


def test_kwargs_targets_accept_extras_but_not_near_misses(hydra_ctx, tmp_path):
    cfg = compose_config("train", [f"paths.output_dir={tmp_path}", "+logger.wandb.entity=team"])
    validate_config(cfg, TrainSchema)  # WandbLogger passes **kwargs on to wandb.init
    assert "did you mean 'save_dir'" in _error(["+logger.wandb.save_dirr=x"])


def test_misspelled_top_level_key(hydra_ctx):
    message = _error(["+optimised_metric=val/ssim"])
    assert "unknown top-level key 'optimised_metric'" in message
    assert "did you mean 'optimized_metric'" in message


def test_command_line_typo_without_plus_is_rejected_by_hydra(hydra_ctx):
    with pytest.raises(ConfigCompositionException) as info:
        compose_config("train", ["model.rate_wieght=0.1"])
    assert "model.rate_wieght" in str(info.value)


def test_wrong_types_are_named(hydra_ctx):
    message = _error(["model.rate_weight=abc"])
    assert "model.task.rate_weight" in message and "'abc'" in message and "float" in message
    assert "seed" in _error(["seed=twelve"])
    message = _error(["model.codec.latent_stride=4.5"])
    assert "model.codec.latent_stride" in message and "int" in message
    assert "model.task.net.attention" in _error(["model.attention=maybe"])


def test_missing_required_argument(hydra_ctx):
    message = _error(["~model.task.optimizer"])
    assert "missing required key 'model.task.optimizer'" in message


def test_bad_target_is_named(hydra_ctx):
    message = _error(["model.codec._target_=lightning_modules.stages.codec.NoSuchCodec"])
    assert "model.codec._target_" in message and "NoSuchCodec" in message


def test_missing_mandatory_value(hydra_ctx, tmp_path):
    cfg = compose_config("eval", [f"paths.output_dir={tmp_path}"])
    from lightning_modules.config_schema import EvalSchema

    with pytest.raises(ConfigError, match="ckpt_path"):
        validate_config(cfg, EvalSchema)


def test_type_checks_of_simple_annotations():
    assert _type_ok(3, int) is True and _type_ok(True, int) is False
    assert _type_ok(3, float) is True and _type_ok("3", float) is False
    assert _type_ok(None, int | None) is True and _type_ok("x", int | None) is False
    assert _type_ok("rgb", Literal["rgb", "y"]) is True and _type_ok("yuv", Literal["rgb"]) is False
    assert _type_ok([1, 2], tuple[int, ...]) is True and _type_ok([1, "a"], list[int]) is False
    assert _type_ok(3, list[int]) is False
    assert _type_ok("anything", object) is None  # unknown annotations are not judged


def test_unread_key_check_follows_relative_interpolations():
    cfg = OmegaConf.create(
        {"model": {"a": 1, "b": 2, "task": {"x": "${..a}", "y": "${model.b}"}}, "z": 1}
    )
    refs = interpolation_references(cfg)
    assert {"model.a", "model.b", "model"} <= refs
    validate_config(cfg)  # no target nodes, all container keys read
    cfg.model.c = 3
    with pytest.raises(ConfigError, match="unknown key 'model.c'"):
        validate_config(cfg)


def test_channel_pyramid():
    assert _channel_pyramid(64) == [16, 32, 64]
    with pytest.raises(ConfigError, match="multiple of 4"):
        _channel_pyramid(10)


def test_wandb_offline_detection(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert _wandb_offline() is True  # no key anywhere
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    assert _wandb_offline() is False  # `wandb login` writes this
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert _wandb_offline() is True
    monkeypatch.setenv("WANDB_MODE", "online")
    (tmp_path / "netrc").unlink()
    assert _wandb_offline() is False


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
    with pytest.raises(TypeError, match="callbacks.bad"):
        instantiate_collection(OmegaConf.create({"bad": {"a": 1}}), "callbacks")
    with pytest.raises(TypeError, match="logger: expected a mapping"):
        instantiate_collection(OmegaConf.create([1]), "logger")
