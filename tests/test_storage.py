"""Storage URLs, across every backend, against the real servers."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from pipeline.exceptions import ConfigError
from pipeline.storages import check_url, mask_url, open_storage


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (
            "postgresql+psycopg://alice:s3cret@db:5432/optuna",
            "postgresql+psycopg://alice:***@db:5432/optuna",
        ),
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        ("error in mysql+pymysql://u:p%40ss@h/db here", "error in mysql+pymysql://u:***@h/db here"),
        ("sqlite:///runs/optuna.db", "sqlite:///runs/optuna.db"),
        ("postgresql://bob@db/optuna", "postgresql://bob@db/optuna"),
        ("postgresql://u@h/db?password=hunter2", "postgresql://u@h/db?password=***"),
        (
            "postgresql://u@h/db?sslmode=x&password=a%40b&x=1",
            "postgresql://u@h/db?sslmode=x&password=***&x=1",
        ),
        ("postgresql://u@h/db?password=a@b", "postgresql://u@h/db?password=***"),
        (
            "postgresql://ha_sec:Zq@9:x/y%2F#h?k S7tr@127.0.0.1/db",
            "postgresql://ha_sec:***@127.0.0.1/db",
        ),
        (
            "'postgresql://ha:Zq@9:x/y%2F#h?k S7tr@127.0.0.1/db': bad",
            "'postgresql://ha:***@127.0.0.1/db': bad",
        ),
        (
            "postgresql://u:p@127.0.0.1:1/db port 1 failed",
            "postgresql://u:***@127.0.0.1:1/db port 1 failed",
        ),
        ("postgresql://u:p@host:notaport/db", "postgresql://***@host:notaport/db"),
        ("http://user:pw@mlflow:5000", "http://user:***@mlflow:5000"),
        ("redis://cache:6379/0 failed; ask a@b.c", "redis://cache:6379/0 failed; ask a@b.c"),
        (
            "tune --storage mysql://u@h/d?pwd=zz9&x=1 -v",
            "tune --storage mysql://u@h/d?pwd=***&x=1 -v",
        ),
    ],
)
def test_passwords_are_masked(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_a_one_letter_password_is_masked_as_one_token_in_free_text() -> None:
    check_url("postgresql+psycopg://u:p@127.0.0.1:1/db")  # seen: masked from here on
    error = 'connection to server at "127.0.0.1", port 1 failed for postgresql+psycopg'
    assert mask_url(error) == error  # the letter p is everywhere: nothing garbled
    assert mask_url(f"{error} (u:p@127.0.0.1)") == f"{error} (u:***@127.0.0.1)"


def test_sqlite_in_memory_is_refused() -> None:
    with pytest.raises(ConfigError, match="workers cannot share an in-memory database"):
        check_url("sqlite:///:memory:")


@pytest.mark.parametrize("url", ["mongodb://x", "sqlite://", "runs/optuna.db", "grpc://host"])
def test_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="storage"):
        check_url(url)


def test_every_backend_round_trips_a_study(
    storage_url: str | None, request: pytest.FixtureRequest
) -> None:
    storage = open_storage(storage_url) if storage_url else optuna.storages.InMemoryStorage()
    name = f"roundtrip-{request.node.callspec.id}-{id(storage)}"
    study = optuna.create_study(study_name=name, storage=storage)
    trial = study.ask()
    x = trial.suggest_float("x", 0, 1)
    trial.report(x, 1)
    trial.set_user_attr("val_accuracy", 0.5)
    study.tell(trial, x)
    again = optuna.load_study(study_name=name, storage=storage)
    (stored,) = again.trials
    assert stored.params == {"x": x}
    assert stored.intermediate_values == {1: x}
    assert stored.user_attrs == {"val_accuracy": 0.5}
    if storage_url:
        optuna.delete_study(study_name=name, storage=storage)


def test_sqlite_is_put_in_wal_mode(tmp_path: Path) -> None:
    import sqlite3

    open_storage(f"sqlite:///{tmp_path}/x.db")
    mode = sqlite3.connect(tmp_path / "x.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_the_dashboard_opens_every_shared_backend(shared_storage_url: str) -> None:
    import io
    import json
    import uuid

    import optuna_dashboard

    storage = open_storage(shared_storage_url)
    name = f"dash-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(study_name=name, storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    app = optuna_dashboard.wsgi(storage)
    status: list[str] = []
    body = b"".join(
        app(
            {
                "REQUEST_METHOD": "GET",
                "PATH_INFO": "/api/studies",
                "QUERY_STRING": "",
                "SERVER_NAME": "127.0.0.1",
                "SERVER_PORT": "8080",
                "wsgi.url_scheme": "http",
                "wsgi.input": io.BytesIO(),
                "wsgi.errors": io.StringIO(),
            },
            lambda s, headers, exc_info=None: status.append(s),
        )
    )
    assert status == ["200 OK"]
    summaries = {s["study_name"]: s for s in json.loads(body)["study_summaries"]}
    assert name in summaries


def test_a_mistyped_storage_suggests_only_files_that_are_storages(tmp_path: Path) -> None:
    from conftest import cli

    optuna.create_study(study_name="a", storage=f"sqlite:///{tmp_path}/real.db")
    open_storage(f"journal:///{tmp_path}/real.log")  # a journal file, as tune makes one
    optuna.create_study(study_name="b", storage=open_storage(f"journal:///{tmp_path}/real.log"))
    (tmp_path / "ci.log").write_text("2026-12-06 a log of something else\n")
    (tmp_path / "notes.db").write_text("not a database")
    result = cli("best", "--storage", f"sqlite:///{tmp_path}/typo.db", "--study-name", "a")
    assert result.returncode == 2
    listed = result.stderr.split("storage files in")[1]
    assert "real.db" in listed and "real.log" in listed
    assert "ci.log" not in listed and "notes.db" not in listed
