"""How a trial whose worker process died is ended: FAIL, with an outcome and a reason.

A worker that dies (the user's code called ``os._exit``, a signal killed it, the
trial ran past ``trial_timeout`` and was killed) cannot record its own trial. Whoever
finds it, ``tune`` watching its workers or a worker releasing orphans, records why here,
fails it and re-queues it when retries are left.
"""

from __future__ import annotations

import signal

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from pipeline.trial._trials import Attr, Outcome, requeue, retry_history


def running_epoch(trial: FrozenTrial) -> int:
    """The epoch ``trial`` was training: one past the last it reported."""
    reported = [int(step) for step in trial.intermediate_values]
    history = trial.user_attrs.get(Attr.HISTORY) or []
    reported += [int(row.get("epoch", 0)) for row in history if isinstance(row, dict)]
    return max(reported, default=0) + 1


def death_reason(exitcode: int | None, trial: FrozenTrial) -> str:
    """Why a trial ended whose worker process ended with ``exitcode`` (negative: the
    signal that killed it, as :mod:`multiprocessing` reports it)."""
    epoch = running_epoch(trial)
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"the worker running the training function was killed by {name} during epoch {epoch}"
    code = "an unknown code" if exitcode is None else f"code {exitcode}"
    return f"the training function exited with {code} during epoch {epoch}"


def fail_dead(
    study: optuna.Study,
    storage: BaseStorage | None,
    trial: FrozenTrial,
    reason: str,
    retries: int,
    outcome: Outcome = Outcome.FAILED,
) -> bool | None:
    """Record ``reason`` on the RUNNING ``trial`` (when ``storage`` is given), fail it,
    and re-queue it if fewer than ``retries`` re-runs were made. Returns whether it was
    re-queued; None when another process ended it first."""
    if storage is not None:
        try:
            trial_id = storage.get_trial_id_from_study_id_trial_number(
                storage.get_study_id_from_name(study.study_name), trial.number
            )
            storage.set_trial_user_attr(trial_id, Attr.OUTCOME, outcome.value)
            storage.set_trial_user_attr(trial_id, Attr.FAIL_REASON, reason[:500])
        except (KeyError, optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
            return None  # ended meanwhile
    try:
        study.tell(trial.number, state=TrialState.FAIL)
    except (ValueError, RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
        return None  # another process ended it first
    retry = len(retry_history(trial)) < retries
    if retry:
        requeue(study, trial)
    return retry


__all__ = ["death_reason", "fail_dead", "running_epoch"]
