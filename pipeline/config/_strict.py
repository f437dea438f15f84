"""Strict conversion of loaded YAML data to typed dataclasses, and its error.

The one generic converter checks a value against a type hint (a Literal, a Union, a
dict, a list, a dataclass, a plain scalar) and builds the dataclasses: an unknown key, a
value of the wrong type or a missing required key ends in a :class:`ConfigError` whose
one-line message names the dotted key and what was expected. It imports nothing from
the package.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from pipeline.exceptions import ConfigError


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        names = [_type_name(a) for a in get_args(tp) if a is not type(None)]
        optional = type(None) in get_args(tp)
        return " or ".join(names) + (" or null" if optional else "")
    if origin is dict or tp is dict:
        return "a mapping"
    if origin is list or tp is list:
        return "a list"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, str(tp)
    )


def convert(tp: Any, value: Any, key: str) -> Any:
    """Check ``value`` against the type ``tp`` and build dataclasses; raise ConfigError."""
    if tp is Any:
        return value
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        others = [arg for arg in args if arg is not type(None)]
        if len(others) == 1 and dataclasses.is_dataclass(others[0]) and isinstance(value, dict):
            return convert(others[0], value, key)  # its own message: the unknown key, say
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert(arg, value, key)
            except ConfigError:
                continue
        raise ConfigError(key, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ConfigError(key, f"expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {value!r}")
        return _build_dataclass(tp, value, key)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {value!r}")
        _, value_tp = get_args(tp) or (str, Any)
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(key, f"keys must be strings, got {k!r}")
            out[k] = convert(value_tp, v, _join(key, k))
        return out
    if origin is list or tp is list:
        if not isinstance(value, list):
            raise ConfigError(key, f"expected a list, got {value!r}")
        (item_tp,) = get_args(tp) or (Any,)
        return [convert(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is float:
        number: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML reads "1e-4" (no dot) as a string
            with contextlib.suppress(ValueError):
                number = float(value)
        if number is not None:
            if not math.isfinite(number):  # .nan or .inf would never end a wait
                raise ConfigError(key, f"expected a finite number, got {value!r}")
            return number
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp in (str, bool):
        if isinstance(value, tp):
            return value
    else:  # pragma: no cover - a schema bug, not a user mistake
        raise TypeError(f"unsupported schema type {tp!r}")
    raise ConfigError(key, f"expected {_type_name(tp)}, got {value!r}")


def _build_dataclass(cls: Any, data: dict[str, Any], key: str) -> Any:
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    for name in data:
        if name not in fields:
            close = difflib.get_close_matches(str(name), list(fields), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            expected = ", ".join(fields)
            raise ConfigError(
                _join(key, str(name)), f"unknown key; {hint}expected one of: {expected}"
            )
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = convert(hints[name], data[name], _join(key, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(_join(key, name), "required key is missing")
    return cls(**kwargs)


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


__all__ = ["convert"]
