"""``tune --branch NEW_NAME``: a new study that starts from the finished trials of one
whose file changed what its trials mean, keeping those still valid under the new file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from pipeline.config import ParamSpec
from pipeline.search import contains, is_active, to_distribution
from pipeline.study._drift import DEFINITION_ATTR
from pipeline.trial import FINISHED, Attr

BRANCH_ATTR = "branched_from"  # study user attribute: the study and trials it came from


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
    if any(
        old.get(key) != meaning.get(key) for key in ("task", "trainable", "max_epochs", "precision")
    ):
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
            optuna.trial.create_trial(
                state=trial.state,
                value=value if trial.state == TrialState.COMPLETE else None,
                params=trial.params,
                distributions=dists,
                user_attrs={**_portable(trial.user_attrs), "imported_from": trial.number},
                intermediate_values=trial.intermediate_values if same_metric else None,
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
            optuna.trial.create_trial(
                state=trial.state,
                values=trial.values if trial.state == TrialState.COMPLETE else None,
                params=trial.params,
                distributions=dists,
                user_attrs={**_portable(trial.user_attrs), "imported_from": trial.number},
            )
        )
        copied.append(trial.number)
    target.set_user_attr(BRANCH_ATTR, {"study": source.study_name, "trials": copied})
    return copied


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


__all__ = ["BRANCH_ATTR", "import_trials"]
