"""How a failed trial is described, and how one whose worker process died is ended:
FAIL, with an outcome and a reason.

A worker that dies (the user's code called ``os._exit``, a signal killed it, the
trial ran past ``trial_timeout`` and was killed) cannot record its own trial. Whoever
finds it, ``tune`` watching its workers or a worker releasing orphans, records why here,
fails it and re-queues it when retries are left.
"""

from __future__ import annotations

import signal
import sysconfig
import traceback
from pathlib import Path

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


def describe(exc: BaseException) -> str:
    """``Type: message (at file:line in function)``, the frame being the last one in the
    user's code (not the pipeline's, Python's or a library's), for ``fail_reason``."""
    text = f"{type(exc).__name__}: {exc}"
    frame = _last_user_frame(exc)
    return text if frame is None else f"{text} (at {frame})"


_PIPELINE = Path(__file__).resolve().parents[1]  # the package
_NOT_USER = tuple(
    str(Path(p).resolve())
    for p in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
)
_LIBRARIES = ("torch", "optuna", "numpy", "sklearn", "pandas", "torchvision", "PIL", "scipy")


def _last_user_frame(exc: BaseException) -> str | None:
    for entry in reversed(traceback.extract_tb(exc.__traceback__)):
        path = Path(entry.filename).resolve()
        ours = path.is_relative_to(_PIPELINE) and not path.is_relative_to(_PIPELINE / "examples")
        library = any(part in _LIBRARIES for part in path.parts) or str(path).startswith(_NOT_USER)
        if not ours and not library:
            return f"{path.name}:{entry.lineno} in {entry.name}"
    return None


def exit_reason(exc: SystemExit | KeyboardInterrupt, epoch: int) -> str:
    """Why a training function that exited or raised KeyboardInterrupt failed its trial."""
    if isinstance(exc, KeyboardInterrupt):
        return f"the training function raised KeyboardInterrupt during epoch {epoch}"
    code = 0 if exc.code is None else exc.code
    if not isinstance(code, int):  # sys.exit("message") exits with 1 and prints it
        return f"the training function exited with code 1 ({code}) during epoch {epoch}"
    return f"the training function exited with code {code} during epoch {epoch}"


__all__ = ["death_reason", "describe", "exit_reason", "fail_dead", "running_epoch"]
