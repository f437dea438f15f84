"""The Optuna objective: one trial = suggest, build, train with per-epoch reports, score.

What a trial leaves in the storage:
- parameters (Optuna's), the study metric per epoch as intermediate values;
- user attributes, written when the trial ends: ``val_loss``, ``val_accuracy`` and
  ``epochs`` of its last epoch, ``compute_seconds`` (time inside forward, backward and
  evaluation), ``worker``, and for a complete trial ``test_accuracy`` and ``test_loss``
  (stored, never used to select);
- ``pruned_reason`` for a pruned trial, ``fail_reason`` for a failed one, and
  ``retry_of``/``retry_count`` for a re-run of an earlier trial.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore

from pipeline import checkpoints, space
from pipeline.config import StudyConfig
from pipeline.tasks import Splits, Task
from pipeline.train import TRAINING_DEFAULTS, EpochResult, evaluate, fit


class TrialInterrupted(Exception):
    """The user asked the study to stop (Ctrl-C) while this trial was training."""


class TrialSkipped(Exception):
    """The budget was met by other workers between admission and the trial's creation."""


def system_attrs(trial: optuna.Trial | optuna.trial.FrozenTrial) -> dict[str, Any]:
    """A trial's system attributes (Optuna 5 keeps them off the live ``Trial``'s API)."""
    if isinstance(trial, optuna.trial.FrozenTrial):
        return trial.system_attrs
    return trial._get_latest_trial().system_attrs


def original_trial_number(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """The number of the first trial with these parameters (itself unless a retry)."""
    system_attrs_ = system_attrs(trial)
    failed = system_attrs_.get("failed_trial")
    return int(failed) if failed is not None else trial.number


def trial_seed(config: StudyConfig, trial: optuna.Trial) -> int:
    """Per-trial seed: stable across retries of the same trial, distinct across studies'
    ``seed`` values."""
    return (config.seed * 1_000_003 + original_trial_number(trial)) % (2**63)


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
        splits: The task's data, already on ``device``.
        should_stop: Checked after every epoch; when true the trial ends as failed with
            reason "interrupted" and is re-queued.
        is_surplus: Checked before anything is sampled; when true the trial is skipped.
    """

    def __init__(
        self,
        config: StudyConfig,
        task: Task,
        splits: Splits,
        device: torch.device,
        should_stop: Callable[[], bool] = lambda: False,
        is_surplus: Callable[[optuna.Trial], bool] = lambda trial: False,
        worker: int = 0,
        store: FileSystemArtifactStore | None = None,
    ) -> None:
        self.worker = worker
        self.store = store
        self.config = config
        self.task = task
        self.splits = splits
        self.device = device
        self.should_stop = should_stop
        self.is_surplus = is_surplus

    def __call__(self, trial: optuna.Trial) -> float:
        if self.is_surplus(trial):
            trial.set_user_attr("fail_reason", "skipped: the trial budget was already met")
            raise TrialSkipped(f"trial {trial.number} not run: the budget was already met")
        attrs = system_attrs(trial)
        if "failed_trial" in attrs:
            trial.set_user_attr("retry_of", original_trial_number(trial))
            trial.set_user_attr("retry_count", len(attrs.get("retry_history", [])))
        try:
            return self._run(trial)
        except (optuna.TrialPruned, TrialSkipped):
            raise
        except TrialInterrupted:
            trial.set_user_attr("fail_reason", "interrupted")
            raise
        except Exception as exc:
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:500])
            raise

    def _run(self, trial: optuna.Trial) -> float:
        config = self.config
        hp = hyperparameters(self.task, space.suggest(trial, config.search_space))
        seed = trial_seed(config, trial)
        torch.manual_seed(seed)
        model = self.task.build_model(hp, self.splits).to(self.device)
        if config.channels_last and self.splits.train_x.dim() == 4:
            model = model.to(memory_format=torch.channels_last)
        augment = self.task.augment if hp.get("augment") else None
        autocast = torch.bfloat16 if config.precision == "bf16" else None
        generator = torch.Generator(device=self.device).manual_seed(seed)
        progress = _Progress()

        def on_epoch(result: EpochResult) -> None:
            # Per epoch only what the pruner needs goes to the storage (one write, one
            # read); the rest is written once, when the trial ends.
            progress.last = result
            progress.compute += result.compute_seconds
            if not result.finite:
                trial.set_user_attr(
                    "pruned_reason",
                    f"non-finite loss at epoch {result.epoch} (train {result.train_loss}, "
                    f"val {result.val_loss}); lower lr or change the optimizer",
                )
                raise optuna.TrialPruned(f"loss diverged at epoch {result.epoch}")
            trial.report(self._metric(result), result.epoch)
            if self.should_stop():
                raise TrialInterrupted(
                    f"trial {trial.number} interrupted after epoch {result.epoch}"
                )
            if result.epoch < config.max_epochs and trial.should_prune():
                trial.set_user_attr(
                    "pruned_reason", f"pruner stopped it after epoch {result.epoch}"
                )
                raise optuna.TrialPruned(f"pruned after epoch {result.epoch}")

        s = self.splits
        try:
            fit(
                model,
                s.train_x,
                s.train_y,
                s.val_x,
                s.val_y,
                hp,
                config.max_epochs,
                generator,
                on_epoch,
                augment=augment,
                autocast=autocast,
            )
            started = time.perf_counter()
            test_loss, test_acc = evaluate(model, s.test_x, s.test_y, autocast)
            progress.compute += time.perf_counter() - started
        finally:
            self._store_progress(trial, progress)
        trial.set_user_attr("test_loss", test_loss)
        trial.set_user_attr("test_accuracy", test_acc)
        assert progress.last is not None
        if self.store is not None:
            checkpoints.save(
                self.store,
                trial,
                task=config.task.name,
                task_options=self.task.resolve_options(config.task.options),
                hyperparameters=hp,
                model=model,
                metrics={
                    "val_loss": progress.last.val_loss,
                    "val_accuracy": progress.last.val_accuracy,
                    "test_loss": test_loss,
                    "test_accuracy": test_acc,
                },
            )
        return self._metric(progress.last)

    def _store_progress(self, trial: optuna.Trial, progress: _Progress) -> None:
        last = progress.last
        if last is not None:
            if last.finite:
                trial.set_user_attr("val_loss", last.val_loss)
                trial.set_user_attr("val_accuracy", last.val_accuracy)
            trial.set_user_attr("epochs", last.epoch)
        trial.set_user_attr("compute_seconds", round(progress.compute, 4))
        trial.set_user_attr("worker", self.worker)

    def _metric(self, result: EpochResult) -> float:
        value = result.val_loss if self.config.metric == "val_loss" else result.val_accuracy
        return float(value) if math.isfinite(value) else math.inf


__all__ = [
    "Objective",
    "TrialInterrupted",
    "TrialSkipped",
    "hyperparameters",
    "system_attrs",
    "trial_seed",
]
