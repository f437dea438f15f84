"""A study file that changed between runs of one study.

What a trial means is fixed when the study is created: the task and its options, the
search space, the metric and its direction, the epochs and the precision. A resume
whose file changes any of these is refused with a diff; ``tune --branch NEW_NAME``
starts a new study instead and imports the finished trials that are still valid under
the new definition. Changes that leave the meaning alone (the budget, workers, retries,
sampler, pruner) are allowed, logged, and kept in the study's run history. Grid values
added to a float or int parameter queue their new points.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from pipeline import space
from pipeline.config import ConfigError, StudyConfig
from pipeline.trials import FINISHED, Attr

DEFINITION_ATTR = "definition"  # study user attribute: what its trials mean
BRANCH_ATTR = "branched_from"
MEANING = ("task", "search_space", "metric", "direction", "max_epochs", "precision")


def definition(config: StudyConfig) -> dict[str, Any]:
    """The part of a study file that gives its trials their meaning. ``grid:`` values
    are left out: more of them only add points to a grid."""
    data = config.to_dict()
    out = {key: data[key] for key in MEANING}
    if config.trainable is not None:  # absent otherwise, as in studies made before it
        out["trainable"] = config.trainable
    for key in ("objectives", "constraints"):  # absent for one unconstrained objective
        if key in data:
            out[key] = data[key]
    out["search_space"] = {
        # A fixed false or null is left out, as studies made before it was kept have it.
        name: {k: v for k, v in spec.items() if k != "grid" and v not in (None, False)}
        for name, spec in data["search_space"].items()
    }
    return out


def changes(old: Any, new: Any, key: str = "") -> list[str]:
    """``key: old -> new`` for every leaf that differs, dotted keys, sorted."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out = []
        for name in sorted(set(old) | set(new), key=str):
            child = f"{key}.{name}" if key else str(name)
            if name not in old:
                out.append(f"{child}: added {new[name]!r}")
            elif name not in new:
                out.append(f"{child}: removed (was {old[name]!r})")
            else:
                out += changes(old[name], new[name], child)
        return out
    return [] if old == new else [f"{key}: {old!r} -> {new!r}"]


def check_resume(study: optuna.Study, config: StudyConfig) -> None:
    """Refuse to resume ``study`` with a file that changes what its trials mean.

    Raises:
        ConfigError: naming what changed.
    """
    stored = study.user_attrs.get(DEFINITION_ATTR)
    if stored is None:  # made before definitions were stored: adopt this one
        study.set_user_attr(DEFINITION_ATTR, definition(config))
        return
    diff = changes(stored, definition(config))
    if diff:
        shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
        raise ConfigError(
            "",
            f"this file changes what the trials of study {config.study_name!r} mean ({shown}); "
            "restore it, or run `pipeline tune FILE --branch NEW_NAME` to start a new study "
            "from the trials that still fit",
        )


def import_trials(source: optuna.Study, target: optuna.Study, config: StudyConfig) -> list[int]:
    """Copy ``source``'s finished trials that are valid under ``config`` into ``target``;
    return the numbers of the trials copied.

    A trial is valid when the new search space takes every parameter it has and asks for
    no parameter it lacks. Its value is kept when the metric is the same, and read from
    the stored metric otherwise (its per-epoch values, of the old metric, are dropped).
    Nothing is copied when the task, epochs or precision changed: no trial would compare.
    """
    old = source.user_attrs.get(DEFINITION_ATTR, {})
    new = definition(config)
    if any(
        old.get(key) != new.get(key) for key in ("task", "trainable", "max_epochs", "precision")
    ):
        return []
    same_metric = old.get("metric") == config.metric
    if config.multi_objective or "objectives" in old:
        return (
            _import_pareto(source, target, config)
            if old.get("objectives") == new.get("objectives")
            else []
        )
    copied = []
    for trial in source.get_trials(deepcopy=False, states=FINISHED):
        dists = _fits(trial, config)
        if dists is None:
            continue
        value = trial.value if same_metric else trial.user_attrs.get(config.metric)
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


def _import_pareto(source: optuna.Study, target: optuna.Study, config: StudyConfig) -> list[int]:
    """A branch of a study of the same objectives: the finished trials that fit."""
    copied = []
    for trial in source.get_trials(deepcopy=False, states=FINISHED):
        dists = _fits(trial, config)
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


def _fits(trial: FrozenTrial, config: StudyConfig) -> dict[str, Any] | None:
    """The new distributions of the trial's parameters, or None if it does not fit."""
    values: dict[str, Any] = {}
    dists = {}
    for name, spec in config.search_space.items():
        if not space.is_active(spec, {**values, **trial.params}):
            continue
        if spec.type == "fixed":
            values[name] = spec.value
            continue
        dist = space.to_distribution(spec)
        if name not in trial.params or dist is None:
            return None
        if not space.contains(dist, trial.params[name]):
            return None
        dists[name] = dist
        values[name] = trial.params[name]
    return dists if set(dists) == set(trial.params) else None


def grid_values_of(config: StudyConfig) -> dict[str, list[Any]]:
    """The values the grid takes per searched parameter (stored with a grid study)."""
    return {
        name: space.grid_values(name, spec)
        for name, spec in config.search_space.items()
        if spec.type != "fixed"
    }


def new_grid_points(stored: Mapping[str, list[Any]], config: StudyConfig) -> list[dict[str, Any]]:
    """The points of ``config``'s grid that a grid of the ``stored`` values lacked."""
    before = {
        name: dataclasses.replace(spec, grid=list(stored[name]))
        if spec.type in ("float", "int") and name in stored
        else spec
        for name, spec in config.search_space.items()
    }
    old = space.grid_points(before)
    return [p for p in space.grid_points(config.search_space) if p not in old]


__all__ = [
    "BRANCH_ATTR",
    "DEFINITION_ATTR",
    "changes",
    "check_resume",
    "definition",
    "grid_values_of",
    "import_trials",
    "new_grid_points",
]
