"""Run configuration: plain dataclasses, ``--set a.b=value`` overrides, JSON round trip.

A run's config is one :class:`RunConfig` holding three dataclasses, one per concern:

    RunConfig(model=CharLMModel(...), data=CharLMData(...), train=TrainConfig(...))

Overrides are ``"section.field=value"`` strings, parsed against the field's annotated type
(int, float, bool, str, ``X | None``, ``Literal[...]``). Anything else is a
:class:`ConfigError` that says what was wrong and what would be right:

>>> cfg = RunConfig(model=..., data=..., train=TrainConfig())
>>> apply_overrides(cfg, ["train.steps=100", "train.clip_norm=none"])
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

import torch

__all__ = ["ConfigError", "RunConfig", "TrainConfig", "resolve_device", "apply_overrides",
           "valid_keys", "to_dict", "from_dict"]


class ConfigError(ValueError):
    """A config key or value that cannot be used; the message says which and why."""


@dataclass
class RunConfig:
    """The full config of a run: the task's model and data configs and the training config."""

    model: Any
    data: Any
    train: Any


@dataclass
class TrainConfig:
    """Optimisation settings shared by every task (tasks change the defaults)."""

    steps: int = 1000                  # optimizer steps
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    momentum: float = 0.9              # sgd only
    weight_decay: float = 0.0
    clip_norm: float | None = 1.0      # global gradient-norm clipping; None or 0 = off
    clip_value: float | None = None    # element-wise gradient clipping; None or 0 = off
    pascanu: float = 0.0               # weight of Pascanu et al.'s (2013) vanishing-gradient
                                       # regulariser Ω (rnnlab.training.regularizers); 0 = off
    lr_decay: Literal["none", "cosine", "step"] = "none"
    # "step": lr x lr_decay_factor at step lr_decay_start, and again every lr_decay_every
    # steps after it (Zaremba et al. 2014: x0.5 per epoch after epoch 4 = start 4E, every E)
    lr_decay_start: int = 0
    lr_decay_every: int = 1000
    lr_decay_factor: float = 0.5
    seed: int = 0
    eval_every: int = 100              # steps between valid evaluations
    checkpoint_every: int = 500        # steps between checkpoints (the last step always saves)
    keep_checkpoints: bool = True      # also keep each checkpoint's weights (and the untrained
                                       # model's) in checkpoints/, for `rnnlab diagnose`
    log_every: int = 10                # steps averaged into one train line of metrics.jsonl
    threads: int = 0                   # torch intra-op threads; 0 = leave torch's default
    device: Literal["cpu", "cuda", "auto"] = "auto"

    def check(self) -> None:
        """Raise :class:`ConfigError` for values no run can use."""
        for key in ("steps", "batch_size", "eval_every", "checkpoint_every", "log_every",
                    "lr_decay_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key} must be at least 1, got {getattr(self, key)}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be positive, got {self.lr}")
        for key in ("weight_decay", "clip_norm", "clip_value", "threads", "pascanu"):
            value = getattr(self, key)
            if value is not None and value < 0:
                raise ConfigError(f"train.{key} must not be negative, got {value}")
        if self.lr_decay_start < 0:
            raise ConfigError(f"train.lr_decay_start must not be negative, "
                              f"got {self.lr_decay_start}")
        if not 0 < self.lr_decay_factor <= 1:
            raise ConfigError(f"train.lr_decay_factor must be in (0, 1], "
                              f"got {self.lr_decay_factor}")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA device is available; use cpu or auto")
    return torch.device(name)


def _fields(obj) -> dict[str, tuple[dataclasses.Field, Any]]:
    """{name: (field, resolved type)} of a dataclass instance or class."""
    hints = typing.get_type_hints(obj if isinstance(obj, type) else type(obj))
    return {f.name: (f, hints.get(f.name, Any)) for f in dataclasses.fields(obj)}


def valid_keys(cfg) -> list[str]:
    """Every overridable dotted key of a (nested) dataclass config, in field order."""
    keys = []
    for name, _ in _fields(cfg).items():
        value = getattr(cfg, name)
        if dataclasses.is_dataclass(value):
            keys.extend(f"{name}.{sub}" for sub in valid_keys(value))
        else:
            keys.append(name)
    return keys


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(c) for c in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join("None" if a is type(None) else _type_name(a)
                           for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def parse_value(text: str, tp):
    """Parse the command-line string ``text`` as a value of type ``tp``; ValueError if not."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        for choice in typing.get_args(tp):
            if str(choice) == text:
                return choice
        raise ValueError
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and text.lower() in ("none", "null"):
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return parse_value(text, arg)
            except ValueError:
                pass
        raise ValueError
    if tp is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError
    if tp is int:
        return int(text)
    if tp is float:
        value = float(text)
        if value != value:
            raise ValueError
        return value
    if tp is str:
        return text
    raise ValueError


def _check_json_value(value, tp) -> bool:
    """Does a value read from JSON fit the annotated type ``tp``?"""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return value in typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return any(_check_json_value(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    return tp is Any


def apply_overrides(cfg, overrides: list[str]):
    """Set dotted keys of ``cfg`` in place from ``"a.b=value"`` strings; returns ``cfg``.

    Raises :class:`ConfigError` for a malformed override, an unknown key (listing the valid
    keys) or a value that does not parse as the field's type (naming key, type and value).
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        *path, leaf = key.split(".")
        target = cfg
        for part in path:
            if part not in _fields(target) or not dataclasses.is_dataclass(getattr(target, part)):
                target = None
                break
            target = getattr(target, part)
        fields = _fields(target) if target is not None else {}
        if leaf not in fields or dataclasses.is_dataclass(getattr(target, leaf)):
            raise ConfigError(f"unknown config key {key!r}; valid keys: "
                              + ", ".join(valid_keys(cfg)))
        tp = fields[leaf][1]
        try:
            value = parse_value(text.strip(), tp)
        except ValueError:
            raise ConfigError(f"bad value for {key}: expected {_type_name(tp)}, "
                              f"got {text!r}") from None
        setattr(target, leaf, value)
    return cfg


def to_dict(cfg) -> dict:
    """A nested dataclass config as plain JSON-able dicts."""
    return dataclasses.asdict(cfg)


def from_dict(template, data: dict, where: str = "config"):
    """Fill a copy of the dataclass config ``template`` from ``data`` (as written by
    :func:`to_dict`). Keys missing from ``data`` keep the template's values; an unknown key
    or a value of the wrong type is a :class:`ConfigError` naming it.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
    fields = _fields(template)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: "
                          + ", ".join(fields))
    values = {}
    for name, (_, tp) in fields.items():
        current = getattr(template, name)
        if name not in data:
            values[name] = current
        elif dataclasses.is_dataclass(current):
            values[name] = from_dict(current, data[name], f"{where}.{name}")
        elif _check_json_value(data[name], tp):
            values[name] = float(data[name]) if tp is float else data[name]
        else:
            raise ConfigError(f"{where}.{name}: expected {_type_name(tp)}, got {data[name]!r}")
    return dataclasses.replace(template, **values)
