"""The one object a training function needs: report, checkpoint, restore, and context.

Every trial, of a task or of the user's own trainable, runs through a :class:`Session`.
``report`` keeps every metric of every epoch, reports the study metric to Optuna and
prunes; ``checkpoint`` saves the trial's state in the artifact store so that a retry
(after a killed worker, Ctrl-C or a failure) ``restore``\\ s it and goes on from that
epoch, with the earlier epochs' values carried over.
"""

from __future__ import annotations

import contextlib
import io
import math
import numbers
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
import torch
from optuna.artifacts.exceptions import ArtifactNotFound

from pipeline.artifacts import ArtifactStore, load_checkpoint
from pipeline.search import FirstObjectivePruning
from pipeline.trial import STOPPED_ATTR, Attr, Limits, Outcome

RESERVED = frozenset(
    value for name, value in vars(Attr).items() if name.isupper() and isinstance(value, str)
) - {Attr.VAL_LOSS, Attr.VAL_ACCURACY, Attr.TEST_LOSS, Attr.TEST_ACCURACY}


class TrialInterrupted(Exception):
    """The user asked the study to stop (Ctrl-C) while this trial was training."""


class TrainableError(Exception):
    """The trainable used the session wrongly; the message says how to fix it."""


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

    def _check_report(self, epoch: Any, metrics: Mapping[str, Any]) -> dict[str, float]:
        last = self.history[-1]["epoch"] if self.history else 0
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch <= last:
            raise TrainableError(
                f"session.report(epoch={epoch!r}): epochs are whole numbers counted from 1, "
                f"each above the last one reported ({last})"
            )
        if epoch > self.max_epochs:
            raise TrainableError(
                f"session.report(epoch={epoch}) is beyond max_epochs ({self.max_epochs}); "
                "train for session.max_epochs epochs or raise max_epochs in the study file"
            )
        values: dict[str, float] = {}
        for name, value in metrics.items():
            if name in RESERVED or name in ("epoch", "trial"):
                raise TrainableError(f"session.report: {name!r} is a name the pipeline keeps")
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = value.item()
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TrainableError(
                    f"session.report: {name}={value!r} is not a number; report floats"
                )
            values[name] = float(value)
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
        buffer = io.BytesIO()
        torch.save({"epoch": epoch, "object": obj}, buffer)
        new_id = f"resume-{uuid.uuid4()}"
        try:
            buffer.seek(0)
            self.store.write(new_id, buffer)
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
        and metrics), so the trainable goes on from the epoch after it.
        """
        if self.store is None or self.history:
            return None
        for attempt in reversed(self.attempts):
            resume = attempt.user_attrs.get(Attr.RESUME)
            if not isinstance(resume, dict):
                continue
            try:
                saved = read_checkpoint(self.store, str(resume["artifact"]))
            except (ArtifactNotFound, OSError, KeyError):
                continue
            epoch = int(saved["epoch"])
            self._carry_over(attempt, epoch)
            self.trial.set_user_attr(Attr.RESUMED_FROM, {"trial": attempt.number, "epoch": epoch})
            return saved["object"]
        return self._from_parent()

    def _from_parent(self) -> Any:
        """A segment of population-based training starts from its parent's last
        checkpoint, with the parent's epochs carried over (curves stay continuous)."""
        if self.parent is None or self.store is None:
            return None
        artifact = self.parent.user_attrs.get(Attr.CHECKPOINT)
        if artifact is None:
            return None
        try:
            saved = load_checkpoint(self.store, str(artifact))
        except (ArtifactNotFound, OSError):
            return None
        self._carry_over(self.parent, int(self.parent.user_attrs.get(Attr.EPOCHS) or 0))
        return saved

    def _carry_over(self, attempt: optuna.trial.FrozenTrial, epoch: int) -> None:
        for step, value in sorted(attempt.intermediate_values.items()):
            if step <= epoch and self._pruning is None:
                self.trial.report(value, step)
        rows = attempt.user_attrs.get(Attr.HISTORY) or []
        self.history = [dict(row) for row in rows if row.get("epoch", epoch + 1) <= epoch]

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


def read_checkpoint(store: ArtifactStore, artifact_id: str) -> dict[str, Any]:
    """A checkpoint written by :meth:`Session.checkpoint`: ``{"epoch", "object"}``."""
    with store.open_reader(artifact_id) as reader:
        data = reader.read()
    return dict(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))


def remove_quietly(store: ArtifactStore, artifact_id: str) -> None:
    """Remove an artifact if it is still there (another worker may have removed it)."""
    with contextlib.suppress(ArtifactNotFound, OSError):
        store.remove(artifact_id)


__all__ = ["Session", "TrainableError", "TrialInterrupted", "read_checkpoint", "remove_quietly"]
