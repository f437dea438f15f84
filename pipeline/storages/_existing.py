"""Read-only commands open only a storage that is already there: they never create a
database file, a journal or Optuna's tables on a database server, and a mistyped path is
answered with the storage files that are there.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import sqlalchemy

from pipeline.exceptions import StorageProblem, UsageError
from pipeline.storages._errors import problem_of


def check_file_exists(path: Path, sqlite: bool) -> None:
    """A read-only command's storage file must be there, and a SQLite one must hold
    Optuna's tables: such a command never creates a database or adds tables to one."""
    if path.is_file():
        if sqlite and not _has_optuna_tables(path):
            raise UsageError(f"--storage: {path} is not an Optuna storage (no studies table)")
        return
    folder = path.parent if path.parent.is_dir() else Path(".")
    found = sorted(str(p) for p in folder.glob("*") if _is_storage_file(p))
    raise UsageError(
        f"--storage: there is no {path}"
        + (f"; storage files in {folder}: {', '.join(found)}" if found else "")
    )


def _is_storage_file(path: Path) -> bool:
    """Whether ``path`` is an Optuna storage file worth suggesting: a SQLite database with
    Optuna's tables, or a journal whose first line is one of Optuna's operations (a
    ``*.log`` of anything else is not)."""
    if not path.is_file():
        return False
    with contextlib.suppress(OSError, StorageProblem), path.open("rb") as f:
        head = f.read(4096)
        if head.startswith(b"SQLite format 3\x00"):
            return _has_optuna_tables(path)
        first = head.split(b"\n", 1)[0]
        try:
            return isinstance(json.loads(first), dict) and b'"op_code"' in first
        except ValueError:
            return False
    return False


def _has_optuna_tables(path: Path) -> bool:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            found = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type='table' AND name IN "
                "('studies', 'trials', 'version_info')"
            ).fetchone()
    except sqlite3.DatabaseError as exc:
        raise StorageProblem(f"the storage {path}: {problem_of(exc) or exc}") from None
    return bool(found and found[0] == 3)


def server_has_tables(url: str) -> bool:
    """Whether a database server's database holds Optuna's tables, asked without creating
    them (Optuna's RDBStorage creates any that are missing)."""
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            return {"studies", "trials", "version_info"} <= set(
                sqlalchemy.inspect(conn).get_table_names()
            )
    finally:
        engine.dispose()


__all__ = ["check_file_exists", "server_has_tables"]
