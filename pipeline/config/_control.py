"""The study file's controls beyond the budget: how long one trial may run
(``trial_timeout``) and when the study stops early (``stop``).

Durations are seconds or text with a unit: ``90``, ``20s``, ``30m``, ``2h``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.exceptions import ConfigError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
CONTROL_KEYS = ("trial_timeout", "stop", "warm_start")  # the study-file keys of this module


@dataclass(frozen=True)
class PlateauConfig:
    """Stop when the best value has not improved by ``min_delta`` in ``trials`` finished
    trials."""

    trials: int
    min_delta: float = 0.0


@dataclass(frozen=True)
class StopConfig:
    """When the study stops scheduling trials before its budget is spent."""

    target: float | None = None  # the metric reached this value (in its direction)
    plateau: PlateauConfig | None = None


@dataclass(frozen=True)
class WarmStartConfig:
    """Start from an earlier study: its ``top_k`` best configurations queued first
    (``mode: enqueue``), or its finished trials as history (``as: history``). The file
    writes ``from`` and ``as``; they are ``study`` and ``mode`` here."""

    study: str
    storage: str | None = None  # None: the study file's own
    top_k: int = 5
    mode: Literal["enqueue", "history"] = "enqueue"


_WARM_START_KEYS = {"from": "study", "as": "mode"}


def control_keys(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with ``trial_timeout`` in seconds, and ``warm_start``'s ``from`` and
    ``as`` (Python keywords) renamed to their field names."""
    if raw.get("trial_timeout") is not None:
        raw = {**raw, "trial_timeout": seconds_of(raw["trial_timeout"], "trial_timeout")}
    warm = raw.get("warm_start")
    if not isinstance(warm, dict):
        return raw
    for word, field in _WARM_START_KEYS.items():
        if field in warm:
            raise ConfigError(f"warm_start.{field}", f"unknown key; write {word}:")
    renamed = {_WARM_START_KEYS.get(k, k): v for k, v in warm.items()}
    return {**raw, "warm_start": renamed}


def seconds_of(value: Any, key: str) -> float | None:
    """A duration (``20``, ``"20s"``, ``"30m"``, ``"2h"``) in seconds; None stays None.

    Raises:
        ConfigError: not a positive duration.
    """
    if value is None:
        return None
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", value)
        if match:
            seconds = float(match[1]) * _UNITS[match[2] or "s"]
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(key, f"expected a positive duration (20, 20s, 30m, 2h), got {value!r}")
    return seconds


def duration_text(seconds: float) -> str:
    """``1800`` -> ``30m``, ``20`` -> ``20s``: a duration as a study file would write it."""
    for unit in ("h", "m"):
        if seconds >= _UNITS[unit] and seconds % _UNITS[unit] == 0:
            return f"{int(seconds // _UNITS[unit])}{unit}"
    return f"{seconds:g}s"


def check_stop(stop: StopConfig | None) -> None:
    """Refuse a plateau that can never be judged."""
    if stop is None or stop.plateau is None:
        return
    if stop.plateau.trials < 1:
        raise ConfigError("stop.plateau.trials", f"must be at least 1, got {stop.plateau.trials}")
    if stop.plateau.min_delta < 0:
        raise ConfigError("stop.plateau.min_delta", "must be 0 or more")


def resolve_control(raw: dict[str, Any], convert: Callable[[dict[str, Any]], Any]) -> Any:
    """The StudyConfig ``convert`` makes of :func:`control_keys` of ``raw``, its stop and
    warm start checked."""
    config = convert(control_keys(raw))
    check_stop(config.stop)
    if config.warm_start is not None and config.warm_start.top_k < 1:
        raise ConfigError("warm_start.top_k", f"must be at least 1, got {config.warm_start.top_k}")
    return config


__all__ = [
    "CONTROL_KEYS",
    "PlateauConfig",
    "StopConfig",
    "WarmStartConfig",
    "check_stop",
    "control_keys",
    "duration_text",
    "resolve_control",
    "seconds_of",
]
