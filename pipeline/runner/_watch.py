"""``tune`` watching its worker processes: no single trial can stop or hang the study.

- A worker that dies inside a trial (the user's code called ``os._exit``, a signal
  killed it) leaves its trial RUNNING: it is failed with the reason (exit code or
  signal, and the epoch), re-queued when ``max_retries`` allows, and a replacement
  worker starts on the same slot.
- A trial past ``trial_timeout`` is first ended inside its worker (SIGALRM raises in the
  training function); one still running :func:`kill_grace` seconds later (its code
  blocks the signal, swallows the exception, or hangs in C) has its worker SIGKILLed and
  replaced, and is failed as timed out.
- After a stop signal, workers finish their epoch; one still running
  ``STOP_GRACE_SECONDS`` later is killed and its trial re-queued.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import multiprocessing.connection
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from pipeline.config import duration_text
from pipeline.storages import STORAGE_ERRORS
from pipeline.trial import (
    Attr,
    Outcome,
    death_reason,
    fail_dead,
    is_local,
    last_lines,
    output_note,
    release_orphans,
    running_epoch,
)

Process = mp.process.BaseProcess
KILL_GRACE_SECONDS = 10.0  # past trial_timeout, before a worker is killed
STOP_GRACE_SECONDS = 30.0  # after a stop signal, before workers are killed
MAX_RESTARTS = 5  # per worker slot, before its deaths count as the study's failure


def kill_grace(trial_timeout: float) -> float:
    """Seconds past ``trial_timeout`` before the worker is killed: 10, or a quarter of a
    shorter timeout (at least 1)."""
    return min(KILL_GRACE_SECONDS, max(1.0, trial_timeout / 4))


class Supervisor:
    """The worker processes of one ``tune``, each replaced when it dies inside a trial.

    Args:
        procs: The started workers, one per slot (replacements take their place).
        start: Starts a worker on slot ``i``.
        say: Prints one line (a trial that died, a worker replaced).
    """

    def __init__(
        self,
        study: optuna.Study,
        storage: BaseStorage,
        procs: list[Process],
        start: Callable[[int], Process],
        *,
        trial_timeout: float | None,
        max_retries: int,
        say: Callable[[str], None],
    ) -> None:
        self.study = study
        self.storage = storage
        self.procs = procs
        self.start = start
        self.trial_timeout = trial_timeout
        self.max_retries = max_retries
        self.say = say
        self.killed: set[int] = set()  # pids killed for a timeout (their trial is failed)
        self.restarts: dict[int, int] = {}  # by slot
        self.ended: set[int] = set()  # pids of workers seen ended

    def watch(self, poll: Callable[[], None], poll_seconds: float) -> None:
        """Until every worker has ended: ``poll`` (the live table), kill workers whose
        trial ran too long, replace workers that died inside a trial."""
        while True:
            poll()
            with contextlib.suppress(*STORAGE_ERRORS):  # an outage: workers wait it out, so do we
                self._check()
            alive = [p.sentinel for p in self.procs if p.is_alive()]
            if not alive:
                return
            # Wakes as a worker ends: the summary follows the last trial at once.
            mp.connection.wait(alive, timeout=poll_seconds)

    def _check(self) -> None:
        # The storage is read only when there is something to check: a trial_timeout, or
        # a worker that ended (one that ends after this line is seen at the next poll).
        ended = [p for p in self.procs if not p.is_alive() and p.pid not in self.ended]
        if self.trial_timeout is None and not ended:
            return
        owned = self._running()
        for i, proc in enumerate(self.procs):
            trial = owned.get(proc.pid or -1)
            if proc in ended:
                if self._died(i, proc, trial):
                    self.procs[i] = self.start(i)
                self.ended.add(proc.pid or -1)  # after _died: a storage error retries it
            elif proc.is_alive():
                self._check_time(proc, trial)

    def _running(self) -> dict[int, FrozenTrial]:
        """The RUNNING trials of this machine's workers, by the pid that runs them (a pid
        of this kernel and PID namespace: a host name can be shared by containers)."""
        out = {}
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            identity = trial.user_attrs.get(Attr.WORKER_PROCESS)
            if isinstance(identity, dict) and is_local(identity) and "pid" in identity:
                out[int(identity["pid"])] = trial
        return out

    def _check_time(self, proc: Process, trial: FrozenTrial | None) -> None:
        if self.trial_timeout is None or trial is None or trial.datetime_start is None:
            return
        elapsed = (datetime.now() - trial.datetime_start).total_seconds()
        if elapsed < self.trial_timeout + kill_grace(self.trial_timeout):
            return
        proc.kill()  # the soft timeout inside the worker did not end the trial
        proc.join(timeout=10)
        self.killed.add(proc.pid or -1)
        reason = (
            f"exceeded trial_timeout ({duration_text(self.trial_timeout)}) during epoch "
            f"{running_epoch(trial)}; its worker did not stop and was killed"
        )
        self._fail(trial, reason, Outcome.TIMED_OUT)

    def _died(self, i: int, proc: Process, trial: FrozenTrial | None) -> bool:
        """Whether the ended worker ``proc`` must be replaced (it died in a trial);
        its trial is failed with the reason."""
        pid = proc.pid or -1
        if pid in self.killed:
            self.killed.discard(pid)
        elif trial is not None:
            self._fail(trial, death_reason(proc.exitcode, trial))
        elif proc.exitcode is None or proc.exitcode >= 0:
            return False  # it ended by itself: the budget was met, or it said why
        if self.restarts.get(i, 0) >= MAX_RESTARTS:
            self.say(f"{proc.name} died {MAX_RESTARTS + 1} times; not replaced again")
            return False
        self.restarts[i] = self.restarts.get(i, 0) + 1
        self.say(f"{proc.name} (pid {pid}) died; a replacement worker starts")
        return True

    def _fail(self, trial: FrozenTrial, reason: str, outcome: Outcome = Outcome.FAILED) -> None:
        retry = fail_dead(self.study, self.storage, trial, reason, self.max_retries, outcome)
        if retry is not None:
            note = " (re-queued)" if retry else ""
            self.say(f"trial {trial.number} failed: {reason}{note}{output_note(trial)}")

    def join(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """After a stop signal: wait up to ``grace`` seconds for the workers to end their
        epoch, then kill the rest and re-queue their trials. A second signal kills at once."""
        deadline = time.monotonic() + grace
        try:
            for proc in self.procs:
                proc.join(timeout=max(0.0, deadline - time.monotonic()))
        except KeyboardInterrupt:
            pass
        late = [p for p in self.procs if p.is_alive()]
        kill_all(late)
        if late:
            self.say(f"{len(late)} worker(s) did not stop within {grace:g} s and were killed")
            release_orphans(self.study, self.max_retries, self.say, self.storage)


def kill_all(procs: Sequence[Process]) -> None:
    """SIGKILL ``procs`` and reap them."""
    for proc in procs:
        proc.kill()
    for proc in procs:
        proc.join()


def last_words(study: optuna.Study, proc: mp.process.BaseProcess, count: int = 12) -> None:
    """Print the end of the log of the last trial ``proc`` ran: what a worker that died
    inside a trial printed went there, not to the console."""
    ran = [
        t
        for t in study.get_trials(deepcopy=False)
        if Attr.LOG in t.user_attrs
        and t.user_attrs.get(Attr.WORKER_PROCESS, {}).get("pid") == proc.pid
    ]
    if not ran:
        return
    path = ran[-1].user_attrs[Attr.LOG]
    lines = last_lines(path, count)
    said = f"the last {len(lines)} lines of {path}:" if lines else f"{path} is empty"
    print(f"{proc.name} ran trial #{ran[-1].number} last; {said}", file=sys.stderr)
    for line in lines:
        print(f"  | {line}", file=sys.stderr)


__all__ = ["KILL_GRACE_SECONDS", "STOP_GRACE_SECONDS", "Supervisor", "kill_grace", "last_words"]
