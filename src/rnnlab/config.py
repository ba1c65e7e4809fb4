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

__all__ = ["ConfigError", "RunConfig", "apply_overrides", "valid_keys", "to_dict", "from_dict"]


class ConfigError(ValueError):
    """A config key or value that cannot be used; the message says which and why."""


@dataclass
class RunConfig:
    """The full config of a run: the task's model and data configs and the training config."""

    model: Any
    data: Any
    train: Any


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
