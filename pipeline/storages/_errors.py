"""What can go wrong with a storage, and what the pipeline does about it.

An unreachable database, Redis server or proxy is waited out (:class:`Outage`), for at
most ``storage_retry_seconds``. A storage that answers but cannot be used (a corrupt or
read-only file, a full disk) is named at once and never retried: waiting would not help.
"""

from __future__ import annotations

import re
import sqlite3
import sys
import threading
import time
from typing import TextIO

import grpc
import optuna
import redis.exceptions
import sqlalchemy.exc

from pipeline.exceptions import StorageDenied, StorageLost, StorageProblem
from pipeline.storages._masking import mask_url

# A storage that answers but cannot be used, by what its driver says.
_PROBLEMS = (
    ("file is not a database", "the file is not a database, or is corrupt"),
    ("database disk image is malformed", "the database file is corrupt"),
    ("readonly database", "the database is read-only"),
    ("unable to open database file", "the database file cannot be opened or created"),
    ("read-only file system", "the file system is read-only"),
    ("permission denied", "permission denied"),
    ("database or disk is full", "the disk is full"),
    ("no space left on device", "the disk is full"),
    ("value too long", "a value is too long for the database"),
    ("data too long", "a value is too long for the database"),
)


def problem_of(exc: BaseException) -> str | None:
    """What makes the storage unusable, if ``exc`` says so; None for anything else."""
    text = str(exc).lower()
    for needle, problem in _PROBLEMS:
        if needle in text:
            return problem
    return None


# A server that refuses who connects, by what PostgreSQL and MySQL say: a mistake in the
# URL (or the server's grants), which no wait mends.
_DENIALS = (
    (r"password authentication failed|authentication failed", "authentication failed"),
    (r"role \S+ does not exist", "no such user"),
    (r"access denied for user", "access denied (user, password or grants)"),
    (r"database \S+ does not exist|unknown database", "no such database"),
    (r"no password supplied|password is required", "the server wants a password"),
    (r"permission denied for|must be owner of|command denied to user", "permission denied"),
)


def denial_of(exc: BaseException) -> str | None:
    """Why a database server refused the connection or the access, if ``exc`` says so."""
    text = str(exc).lower()
    for pattern, reason in _DENIALS:
        if re.search(pattern, text):
            return reason
    return None


def denied(url: str, exc: BaseException) -> StorageDenied:
    """The one-line error of a refused connection: exit 2, no retry."""
    return StorageDenied(
        f"the storage {mask_url(url)}: {denial_of(exc)} ({first_line(exc)}); "
        "fix the user, password or database in the URL"
    )


# What an unreachable database, Redis server or proxy raises through Optuna.
STORAGE_ERRORS: tuple[type[BaseException], ...] = (
    optuna.exceptions.StorageInternalError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.DatabaseError,  # a corrupt SQLite file, as SQLAlchemy wraps it
    sqlite3.DatabaseError,  # ... and as sqlite3 itself raises it
    sqlalchemy.exc.InterfaceError,
    redis.exceptions.ConnectionError,
    ConnectionRefusedError,
    ConnectionResetError,
    grpc.RpcError,  # a storage proxy that is down
)


def storage_error_in(exc: BaseException) -> BaseException | None:
    """The storage error behind ``exc``, if any. Optuna's optimize loop can mask a failed
    commit with an error of its own (an UnboundLocalError in its ``finally``), so the
    whole chain of causes is searched."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, STORAGE_ERRORS):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def first_line(exc: BaseException) -> str:
    """The first line of an error's message, passwords masked (drivers echo the URL)."""
    text = str(exc).strip()
    return mask_url(text.splitlines()[0] if text else type(exc).__name__)


def report_thread_errors(who: str) -> None:
    """A storage error in a background thread (Optuna's heartbeat) prints one line, not
    a thread traceback; the heartbeat's grace period then decides the trial's fate."""
    default = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None and storage_error_in(args.exc_value) is not None:
            print(
                f"{who}: the heartbeat could not reach the storage ({first_line(args.exc_value)})",
                file=sys.stderr,
                flush=True,
            )
            return
        default(args)

    threading.excepthook = hook


class Outage:
    """Waits out an unreachable storage with exponential back-off, for at most
    ``limit`` seconds in a row.

    Finished trials are already committed; a trial that was running when the storage
    went away is failed by the heartbeat of whichever worker next reaches the database
    and re-queued with its parameters.
    """

    def __init__(self, url: str, limit: float, who: str, log: TextIO = sys.stderr) -> None:
        self.limit = limit
        self.url = mask_url(url)
        self.who = who
        self.log = log
        self.since: float | None = None
        self.delay = 1.0

    def failed(self, exc: BaseException) -> None:
        """Sleep before the next try; raise StorageLost once the limit is spent, and
        StorageProblem at once for a storage that answers but cannot be used."""
        if denial_of(exc) is not None:
            raise denied(self.url, exc) from None
        problem = problem_of(exc)
        if problem is not None:
            raise StorageProblem(
                f"{self.who}: the storage {self.url}: {problem} ({first_line(exc)})"
            )
        now = time.monotonic()
        self.since = self.since if self.since is not None else now
        waited = now - self.since
        reason = first_line(exc)
        if waited + self.delay > self.limit:
            raise StorageLost(
                f"{self.who}: the storage {self.url} has been unreachable for "
                f"{waited:.0f} s ({reason}); giving up. Finished trials are safe in it; "
                "start the worker again once it is back (storage_retry_seconds sets the wait)"
            ) from exc
        self._say(
            f"storage {self.url} unreachable ({reason[:160]}); retrying in {self.delay:.0f} s"
        )
        time.sleep(self.delay)
        self.delay = min(self.delay * 2, 15.0)

    def ok(self) -> None:
        """The storage answered: the next outage starts its wait afresh."""
        if self.since is not None:
            self._say(f"storage {self.url} is back")
        self.since = None
        self.delay = 1.0

    def _say(self, text: str) -> None:
        print(f"{self.who}: {text}", file=self.log, flush=True)


__all__ = [
    "STORAGE_ERRORS",
    "Outage",
    "denial_of",
    "denied",
    "first_line",
    "problem_of",
    "report_thread_errors",
    "storage_error_in",
]
