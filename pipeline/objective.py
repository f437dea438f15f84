"""The Optuna objective: one trial = suggest, build, train with per-epoch reports, score.

What a trial leaves in the storage is listed in :class:`pipeline.trials.Attr`: the study
metric per epoch as intermediate values, and when the trial ends the last epoch's
metrics, the bookkeeping and, for a trial that did not complete, its outcome and reason.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import FrozenTrial

from pipeline import checkpoints, space
from pipeline.config import ParamSpec, StudyConfig
from pipeline.liveness import process_identity
from pipeline.resources import too_large
from pipeline.tasks import Splits, Task
from pipeline.train import TRAINING_DEFAULTS, EpochResult, evaluate, fit
from pipeline.trials import Attr, Outcome, frozen, original_number, retry_history


class TrialInterrupted(Exception):
    """The user asked the study to stop (Ctrl-C) while this trial was training."""


class ModelTooLarge(Exception):
    """The trial's model would not fit in the device's memory; the trial fails at once."""


class TrialSkipped(Exception):
    """The budget was met by other workers between admission and the trial's creation."""


@dataclass(frozen=True)
class TrialPlan:
    """What every trial of a study shares: the part of the study file a trial reads."""

    search_space: Mapping[str, ParamSpec]
    metric: str
    max_epochs: int
    seed: int = 0
    precision: str = "fp32"
    channels_last: bool = False

    @classmethod
    def of(cls, config: StudyConfig) -> TrialPlan:
        """The trial plan of a study file."""
        return cls(
            search_space=config.search_space,
            metric=config.metric,
            max_epochs=config.max_epochs,
            seed=config.seed,
            precision=config.precision,
            channels_last=config.channels_last,
        )

    def seed_of(self, trial: FrozenTrial) -> int:
        """Per-trial seed: stable across retries of the same trial, distinct across
        studies' ``seed`` values."""
        return (self.seed * 1_000_003 + original_number(trial)) % (2**63)


def hyperparameters(task: Task, values: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults of the training loop, then of the task, then the trial's values."""
    return {**TRAINING_DEFAULTS, **task.training_defaults, **task.hyperparameters, **values}


@dataclass
class _Progress:
    last: EpochResult | None = None
    compute: float = 0.0


class Objective:
    """Callable objective for ``study.optimize``; data stays loaded between trials.

    Args:
        plan: What the study's trials share (search space, metric, epochs, seed).
        task: The task; its ``name`` and ``options`` go into checkpoints.
        splits: The task's data, already on ``device``.
        should_stop: Checked after every epoch; when true the trial ends as interrupted
            and is re-queued.
        is_surplus: Checked before anything is sampled; when true the trial is skipped.
        store: Where checkpoints go; None for none.
    """

    def __init__(
        self,
        plan: TrialPlan,
        task: Task,
        splits: Splits,
        device: torch.device,
        *,
        task_options: Mapping[str, Any] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        is_surplus: Callable[[FrozenTrial], bool] = lambda trial: False,
        worker: int = 0,
        store: FileSystemArtifactStore | None = None,
    ) -> None:
        self.plan = plan
        self.task = task
        self.task_options = task.resolve_options(task_options or {})
        self.splits = splits
        self.device = device
        self.should_stop = should_stop
        self.is_surplus = is_surplus
        self.worker = worker
        self.store = store
        self.identity = process_identity()
        self.current: int | None = None  # the number of the trial being run
        self.checkpoint_warned = False

    def __call__(self, trial: optuna.Trial) -> float:
        self.current = trial.number
        record = frozen(trial)
        if self.is_surplus(record):
            _end(trial, Outcome.SKIPPED, "skipped: the trial budget was already met")
            raise TrialSkipped(f"trial {trial.number} not run: the budget was already met")
        trial.set_user_attr(Attr.WORKER_PROCESS, self.identity)
        history = retry_history(record)
        if history:
            trial.set_user_attr(Attr.RETRY_OF, original_number(record))
            trial.set_user_attr(Attr.RETRY_COUNT, len(history))
        try:
            return self._run(trial, self.plan.seed_of(record))
        except (optuna.TrialPruned, TrialSkipped):
            raise
        except TrialInterrupted:
            _end(trial, Outcome.INTERRUPTED, "interrupted")
            raise
        except Exception as exc:
            _end(trial, Outcome.FAILED, f"{type(exc).__name__}: {exc}"[:500])
            raise

    def _run(self, trial: optuna.Trial, seed: int) -> float:
        plan, s = self.plan, self.splits
        hp = hyperparameters(self.task, space.suggest(trial, plan.search_space))
        torch.manual_seed(seed)
        problem = too_large(lambda: self.task.build_model(hp, s), self.device)
        if problem is not None:
            raise ModelTooLarge(problem)
        model = self.task.build_model(hp, s).to(self.device)
        if plan.channels_last and s.train.x is not None and s.train.x.dim() == 4:
            model = model.to(memory_format=torch.channels_last)
        augment = self.task.augment if hp.get("augment") else None
        autocast = torch.bfloat16 if plan.precision == "bf16" else None
        generator = torch.Generator(device=self.device).manual_seed(seed)
        progress = _Progress()
        try:
            fit(
                model,
                self.task,
                s.train,
                s.val,
                hp,
                plan.max_epochs,
                generator,
                lambda result: self._on_epoch(trial, result, progress),
                augment=augment,
                autocast=autocast,
            )
            started = time.perf_counter()
            workers = int(hp["loader_workers"])
            scores = evaluate(model, self.task, s.test, autocast, loader_workers=workers)
            test = {f"test_{name}": value for name, value in scores.items()}
            progress.compute += time.perf_counter() - started
        finally:
            self._store_progress(trial, progress)
        for key, value in test.items():
            trial.set_user_attr(key, value)
        last = progress.last
        assert last is not None
        if self.store is not None:
            val = {k: v for k, v in last.metrics.items() if k.startswith("val_")}
            self._checkpoint(trial, hp, model, {**val, **test})
        return self._metric(last)

    def _checkpoint(
        self, trial: optuna.Trial, hp: Mapping[str, Any], model: torch.nn.Module, metrics: Any
    ) -> None:
        """Save the trial's checkpoint. A checkpoint that cannot be written costs the
        checkpoint, never the trial: the error is stored and said once per worker."""
        assert self.store is not None
        try:
            checkpoints.save(
                self.store,
                trial,
                task=self.task.name,
                task_options=self.task_options,
                hyperparameters=hp,
                model=model,
                metrics=metrics,
            )
        except OSError as exc:
            reason = f"{type(exc).__name__}: {exc}"[:300]
            trial.set_user_attr(Attr.CHECKPOINT_ERROR, reason)
            if not self.checkpoint_warned:
                self.checkpoint_warned = True
                print(
                    f"warning: worker {self.worker}: checkpoints cannot be saved ({reason}); "
                    "trials still complete with their metrics",
                    file=sys.stderr,
                    flush=True,
                )

    def _on_epoch(self, trial: optuna.Trial, result: EpochResult, progress: _Progress) -> None:
        # Per epoch only what the pruner needs goes to the storage (one write, one read);
        # the rest is written once, when the trial ends.
        progress.last = result
        progress.compute += result.compute_seconds
        if not result.finite:
            trial.set_user_attr(
                Attr.PRUNED_REASON,
                f"non-finite loss at epoch {result.epoch} (train "
                f"{result.metrics['train_loss']}, val {result.metrics['val_loss']}); "
                "lower lr or change the optimizer",
            )
            raise optuna.TrialPruned(f"loss diverged at epoch {result.epoch}")
        trial.report(self._metric(result), result.epoch)
        if self.should_stop():
            raise TrialInterrupted(f"trial {trial.number} interrupted after epoch {result.epoch}")
        if result.epoch < self.plan.max_epochs and trial.should_prune():
            trial.set_user_attr(Attr.PRUNED_REASON, f"pruner stopped it after epoch {result.epoch}")
            raise optuna.TrialPruned(f"pruned after epoch {result.epoch}")

    def _store_progress(self, trial: optuna.Trial, progress: _Progress) -> None:
        last = progress.last
        if last is not None:
            if last.finite:
                for key, value in last.metrics.items():
                    if key.startswith("val_"):
                        trial.set_user_attr(key, value)
            trial.set_user_attr(Attr.EPOCHS, last.epoch)
        trial.set_user_attr(Attr.COMPUTE_SECONDS, round(progress.compute, 4))
        trial.set_user_attr(Attr.WORKER, self.worker)

    def _metric(self, result: EpochResult) -> float:
        value = result.metrics[self.plan.metric]
        return float(value) if math.isfinite(value) else math.inf


def _end(trial: optuna.Trial, outcome: Outcome, reason: str) -> None:
    """Record why a trial that Optuna will mark FAIL ended."""
    trial.set_user_attr(Attr.OUTCOME, outcome.value)
    trial.set_user_attr(Attr.FAIL_REASON, reason)


__all__ = [
    "Objective",
    "TrialInterrupted",
    "TrialPlan",
    "TrialSkipped",
    "hyperparameters",
]
