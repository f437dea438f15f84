"""Pruner construction: one name -> factory table over Optuna's own pruners."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any

import optuna
from optuna.pruners import BasePruner

from pipeline.config import ConfigError, PrunerConfig
from pipeline.params import check_options


def _hyperband(max_epochs: int, **options: Any) -> BasePruner:
    options.setdefault("max_resource", max_epochs)
    return optuna.pruners.HyperbandPruner(**options)


PRUNERS: dict[str, Callable[..., BasePruner]] = {
    "none": optuna.pruners.NopPruner,
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    # Asynchronous successive halving, the algorithm behind Ray Tune's ASHAScheduler.
    "asha": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
}


def check_pruner(config: PrunerConfig) -> None:
    """Reject an unknown pruner, an option its constructor does not take, or a bad patience."""
    if config.name not in PRUNERS:
        raise ConfigError(
            "pruner.name",
            f"unknown pruner {config.name!r}; expected one of {', '.join(PRUNERS)}",
        )
    factory = PRUNERS[config.name]
    try:
        inspect.signature(factory).bind(**config.options)
    except TypeError as exc:
        raise ConfigError("pruner.options", f"{factory.__name__}: {exc}") from None
    check_options(factory, config.options, "pruner.options")
    if config.patience is not None:
        if config.name == "none":
            raise ConfigError("pruner.patience", "needs a pruner to wrap; pruner none never prunes")
        if config.patience < 0:
            raise ConfigError("pruner.patience", f"must be 0 or more, got {config.patience}")
    try:
        make_pruner(config, max_epochs=100)
    except (ValueError, TypeError) as exc:
        raise ConfigError("pruner.options", f"{factory.__name__}: {exc}") from None


def make_pruner(config: PrunerConfig, max_epochs: int) -> BasePruner:
    """Build the pruner; ``patience`` wraps it in Optuna's PatientPruner."""
    if config.name == "hyperband":
        pruner = _hyperband(max_epochs, **config.options)
    else:
        pruner = PRUNERS[config.name](**config.options)
    if config.patience is not None:
        with warnings.catch_warnings():  # marked experimental; used on purpose
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            pruner = optuna.pruners.PatientPruner(pruner, patience=config.patience)
    return pruner


__all__ = ["PRUNERS", "check_pruner", "make_pruner"]
