"""The study file's controls beyond the budget: how long one trial may run
(``trial_timeout``) and when the study stops early (``stop``).

Durations are seconds or text with a unit: ``90``, ``20s``, ``30m``, ``2h``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from pipeline.exceptions import ConfigError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


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


def resolve_control(config: Any) -> Any:
    """``config`` (a StudyConfig) with ``trial_timeout`` in seconds, its stop checked."""
    check_stop(config.stop)
    return dataclasses.replace(
        config, trial_timeout=seconds_of(config.trial_timeout, "trial_timeout")
    )


__all__ = [
    "PlateauConfig",
    "StopConfig",
    "check_stop",
    "duration_text",
    "resolve_control",
    "seconds_of",
]
