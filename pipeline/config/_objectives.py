"""The study-file schema of several objectives and constraints (docs/multi-objective.md):
``objectives:``, ``constraints:`` and the metrics the pipeline measures itself.

Part of the schema, kept apart from :mod:`pipeline.config` (which re-exports it) so that
each stays readable; like it, it imports nothing from the package but
:mod:`pipeline.config._strict`, nor torch or optuna.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pipeline.exceptions import ConfigError

# The metrics the built-in loop reports, and which way is better. A study of any other
# metric (a trainable's own, a task's custom one) must say its direction.
KNOWN_DIRECTIONS: dict[str, str] = {
    "train_loss": "minimize",
    "val_loss": "minimize",
    "val_accuracy": "maximize",
    "val_macro_f1": "maximize",
    "val_rmse": "minimize",
    "val_mae": "minimize",
    "val_r2": "maximize",
}


# What the pipeline measures for every trial without user code, and which way is better.
MEASURED_DIRECTIONS: dict[str, str] = {
    "params": "minimize",  # trainable parameters
    "latency_ms": "minimize",  # median forward time of one inference batch
    "peak_memory_mb": "minimize",  # peak CUDA memory, or peak RSS growth on CPU
    "compute_seconds": "minimize",  # inside forward, backward and evaluation
}


@dataclass(frozen=True)
class ObjectiveConfig:
    """One entry of ``objectives``: a metric and which way is better."""

    metric: str
    direction: Literal["minimize", "maximize"] | None = None  # None: the metric's own


@dataclass(frozen=True)
class LimitConfig:
    """One entry of ``constraints``: the bounds a feasible trial's metric stays within."""

    max: float | None = None
    min: float | None = None


def check_objectives(
    objectives: Sequence[ObjectiveConfig],
    constraints: Mapping[str, LimitConfig],
    inference_batch_size: int,
) -> None:
    """Names, duplicates and bounds of the objectives and constraints.

    Raises:
        ConfigError: naming the dotted key.
    """
    names = [o.metric for o in objectives]
    for i, name in enumerate(names):
        if not name.isidentifier():
            raise ConfigError(
                f"objectives[{i}].metric", f"expected a metric name such as val_loss, got {name!r}"
            )
        if name in names[:i]:
            raise ConfigError(f"objectives[{i}].metric", f"{name} is already an objective")
    for name, limit in constraints.items():
        key = f"constraints.{name}"
        if not name.isidentifier():
            raise ConfigError(key, "expected a metric name such as latency_ms")
        if limit.max is None and limit.min is None:
            raise ConfigError(key, "set max:, min: or both")
        if limit.max is not None and limit.min is not None and limit.min > limit.max:
            raise ConfigError(key, f"min {limit.min:g} is above max {limit.max:g}")
    if inference_batch_size < 1:
        raise ConfigError("inference_batch_size", "must be at least 1")


__all__ = ["MEASURED_DIRECTIONS", "LimitConfig", "ObjectiveConfig", "check_objectives"]
