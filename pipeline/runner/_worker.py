"""One worker: load the task's data once, then run trials until the budget is met.

A worker is the same loop wherever it runs: a process ``pipeline tune`` starts, or
``pipeline worker`` on another machine. What happens after each trial (keep the best
checkpoints, re-queue an interrupted trial, retry a failed one, give up after a run of
failures) is :class:`FailurePolicy`.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable
from typing import Literal, TextIO

import optuna
import torch
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from pipeline.artifacts import ArtifactStore, drop_working, keep_top, open_location
from pipeline.config import StudyConfig
from pipeline.integrations import framework_trainable
from pipeline.packing import Packer, packer_for
from pipeline.runner._placement import resolve_device
from pipeline.storages import STORAGE_ERRORS, Outage, storage_error_in
from pipeline.study import (
    Budget,
    budget_for,
    clear_stop,
    load_study,
    note,
    prepare_study,
    storage_for,
)
from pipeline.tasks import check_labels, resolve_task
from pipeline.tracking import open_tracking
from pipeline.training import (
    Objective,
    TaskTrainable,
    Trainable,
    TrialPlan,
    load_user_function,
    warm_up,
)
from pipeline.trial import (
    Outcome,
    TrialOutput,
    outcome_of,
    output_note,
    reason_of,
    release_orphans,
    requeue,
    retry_history,
)

# A worker whose trials keep failing stops rather than burn the study's time; the
# failures' reasons are in the trials' user attributes.
MAX_CONSECUTIVE_FAILURES = 5
POLL_SECONDS = 0.5


class FailurePolicy:
    """What a worker does after each of its trials (an Optuna ``optimize`` callback)."""

    def __init__(
        self,
        worker: int,
        max_retries: int,
        keep_checkpoints: int,
        store: ArtifactStore | None,
        log: TextIO,
        storage: BaseStorage | None = None,
    ) -> None:
        self.worker = worker
        self.max_retries = max_retries
        self.keep_checkpoints = keep_checkpoints
        self.store = store
        self.log = log
        self.storage = storage  # where a dead worker's trial gets its reason
        self.failures = 0  # in a row

    @property
    def gave_up(self) -> bool:
        """Whether this worker's trials failed too often in a row to go on."""
        return self.failures >= MAX_CONSECUTIVE_FAILURES

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        outcome = outcome_of(trial)
        retry = outcome == Outcome.INTERRUPTED
        if outcome in (Outcome.COMPLETE, Outcome.PRUNED, Outcome.REJECTED):
            self.failures = 0
            if self.store is not None and outcome == Outcome.COMPLETE:
                keep_top(study, self.store, self.keep_checkpoints)
        elif outcome in (Outcome.FAILED, Outcome.TIMED_OUT):
            self.failures += 1
            retries = len(retry_history(trial))
            retry = retries < self.max_retries
            note = f" (retry {retries + 1} of {self.max_retries} queued)" if retry else ""
            self.say(f"trial {trial.number} failed: {reason_of(trial)}{note}{output_note(trial)}")
        if retry:
            requeue(study, trial)
        elif self.store is not None and outcome != Outcome.TIMED_OUT:  # its last one is kept
            drop_working(study, trial, self.store)

    def say(self, text: str) -> None:
        """One line on this worker's log."""
        print(f"worker {self.worker}: {text}", file=self.log, flush=True)


def open_with_retry(
    config: StudyConfig, joining: bool, log: TextIO = sys.stderr, branch_from: str | None = None
) -> tuple[optuna.Study, BaseStorage]:
    """:func:`prepare_study` on the study's storage, waiting out an unreachable storage
    for up to ``storage_retry_seconds`` (a worker may start before its database).
    Returns the study and the storage it was opened on."""
    outage = Outage(config.storage, config.storage_retry_seconds, "pipeline", log)
    while True:
        try:
            storage = storage_for(config)
            # A worker joining writes the note of a study it creates; tune writes it later.
            study = prepare_study(config, storage, joining, branch_from, note=joining)
            clear_stop(study)  # stored by the last run: this one may have fixed its cause
        except STORAGE_ERRORS as exc:
            outage.failed(exc)
            continue
        outage.ok()
        return study, storage


def run_worker(
    config: StudyConfig,
    worker: int = 0,
    deadline: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    log: TextIO | None = None,
) -> int:
    """Run trials until the budget is met; return the number of trials this worker ran,
    negated when it stopped because its trials kept failing.

    Loads the task's data once, onto the device, for all the trials it runs. The
    worker's own lines go to ``log`` (default: the console it was started on).

    Raises:
        StorageLost: the storage stayed unreachable past ``storage_retry_seconds``.
    """
    if config.trial_logs is None:
        return _run_trials(config, worker, deadline, should_stop, log or sys.stderr, None)
    # What trials print goes to their log files; the worker's own lines to the console.
    output = TrialOutput(config.trial_logs, config.study_name)
    try:
        return _run_trials(config, worker, deadline, should_stop, log or output.console, output)
    finally:
        output.close()


def _run_trials(
    config: StudyConfig,
    worker: int,
    deadline: float | None,
    should_stop: Callable[[], bool],
    log: TextIO,
    output: TrialOutput | None,
) -> int:
    device = resolve_device(config.device)
    trainable = build_trainable(config, device)
    outage = Outage(config.storage, config.storage_retry_seconds, f"worker {worker}", log)
    while True:
        try:
            storage = storage_for(config)
            study = load_study(config, storage, worker)
            budget = budget_for(config, study, deadline)
            break
        except STORAGE_ERRORS as exc:
            outage.failed(exc)
    outage.ok()
    store = open_location(config.storage, config.artifacts) if config.keep_checkpoints else None
    objective = Objective(
        TrialPlan.of(config, load_user_function(config, "model") if config.task is None else None),
        trainable,
        device,
        should_stop=should_stop,
        is_surplus=lambda trial, trials: budget.is_surplus(study, trial, trials),
        worker=worker,
        store=store,
        trial_timeout=config.trial_timeout,
        output=output,
        tracking=open_tracking(
            config.tracking,
            config.study_name,
            config.metric,
            lambda: note(config),
            f"worker {worker}",
            log,
        ),
    )
    # A PBT segment's checkpoint is a later segment's start: every one is kept.
    keep = config.keep_checkpoints if config.scheduler is None else sys.maxsize
    policy = FailurePolicy(worker, config.max_retries, keep, store, log, storage)
    packer = packer_for(config.packing, trainable, objective, policy, storage)
    ran = 0
    while not should_stop():
        step = _step(study, budget, objective, policy, outage, packer)
        if step == "stop":
            break
        ran += step == "ran"
        if policy.gave_up:
            policy.say(
                f"stopping after {policy.failures} failed trials in a row; "
                "see the trials' fail_reason and fix the study file or the task"
            )
            return -ran
    return ran


def build_trainable(config: StudyConfig, device: torch.device) -> Trainable:
    """The study's trainable: the user's function, or the built-in loop over the task's
    data, loaded once onto the device for all the trials this worker runs."""
    if config.task is None:
        function = framework_trainable(
            config.lightning, config.transformers, checkpoint=config.keep_checkpoints > 0
        ) or load_user_function(config, "trainable")
        assert function is not None
        return function
    task = resolve_task(config.task)
    options = task.resolve_options(config.task.options)
    splits = task.load(options).to(device)
    check_labels(task, splits)  # labels that do not fit the task's kind: refused, not trained
    if config.channels_last and splits.train.x is not None and splits.train.x.dim() == 4:
        splits = splits.to(device, memory_format=torch.channels_last)
    warm_up()
    return TaskTrainable(
        task,
        splits,
        options,
        precision=config.precision,
        channels_last=config.channels_last,
        checkpoint=config.keep_checkpoints > 0,
        target=config.task.name,
        inference_batch=config.inference_batch_size,
        segments=config.scheduler is not None,
    )


def _step(
    study: optuna.Study,
    budget: Budget,
    objective: Objective,
    policy: FailurePolicy,
    outage: Outage,
    packer: Packer | None = None,
) -> Literal["ran", "idle", "stop"]:
    """Run one trial (a round of packed ones with ``packer``), or wait a moment for room
    in the budget, or say it is met."""
    try:
        decision = budget.admit(study)
        if decision == "stop":
            return "stop"
        if decision == "wait":
            # This host's dead workers first: the liveness rule records why; Optuna's
            # heartbeat check (other hosts) records no reason.
            release_orphans(study, policy.max_retries, policy.say, policy.storage)
            with warnings.catch_warnings():  # experimental API, used on purpose
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            outage.ok()
            time.sleep(POLL_SECONDS)
            return "idle"
        if packer is not None:  # study files with tracking or several objectives never pack
            packer.run(study, budget)
        else:
            callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] = [policy]
            if objective.tracking is not None:
                callbacks.insert(0, objective.tracking)
            study.optimize(
                objective, n_trials=1, catch=(Exception,), callbacks=callbacks, gc_after_trial=False
            )
        outage.ok()
        return "ran"
    except optuna.exceptions.UpdateFinishedTrialError:
        # The trial was declared dead (no heartbeat during an outage) and re-queued
        # while this worker still trained it; the re-run owns it now.
        policy.say("a trial of this worker was taken over after an outage")
        return "idle"
    except Exception as exc:
        cause = storage_error_in(exc)
        if cause is not None:
            outage.failed(cause)
            return "idle"
        if _finished_elsewhere(study, objective.current):
            # Declared dead while it trained (its heartbeat lapsed) and failed by another
            # worker, which re-queued it: the re-run owns it now.
            policy.say(f"trial {objective.current} was taken over by another worker")
            return "idle"
        raise


def _finished_elsewhere(study: optuna.Study, number: int | None) -> bool:
    if number is None:
        return False
    trial = study.get_trials(deepcopy=False)[number]
    return trial.number == number and trial.state == TrialState.FAIL


__all__ = ["MAX_CONSECUTIVE_FAILURES", "FailurePolicy", "open_with_retry", "run_worker"]
