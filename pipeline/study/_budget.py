"""The trial budget: when a worker may start a trial, counted across every worker.

The budget counts finished trials (complete or pruned) in the shared storage, so a study
ends with exactly ``n_trials`` of them however many workers, local or remote, run it:

- before each trial a worker checks that finished + running + queued trials leave room;
- after the trial is created it checks again by trial number, since another worker may
  have been admitted in the same instant; a trial created in that race is recorded as
  skipped before anything is sampled or trained.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Literal

import optuna
from optuna.trial import FrozenTrial, TrialState

from pipeline.config import StopConfig, StudyConfig
from pipeline.schedulers import Population, population_of
from pipeline.study._create import GRID_ATTR
from pipeline.study._stops import stop_reason
from pipeline.trial import FINISHED, IN_FLIGHT, is_enqueued

Admission = Literal["run", "wait", "stop"]


@dataclass
class Budget:
    """When a worker may start a trial, and whether a new trial is one too many.

    Args:
        n_trials: Finished trials the study needs; None for no limit.
        deadline: ``time.time()`` after which no trial starts; None for none.
        queue_only: Grid search: run queued trials only, never sample new ones.
        max_total_epochs: Epochs all trials together may train (a running trial counts
            as ``max_epochs`` until it ends); None for no limit.
        stop: The study file's ``stop`` (see :func:`stop_reason`).
    """

    n_trials: int | None
    deadline: float | None = None
    queue_only: bool = False
    max_total_epochs: int | None = None
    max_epochs: int = 1
    stop: StopConfig | None = None  # target and plateau stops
    population: Population | None = None  # PBT: queues each member's next segment

    def admit(self, study: optuna.Study) -> Admission:
        """Whether a worker may start a trial now, should wait for running ones, or stop."""
        if self.deadline is not None and time.time() >= self.deadline:
            return "stop"
        if stop_reason(study, self.stop) is not None:
            return "stop"
        if self.population is not None:
            self.population.advance(study)  # before counting: it may queue the next segments
        trials = study.get_trials(deepcopy=False)
        waiting = sum(t.state == TrialState.WAITING for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        finished = sum(t.state in FINISHED for t in trials)
        if self.max_total_epochs is not None:
            trained = sum(
                len(t.intermediate_values) for t in trials if t.state != TrialState.RUNNING
            )
            if trained + (running + 1) * self.max_epochs > self.max_total_epochs:
                return "wait" if running else "stop"
        if self.queue_only:
            return "run" if waiting else ("wait" if running else "stop")
        if self.n_trials is None:
            return "run"
        if finished >= self.n_trials:
            return "stop"
        if waiting or finished + running < self.n_trials:
            return "run"
        return "wait"

    def remaining(self, study: optuna.Study) -> int:
        """Trials still to start (queued ones included); a large number for no limit."""
        trials = study.get_trials(deepcopy=False)
        waiting = sum(t.state == TrialState.WAITING for t in trials)
        if self.queue_only:
            return waiting
        if self.n_trials is None:
            return sys.maxsize
        busy = sum(t.state in (*FINISHED, TrialState.RUNNING) for t in trials)
        return max(waiting, self.n_trials - busy)

    def room(self, study: optuna.Study) -> int:
        """How many trials may start together now: :meth:`remaining`, and no more than the
        epoch budget leaves room for (a packing worker asks for this many at once)."""
        most = self.remaining(study)
        if self.max_total_epochs is not None:
            trials = study.get_trials(deepcopy=False)
            running = sum(t.state == TrialState.RUNNING for t in trials)
            trained = sum(
                len(t.intermediate_values) for t in trials if t.state != TrialState.RUNNING
            )
            left = (self.max_total_epochs - trained) // self.max_epochs - running
            most = min(most, left)
        return max(most, 0)

    def is_surplus(
        self, study: optuna.Study, trial: FrozenTrial, trials: list[FrozenTrial] | None = None
    ) -> bool:
        """Whether a just-created trial is one more than the budget allows (``trials``:
        the study's, read since the trial was created; None reads them)."""
        if self.queue_only:
            return not is_enqueued(trial)
        if self.n_trials is None:
            return False
        if trials is None:
            trials = study.get_trials(deepcopy=False)
        ahead = sum(t.number < trial.number and t.state in FINISHED + IN_FLIGHT for t in trials)
        return ahead >= self.n_trials


def budget_for(config: StudyConfig, study: optuna.Study, deadline: float | None) -> Budget:
    """The budget a worker enforces for this study."""
    grid = config.sampler.name == "grid"
    population = population_of(config)  # PBT runs the segments it queues, and only them
    n_trials = study.user_attrs.get(GRID_ATTR) if grid else config.n_trials
    if config.scheduler is not None:  # shown as the total: every member's segments
        n_trials = config.scheduler.options.population * config.scheduler.generations(
            config.max_epochs
        )
    return Budget(
        n_trials=n_trials,
        deadline=deadline,
        queue_only=grid or population is not None,
        max_total_epochs=config.max_total_epochs,
        max_epochs=config.max_epochs,
        stop=config.stop,
        population=population,
    )


__all__ = ["Admission", "Budget", "budget_for"]
