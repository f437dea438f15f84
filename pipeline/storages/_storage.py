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
import sqlite3
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import optuna
import optuna.storages.journal
import sqlalchemy.exc
import sqlalchemy.pool
from optuna.storages import BaseStorage
from sqlalchemy import event
from sqlalchemy.engine import make_url

from pipeline.exceptions import ConfigError, StorageProblem, UsageError
from pipeline.storages._errors import denial_of, denied, first_line, problem_of
from pipeline.storages._existing import check_file_exists, server_has_tables
from pipeline.storages._masking import mask_url, remember_password

RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
SCHEMES = (*RDB_SCHEMES, "journal", "redis", "grpc")
SQLITE_BUSY_TIMEOUT_S = 60.0


def scheme_of(url: str) -> str:
    """The backend family of a URL: sqlite, postgresql, mysql, journal, redis or grpc."""
    return url.split(":", 1)[0].split("+", 1)[0].lower()


def check_url(url: str) -> None:
    """Reject a URL no backend understands, before anything connects to it. Its
    password is noted, so that it is masked in any message from here on."""
    remember_password(url)
    if any(ord(c) < 32 for c in url):
        raise ConfigError("storage", "the storage URL holds a control character")
    if "://" not in url or scheme_of(url) not in SCHEMES:
        raise ConfigError(
            "storage",
            f"unsupported storage URL {mask_url(url)!r}; expected sqlite:///path, "
            "postgresql+psycopg://..., mysql+pymysql://..., journal:///path, redis://... "
            "or grpc://host:port",
        )
    scheme = scheme_of(url)
    if scheme in ("sqlite", "journal") and not _local_path(url):
        raise ConfigError("storage", f"{scheme} URL {mask_url(url)!r} names no file")
    if scheme == "sqlite" and (":memory:" in url or "mode=memory" in url):
        raise ConfigError(
            "storage", "workers cannot share an in-memory database; name a file: sqlite:///path"
        )
    if scheme in ("grpc", "redis"):
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise ConfigError(
                "storage", f"cannot parse {mask_url(url)!r}: a port is a number in 0..65535"
            ) from None
        if scheme == "grpc" and (not parts.hostname or port is None):
            raise ConfigError("storage", f"expected grpc://host:port, got {mask_url(url)!r}")
    if scheme in RDB_SCHEMES:
        _check_driver(url)


def _check_driver(url: str) -> None:
    """Refuse a database URL whose driver is not installed, naming the one that is."""
    try:
        make_url(url).get_dialect().import_dbapi()
    except ValueError:  # a port that is not a number; its text may hold a password's piece
        raise ConfigError(
            "storage",
            f"cannot parse {mask_url(url)!r}: a port is not a number, or a password holds "
            "@ : / # ? or a space unencoded (percent-encode it: urllib.parse.quote(pw, safe=''))",
        ) from None
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ImportError) as exc:
        hint = {
            "postgresql": "postgresql+psycopg://",
            "mysql": "mysql+pymysql://",
            "sqlite": "sqlite:///",
        }
        raise ConfigError(
            "storage",
            f"the database driver of {mask_url(url)!r} is not installed ({exc}); "
            f"use {hint[scheme_of(url)]}... (installed with the pipeline)",
        ) from None


def _local_path(url: str) -> str:
    return url.split(":///", 1)[1] if ":///" in url else ""


def open_storage(
    url: str,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    stale_retries: int | None = 1,
    readers_only: bool = False,
    must_exist: bool = False,
) -> BaseStorage:
    """Open (creating if needed) the storage a URL names.

    Args:
        heartbeat_interval: Seconds between heartbeats of running trials (RDB storages).
            A trial whose worker stops beating for ``grace_period`` seconds is marked
            failed and, up to ``stale_retries`` times, re-queued with the same parameters.
        readers_only: This process only reads (the dashboard): SQLite reads then take no
            write lock, so they never wait for the workers.
        must_exist: Read-only commands: refuse a SQLite or journal file that is not there
            rather than create an empty one.

    Raises:
        StorageProblem: the storage answers but cannot be used (a corrupt or read-only
            file, a missing directory...); an unreachable one raises its driver's error.
    """
    check_url(url)
    remember_password(url)
    scheme = scheme_of(url)
    if must_exist and scheme in ("sqlite", "journal"):
        check_file_exists(Path(_local_path(url)), sqlite=scheme == "sqlite")
    try:
        if must_exist and scheme in ("postgresql", "mysql") and not server_has_tables(url):
            raise UsageError(f"--storage: {mask_url(url)} holds no Optuna tables (no study yet)")
        if scheme in RDB_SCHEMES:
            return _open_rdb(url, heartbeat_interval, grace_period, stale_retries, readers_only)
        return _open_journal_or_proxy(url)
    except (OSError, sqlite3.Error, sqlalchemy.exc.DBAPIError) as exc:
        if denial_of(exc) is not None:
            raise denied(url, exc) from None
        problem = problem_of(exc) or (str(exc.strerror) if isinstance(exc, OSError) else None)
        if problem is None:
            raise  # unreachable: the caller decides whether to wait
        raise StorageProblem(f"the storage {mask_url(url)}: {problem}") from None
    except RuntimeError as exc:  # Optuna: a schema made by another version
        raise StorageProblem(f"the storage {mask_url(url)}: {first_line(exc)}") from None
    except (ValueError, TypeError, KeyError, AssertionError) as exc:
        if scheme != "journal":
            raise
        raise StorageProblem(
            f"the storage {mask_url(url)} is not an Optuna journal, or is corrupt "
            f"({type(exc).__name__}: {first_line(exc)})"
        ) from None


def _open_rdb(
    url: str,
    heartbeat_interval: int | None,
    grace_period: int | None,
    stale_retries: int | None,
    readers_only: bool,
) -> optuna.storages.RDBStorage:
    scheme = scheme_of(url)
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if scheme == "sqlite":
        path = Path(_local_path(url))
        if not readers_only:  # the workers' process sets WAL mode, stored in the file
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


def _open_journal_or_proxy(url: str) -> BaseStorage:
    scheme = scheme_of(url)
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
    with warnings.catch_warnings():  # experimental too; else it printed at every retry
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
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
    # the losers see a duplicate-table error (SQLite: "table ... already exists"). The
    # tables exist then: try again.
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
            if attempt == 4 or denial_of(exc) is not None:  # no right to create: no race
                raise
        except sqlalchemy.exc.OperationalError as exc:
            if attempt == 4 or "already exists" not in str(exc):
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
    # Workers that start together on a new file race to switch it, and SQLite answers
    # the losers "database is locked" without waiting on the busy timeout: try again.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            with contextlib.closing(sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S)) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05 + random.random() * 0.1)


__all__ = [
    "SCHEMES",
    "check_url",
    "open_storage",
    "release_connections",
    "scheme_of",
    "serve_proxy",
]
