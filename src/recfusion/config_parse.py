"""YAML -> typed frozen dataclasses: reading, merging and type checking, for any schema.

The schema (the dataclasses, their names and value rules) lives in `recfusion.config`; this
module knows nothing of it. Every error is a `ConfigError` whose message starts with the source
(the file, or "overrides") and names the dotted key.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """params.yaml (or an override) does not match the typed configuration."""


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping at the top of YAML file `path`.

    Raises:
        ConfigError: the file is missing, not YAML, or not a mapping at the top level.
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: file not found (run from the project root?)") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


def fill_missing(
    raw: Mapping[str, Any], defaults: Mapping[str, Any], prefix: str = ""
) -> tuple[dict[str, Any], list[str]]:
    """`raw` with every key of `defaults` it lacks added (recursively), and the dotted keys added.

    Example: fill_missing({"a": {"x": 1}}, {"a": {"x": 2, "y": 3}, "b": 4})
        -> ({"a": {"x": 1, "y": 3}, "b": 4}, ["a.y", "b"])
    """
    out, added = dict(raw), []
    for key, value in defaults.items():
        if key not in out:
            out[key] = value
            added.append(prefix + key)
        elif isinstance(out[key], Mapping) and isinstance(value, Mapping):
            out[key], more = fill_missing(out[key], value, f"{prefix}{key}.")
            added.extend(more)
    return out, added


def merge_overrides(
    base: Mapping[str, Any], overrides: Mapping[str, Any], source: str, prefix: str = ""
) -> dict[str, Any]:
    """Deep-merges `overrides` into a copy of `base`; an override of an unknown key is an error."""
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        name = f"{prefix}{key}"
        if key not in merged:
            raise ConfigError(f"{source}: override of unknown key '{name}'")
        if isinstance(value, Mapping) and isinstance(merged[key], Mapping):
            merged[key] = merge_overrides(merged[key], value, source, prefix=f"{name}.")
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def to_plain(value: Any) -> Any:
    """A parsed config back in the shape params.yaml holds: dataclasses and mappings as dicts,
    tuples as lists. `parse_dataclass(type(cfg), to_plain(cfg), ...)` gives `cfg` again, and
    str() of a value is what it was before the config held tuples (MLflow params)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return value


def parse_dataclass(cls: type, raw: Any, source: str, prefix: str = "") -> Any:
    """Builds dataclass `cls` from a mapping, checking every key and type.

    Lists become tuples (`tuple[X, ...]` fields), so the result is immutable but for the dicts.
    """
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: '{where}' must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in raw if k not in names]
    if unknown:
        raise ConfigError(
            f"{source}: unknown key '{prefix}{unknown[0]}' (allowed under {where}: "
            f"{', '.join(names)})"
        )
    missing = [n for n in names if n not in raw]
    if missing:
        raise ConfigError(f"{source}: missing key '{prefix}{missing[0]}'")
    values = {n: _parse_value(hints[n], raw[n], source, f"{prefix}{n}") for n in names}
    return cls(**values)


def _parse_value(tp: Any, value: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return parse_dataclass(tp, value, source, prefix=f"{key}.")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _parse_value(inner[0], value, source, key)
    if origin is Literal:
        if value not in args:
            allowed = " | ".join(repr(a) for a in args)
            raise ConfigError(f"{source}: key '{key}' must be one of {allowed}, got {value!r}")
        return value
    if origin is tuple:  # tuple[X, ...]: a YAML list
        if not isinstance(value, list | tuple):
            raise _type_error(source, key, "a list", value)
        return tuple(_parse_value(args[0], v, source, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise _type_error(source, key, "a mapping", value)
        return {
            _parse_value(args[0], k, source, f"{key}.{k}"): _parse_value(
                args[1], v, source, f"{key}.{k}"
            )
            for k, v in value.items()
        }
    if tp is bool:
        if not isinstance(value, bool):
            raise _type_error(source, key, "true or false", value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(source, key, "an integer", value)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(source, key, "a number", value)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _type_error(source, key, "a string", value)
        return value
    raise ConfigError(f"{source}: key '{key}' has an unsupported type {tp!r}")  # pragma: no cover


def _type_error(source: str, key: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(
        f"{source}: key '{key}' must be {expected}, got {type(value).__name__} {value!r}"
    )
