"""Pruner construction: one name -> factory table over Optuna's own pruners."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.pruners import BasePruner
from optuna.trial import TrialState

from pipeline.config import MEASURED_DIRECTIONS, ObjectiveConfig, PrunerConfig
from pipeline.exceptions import ConfigError
from pipeline.search._params import check_options
from pipeline.search._ray_asha import RayAshaPruner


def _hyperband(max_epochs: int, **options: Any) -> BasePruner:
    options.setdefault("max_resource", max_epochs)
    return optuna.pruners.HyperbandPruner(**options)


# ``asha``'s ``rule``: whose cutoff decides at a rung (docs/schedulers.md).
ASHA_RULES: dict[str, Callable[..., BasePruner]] = {
    "optuna": optuna.pruners.SuccessiveHalvingPruner,
    "ray": RayAshaPruner,
}

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
    factory, options = _factory(config)
    check_options(factory, options, "pruner.options")
    if config.patience is not None:
        if config.name == "none":
            raise ConfigError("pruner.patience", "needs a pruner to wrap; pruner none never prunes")
        if config.patience < 0:
            raise ConfigError("pruner.patience", f"must be 0 or more, got {config.patience}")
    try:
        make_pruner(config, max_epochs=100)
    except (ValueError, TypeError) as exc:
        raise ConfigError("pruner.options", f"{factory.__name__}: {exc}") from None


def _factory(config: PrunerConfig) -> tuple[Callable[..., BasePruner], dict[str, Any]]:
    """The constructor the config names and the options it takes (``asha``'s ``rule``
    picks the constructor)."""
    options = dict(config.options)
    if config.name != "asha":
        return PRUNERS[config.name], options
    rule = options.pop("rule", "optuna")
    if rule not in ASHA_RULES:
        raise ConfigError("pruner.options.rule", f"expected optuna or ray, got {rule!r}")
    return ASHA_RULES[rule], options


# Pruners that keep their own records in the study (successive halving's rungs) and so
# cannot judge a multi-objective trial through a copy of the first objective.
_ONE_OBJECTIVE = {"asha", "hyperband"}


def check_pruner_objectives(config: PrunerConfig, objectives: Sequence[ObjectiveConfig]) -> None:
    """Refuse a pruner that cannot prune this study: in a study of several objectives the
    pipeline prunes on the first one, which must then be a metric reported every epoch."""
    if len(objectives) < 2 or config.name == "none":
        return
    if config.name in _ONE_OBJECTIVE:
        raise ConfigError(
            "pruner.name",
            f"{config.name} cannot prune a study of several objectives; "
            "use median, percentile or none (they prune on the first objective)",
        )
    first = objectives[0].metric
    if first in MEASURED_DIRECTIONS:
        raise ConfigError(
            "pruner.name",
            f"{config.name} prunes on the first objective, {first}, which no epoch reports; "
            "list an epoch metric such as val_loss first, or use pruner: none",
        )


class FirstObjectivePruning:
    """Pruning of a multi-objective trial on its first objective.

    Optuna keeps no intermediate values in a study of several objectives, so the
    per-epoch values of the first objective are read from the trials' stored
    ``history`` and judged by the study's own pruner in an in-memory study of that one
    objective: the complete trials' curves, and this trial's so far.
    """

    def __init__(self, study: optuna.Study, metric: str) -> None:
        self.study = study
        self.metric = metric
        self.shadow = optuna.create_study(direction=study.directions[0], pruner=study.pruner)
        self.seen: set[int] = set()

    def __call__(self, history: Sequence[dict[str, Any]]) -> bool:
        """Whether the pruner stops a trial with this ``history`` (epoch rows)."""
        if isinstance(self.study.pruner, optuna.pruners.NopPruner):
            return False
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if trial.number not in self.seen:
                self.seen.add(trial.number)
                curve = _curve(trial.user_attrs.get("history") or [], self.metric)
                if curve and trial.values:
                    self.shadow.add_trial(
                        optuna.trial.create_trial(value=trial.values[0], intermediate_values=curve)
                    )
        running = optuna.trial.create_trial(
            state=TrialState.RUNNING, intermediate_values=_curve(history, self.metric)
        )
        return bool(self.shadow.pruner.prune(self.shadow, running))


def _curve(history: Sequence[dict[str, Any]], metric: str) -> dict[int, float]:
    return {
        int(row["epoch"]): float(row[metric])
        for row in history
        if isinstance(row, dict) and "epoch" in row and isinstance(row.get(metric), (int, float))
    }


def make_pruner(config: PrunerConfig, max_epochs: int) -> BasePruner:
    """Build the pruner; ``patience`` wraps it in Optuna's PatientPruner."""
    factory, options = _factory(config)
    if config.name == "hyperband":
        pruner = _hyperband(max_epochs, **options)
    elif factory is RayAshaPruner:
        pruner = RayAshaPruner(**{"max_resource": max_epochs, **options})
    else:
        pruner = factory(**options)
    if config.patience is not None:
        with warnings.catch_warnings():  # marked experimental; used on purpose
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            pruner = optuna.pruners.PatientPruner(pruner, patience=config.patience)
    return pruner


__all__ = [
    "ASHA_RULES",
    "PRUNERS",
    "FirstObjectivePruning",
    "check_pruner",
    "check_pruner_objectives",
    "make_pruner",
]
