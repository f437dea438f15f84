"""The one object a training function needs: report, checkpoint, restore, and context.

Every trial, of a task or of the user's own trainable, runs through a :class:`Session`.
``report`` keeps every metric of every epoch, reports the study metric to Optuna and
prunes; ``checkpoint`` saves the trial's state in the artifact store so that a retry
(after a killed worker, Ctrl-C or a failure) ``restore``\\ s it and goes on from that
epoch, with the earlier epochs' values carried over. A Ray Tune loop runs unchanged: a
report past ``max_epochs`` completes the trial (Ray's ``max_t``), and one may go back after
``restore``."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
import torch
from optuna.artifacts.exceptions import ArtifactNotFound

from pipeline.artifacts import ArtifactStore, load_checkpoint, remove_quietly, write_working
from pipeline.search import FirstObjectivePruning
from pipeline.trial import STOPPED_ATTR, Attr, Limits, Outcome, metric_values


class TrialInterrupted(Exception):
    """The user asked the study to stop (Ctrl-C) while this trial was training."""


class TrainableError(Exception):
    """The trainable used the session wrongly; the message says how to fix it."""


class EpochBudgetReached(Exception):
    """The trainable went on past ``max_epochs``: its trial ends there, complete, with
    the last epoch within the budget as its result (the message is its note)."""


class Session:
    """What one trial's training function sees.

    Attributes:
        device: The ``torch.device`` this trial trains on.
        seed: This trial's seed (the same in every retry of it); torch is seeded with it.
        threads: The CPU threads this trial may use (torch is set to it).
        trial_number: The Optuna trial number.
        max_epochs: The study's ``max_epochs``: report epochs 1 to this.
    """

    def __init__(
        self,
        trial: optuna.Trial,
        metric: str,
        max_epochs: int,
        *,
        device: torch.device,
        seed: int,
        store: ArtifactStore | None = None,
        attempts: list[optuna.trial.FrozenTrial] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        warn: Callable[[str], None] = lambda text: None,
        objectives: Sequence[str] = (),
        limits: Limits | None = None,
        on_epoch: Callable[[int, dict[str, float]], None] = lambda epoch, metrics: None,
        parent: optuna.trial.FrozenTrial | None = None,
    ) -> None:
        self.trial = trial
        self.metric = metric  # the first objective: reported each epoch, pruned on
        self.objectives = list(objectives) or [metric]
        self.limits = limits
        # Optuna keeps no intermediate values in a study of several objectives.
        self._pruning = (
            FirstObjectivePruning(trial.study, metric) if len(self.objectives) > 1 else None
        )
        self.recorded: dict[str, float] = {}  # values of the trial, not of an epoch
        self.max_epochs = max_epochs
        self.device = device
        self.seed = seed
        self.threads = torch.get_num_threads()
        self.trial_number = trial.number
        self.store = store
        self.attempts = attempts or []  # earlier attempts at this trial, oldest first
        self._should_stop = should_stop
        self._warn = warn
        self._on_epoch = on_epoch  # tracking: every epoch's metrics as reported
        self.history: list[dict[str, Any]] = []
        # Epochs carried over by restore(), told Optuna at the next report (it may go back).
        self._restored = False
        self.resume_id: str | None = None
        self.compute_seconds: float | None = None  # the built-in loop measures its own
        self.started = time.perf_counter()
        self.parent = parent  # population-based training: the segment it goes on from

    @property
    def last(self) -> dict[str, Any] | None:
        """The last epoch's metrics, or None before the first report."""
        return self.history[-1] if self.history else None

    def should_stop(self) -> bool:
        """Whether the user asked the study to stop; a trainable may poll it inside a
        long epoch. (``report`` ends the trial by itself when it is true.)"""
        return self._should_stop()

    def report(self, epoch: int, **metrics: Any) -> None:
        """Store every metric of ``epoch`` (1, 2, ...) and report the study metric.

        Raises:
            optuna.TrialPruned: the pruner stopped the trial, or the metric diverged.
            TrialInterrupted: the user asked the study to stop.
            TrainableError: the report cannot be used (see the message).
        """
        values = self._check_report(epoch, metrics)
        self._go_on_from(epoch)
        if epoch > self.max_epochs:
            raise self._past_budget(epoch)
        row = {"epoch": epoch, "trial": self.trial_number, **values}
        # The history is written with each checkpoint and when the trial ends, not per
        # epoch: an epoch costs the storage one write (the report) and one read (prune).
        self.history.append(row)
        self._on_epoch(epoch, values)
        value = values[self.metric]
        diverged = [k for k, v in values.items() if not math.isfinite(v) and k.endswith("loss")]
        if not math.isfinite(value) or diverged:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
            self.trial.set_user_attr(
                Attr.PRUNED_REASON,
                f"non-finite {self.metric if not diverged else diverged[0]} at epoch {epoch} "
                f"({shown}); lower lr or change the optimizer",
            )
            raise optuna.TrialPruned(f"diverged at epoch {epoch}")
        if self._pruning is None:
            self.trial.report(value, epoch)
        if self._should_stop():
            raise TrialInterrupted(f"trial {self.trial_number} interrupted after epoch {epoch}")
        if epoch < self.max_epochs and self._should_prune():
            self.trial.set_user_attr(Attr.PRUNED_REASON, f"pruner stopped it after epoch {epoch}")
            raise optuna.TrialPruned(f"pruned after epoch {epoch}")

    def _should_prune(self) -> bool:
        if self._pruning is not None:
            return self._pruning(self.history)
        return self.trial.should_prune()

    def _past_budget(self, epoch: int) -> Exception:
        """The end of a trainable that reported ``epoch`` past ``max_epochs``: complete at
        the last epoch within it, as Ray's ``max_t`` stops a trial; an error when none."""
        if not self.history:
            return TrainableError(
                f"session.report(epoch={epoch}) is beyond max_epochs ({self.max_epochs}) "
                "and no epoch within it was reported; raise max_epochs in the study file"
            )
        note = f"stopped at max_epochs ({self.max_epochs}): the trainable went on to epoch {epoch}"
        return EpochBudgetReached(note)

    def _check_report(self, epoch: Any, metrics: Mapping[str, Any]) -> dict[str, float]:
        # After restore() the first report may go back to any epoch: it is trained again.
        last = self.history[-1]["epoch"] if self.history and not self._restored else 0
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch <= last:
            raise TrainableError(
                f"session.report(epoch={epoch!r}): epochs are whole numbers counted from 1, "
                f"each above the last one reported ({last})"
            )
        try:
            values = metric_values(metrics)
        except ValueError as exc:
            raise TrainableError(f"session.report: {exc}") from None
        if self.metric not in values:
            raise self._metric_missing(", ".join(values) or "nothing")
        return values

    def checkpoint(self, obj: Any) -> None:
        """Save ``obj`` (anything ``torch.save`` takes: state dicts, tensors, numbers)
        as this trial's latest checkpoint, with the last reported epoch. A retry of the
        trial gets it from :meth:`restore`; a complete trial keeps its last one as an
        artifact linked to it. A checkpoint that cannot be written costs the checkpoint,
        never the trial."""
        if self.store is None:
            return
        epoch = self.history[-1]["epoch"] if self.history else 0
        try:
            new_id = write_working(self.store, epoch, obj)
        except OSError as exc:
            self._checkpoint_failed(exc)
            return
        previous, self.resume_id = self.resume_id, new_id
        self.trial.set_user_attr(Attr.HISTORY, self.history)  # what a retry carries over
        self.trial.set_user_attr(Attr.RESUME, {"artifact": new_id, "epoch": epoch})
        if previous is not None:
            remove_quietly(self.store, previous)

    def _checkpoint_failed(self, exc: OSError) -> None:
        reason = f"{type(exc).__name__}: {exc}"[:300]
        self.trial.set_user_attr(Attr.CHECKPOINT_ERROR, reason)
        self._warn(f"checkpoints cannot be saved ({reason}); trials still run")

    def restore(self) -> Any:
        """The latest checkpoint of the earlier attempt this trial retries, or None.

        The epochs up to the checkpoint's are carried over (their intermediate values
        and metrics), so the trainable goes on from the epoch after it; or it trains the
        checkpoint's epoch (or an earlier one) again, whose new values replace the old.
        A segment of population-based training with no attempt of its own starts from
        its parent's kept checkpoint, the parent's epochs carried over.
        """
        if self.store is None or self.history:
            return None
        for attempt in reversed(self.attempts):
            resume = attempt.user_attrs.get(Attr.RESUME)
            saved = self._load(resume.get("artifact") if isinstance(resume, dict) else None)
            if saved is not None:
                epoch = int(saved["epoch"])
                self._carry_over(attempt, epoch)
                self.trial.set_user_attr(
                    Attr.RESUMED_FROM, {"trial": attempt.number, "epoch": epoch}
                )
                return saved["object"]
        if self.parent is None:
            return None
        saved = self._load(self.parent.user_attrs.get(Attr.CHECKPOINT))
        if saved is not None:
            self._carry_over(self.parent, int(self.parent.user_attrs.get(Attr.EPOCHS) or 0))
        return saved

    def _load(self, artifact: Any) -> Any:
        """A checkpoint of the store, or None where there is none or it is gone."""
        assert self.store is not None
        try:
            return None if artifact is None else load_checkpoint(self.store, str(artifact))
        except (ArtifactNotFound, OSError):
            return None

    def _carry_over(self, trial: optuna.trial.FrozenTrial, epoch: int) -> None:
        """Take ``trial``'s epochs up to ``epoch`` as this trial's first ones; they are
        told Optuna at the first report (:meth:`_go_on_from`)."""
        rows = trial.user_attrs.get(Attr.HISTORY) or []
        self.history = [dict(row) for row in rows if row.get("epoch", epoch + 1) <= epoch]
        self._restored = True

    def _go_on_from(self, epoch: int) -> None:
        """After restore(), at the first report (of ``epoch``) or the trial's end: the
        epochs carried over before ``epoch`` are told Optuna (which ignores a step told
        twice); those from it on are dropped, replaced by what the trainable reports."""
        if not self._restored:
            return
        self._restored = False
        self.history = [row for row in self.history if row["epoch"] < epoch]
        for row in self.history:  # tracking too: in epoch order, before the new ones
            if self._pruning is None:
                self.trial.report(row[self.metric], row["epoch"])
            self._on_epoch(row["epoch"], {k: row[k] for k in row.keys() - {"epoch", "trial"}})

    def record(self, **values: float) -> None:
        """Store values that belong to the trial, not to an epoch (test metrics, or the
        ``params``, ``latency_ms``... a trainable measures itself); such a value may be
        an objective or a constraint of the study."""
        for name, value in values.items():
            kept = value if isinstance(value, int) and not isinstance(value, bool) else float(value)
            self.recorded[name] = float(value)
            self.trial.set_user_attr(name, kept)  # a count (params) stays a whole number

    def measured(self, **values: float) -> None:
        """Record what was measured before training (``params``, ``latency_ms``) and
        reject the trial before its first epoch when it already breaks a constraint.

        Raises:
            optuna.TrialPruned: a constraint is broken; the reason names it.
        """
        self.record(**{k: v for k, v in values.items() if k not in self.recorded})
        broken = self.limits.violated(self.recorded) if self.limits is not None else []
        if broken:
            self.trial.set_user_attr(Attr.OUTCOME, Outcome.REJECTED.value)
            self.trial.set_user_attr(
                Attr.PRUNED_REASON, f"rejected before training: {', '.join(broken)}"
            )
            raise optuna.TrialPruned(f"rejected before training: {broken[0]}")

    def seconds(self) -> float:
        """The trial's compute time so far (the built-in loop's own measure, else the
        time since the trial began)."""
        if self.compute_seconds is not None:
            return self.compute_seconds
        return time.perf_counter() - self.started

    def values(self) -> list[float]:
        """The objectives' values: the last epoch's metrics, then the trial's recorded
        values (``params``...), then its compute time.

        Raises:
            TrainableError: an objective was neither reported nor measured.
        """
        known = {**self.recorded, Attr.COMPUTE_SECONDS: self.seconds(), **(self.last or {})}
        missing = [name for name in self.objectives if name not in known]
        if missing:
            raise TrainableError(
                f"objective {missing[0]!r} was neither reported nor measured; report it with "
                f"session.report(epoch, {missing[0]}=...) or session.record({missing[0]}=...)"
            )
        return [float(known[name]) for name in self.objectives]

    def value(self) -> float:
        """The study metric of the last epoch reported.

        Raises:
            TrainableError: nothing was reported.
        """
        if self.last is None:
            raise self._metric_missing("nothing")
        return float(self.last[self.metric])

    def _metric_missing(self, reported: str) -> TrainableError:
        """The error of a trial without the study's metric; the study stops (every
        later trial would fail the same way)."""
        self.trial.study.set_user_attr(
            STOPPED_ATTR,
            f"stopped: trial {self.trial_number} reported {reported} but never {self.metric!r}, "
            "the study's metric",
        )
        if reported == "nothing":
            return TrainableError(
                "reported no metric: call session.report(epoch, name=value, ...) after every epoch"
            )
        return TrainableError(
            f"reported {reported} but not {self.metric!r}, the study's metric; "
            f"set metric: to one of the reported names in the study file"
        )

    def store_bookkeeping(self) -> None:
        """Write the last epoch's (finite) metrics, the epochs and the compute time,
        however the trial ended."""
        self._go_on_from(self.max_epochs + 1)  # restored, then nothing reported
        seconds = self.seconds()
        self.trial.set_user_attr(Attr.COMPUTE_SECONDS, round(seconds, 4))
        if self.limits is not None:  # where Optuna's samplers, plots and dashboard read them
            known = {**self.recorded, Attr.COMPUTE_SECONDS: seconds, **(self.last or {})}
            for name, violation in self.limits.violations(known).items():
                self.trial.set_constraint(name, violation)
        if self.last is None:
            return
        self.trial.set_user_attr(Attr.HISTORY, self.history)
        for name, value in self.last.items():
            if name == "epoch":
                self.trial.set_user_attr(Attr.EPOCHS, value)
            elif name != "trial" and math.isfinite(value):
                self.trial.set_user_attr(name, value)


__all__ = ["EpochBudgetReached", "Session", "TrainableError", "TrialInterrupted"]
