"""Start-up validation of a composed run config, and the resolvers the config tree uses.

``validate_config(cfg, schema)`` fails before anything heavy is built, with one message naming the
offending key:

1. the top-level keys against a dataclass ``schema`` (unknown keys, missing keys, scalar types);
2. every node with a ``_target_``: the target must import, its keys must be parameters of the
   target's signature (``inspect.signature``; a target taking ``**kwargs`` accepts other keys
   unless one is a near-miss of a parameter name that no interpolation reads), its
   required parameters must be present unless ``_partial_: true``, and scalar values are checked
   against simple annotations (int, float, bool, str, None, Literal, Path and unions of those);
3. keys of the plain (target-less) containers under ``model``: each must be read by some
   interpolation (e.g. ``model.task.rate_weight: ${model.rate_weight}``); a key nobody reads has no
   effect, which is almost always a typo.

Unknown keys come with a "did you mean" from ``difflib``.  Hydra itself already rejects a
misspelled *command-line* override without ``+``; these checks catch the rest (experiment files,
local configs, ``+key=`` overrides, wrong types).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import netrc
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

RESERVED_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
CHECKED_CONTAINERS = ("model",)  # plain containers whose every key must be read somewhere
# ...except these: the LightningModule itself and what callbacks/sweeps may (not) read
CONTAINER_OWN_KEYS = {"task", "monitor", "monitor_mode"}
_INTERPOLATION = re.compile(r"\$\{\s*(\.*[A-Za-z_][\w.]*)\s*\}")


class ConfigError(ValueError):
    """A config key is unknown, missing or of the wrong type."""


# ----------------------------------------------------------------------------- schemas
@dataclass
class TrainSchema:
    """Top-level keys of ``conf/train.yaml``."""

    task_name: str
    tags: list
    train: bool
    test: bool
    ckpt_path: str | None
    seed: int | None
    optimized_metric: str | None
    data: Any
    model: Any
    trainer: Any
    paths: Any
    callbacks: Any = None
    logger: Any = None
    training_stages: list | None = None
    float32_matmul_precision: str | None = None


@dataclass
class EvalSchema:
    """Top-level keys of ``conf/eval.yaml``."""

    task_name: str
    tags: list
    ckpt_path: str
    trainer: Any
    paths: Any
    data: Any = None
    seed: int | None = None
    logger: Any = None
    float32_matmul_precision: str | None = None


@dataclass
class RestoreSchema:
    """Top-level keys of ``conf/restore.yaml``."""

    task_name: str
    ckpt_path: str
    input: str
    output: str
    sigma: float
    chunk_size: int
    context_frames: int
    pad_multiple: int
    overwrite: bool
    device: str
    paths: Any
    fps: float | None = None
    crf: int = 17
    tags: list = field(default_factory=list)


# ----------------------------------------------------------------------------- resolvers
def _wandb_offline() -> bool:
    """True unless wandb can go online: WANDB_MODE=online, or a key in WANDB_API_KEY or netrc."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "dryrun", "disabled"):
        return True
    if mode == "online" or os.environ.get("WANDB_API_KEY"):
        return False
    netrc_path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return netrc.netrc(netrc_path).authenticators("api.wandb.ai") is None
    except (OSError, netrc.NetrcParseError):
        return True


def _channel_pyramid(channels: int) -> list[int]:
    """Feature channels (N/4, N/2, N) of scales 1, 1/2, 1/4 for N = ``channels``."""
    if not isinstance(channels, int) or channels < 4 or channels % 4:
        raise ConfigError(f"model.channels: expected a positive multiple of 4, got {channels!r}")
    return [channels // 4, channels // 2, channels]


def register_resolvers() -> None:
    """Register the resolvers used by ``conf/`` (idempotent).

    - ``${eq:a,b}``: a == b (e.g. the noise-map input follows ``data.task == denoise``);
    - ``${int:x}``: int(x) (booleans to 0/1 channel counts);
    - ``${channel_pyramid:N}``: [N/4, N/2, N];
    - ``${wandb_offline:}``: offline unless the user is logged in or set WANDB_MODE=online;
    - ``${task_of:degradation}``: the task a synthetic degradation makes (noise -> denoise, ...).
    """
    resolvers = {
        "task_of": _task_of,
        "eq": lambda a, b: a == b,
        "int": lambda x: int(x),
        # a ListConfig, not a list: OmegaConf.resolve() cannot store a plain list in a value node
        "channel_pyramid": lambda n: OmegaConf.create(_channel_pyramid(n)),
        "wandb_offline": _wandb_offline,
    }
    for name, fn in resolvers.items():
        OmegaConf.register_new_resolver(name, fn, replace=True)


# ----------------------------------------------------------------------------- helpers
def _task_of(degradation: str) -> str:
    from datamodules.video_datamodule import TASK_OF_DEGRADATION

    if degradation not in TASK_OF_DEGRADATION:
        raise ValueError(
            f"data.degradation={degradation!r} implies no task; set data.task to one of "
            f"denoise, derain, dehaze"
        )
    return TASK_OF_DEGRADATION[degradation]


def _did_you_mean(key: str, candidates) -> str:
    match = difflib.get_close_matches(key, sorted(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def locate_target(target: str, where: str):
    """Import a dotted ``_target_``; a clear error naming the config key when it fails."""
    if not isinstance(target, str) or not target:
        raise ConfigError(f"{where}._target_: expected a dotted import path, got {target!r}")
    parts = target.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name and module_name.startswith(err.name):
                continue  # the module itself (or a parent) does not exist: try a shorter prefix
            raise ConfigError(f"{where}._target_: importing '{target}' failed: {err}") from err
        try:
            for attr in parts[split:]:
                obj = getattr(obj, attr)
        except AttributeError:
            break
        return obj
    raise ConfigError(f"{where}._target_: cannot import '{target}'")


def _signature(obj) -> inspect.Signature | None:
    try:
        return inspect.signature(obj, eval_str=True)
    except (TypeError, ValueError, NameError):
        try:
            return inspect.signature(obj)
        except (TypeError, ValueError):
            return None


_SIMPLE = (int, float, bool, str, type(None), Path)


def _type_ok(value, annotation) -> bool | None:
    """True/False when ``value`` clearly does/doesn't fit ``annotation``; None when unsure."""
    if annotation in (inspect.Parameter.empty, Any):
        return None
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        verdicts = [_type_ok(value, arg) for arg in typing.get_args(annotation)]
        if any(v is True for v in verdicts):
            return True
        return False if all(v is False for v in verdicts) else None
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin in (list, tuple) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False if value is None or isinstance(value, _SIMPLE) else None
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        if len(args) == 1 and args[0] in _SIMPLE:
            verdicts = [_type_ok(v, args[0]) for v in value]
            return None if None in verdicts else all(verdicts)
        return None
    if annotation not in _SIMPLE:
        return None
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is Path:
        return isinstance(value, (str, Path))
    return isinstance(value, annotation)


def _describe(annotation) -> str:
    text = inspect.formatannotation(annotation)
    return text.replace("typing.", "")


def _resolved(node: DictConfig, key) -> Any:
    value = node[key]
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


# ----------------------------------------------------------------------------- checks
def _check_target_node(node: DictConfig, path: str, refs: set[str]) -> None:
    target = locate_target(node["_target_"], path)
    signature = _signature(target)
    if signature is None:
        return
    params = dict(signature.parameters)
    if inspect.isclass(target):
        params.pop("self", None)
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = {
        name: p for name, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }
    name = getattr(target, "__qualname__", str(target))
    for key in node:
        if key in RESERVED_KEYS:
            continue
        if key not in named:
            near = difflib.get_close_matches(str(key), list(named), n=1, cutoff=0.8)
            if takes_kwargs and (_join(path, key) in refs or not near):
                continue  # a **kwargs extra, or an anchor other keys interpolate
            raise ConfigError(
                f"unknown key '{_join(path, key)}' for {name}{_did_you_mean(key, named)}"
            )
        if OmegaConf.is_missing(node, key):
            raise ConfigError(f"missing value for '{_join(path, key)}' (set it: {path}.{key}=...)")
        value = _resolved(node, key)
        if isinstance(value, dict) and "_target_" in value:
            continue
        annotation = named[key].annotation
        if _type_ok(value, annotation) is False:
            source = node._get_node(key)._value()
            via = f" (set through {source})" if OmegaConf.is_interpolation(node, key) else ""
            raise ConfigError(
                f"'{_join(path, key)}' = {value!r} ({type(value).__name__}){via}: "
                f"{name} expects {_describe(annotation)}"
            )
    if node.get("_partial_", False) or "_args_" in node:
        return
    for pname, p in named.items():
        if p.default is p.empty and pname not in node:
            raise ConfigError(f"missing required key '{_join(path, pname)}' for {name}")


def _walk(node, path: str, visit) -> None:
    """Call ``visit(dict_node, path)`` for every dict node that is not an interpolation."""
    if isinstance(node, DictConfig):
        visit(node, path)
        for key in node:
            if OmegaConf.is_interpolation(node, key):
                continue
            _walk(node._get_node(key), _join(path, key), visit)
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            if not OmegaConf.is_interpolation(node, i):
                _walk(node._get_node(i), f"{path}[{i}]", visit)


def interpolation_references(cfg: DictConfig) -> set[str]:
    """Absolute dotted paths read by interpolations anywhere in ``cfg`` (and their parents)."""
    refs: set[str] = set()

    def scan(value, location: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                scan(v, _join(location, k))
        elif isinstance(value, list):
            for v in value:
                scan(v, location)
        elif isinstance(value, str):
            for ref in _INTERPOLATION.findall(value):
                if ref.startswith("."):  # relative: one dot = sibling, each extra dot = one up
                    dots = len(ref) - len(ref.lstrip("."))
                    base = location.split(".")[:-dots] if dots else []
                    ref = ".".join([*base, ref.lstrip(".")])
                parts = ref.split(".")
                refs.update(".".join(parts[: i + 1]) for i in range(len(parts)))

    scan(OmegaConf.to_container(cfg, resolve=False), "")
    return refs


def _check_unread_keys(cfg: DictConfig, refs: set[str]) -> None:
    for path in CHECKED_CONTAINERS:
        node = cfg.get(path)
        if not isinstance(node, DictConfig) or "_target_" in node:
            continue
        used = {k for k in node if _join(path, k) in refs}
        for key in node:
            if key not in used and not str(key).startswith("_") and key not in CONTAINER_OWN_KEYS:
                raise ConfigError(
                    f"unknown key '{_join(path, key)}': nothing in the config reads it"
                    f"{_did_you_mean(str(key), used)}"
                )


def _check_schema(cfg: DictConfig, schema: type) -> None:
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    for key in cfg:
        if key not in fields:
            raise ConfigError(f"unknown top-level key '{key}'{_did_you_mean(str(key), fields)}")
    for key, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if key not in cfg:
            if required:
                raise ConfigError(f"missing top-level key '{key}'")
            continue
        if OmegaConf.is_missing(cfg, key):
            raise ConfigError(f"missing value for '{key}' (set it on the command line: {key}=...)")
        value = _resolved(cfg, key)
        if _type_ok(value, hints[key]) is False:
            raise ConfigError(
                f"'{key}' = {value!r} ({type(value).__name__}): expected {_describe(hints[key])}"
            )


def validate_config(cfg: DictConfig, schema: type | None = None) -> None:
    """Raise ``ConfigError`` naming the first unknown, missing or ill-typed key of ``cfg``."""
    register_resolvers()
    if schema is not None:
        _check_schema(cfg, schema)

    refs = interpolation_references(cfg)

    def visit(node: DictConfig, path: str) -> None:
        if "_target_" in node:
            _check_target_node(node, path, refs)

    for key in cfg:
        if key == "hydra" or OmegaConf.is_interpolation(cfg, key):
            continue
        _walk(cfg._get_node(key), str(key), visit)
    _check_unread_keys(cfg, refs)
