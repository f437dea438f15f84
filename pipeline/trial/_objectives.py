"""Several objectives and constraints: feasibility, the Pareto front and its hypervolume.

A study's constraints are stored with each trial through Optuna's own
``Trial.set_constraint`` (one value per constrained metric, computed by :class:`Limits`
from the trial's metrics; feasible when every value is at most 0), so that Optuna's
samplers (TPE, GP, NSGA-II/III steer away from infeasible regions; random, grid and QMC
sample blindly), ``Study.best_trials``, its plots and the dashboard all see them. Every
reader here counts feasible trials only: :func:`front` and
:func:`pipeline.trial.best_trial`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from pipeline.config import LimitConfig
from pipeline.trial._trials import is_feasible

UNKNOWN_VIOLATION = 1.0  # a constrained metric the trial never reached counts as violated


@dataclass(frozen=True)
class Limits:
    """The study's constraints: per metric, the larger of ``value - max`` and
    ``min - value`` (at most 0 when the metric is within its bounds)."""

    limits: tuple[tuple[str, float | None, float | None], ...]

    @classmethod
    def of(cls, constraints: Mapping[str, LimitConfig]) -> Limits:
        """The limits of a study file's ``constraints``."""
        return cls(tuple((name, c.min, c.max) for name, c in constraints.items()))

    def violations(self, metrics: Mapping[str, Any]) -> dict[str, float]:
        """``{metric: violation}`` for the metrics known so far (a missing one counts as
        violated by :data:`UNKNOWN_VIOLATION`)."""
        out = {}
        for name, low, high in self.limits:
            value = metrics.get(name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                out[name] = UNKNOWN_VIOLATION
                continue
            worst = -math.inf
            if high is not None:
                worst = max(worst, float(value) - high)
            if low is not None:
                worst = max(worst, low - float(value))
            out[name] = worst
        return out

    def violated(self, metrics: Mapping[str, Any]) -> list[str]:
        """``metric value above max 2`` for every constraint that the known metrics break
        (the unknown ones are not judged)."""
        out = []
        for name, low, high in self.limits:
            value = metrics.get(name)
            if not isinstance(value, (int, float)):
                continue
            if high is not None and value > high:
                out.append(f"{name} {value:g} above max {high:g}")
            elif low is not None and value < low:
                out.append(f"{name} {value:g} below min {low:g}")
        return out


def limits_of(constraints: Mapping[str, LimitConfig]) -> Limits | None:
    """The study's :class:`Limits` from its ``constraints``, None without any."""
    return Limits.of(constraints) if constraints else None


def is_multi_objective(study: optuna.Study) -> bool:
    """Whether the study has more than one objective."""
    return len(study.directions) > 1


def metric_names(study: optuna.Study) -> list[str]:
    """The objectives' metric names (Optuna's, else ``objective 1``, ...)."""
    names = study.metric_names
    return list(names) if names else [f"objective_{i}" for i in range(len(study.directions))]


def _minimized(values: Sequence[float], directions: Sequence[StudyDirection]) -> list[float]:
    return [
        -v if d == StudyDirection.MAXIMIZE else v for v, d in zip(values, directions, strict=True)
    ]


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether ``a`` is at least as good as ``b`` everywhere and better somewhere (both
    already in minimize form)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


def front(
    trials: Sequence[FrozenTrial],
    directions: Sequence[StudyDirection],
    feasible_only: bool = True,
) -> list[FrozenTrial]:
    """The feasible complete trials that no other feasible complete trial dominates,
    sorted by the first objective, best first (ties by trial number). With
    ``feasible_only`` false, the front of every complete trial, constraints ignored."""
    pool = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE and t.values and (is_feasible(t) or not feasible_only)
    ]
    points = {t.number: _minimized(t.values, directions) for t in pool}
    kept = [
        t
        for t in pool
        if not any(dominates(points[o.number], points[t.number]) for o in pool if o is not t)
    ]
    return sorted(kept, key=lambda t: (points[t.number], t.number))


def study_front(study: optuna.Study) -> list[FrozenTrial]:
    """:func:`front` of every trial of the study."""
    return front(study.get_trials(deepcopy=False), study.directions)


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """The volume the points (minimize form) dominate below ``reference``, exactly, by
    slicing along the last objective (fine for the fronts of a study: tens of points)."""
    kept = [list(p) for p in points if all(x < r for x, r in zip(p, reference, strict=True))]
    if not kept:
        return 0.0
    if len(reference) == 1:
        return reference[0] - min(p[0] for p in kept)
    kept.sort(key=lambda p: p[-1])
    volume = 0.0
    for i, point in enumerate(kept):
        upper = kept[i + 1][-1] if i + 1 < len(kept) else reference[-1]
        if upper > point[-1]:
            slab = [p[:-1] for p in kept[: i + 1]]
            volume += (upper - point[-1]) * hypervolume(slab, reference[:-1])
    return volume


def reference_point(
    trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection], margin: float = 0.1
) -> list[float] | None:
    """A reference point worse than every feasible complete trial, in the objectives'
    own directions: the worst value of each objective, moved ``margin`` of its range
    (or of its size, where every trial has the same value) further; None without trials."""
    values = [
        t.values for t in trials if t.state == TrialState.COMPLETE and t.values and is_feasible(t)
    ]
    if not values:
        return None
    out = []
    for i, direction in enumerate(directions):
        column = [v[i] for v in values]
        span = (max(column) - min(column)) or abs(column[0]) or 1.0
        maximize = direction == StudyDirection.MAXIMIZE
        out.append(min(column) - margin * span if maximize else max(column) + margin * span)
    return out


def minimized(trial: FrozenTrial, directions: Sequence[StudyDirection]) -> list[float]:
    """The trial's objective values in minimize form (maximized ones negated)."""
    return _minimized(trial.values, directions)


__all__ = [
    "Limits",
    "dominates",
    "front",
    "hypervolume",
    "is_feasible",
    "is_multi_objective",
    "limits_of",
    "metric_names",
    "minimized",
    "reference_point",
    "study_front",
]
