"""``pipeline compare`` of a study of several objectives: samplers ranked by the
hypervolume of their feasible Pareto front at equal budget.

Every objective is scaled by one scale common to all the compared runs: in minimize form
(maximized objectives negated), the best value any run's feasible complete trial reached
maps to 0 and the worst to 1. The hypervolume is then measured against the reference
point :data:`HV_REFERENCE` (1.1) in every objective, so that the extreme points of a
front count too; it lies between 0 and 1.1 ** (number of objectives), higher is better.
"""

from __future__ import annotations

from collections.abc import Sequence

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from pipeline.config import ObjectiveConfig, PrunerConfig, SamplerConfig
from pipeline.exceptions import ConfigError, UsageError
from pipeline.search import check_pruner_objectives, check_sampler_objectives
from pipeline.trial import front, hypervolume, is_feasible, minimized

HV_REFERENCE = 1.1  # in scaled objectives: the worst value seen is 1, the best 0
Scale = tuple[list[float], list[float]]  # the best and the worst value, minimize form


def check_names(
    objectives: Sequence[ObjectiveConfig], samplers: Sequence[str], pruners: Sequence[str]
) -> None:
    """Refuse a sampler or pruner that cannot run the study's objectives, in one line."""

    try:
        for sampler in samplers:
            check_sampler_objectives(SamplerConfig(sampler), len(objectives))
        for pruner in pruners:
            check_pruner_objectives(PrunerConfig(pruner), objectives)
    except ConfigError as exc:
        flag = "--samplers" if exc.key.startswith("sampler") else "--pruners"
        raise UsageError(f"{flag}: {exc.message}") from None


def common_scale(studies: Sequence[optuna.Study]) -> Scale:
    """The best and the worst value of every objective (minimize form) over the feasible
    complete trials of all the studies: one scale, so that hypervolumes compare."""
    directions = studies[0].directions
    points = [
        minimized(t, directions)
        for s in studies
        for t in s.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.values and is_feasible(t)
    ] or [[0.0] * len(directions)]
    columns = list(zip(*points, strict=True))
    return [min(c) for c in columns], [max(c) for c in columns]


def scaled_hypervolume(
    trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection], scale: Scale
) -> float:
    """The hypervolume of the feasible front of ``trials``, on the common scale."""
    ideal, worst = scale
    points = [
        [(v - lo) / ((hi - lo) or 1.0) for v, lo, hi in zip(p, ideal, worst, strict=True)]
        for p in (minimized(t, directions) for t in front(trials, directions))
    ]
    return hypervolume(points, [HV_REFERENCE] * len(ideal))


def hypervolume_curves(
    trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection], scale: Scale
) -> dict[str, tuple[list[float], list[float]]]:
    """The hypervolume after each finished trial (in the order they finished) against
    trials, epochs trained and wall-clock seconds, as :meth:`pipeline.compare.Run.curves`."""
    xs: dict[str, list[float]] = {"trials": [], "epochs": [], "seconds": []}
    ys: list[float] = []
    if not trials:
        return {k: ([], []) for k in xs}
    start = min(t.datetime_start for t in trials if t.datetime_start)
    epochs = 0
    for i, t in enumerate(trials, start=1):
        epochs += int(t.user_attrs.get("epochs") or 0)
        xs["trials"].append(i)
        xs["epochs"].append(epochs)
        xs["seconds"].append((t.datetime_complete - start).total_seconds())  # type: ignore[operator]
        ys.append(scaled_hypervolume(trials[:i], directions, scale))
    return {k: (v, ys) for k, v in xs.items()}


__all__ = [
    "HV_REFERENCE",
    "Scale",
    "check_names",
    "common_scale",
    "hypervolume_curves",
    "scaled_hypervolume",
]
