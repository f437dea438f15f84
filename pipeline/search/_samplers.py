"""Sampler construction: one name -> factory table over Optuna's own samplers."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import optuna
from optuna.samplers import BaseSampler

from pipeline.config import ParamSpec, SamplerConfig
from pipeline.exceptions import ConfigError
from pipeline.search._params import check_options
from pipeline.search._space import grid_values

SAMPLERS: dict[str, Callable[..., BaseSampler]] = {
    "grid": optuna.samplers.GridSampler,
    "random": optuna.samplers.RandomSampler,
    "tpe": optuna.samplers.TPESampler,
    "gp": optuna.samplers.GPSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "qmc": optuna.samplers.QMCSampler,
    "nsga2": optuna.samplers.NSGAIISampler,
    "nsga3": optuna.samplers.NSGAIIISampler,
}

# Samplers that optimize one objective only (Optuna raises on the first trial otherwise).
_ONE_OBJECTIVE = {"cmaes"}

# Samplers whose workers must share one seed: QMC's points come from one scrambled
# sequence indexed through the study, so a per-worker seed would mix sequences.
_SHARED_SEED = {"qmc"}


def check_sampler(config: SamplerConfig, space: Mapping[str, ParamSpec]) -> None:
    """Reject an unknown sampler, an option its constructor does not take, or a grid
    search over a continuous parameter without grid values."""
    if config.name not in SAMPLERS:
        raise ConfigError(
            "sampler.name",
            f"unknown sampler {config.name!r}; expected one of {', '.join(SAMPLERS)}",
        )
    for reserved in ("seed", "search_space"):
        if reserved in config.options:
            raise ConfigError(f"sampler.options.{reserved}", "is set by the pipeline; remove it")
    # The pipeline passes the seed and, for grid, the search space.
    check_options(SAMPLERS[config.name], config.options, "sampler.options", partial=True)
    if config.name == "grid":
        for name, spec in space.items():
            try:
                grid_values(name, spec)
            except ValueError as exc:
                raise ConfigError(
                    f"search_space.{name}.grid", str(exc).partition(": ")[2]
                ) from None
    try:
        make_sampler(config, space)
    except (TypeError, ValueError) as exc:
        raise ConfigError("sampler.options", f"{SAMPLERS[config.name].__name__}: {exc}") from None


def check_sampler_objectives(config: SamplerConfig, objectives: int) -> None:
    """Refuse a sampler that cannot optimize the study's number of objectives."""
    if objectives > 1 and config.name in _ONE_OBJECTIVE:
        usable = ", ".join(n for n in SAMPLERS if n not in _ONE_OBJECTIVE)
        raise ConfigError(
            "sampler.name",
            f"{config.name} optimizes one objective; with {objectives} objectives use {usable}",
        )


def sampler_seed(seed: int, worker: int, progress: int) -> int:
    """The seed of one worker's sampler: distinct per worker, and per run, since
    ``progress`` (trials the study held when the worker started) grows with every run.
    A rerun therefore continues the sequence instead of replaying the first run's draws;
    a run repeats exactly when it starts from the same study state."""
    return int(np.random.SeedSequence([seed, worker, progress]).generate_state(1)[0])


def make_sampler(
    config: SamplerConfig,
    space: Mapping[str, ParamSpec],
    worker: int = 0,
    progress: int = 0,
) -> BaseSampler:
    """Build the study's sampler for one worker.

    Workers get seeds from :func:`sampler_seed`, so that parallel workers of a seeded
    study do not propose the same points and a resumed study does not repeat itself.
    """
    seed = config.seed
    if seed is not None and config.name not in _SHARED_SEED:
        seed = sampler_seed(seed, worker, progress)
    kwargs: dict[str, Any] = dict(config.options)
    if config.name == "grid":
        grid = {
            name: grid_values(name, spec) for name, spec in space.items() if spec.type != "fixed"
        }
        return optuna.samplers.GridSampler(grid, seed=seed)
    with warnings.catch_warnings():  # QMCSampler is marked experimental; used on purpose
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return SAMPLERS[config.name](seed=seed, **kwargs)


__all__ = [
    "SAMPLERS",
    "check_sampler",
    "check_sampler_objectives",
    "make_sampler",
    "sampler_seed",
]
