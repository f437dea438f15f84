"""The Optuna objective: one trial = suggest, run the trainable with a session, score.

The trainable is the built-in loop over a task (:class:`pipeline.training.TaskTrainable`)
or the user's own ``function(config, session)``. What a trial leaves in the storage is
listed in :class:`pipeline.trial.Attr`: the study metric per epoch as intermediate
values, every metric of every epoch in ``history``, the last epoch's metrics, the
bookkeeping and, for a trial that did not complete, its outcome and reason.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial

from pipeline.artifacts import ArtifactStore, load_checkpoint, remove_quietly
from pipeline.config import ParamSpec, StudyConfig, duration_text
from pipeline.exceptions import Interrupted
from pipeline.schedulers import Population, parent_of, population_of
from pipeline.search import suggest
from pipeline.signals import time_limit
from pipeline.tracking import Tracking
from pipeline.training._measure import PeakMemory, count_params
from pipeline.training._session import EpochBudgetReached, Session, TrialInterrupted
from pipeline.trial import (
    Attr,
    Limits,
    Outcome,
    TrialOutput,
    describe,
    exit_reason,
    frozen,
    limits_of,
    original_number,
    process_identity,
    retry_history,
)

Trainable = Callable[[dict[str, Any], Session], Any]


class TrialSkipped(Exception):
    """The budget was met by other workers between admission and the trial's creation."""


class TrainableExited(Exception):
    """The user's code raised ``SystemExit`` or ``KeyboardInterrupt``: the trial fails,
    the worker goes on (the message is the trial's ``fail_reason``)."""


class TrialTimedOut(Exception):
    """The trial ran past ``trial_timeout`` (the message is its ``fail_reason``)."""


@dataclass(frozen=True)
class TrialPlan:
    """What every trial of a study shares: the part of the study file a trial reads."""

    search_space: Mapping[str, ParamSpec]
    metric: str
    max_epochs: int
    seed: int = 0
    objectives: tuple[str, ...] = ()  # the metrics of several objectives, in order
    limits: Limits | None = None  # the study's constraints
    model: Callable[[dict[str, Any]], torch.nn.Module] | None = None  # a trainable's model:
    population: Population | None = None  # scheduler pbt: each trial is one segment

    @classmethod
    def of(cls, config: StudyConfig, model: Callable[..., Any] | None = None) -> TrialPlan:
        """The trial plan of a study file (``model``: a trainable's model builder, used
        to count the parameters when a constraint or objective needs them)."""
        needs_params = "params" in [*config.metric_names, *config.constraints]
        return cls(
            config.search_space,
            config.metric,
            config.max_epochs,
            config.seed,
            tuple(config.metric_names) if config.multi_objective else (),
            limits_of(config.constraints),
            model if needs_params else None,
            population_of(config),
        )

    def seed_of(self, trial: FrozenTrial) -> int:
        """Per-trial seed: stable across retries of the same trial, distinct across
        studies' ``seed`` values."""
        return (self.seed * 1_000_003 + original_number(trial)) % (2**63)


class Objective:
    """Callable objective for ``study.optimize``; the trainable (and the data it holds)
    stays loaded between trials.

    Args:
        plan: What the study's trials share (search space, metric, epochs, seed).
        trainable: ``function(config, session)``, run once per trial.
        should_stop: Checked after every epoch; when true the trial ends as interrupted
            and is re-queued.
        is_surplus: Checked before anything is sampled; when true the trial is skipped.
        store: Where checkpoints go; None for none.
        tracking: Where trials are mirrored (MLflow, TensorBoard); None for nowhere.
        trial_timeout: Seconds a trial may run; past them it fails (None: no limit).
        output: Where what each trial prints goes (one log file per trial); None: the
            console.
    """

    def __init__(
        self,
        plan: TrialPlan,
        trainable: Trainable,
        device: torch.device,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        is_surplus: Callable[[FrozenTrial, list[FrozenTrial]], bool] = lambda trial, trials: False,
        worker: int = 0,
        store: ArtifactStore | None = None,
        tracking: Tracking | None = None,
        trial_timeout: float | None = None,
        output: TrialOutput | None = None,
    ) -> None:
        self.plan = plan
        self.trial_timeout = trial_timeout
        self.trainable = trainable
        self.device = device
        self.should_stop = should_stop
        self.is_surplus = is_surplus
        self.worker = worker
        self.store = store
        self.tracking = tracking
        self.output = output
        self.identity = process_identity()
        self.current: int | None = None  # the number of the trial being run
        self.warned = False

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        return self.run(trial, self.begin(trial))

    def begin(self, trial: optuna.Trial) -> Session:
        """Record who runs ``trial`` and open its session (a packed worker calls this for
        each trial it asks for, then trains them together).

        Raises:
            TrialSkipped: the budget was already met; the trial is marked skipped.
        """
        self.current = trial.number
        trials = trial.study.get_trials(deepcopy=False)  # one read for all that follows
        record = frozen(trial, trials)
        if self.is_surplus(record, trials):
            _end(trial, Outcome.SKIPPED, "skipped: the trial budget was already met")
            raise TrialSkipped(f"trial {trial.number} not run: the budget was already met")
        trial.set_user_attr(Attr.WORKER_PROCESS, self.identity)
        trial.set_user_attr(Attr.WORKER, self.worker)
        if self.output is not None:
            trial.set_user_attr(Attr.LOG, str(self.output.switch(trial.number)))
        history = retry_history(record)
        if history:
            trial.set_user_attr(Attr.RETRY_OF, original_number(record))
            trial.set_user_attr(Attr.RETRY_COUNT, len(history))
        end, parent, population = self.plan.max_epochs, None, self.plan.population
        if population is not None:
            if population.is_duplicate(trials, record):
                _end(trial, Outcome.SKIPPED, "skipped: another trial trains this segment")
                raise TrialSkipped(f"trial {trial.number} not run: its segment is taken")
            end, number = population.segment_end(record), parent_of(record)
            parent = trials[number] if number is not None and number < len(trials) else None
        return Session(
            trial,
            self.plan.metric,
            end,
            device=self.device,
            seed=self.plan.seed_of(record),
            store=self.store,
            attempts=[trials[n] for n in history if n < len(trials)],
            should_stop=self.should_stop,
            warn=self._warn,
            objectives=self.plan.objectives,
            limits=self.plan.limits,
            on_epoch=self._epoch_logger(trial.number),
            parent=parent,
        )

    def run(self, trial: optuna.Trial, session: Session) -> float | list[float]:
        """Train ``trial`` alone with the trainable and return its value."""
        try:
            with time_limit(self.trial_timeout, lambda: self._timed_out(session)):
                return self._run(trial, session)
        except (optuna.TrialPruned, TrialSkipped):
            raise
        except Exception as exc:
            record_end(trial, exc)
            if self.output is not None:  # the whole traceback, in the trial's own log
                traceback.print_exc()
            raise
        except (SystemExit, KeyboardInterrupt) as exc:
            if isinstance(exc, Interrupted) or _ctrl_c(exc):
                raise  # a stop signal, not the user's code
            reason = exit_reason(exc, _epoch(session))
            _end(trial, Outcome.FAILED, reason)
            raise TrainableExited(reason) from None
        finally:
            session.store_bookkeeping()

    def _timed_out(self, session: Session) -> BaseException:
        assert self.trial_timeout is not None
        return TrialTimedOut(
            f"exceeded trial_timeout ({duration_text(self.trial_timeout)}) "
            f"during epoch {_epoch(session)}"
        )

    def _run(self, trial: optuna.Trial, session: Session) -> float | list[float]:
        config = suggest(trial, self.plan.search_space)
        if self.tracking is not None:
            self.tracking.start_trial(trial.number, config)
        torch.manual_seed(session.seed)
        if self.plan.model is not None:  # a trainable's network, counted before training
            session.measured(params=count_params(self.plan.model(config)))
            torch.manual_seed(session.seed)
        peak = PeakMemory(self.device)
        try:
            with peak:
                self.trainable(config, session)
        except EpochBudgetReached as exc:  # past max_epochs: complete there, as Ray's max_t
            trial.set_user_attr(Attr.NOTE, str(exc))
        finally:  # a pruned trial's peak too: a constraint on it steers the sampler
            if peak.mb is not None and "peak_memory_mb" not in session.recorded:
                session.record(peak_memory_mb=peak.mb)
        return self.complete(trial, session)

    def complete(self, trial: optuna.Trial, session: Session) -> float | list[float]:
        """The value of a trial that trained to the end; its last checkpoint is kept."""
        value: float | list[float] = session.values() if self.plan.objectives else session.value()
        if self.store is not None and session.resume_id is not None:
            self._keep(trial, session.resume_id)
        return value

    def _keep(self, trial: optuna.Trial, working_id: str) -> None:
        """Link the trial's last checkpoint to it as an Optuna artifact (what the
        dashboard lists and ``evaluate`` reads): the object the trainable checkpointed,
        as ``torch.save`` wrote it. The working copy is removed."""
        assert self.store is not None
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"trial-{trial.number}.pt"
                torch.save(load_checkpoint(self.store, working_id)["object"], path)
                if self.tracking is not None:
                    self.tracking.log_checkpoint(trial.number, path)
                artifact_id = optuna.artifacts.upload_artifact(
                    artifact_store=self.store,
                    file_path=str(path),
                    study_or_trial=trial,
                    mimetype="application/octet-stream",
                )
        except OSError as exc:
            reason = f"{type(exc).__name__}: {exc}"[:300]
            trial.set_user_attr(Attr.CHECKPOINT_ERROR, reason)
            self._warn(f"checkpoints cannot be saved ({reason}); trials still complete")
            return
        trial.set_user_attr(Attr.CHECKPOINT, artifact_id)
        remove_quietly(self.store, working_id)

    def _epoch_logger(self, number: int) -> Callable[[int, dict[str, float]], None]:
        tracking = self.tracking
        if tracking is None:
            return lambda epoch, metrics: None
        return lambda epoch, metrics: tracking.log_epoch(number, epoch, metrics)

    def _warn(self, text: str) -> None:
        if not self.warned:
            self.warned = True
            console = sys.stderr if self.output is None else self.output.console
            print(f"warning: worker {self.worker}: {text}", file=console, flush=True)


def _epoch(session: Session) -> int:
    """The epoch the trainable was in: one past the last it reported."""
    return (session.last or {}).get("epoch", 0) + 1


def _ctrl_c(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt may be Ctrl-C: in a process that kept Python's SIGINT
    handler (trials run in-process). A worker's handler stops it without raising, so
    there a KeyboardInterrupt comes from the user's code."""
    return (
        isinstance(exc, KeyboardInterrupt)
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )


def record_end(trial: optuna.Trial, exc: Exception) -> None:
    """Record how a trial that raised ``exc`` ended: interrupted (it will be re-queued) or
    failed, with the reason."""
    if isinstance(exc, TrialInterrupted):
        _end(trial, Outcome.INTERRUPTED, "interrupted")
    elif isinstance(exc, TrialTimedOut):  # its last checkpoint is kept
        _end(trial, Outcome.TIMED_OUT, str(exc))
    elif isinstance(exc, TrainableExited):
        _end(trial, Outcome.FAILED, str(exc))
    else:
        _end(trial, Outcome.FAILED, describe(exc)[:500])


def _end(trial: optuna.Trial, outcome: Outcome, reason: str) -> None:
    """Record why a trial that Optuna will mark FAIL ended."""
    trial.set_user_attr(Attr.OUTCOME, outcome.value)
    trial.set_user_attr(Attr.FAIL_REASON, reason)


__all__ = [
    "Objective",
    "Trainable",
    "TrainableExited",
    "TrialInterrupted",
    "TrialPlan",
    "TrialSkipped",
    "TrialTimedOut",
    "record_end",
]
