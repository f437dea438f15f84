from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
import yaml

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
POSTGRES_URL = os.environ.get(
    "PIPELINE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("PIPELINE_TEST_REDIS", "redis://127.0.0.1:6379/0")
MYSQL_URL = os.environ.get("PIPELINE_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test")


def minimal_study(**overrides: Any) -> dict[str, Any]:
    """A small valid study on the bundled digits: 1-2 epochs, a handful of trials."""
    study: dict[str, Any] = {
        "study_name": f"test-{uuid.uuid4().hex[:8]}",
        "task": {"name": "digits"},
        "metric": "val_loss",
        "direction": "minimize",
        "max_epochs": 2,
        "n_trials": 4,
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "search_space": {
            "lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True},
            "batch_size": {"type": "categorical", "choices": [32, 64]},
        },
        "workers": 1,
        "device": "cpu",
        "heartbeat_interval": None,
    }
    study.update(overrides)
    return study


@pytest.fixture
def write_study(tmp_path: Path) -> Callable[..., Path]:
    """Write a study file into tmp_path; keyword arguments replace top-level keys."""

    def write(name: str = "study.yaml", **overrides: Any) -> Path:
        data = minimal_study(storage=f"sqlite:///{tmp_path}/optuna.db", **overrides)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


def with_tests_path(*first: Path) -> str:
    """PYTHONPATH for a child process: ``first``, tests/ (the tests' own plug-ins) and the
    PYTHONPATH this run has, so a child imports the same ``pipeline`` as the tests do."""
    paths = [*map(str, first), str(TESTS), os.environ.get("PYTHONPATH", "")]
    return os.pathsep.join(p for p in paths if p)


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 300, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m pipeline ARGS`` as a user would, with tests/ importable for the
    tests' own task plug-ins."""
    env = {**os.environ, "PYTHONPATH": with_tests_path()}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=cwd or REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``pipeline ARGS`` in this process, through ``pipeline.cli.main`` as the console
    script does: the exit code, stdout and stderr, without an interpreter's start.

    For commands that start no worker: a ``tune`` here must fail before its workers
    start (a fork after this process ran torch would hang), else use :func:`run_cli`.
    """
    from pipeline.cli import main

    out, err = io.StringIO(), io.StringIO()
    handlers = {
        signum: signal.getsignal(signum)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:  # main makes stop signals raise; the test run keeps its own handlers
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    return subprocess.CompletedProcess(["pipeline", *args], code, out.getvalue(), err.getvalue())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sql_up(url: str) -> bool:
    try:
        import sqlalchemy

        engine = sqlalchemy.create_engine(url)
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


def _redis_up() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except Exception:
        return False


STORAGE_MODES = ["inmemory", "sqlite", "journal", "redis", "postgresql", "mysql"]


@pytest.fixture(params=STORAGE_MODES)
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """Each supported backend in turn; None stands for Optuna's in-memory storage.
    The services are real: CI starts PostgreSQL and Redis (see .ci/run)."""
    yield from _storage_url(request.param, tmp_path)


@pytest.fixture(params=STORAGE_MODES[1:])
def shared_storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The backends that processes can share (all but in-memory)."""
    for url in _storage_url(request.param, tmp_path):
        assert url is not None
        yield url


def _storage_url(mode: str, tmp_path: Path) -> Iterator[str | None]:
    if mode == "inmemory":
        yield None
    elif mode == "sqlite":
        yield f"sqlite:///{tmp_path}/optuna.db"
    elif mode == "journal":
        yield f"journal:///{tmp_path}/optuna.log"
    elif mode == "redis":
        if not _redis_up():
            pytest.fail(f"Redis is not reachable at {REDIS_URL}; start it as .ci/run does")
        yield REDIS_URL
    elif mode == "mysql":
        if not _sql_up(MYSQL_URL):
            pytest.fail(f"MariaDB/MySQL is not reachable at {MYSQL_URL}; start it as .ci/run does")
        yield MYSQL_URL
    else:
        if not _sql_up(POSTGRES_URL):
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}; start it as .ci/run does")
        yield POSTGRES_URL


@pytest.fixture
def postgres_db() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL server, dropped afterwards."""
    name = f"pipeline_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    except sqlalchemy.exc.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_URL} ({exc}); start it as .ci/run does"
        )
    url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()
