"""One function from a storage URL to an Optuna storage, and password masking.

Supported URLs:

- ``sqlite:///runs/optuna.db`` (relative to the working directory) or ``sqlite:////abs``
- ``postgresql+psycopg://user:pass@host/db``, ``mysql+pymysql://user:pass@host/db``
- ``journal:///path/to/study.log`` (Optuna's JournalFileBackend)
- ``redis://host:6379/0`` (Optuna's Redis journal backend)
- ``grpc://host:port`` (a ``pipeline storage-proxy`` in front of a database)

SQLite is put in write-ahead-log mode with a generous busy timeout, so that several
workers and an open dashboard share one file without "database is locked".
"""

from __future__ import annotations

import contextlib
import random
import re
import sqlite3
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import optuna
import optuna.storages.journal
import redis.exceptions
import sqlalchemy.exc
from optuna.storages import BaseStorage
from sqlalchemy import event

from pipeline.config import ConfigError
from pipeline.errors import StorageLost

RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
SCHEMES = (*RDB_SCHEMES, "journal", "redis", "grpc")
SQLITE_BUSY_TIMEOUT_S = 60.0

# What an unreachable database, Redis server or proxy raises through Optuna.
STORAGE_ERRORS: tuple[type[BaseException], ...] = (
    optuna.exceptions.StorageInternalError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    redis.exceptions.ConnectionError,
    ConnectionRefusedError,
    ConnectionResetError,
)

_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/:@\s]*:)(?P<password>[^@/\s]*)(?=@)", re.I)


def mask_url(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return _PASSWORD.sub(lambda m: m.group("head") + "***", text)


def scheme_of(url: str) -> str:
    """The backend family of a URL: sqlite, postgresql, mysql, journal, redis or grpc."""
    return url.split(":", 1)[0].split("+", 1)[0].lower()


def check_url(url: str) -> None:
    """Reject a URL no backend understands, before anything connects to it."""
    if "://" not in url or scheme_of(url) not in SCHEMES:
        raise ConfigError(
            "storage",
            f"unsupported storage URL {mask_url(url)!r}; expected sqlite:///path, "
            "postgresql+psycopg://..., mysql+pymysql://..., journal:///path, redis://... "
            "or grpc://host:port",
        )
    scheme = scheme_of(url)
    if scheme in ("sqlite", "journal") and not _local_path(url):
        raise ConfigError("storage", f"{scheme} URL {url!r} names no file")
    if scheme == "grpc":
        parts = urlsplit(url)
        if not parts.hostname or parts.port is None:
            raise ConfigError("storage", f"expected grpc://host:port, got {url!r}")


def _local_path(url: str) -> str:
    return url.split(":///", 1)[1] if ":///" in url else ""


def open_storage(
    url: str,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    stale_retries: int | None = 1,
    readers_only: bool = False,
) -> BaseStorage:
    """Open (creating if needed) the storage a URL names.

    Args:
        heartbeat_interval: Seconds between heartbeats of running trials (RDB storages).
            A trial whose worker stops beating for ``grace_period`` seconds is marked
            failed and, up to ``stale_retries`` times, re-queued with the same parameters.
        readers_only: This process only reads (the dashboard): SQLite reads then take no
            write lock, so they never wait for the workers.
    """
    check_url(url)
    scheme = scheme_of(url)
    if scheme in RDB_SCHEMES:
        engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if scheme == "sqlite":
            path = Path(_local_path(url))
            path.parent.mkdir(parents=True, exist_ok=True)
            _enable_wal(path)
            engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
        heartbeat: dict[str, Any] = {}
        # The heartbeat API is marked experimental; we rely on it on purpose.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if heartbeat_interval is not None:
                heartbeat = {
                    "heartbeat_interval": heartbeat_interval,
                    "grace_period": grace_period,
                    "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(
                        max_retry=stale_retries
                    ),
                }
            storage = _create_rdb(url, engine_kwargs, heartbeat)
        if scheme == "sqlite" and not readers_only:
            event.listen(storage.engine, "connect", _sqlite_connect)
            event.listen(storage.engine, "begin", _sqlite_begin)
            storage.engine.dispose()  # reconnect through the listeners
        return storage
    if scheme == "journal":
        path = Path(_local_path(url))
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(str(path))
        return optuna.storages.JournalStorage(backend)
    if scheme == "redis":
        with warnings.catch_warnings():  # marked experimental; used on purpose
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalRedisBackend(url))
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None  # checked by check_url
    return optuna.storages.GrpcStorageProxy(host=parts.hostname, port=parts.port)


def serve_proxy(url: str, host: str, port: int) -> None:
    """Serve Optuna's gRPC storage proxy in front of ``url`` until Ctrl-C."""
    storage = open_storage(url)
    print(
        f"gRPC storage proxy for {mask_url(url)} on {host}:{port}; "
        f"workers use --storage grpc://{host}:{port} (Ctrl-C stops it)",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        optuna.storages.run_grpc_proxy_server(storage, host=host, port=port)


def release_connections(storage: BaseStorage) -> None:
    """Close an RDB storage's pooled connections (the storage :func:`open_storage`
    returned) before this process forks, so that no child shares their sockets; this
    process reconnects on its next query."""
    if isinstance(storage, optuna.storages.RDBStorage):
        storage.engine.dispose()


def _create_rdb(
    url: str, engine_kwargs: dict[str, Any], heartbeat: dict[str, Any]
) -> optuna.storages.RDBStorage:
    # Workers that start together on an empty database race to create Optuna's tables;
    # the losers see a duplicate-table error. The tables exist then: try again.
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == 4:
                raise
            time.sleep(0.2 + random.random() * 0.5)
    raise AssertionError("unreachable")


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite opens a transaction only at the first write, so Optuna's "read the queued
    # trial, then mark it RUNNING" ran its read outside any transaction and two workers
    # both took the same trial (optuna/optuna#4002). Turn pysqlite's own BEGIN off; every
    # transaction then begins in _sqlite_begin, as SQLAlchemy documents for pysqlite.
    dbapi_connection.isolation_level = None
    # In WAL mode, synchronous=NORMAL is still crash-safe for the database (a power cut
    # may lose the last commits, never corrupt the file) and drops the fsync per commit
    # that otherwise dominates per-epoch reporting.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: sqlalchemy.engine.Connection) -> None:
    # Take the write lock at the start, so that a read and the write it decides stay one
    # atomic step; other writers wait on the busy timeout. Readers that open the storage
    # with readers_only (the dashboard) take no lock and are not blocked.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _enable_wal(path: Path) -> None:
    # WAL lets readers (the dashboard, the live reporter) proceed while a worker writes;
    # the mode is stored in the file, so every later connection, ours or not, uses it.
    with sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.close()


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
        """Sleep before the next try, or raise StorageLost once the limit is spent."""
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
    "SCHEMES",
    "STORAGE_ERRORS",
    "Outage",
    "check_url",
    "first_line",
    "mask_url",
    "open_storage",
    "release_connections",
    "report_thread_errors",
    "scheme_of",
    "serve_proxy",
    "storage_error_in",
]
