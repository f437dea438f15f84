"""What a trial leaves in the storage, and the rules every reader of trials shares.

The names of the stored trial attributes live in :class:`Attr`; how a trial ended lives in
:class:`Outcome`, stored as the ``outcome`` user attribute beside Optuna's own state, so
that no module parses a reason string to learn it. "The best trial" and "how many trials
in each state" are computed here and nowhere else.
"""

from __future__ import annotations

import enum
import numbers
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from pipeline.config import KNOWN_DIRECTIONS

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
STOPPED_ATTR: Final = "stopped"  # a study's user attribute: why it stopped early
IN_FLIGHT = (TrialState.RUNNING, TrialState.WAITING)


class Attr:
    """The names of the user attributes a trial may carry (plain strings, as every
    storage keeps them).

    Per epoch the study metric goes to the storage as an intermediate value and every
    reported metric into ``history``; the last epoch's metrics (under their own names)
    and the bookkeeping are written when the trial ends.
    """

    VAL_LOSS: Final = "val_loss"
    VAL_ACCURACY: Final = "val_accuracy"
    TEST_LOSS: Final = "test_loss"  # stored for a complete trial, never used to select
    TEST_ACCURACY: Final = "test_accuracy"
    EPOCHS: Final = "epochs"  # epochs trained
    COMPUTE_SECONDS: Final = "compute_seconds"  # inside forward, backward and evaluation
    WORKER: Final = "worker"
    WORKER_PROCESS: Final = "worker_process"  # id, boot id, PID namespace, pid: see _liveness.py
    OUTCOME: Final = "outcome"  # an Outcome value, where the state says only FAIL (or PRUNED)
    PRUNED_REASON: Final = "pruned_reason"
    FAIL_REASON: Final = "fail_reason"
    RETRY_OF: Final = "retry_of"  # the number of the trial this one re-runs
    RETRY_COUNT: Final = "retry_count"
    CHECKPOINT: Final = "checkpoint"  # the artifact id of the trial's weights
    CHECKPOINT_ERROR: Final = "checkpoint_error"  # why the checkpoint could not be saved
    HISTORY: Final = "history"  # every epoch's metrics: [{"epoch", "trial", name: value}]
    RESUME: Final = "resume"  # the latest working checkpoint: {"artifact", "epoch"}
    RESUMED_FROM: Final = "resumed_from"  # {"trial", "epoch"} a retry went on from
    LOG: Final = "log"  # the file what the trial printed went to (see _output.py)
    NOTE: Final = "note"  # a COMPLETE trial's one-line remark: stopped at max_epochs
    # Population-based training: each trial is one segment of one member's training.
    MEMBER: Final = "member"  # which member of the population
    GENERATION: Final = "generation"  # the segment's index: epochs after generation * interval
    PARENT: Final = "parent"  # the trial whose checkpoint the segment started from (or None)


LINEAGE: Final = (Attr.MEMBER, Attr.GENERATION, Attr.PARENT)  # what a re-run carries over


class Outcome(enum.StrEnum):
    """How a trial ended, finer than Optuna's state: three kinds of FAIL differ, and a
    PRUNED trial may have been rejected by a constraint rather than by the pruner."""

    COMPLETE = "complete"
    PRUNED = "pruned"
    FAILED = "failed"  # raised: counts towards the worker's failure limit and retries
    SKIPPED = "skipped"  # created in a race after the budget was met; never ran
    INTERRUPTED = "interrupted"  # stopped by Ctrl-C; re-queued to run again
    TIMED_OUT = "timed_out"  # FAIL past trial_timeout, as FAILED but its checkpoint kept
    REJECTED = "rejected"  # PRUNED before training: it broke a constraint known then

    @property
    def label(self) -> str:
        """The word the live table and reports show."""
        return self.value.upper()


# What a trainable may not report as a metric: the names of the trial's own records.
RESERVED = frozenset(
    value for name, value in vars(Attr).items() if name.isupper() and isinstance(value, str)
) - {Attr.VAL_LOSS, Attr.VAL_ACCURACY, Attr.TEST_LOSS, Attr.TEST_ACCURACY} | {"epoch", "trial"}


def metric_values(metrics: Mapping[str, Any]) -> dict[str, float]:
    """One epoch's reported metrics as floats (a one-element tensor is a number too).

    Raises:
        ValueError: a name the pipeline keeps for itself, or a value that is no number.
    """
    values: dict[str, float] = {}
    for name, value in metrics.items():
        if name in RESERVED:
            raise ValueError(f"{name!r} is a name the pipeline keeps")
        if hasattr(value, "numel") and value.numel() == 1:  # a torch.Tensor
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{name}={value!r} is not a number; report floats")
        values[name] = float(value)
    return values


def outcome_of(trial: FrozenTrial) -> Outcome | None:
    """How a finished trial ended; None while it is waiting or running."""
    if trial.state == TrialState.COMPLETE:
        return Outcome.COMPLETE
    if trial.state == TrialState.PRUNED:
        rejected = trial.user_attrs.get(Attr.OUTCOME) == Outcome.REJECTED.value
        return Outcome.REJECTED if rejected else Outcome.PRUNED
    if trial.state == TrialState.FAIL:
        stored = str(trial.user_attrs.get(Attr.OUTCOME, Outcome.FAILED.value))
        return Outcome(stored) if stored in set(Outcome) else Outcome.FAILED
    return None


def reason_of(trial: FrozenTrial) -> str | None:
    """Why a trial was pruned or failed, as stored; a complete trial's note."""
    keys = {TrialState.PRUNED: Attr.PRUNED_REASON, TrialState.COMPLETE: Attr.NOTE}
    key = keys.get(trial.state, Attr.FAIL_REASON)
    reason = trial.user_attrs.get(key)
    return None if reason is None else str(reason)


def last_metrics(trial: FrozenTrial) -> dict[str, Any]:
    """The metrics of the trial's last reported epoch, by name (for a trial stored before
    every metric was kept, the built-in ones among its attributes; empty when none)."""
    history = trial.user_attrs.get(Attr.HISTORY)
    if history:
        return {k: v for k, v in history[-1].items() if k not in ("epoch", "trial")}
    return {k: trial.user_attrs[k] for k in KNOWN_DIRECTIONS if k in trial.user_attrs}


def test_score_name(metric: str, names: Iterable[str]) -> str | None:
    """The test score to show beside ``metric`` among stored ``names``: ``test_accuracy``
    where there is one, else ``test_X`` for ``val_X``, else the first ``test_*``; or None."""
    tests = sorted(n for n in names if n.startswith("test_"))
    counterpart = "test_" + metric.removeprefix("val_")
    for name in (Attr.TEST_ACCURACY, counterpart):
        if name in tests:
            return name
    return tests[0] if tests else None


def state_counts(trials: Iterable[FrozenTrial]) -> dict[str, int]:
    """How many trials are in each state, by lower-case state name."""
    out = {state.name.lower(): 0 for state in TrialState}
    for trial in trials:
        out[trial.state.name.lower()] += 1
    return out


def is_feasible(trial: FrozenTrial) -> bool:
    """Whether the trial met every constraint of its study (one without any does): the
    values stored with Optuna's ``Trial.set_constraint``, by metric, feasible at <= 0."""
    return all(v <= 0 for v in trial.constraints.values())


def best_trial(
    study: optuna.Study,
    where: Callable[[FrozenTrial], bool] | None = None,
    trials: Sequence[FrozenTrial] | None = None,
) -> FrozenTrial | None:
    """The best feasible complete trial for the study's first objective (the first of
    equals), among those ``where`` accepts; None if there is none. An infeasible trial
    is never the best. (Of several objectives, this is the end of the Pareto front that
    is best in the first; see :func:`pipeline.trial.study_front` for all of it. Of a
    population, only the segments that reached the deepest epoch compete.) ``trials``:
    the study's, just read (None reads them)."""
    if trials is None:
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    chosen = [t for t in complete if is_feasible(t) and (where is None or where(t))]
    if any(Attr.MEMBER in t.user_attrs for t in chosen):
        # Population-based training: a segment is best among the segments that trained
        # as far as any did, not against the earlier epochs of other members.
        deepest = max(int(t.user_attrs.get(Attr.EPOCHS) or 0) for t in chosen)
        chosen = [t for t in chosen if int(t.user_attrs.get(Attr.EPOCHS) or 0) == deepest]
    ranked = rank(chosen, study.directions[0])
    return ranked[0] if ranked else None


def rank(trials: Sequence[FrozenTrial], direction: StudyDirection) -> list[FrozenTrial]:
    """Complete trials from best to worst in their first objective, ties by number."""
    sign = -1.0 if direction == StudyDirection.MAXIMIZE else 1.0
    return sorted(trials, key=lambda t: (sign * float(t.values[0] if t.values else 0.0), t.number))


def frozen(trial: optuna.Trial, trials: Sequence[FrozenTrial] | None = None) -> FrozenTrial:
    """The stored record of a live trial (its system attributes included), read through
    the study's public API, or found in ``trials`` (the study's, read since the trial
    was created)."""
    if trials is None:
        trials = trial.study.get_trials(deepcopy=False)
    for stored in reversed(trials):
        if stored.number == trial.number:
            return stored
    raise LookupError(f"trial {trial.number} is not in study {trial.study.study_name!r}")


def retried_number(trial: FrozenTrial) -> int | None:
    """The number of the first trial that this one re-runs, or None."""
    with warnings.catch_warnings():  # marked experimental; used on purpose
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)


def retry_history(trial: FrozenTrial) -> list[int]:
    """The numbers of the earlier attempts this trial re-runs, oldest first."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback.retry_history(trial)


def original_number(trial: FrozenTrial) -> int:
    """The number of the first trial with these parameters (its own unless a retry)."""
    retried = retried_number(trial)
    return trial.number if retried is None else int(retried)


def is_enqueued(trial: FrozenTrial) -> bool:
    """Whether the trial was queued (``enqueue``, a grid point or a retry), not sampled."""
    return "fixed_params" in trial.system_attrs or retried_number(trial) is not None


def requeue(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue a re-run of ``trial`` with the same parameters, in the form Optuna's own
    stale-trial retry uses, so that retries chain and :func:`retry_history` reads them."""
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs={k: trial.user_attrs[k] for k in LINEAGE if k in trial.user_attrs},
            system_attrs={
                "failed_trial": original_number(trial),
                "retry_history": [*retry_history(trial), trial.number],
            },
        )
    )


__all__ = [
    "FINISHED",
    "IN_FLIGHT",
    "LINEAGE",
    "STOPPED_ATTR",
    "Attr",
    "Outcome",
    "best_trial",
    "frozen",
    "is_enqueued",
    "is_feasible",
    "last_metrics",
    "metric_values",
    "original_number",
    "outcome_of",
    "rank",
    "reason_of",
    "requeue",
    "retried_number",
    "retry_history",
    "state_counts",
]
