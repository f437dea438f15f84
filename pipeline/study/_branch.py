"""A new study that starts from an earlier one.

``tune --branch NEW_NAME`` copies the finished trials of a study whose file changed what
its trials mean, keeping those still valid under the new file. ``warm_start:`` queues an
earlier study's best configurations first, or adds its finished trials as history.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from pipeline.config import ParamSpec, WarmStartConfig
from pipeline.exceptions import ConfigError
from pipeline.search import contains, is_active, to_distribution
from pipeline.storages import mask_url, open_storage
from pipeline.study._drift import DEFINITION_ATTR
from pipeline.trial import FINISHED, Attr, rank

BRANCH_ATTR = "branched_from"  # study user attribute: the study and trials it came from
WARM_START_ATTR = "warm_start"  # a trial's and the study's: the study and trial it came from


def import_trials(
    source: optuna.Study,
    target: optuna.Study,
    meaning: Mapping[str, Any],
    space: Mapping[str, ParamSpec],
) -> list[int]:
    """Copy ``source``'s finished trials that are valid under the new study's
    :func:`~pipeline.study._drift.definition` (``meaning``) and search ``space`` into
    ``target``; return the numbers of the trials copied.

    A trial is valid when the new search space takes every parameter it has and asks for
    no parameter it lacks. Its value is kept when the metric is the same, and read from
    the stored metric otherwise (its per-epoch values, of the old metric, are dropped).
    Nothing is copied when the task, epochs or precision changed: no trial would compare.
    """
    old = source.user_attrs.get(DEFINITION_ATTR, {})
    same = ("task", "trainable", "lightning", "transformers", "max_epochs", "precision")
    if any(old.get(key) != meaning.get(key) for key in same):
        return []
    metric = meaning["metric"]
    same_metric = old.get("metric") == metric
    if "objectives" in meaning or "objectives" in old:
        return (
            _import_pareto(source, target, space)
            if old.get("objectives") == meaning.get("objectives")
            else []
        )
    copied = []
    for trial in source.get_trials(deepcopy=False, states=FINISHED):
        dists = _fits(trial, space)
        if dists is None:
            continue
        value = trial.value if same_metric else trial.user_attrs.get(metric)
        if trial.state == TrialState.COMPLETE and value is None:
            continue
        target.add_trial(
            _copy(
                trial,
                dists,
                {"imported_from": trial.number},
                values=[value] if value is not None else None,
                curve=same_metric,
            )
        )
        copied.append(trial.number)
    target.set_user_attr(BRANCH_ATTR, {"study": source.study_name, "trials": copied})
    return copied


def _import_pareto(
    source: optuna.Study, target: optuna.Study, space: Mapping[str, ParamSpec]
) -> list[int]:
    """A branch of a study of the same objectives: the finished trials that fit."""
    copied = []
    for trial in source.get_trials(deepcopy=False, states=FINISHED):
        dists = _fits(trial, space)
        if dists is None:
            continue
        target.add_trial(
            _copy(trial, dists, {"imported_from": trial.number}, trial.values, curve=False)
        )
        copied.append(trial.number)
    target.set_user_attr(BRANCH_ATTR, {"study": source.study_name, "trials": copied})
    return copied


def _copy(
    trial: FrozenTrial,
    dists: dict[str, Any],
    origin: dict[str, Any],
    values: list[float] | None,
    curve: bool,
) -> FrozenTrial:
    """A finished trial of another study, as a trial of this one: its parameters under the
    new distributions, ``values`` if it completed, its portable attributes and ``origin``,
    and its per-epoch curve when ``curve`` (the same metric)."""
    return optuna.trial.create_trial(
        state=trial.state,
        values=values if trial.state == TrialState.COMPLETE else None,
        params=trial.params,
        distributions=dists,
        user_attrs={**_portable(trial.user_attrs), **origin},
        intermediate_values=trial.intermediate_values if curve else None,
    )


def _portable(attrs: Mapping[str, Any]) -> dict[str, Any]:
    # The checkpoint stays the parent's (the branch must not prune it), and the worker
    # that ran the trial is no concern of the branch's liveness rule.
    return {k: v for k, v in attrs.items() if k not in (Attr.CHECKPOINT, Attr.WORKER_PROCESS)}


def _fits(trial: FrozenTrial, space: Mapping[str, ParamSpec]) -> dict[str, Any] | None:
    """The new distributions of the trial's parameters, or None if it does not fit."""
    values: dict[str, Any] = {}
    dists = {}
    for name, spec in space.items():
        if not is_active(spec, {**values, **trial.params}):
            continue
        if spec.type == "fixed":
            values[name] = spec.value
            continue
        dist = to_distribution(spec)
        if name not in trial.params or dist is None:
            return None
        if not contains(dist, trial.params[name]):
            return None
        dists[name] = dist
        values[name] = trial.params[name]
    return dists if set(dists) == set(trial.params) else None


def warm_start(
    target: optuna.Study,
    storage: BaseStorage,
    storage_url: str,
    spec: WarmStartConfig,
    space: Mapping[str, ParamSpec],
) -> list[int]:
    """Queue the ``top_k`` best complete trials of study ``spec.study`` (in ``spec.storage``,
    else ``storage``, whose URL is ``storage_url``) in ``target``, best first,
    or with ``mode: history`` add its finished trials as ``target``'s history; each
    carries ``warm_start: {study, trial}``. Returns the source trials' numbers.

    Raises:
        ConfigError: a trial of ``source`` does not fit ``space`` (the message names the
            parameter), or the two studies optimize in different directions.
    """
    source_storage = (
        storage if spec.storage is None else open_storage(spec.storage, must_exist=True)
    )
    try:
        source = optuna.load_study(study_name=spec.study, storage=source_storage)
    except KeyError:
        where = mask_url(spec.storage or storage_url)
        raise ConfigError(
            "warm_start.from", f"there is no study {spec.study!r} in {where}"
        ) from None
    if source.directions != target.directions:
        raise ConfigError("warm_start.from", f"study {source.study_name!r} optimizes otherwise")
    if spec.mode == "history":
        trials = list(source.get_trials(deepcopy=False, states=FINISHED))
    else:
        complete = source.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        trials = rank(complete, source.directions[0])[: spec.top_k]
    fits = [(trial, _fits(trial, space)) for trial in trials]
    for trial, dists in fits:  # refused before anything is added
        if dists is None:
            raise ConfigError("warm_start", _misfit(source.study_name, trial, space))
    copies = []
    for trial, dists in fits:
        origin = {WARM_START_ATTR: {"study": source.study_name, "trial": trial.number}}
        if spec.mode == "enqueue":
            target.enqueue_trial(trial.params, user_attrs=origin)
            continue
        assert dists is not None  # refused above
        copies.append(_copy(trial, dists, origin, trial.values, curve=True))
    target.add_trials(copies)
    numbers = [t.number for t in trials]
    target.set_user_attr(WARM_START_ATTR, {"study": source.study_name, "trials": numbers})
    return numbers


def _misfit(name: str, trial: FrozenTrial, space: Mapping[str, ParamSpec]) -> str:
    """Which parameter keeps ``trial`` of study ``name`` out of ``space``, in one line."""
    for param, value in trial.params.items():
        spec = space.get(param)
        if spec is None or spec.type == "fixed":
            return f"parameter {param!r} of study {name!r} is not searched here"
        dist = to_distribution(spec)
        if dist is None or not contains(dist, value):
            return (
                f"parameter {param!r}: {value!r} (study {name!r}, trial #{trial.number}) "
                "is outside this search space"
            )
    missing = [p for p, s in space.items() if s.type != "fixed" and p not in trial.params]
    return f"parameter {missing[0]!r} is searched here but not in study {name!r}"


__all__ = ["BRANCH_ATTR", "WARM_START_ATTR", "import_trials", "warm_start"]
