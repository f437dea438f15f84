"""Why a study stops before its budget is spent: a trial finished without the study's
metric (every later one would too), the metric reached ``stop.target``, or the best
value stopped improving (``stop.plateau``).

Target and plateau are read from the trials each time, so a resumed study that already
met them stops at once. A missing metric is stored on the study (a mistake in the code
or the file, not in the trials); ``tune`` and ``pipeline worker`` clear it when they start.
"""

from __future__ import annotations

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from pipeline.config import StopConfig
from pipeline.trial import FINISHED, STOPPED_ATTR, best_trial, is_feasible


def stop_reason(study: optuna.Study, stop: StopConfig | None) -> str | None:
    """One line saying why the study stops now, or None while it may go on."""
    stored = study.user_attrs.get(STOPPED_ATTR)
    if stored:
        return str(stored)
    if stop is None or len(study.directions) > 1:
        return None
    if stop.target is not None:
        best = best_trial(study)
        if best is not None and _reached(best.values[0], stop.target, study.directions[0]):
            return (
                f"stopped: trial #{best.number} reached the target {stop.target:g} "
                f"({best.values[0]:.4g}; stop.target)"
            )
    if stop.plateau is not None:
        return _plateau(study, stop.plateau.trials, stop.plateau.min_delta)
    return None


def _reached(value: float, target: float, direction: StudyDirection) -> bool:
    return value >= target if direction == StudyDirection.MAXIMIZE else value <= target


def _improves(value: float, best: float, direction: StudyDirection, min_delta: float) -> bool:
    gain = value - best if direction == StudyDirection.MAXIMIZE else best - value
    return gain > min_delta


def _plateau(study: optuna.Study, trials: int, min_delta: float) -> str | None:
    """Stop when none of the last ``trials`` finished trials improved the best by more
    than ``min_delta``."""
    direction = study.directions[0]
    finished = sorted(
        (t for t in study.get_trials(deepcopy=False, states=FINISHED) if t.datetime_complete),
        key=lambda t: (t.datetime_complete, t.number),
    )
    best: FrozenTrial | None = None
    since = 0  # finished trials since the best last improved
    for trial in finished:
        good = trial.state == TrialState.COMPLETE and is_feasible(trial) and bool(trial.values)
        if good and (
            best is None or _improves(trial.values[0], best.values[0], direction, min_delta)
        ):
            best, since = trial, 0
        else:
            since += 1
    if best is None or since < trials:
        return None
    return (
        f"stopped: the best value ({best.values[0]:.4g}, trial #{best.number}) did not improve "
        f"by more than {min_delta:g} in the last {since} finished trials (stop.plateau)"
    )


def clear_stop(study: optuna.Study) -> None:
    """Forget a stored stop (a new run may have fixed its cause)."""
    if study.user_attrs.get(STOPPED_ATTR):
        study.set_user_attr(STOPPED_ATTR, None)


__all__ = ["clear_stop", "stop_reason"]
