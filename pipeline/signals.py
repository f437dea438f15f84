"""Signals, the way schedulers, containers and terminals send them.

SIGINT (Ctrl-C), SIGTERM (``kill``, Slurm, Kubernetes, systemd) and SIGHUP (a closed
terminal) all mean "stop": the command's process raises :class:`Interrupted`, and each
worker lets its running epoch end, records the trial as interrupted (it is re-queued) and
exits. A second signal to a worker stops it at once. A worker also dies with its parent,
even a SIGKILLed one: the heartbeat or the liveness rule then recovers its trial.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType

from pipeline.exceptions import Interrupted

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1


def _ignored(signum: int) -> bool:
    # A signal ignored when this program started (a background job started by a script
    # ignores SIGINT) stays ignored here and in the workers, as POSIX shells intend.
    return signal.getsignal(signum) is signal.SIG_IGN


def raise_on_stop_signals() -> None:
    """In the command's own process: every stop signal raises :class:`Interrupted`."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(signum)

    for signum in STOP_SIGNALS:
        if not _ignored(signum):
            signal.signal(signum, handler)


class StopOnSignal:
    """In a worker: the first stop signal calls ``stop`` (the epoch ends, the trial is
    recorded and re-queued); a second one exits at once."""

    def __init__(self, stop: Callable[[], None]) -> None:
        self.stop = stop
        self.signum: int | None = None
        for signum in STOP_SIGNALS:
            if not _ignored(signum):
                signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is not None:
            os._exit(128 + signum)
        self.signum = signum
        self.stop()

    @property
    def exit_code(self) -> int:
        """128 + the signal that stopped this process (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + (self.signum or signal.SIGINT)


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel kill this process when its parent dies, however the parent dies
    (Linux's parent-death signal; elsewhere a thread polls the parent's pid)."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(128 + signal.SIGKILL)
        return

    def watch() -> None:
        while os.getppid() == parent_pid:
            threading.Event().wait(1.0)
        os._exit(128 + signal.SIGKILL)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


@contextlib.contextmanager
def time_limit(seconds: float | None, expired: Callable[[], BaseException]) -> Iterator[None]:
    """Raise ``expired()`` in this thread once ``seconds`` pass inside the block (SIGALRM;
    nothing where ``seconds`` is None or this is not the main thread). Code that blocks
    the signal or swallows the exception outlives it: ``tune`` then kills the process."""
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise expired()

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


__all__ = [
    "STOP_SIGNALS",
    "StopOnSignal",
    "die_with_parent",
    "raise_on_stop_signals",
    "time_limit",
]
