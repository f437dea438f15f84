"""The study-file schema of the search strategy: ``sampler``, ``pruner`` and
``scheduler`` (population-based training, docs/schedulers.md).

Samplers and pruners are Optuna's, by name. A scheduler moves checkpoints between trials, which a pruner cannot: with ``name: pbt``
every trial is one segment of ``interval`` epochs of one member of a population, and a
member that falls behind goes on from a better member's checkpoint with perturbed
hyperparameters. Part of the schema: it imports nothing from the package but the
exceptions, nor torch or optuna.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.exceptions import ConfigError


@dataclass(frozen=True)
class SamplerConfig:
    """An Optuna sampler by name; ``options`` go to its constructor unchanged."""

    name: str = "tpe"
    seed: int | None = 0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PrunerConfig:
    """An Optuna pruner by name, optionally wrapped in ``PatientPruner(patience)``."""

    name: str = "median"
    options: dict[str, Any] = field(default_factory=dict)
    patience: int | None = None


@dataclass(frozen=True)
class PbtOptions:
    """Population-based training, with Ray Tune's ``PopulationBasedTraining`` defaults
    where it has them."""

    population: int = 8  # members trained side by side
    interval: int = 2  # epochs between exploit/explore decisions: one trial per segment
    quantile: float = 0.25  # the bottom quantile copies a member of the top one
    resample_probability: float = 0.25  # a mutated value is drawn anew instead of perturbed
    perturbation_factors: list[float] = field(default_factory=lambda: [0.8, 1.2])
    synchronous: bool = False  # decide per generation, once every member finished it
    mutate: list[str] | None = None  # None: every searched float and int


@dataclass(frozen=True)
class SchedulerConfig:
    """A scheduler by name; ``pbt`` is the one there is."""

    name: Literal["pbt"] = "pbt"
    options: PbtOptions = field(default_factory=PbtOptions)

    def generations(self, max_epochs: int) -> int:
        """Segments each member trains to reach ``max_epochs``."""
        return math.ceil(max_epochs / self.options.interval)


def check_scheduler(
    scheduler: SchedulerConfig | None, space: Mapping[str, Any], max_epochs: int, pruner: str
) -> None:
    """Refuse options PBT cannot run with: a population too small to rank, an interval
    past the study's epochs, a quantile outside (0, 0.5], a mutated name that is not a
    searched hyperparameter, or a pruner beside it (PBT keeps every member alive)."""
    if scheduler is None:
        return
    o, key = scheduler.options, "scheduler.options"
    if o.population < 2:
        raise ConfigError(f"{key}.population", f"must be at least 2, got {o.population}")
    if not 1 <= o.interval <= max_epochs:
        raise ConfigError(
            f"{key}.interval", f"must be between 1 and max_epochs ({max_epochs}), got {o.interval}"
        )
    if not 0 < o.quantile <= 0.5:
        raise ConfigError(f"{key}.quantile", f"must be above 0 and at most 0.5, got {o.quantile}")
    if not 0 <= o.resample_probability <= 1:
        raise ConfigError(f"{key}.resample_probability", "must be between 0 and 1")
    if not o.perturbation_factors or any(f <= 0 for f in o.perturbation_factors):
        raise ConfigError(f"{key}.perturbation_factors", "must be a list of positive factors")
    searched = [n for n, s in space.items() if getattr(s, "type", None) != "fixed"]
    for name in o.mutate or []:
        if name not in searched:
            raise ConfigError(
                f"{key}.mutate",
                f"{name!r} is not a searched hyperparameter; expected some of "
                f"{', '.join(searched) or '(none)'}",
            )
    if pruner != "none":
        raise ConfigError(
            "pruner", "PBT keeps every member training; set pruner: {name: none} beside it"
        )


__all__ = ["PbtOptions", "PrunerConfig", "SamplerConfig", "SchedulerConfig", "check_scheduler"]
