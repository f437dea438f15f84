"""Trials mirrored where teams keep their runs: MLflow, TensorBoard and Weights & Biases
(``tracking:``).

The Optuna storage stays the record of a study; a tracking backend gets a copy. Each
backend is a :class:`Tracker`; :class:`Tracking` feeds the study's backends from the
objective (trial start, every epoch, the checkpoint) and from Optuna's trial callback
(how the trial ended), and guards them: whatever a backend raises (a server that is
down, a full disk) costs one warning per worker and backend, and that backend is left
alone for :data:`RETRY_SECONDS` before it is tried again at the next trial. No trial
waits on a backend for long (see each backend's timeouts) and none fails because of one.

The backends' packages are optional (``pip install 'optuna-pipeline[tracking]'``, and
``[wandb]``); :func:`check_tracking` refuses, when the study file is loaded, a backend
that is not installed.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TextIO

import optuna
from optuna.trial import FrozenTrial

from pipeline.config import TrackingConfig
from pipeline.exceptions import ConfigError
from pipeline.storages import mask_url
from pipeline.trial import Attr

RETRY_SECONDS = 60.0  # a backend that failed is tried again after this long
INSTALL_HINT = "pip install 'optuna-pipeline[{extra}]'"
# The URI schemes MLflow's client takes; a bare host:port is a common slip.
MLFLOW_SCHEMES = ("http", "https", "file", "sqlite", "postgresql", "mysql", "mssql", "databricks")


class Tracker(Protocol):
    """One tracking backend. Calls come from one worker process, in trial order; any of
    them may raise, which :class:`Tracking` turns into one warning."""

    name: str  # how warnings name the backend: "MLflow at http://..."

    def start_study(self, study: optuna.Study) -> None:
        """The study is (re)starting: record its provenance."""

    def start_trial(self, number: int, params: Mapping[str, Any]) -> None:
        """Trial ``number`` starts with the hyperparameters its trainable gets."""

    def log_epoch(self, number: int, epoch: int, metrics: Mapping[str, float]) -> None:
        """Every metric trial ``number`` reported for ``epoch`` (1, 2, ...)."""

    def log_checkpoint(self, number: int, path: Path) -> None:
        """The checkpoint trial ``number`` keeps, as a file that exists during the call."""

    def end_trial(self, trial: FrozenTrial) -> None:
        """The trial ended (complete, pruned or failed, with its reason in user attrs)."""

    def end_study(self, study: optuna.Study) -> None:
        """This process is done with the study (its workers ended)."""


class Tracking:
    """The study's trackers behind one guard; also an Optuna ``optimize`` callback that
    ends each trial's runs. Built by :func:`open_tracking`.

    Args:
        trackers: The backends.
        say: Writes one warning line (the worker's log).
    """

    def __init__(self, trackers: list[Tracker], say: Callable[[str], None]) -> None:
        self.trackers = trackers
        self.say = say
        self.warned: set[str] = set()
        self.paused_until: dict[str, float] = {}
        self.started: dict[int, set[str]] = {}  # trial -> backends that started its run
        self.logged: dict[int, set[int]] = {}  # trial -> epochs already logged

    def runs_pages(self) -> list[tuple[str, str]]:
        """``(tracking URI, page)`` of each MLflow experiment this process wrote to,
        the page being its runs table relative to the UI's root."""
        pages = [(getattr(t, "uri", ""), getattr(t, "runs_page", None)) for t in self.trackers]
        return [(uri, page) for uri, page in pages if page]

    def start_study(self, study: optuna.Study) -> None:
        """Record the study's provenance in every backend."""
        for tracker in self.trackers:
            self._call(tracker, tracker.start_study, study)

    def start_trial(self, number: int, params: Mapping[str, Any]) -> None:
        """Open trial ``number``'s run in every backend that is up."""
        self.logged[number] = set()
        self.started[number] = {
            t.name for t in self.trackers if self._call(t, t.start_trial, number, params)
        }

    def log_epoch(self, number: int, epoch: int, metrics: Mapping[str, float]) -> None:
        """Log one epoch's metrics of trial ``number``."""
        self.logged.setdefault(number, set()).add(epoch)
        for tracker in self._running(number):
            self._call(tracker, tracker.log_epoch, number, epoch, metrics)

    def log_checkpoint(self, number: int, path: Path) -> None:
        """Log the checkpoint trial ``number`` keeps."""
        for tracker in self._running(number):
            self._call(tracker, tracker.log_checkpoint, number, path)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna's trial callback: the epochs a retry carried over from an earlier
        attempt (they were reported before this run existed), then the trial's end."""
        logged = self.logged.pop(trial.number, set())
        for row in trial.user_attrs.get(Attr.HISTORY) or []:
            epoch = row.get("epoch")
            if isinstance(epoch, int) and epoch not in logged:
                metrics = {k: v for k, v in row.items() if k not in ("epoch", "trial")}
                for tracker in self._running(trial.number):
                    self._call(tracker, tracker.log_epoch, trial.number, epoch, metrics)
        for tracker in self._running(trial.number):
            self._call(tracker, tracker.end_trial, trial)
        self.started.pop(trial.number, None)

    def end_study(self, study: optuna.Study) -> None:
        """Close the study's record in every backend."""
        for tracker in self.trackers:
            self._call(tracker, tracker.end_study, study)

    def _running(self, number: int) -> list[Tracker]:
        names = self.started.get(number, set())
        return [t for t in self.trackers if t.name in names]

    def _call(self, tracker: Tracker, method: Callable[..., None], *args: Any) -> bool:
        """Run one backend call; return whether it succeeded. A failure pauses the
        backend for RETRY_SECONDS and is said once per backend."""
        if time.monotonic() < self.paused_until.get(tracker.name, 0.0):
            return False
        try:
            method(*args)
        except Exception as exc:  # a backend may raise anything; trials must not see it
            self.paused_until[tracker.name] = time.monotonic() + RETRY_SECONDS
            if tracker.name not in self.warned:
                self.warned.add(tracker.name)
                self.say(
                    f"{tracker.name}: {type(exc).__name__}: {_first_line(exc)}; trials go on "
                    f"without it (retried every {RETRY_SECONDS:.0f} s), the Optuna storage "
                    "keeps every result"
                )
            return False
        return True


def _first_line(exc: BaseException, limit: int = 240) -> str:
    lines = str(exc).strip().splitlines()
    if not lines:
        return "(no message)"
    line = mask_url(lines[0])
    return line if len(line) <= limit else line[: limit - 3] + "..."


def check_tracking(tracking: TrackingConfig) -> None:
    """The study-file checks of ``tracking:``: the values' form, the packages installed.

    Raises:
        ConfigError: naming the key and what to change.
    """
    if tracking.mlflow is not None:
        scheme = tracking.mlflow.partition(":")[0].lower()
        if scheme not in MLFLOW_SCHEMES or ":" not in tracking.mlflow:
            raise ConfigError(
                "tracking.mlflow",
                "expected an MLflow tracking URI such as http://127.0.0.1:5000, "
                f"sqlite:///runs/mlflow.db or file:runs/mlruns, got {mask_url(tracking.mlflow)!r}",
            )
        _need("mlflow", "tracking.mlflow")
    if tracking.tensorboard is not None:
        if not tracking.tensorboard.strip():
            raise ConfigError("tracking.tensorboard", "expected a directory, or null for none")
        _need("tensorboard", "tracking.tensorboard")
    if tracking.wandb is not None:
        if not tracking.wandb.project.strip():
            raise ConfigError("tracking.wandb.project", "expected a W&B project name")
        _need("wandb", "tracking.wandb", extra="wandb")


def _need(package: str, key: str, extra: str = "tracking") -> None:
    if importlib.util.find_spec(package) is None:
        hint = INSTALL_HINT.format(extra=extra)
        raise ConfigError(key, f"needs the {package} package, which is not installed: {hint}")


def open_tracking(
    config: TrackingConfig,
    study_name: str,
    metric: str,
    description: Callable[[], str],
    who: str,
    log: TextIO = sys.stderr,
) -> Tracking | None:
    """The study's trackers, or None when ``tracking:`` turns none on.

    Args:
        metric: The study metric, which MLflow's parent run is ranked by.
        description: Gives the study's description (its dashboard note), which MLflow
            shows on the parent run; called only when MLflow is on.
        who: How this process's warnings begin ("worker 3", "pipeline").
    """
    if not config.enabled:
        return None
    trackers: list[Tracker] = []
    if config.mlflow:
        from pipeline.tracking._mlflow import MLflowTracker

        tracker = MLflowTracker(config.mlflow, study_name, metric)
        tracker.description = description()
        trackers.append(tracker)
    if config.tensorboard:
        from pipeline.tracking._tensorboard import TensorBoardTracker

        trackers.append(TensorBoardTracker(config.tensorboard, study_name))
    if config.wandb:
        from pipeline.tracking._wandb import WandbTracker

        trackers.append(WandbTracker(config.wandb, study_name))

    def say(text: str) -> None:
        print(f"warning: {who}: {text}", file=log, flush=True)

    return Tracking(trackers, say)


__all__ = ["RETRY_SECONDS", "Tracker", "Tracking", "check_tracking", "open_tracking"]
