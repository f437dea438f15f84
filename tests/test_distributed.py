"""Many workers, many backends, and what must survive: real servers, real processes.

PostgreSQL and Redis are the machine's own (see .ci/run); the database-restart test runs
a throwaway PostgreSQL cluster of its own so that it can stop it safely.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy
import yaml
from conftest import (
    MYSQL_URL,
    POSTGRES_URL,
    REPO,
    cli,
    free_port,
    minimal_study,
    run_cli,
    with_tests_path,
)
from optuna.trial import TrialState

from pipeline.runner import run_worker
from pipeline.study import prepare_study, storage_for
from pipeline.study._file import parse_study

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _tiny_study(path: Path, **overrides: Any) -> dict[str, Any]:
    study = minimal_study(
        task={"name": "tiny_task:tiny"},
        max_epochs=1,
        search_space={
            "lr": {"type": "float", "low": 0.01, "high": 0.5, "log": True},
            "hidden": {"type": "int", "low": 2, "high": 32},
        },
    )
    study.update(overrides)
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return study


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": with_tests_path()}


def _workers(path: Path, n: int, storage: str, *extra: str) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline",
                "worker",
                str(path),
                "--storage",
                storage,
                "--threads",
                "1",
                "--worker-index",
                str(i),
                *extra,
            ],
            cwd=REPO,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]


def _start_tune(path: Path, **env: str) -> subprocess.Popen[str]:
    """`pipeline tune PATH` in the background, as a user starts it."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "tune", str(path)],
        cwd=REPO,
        env={**_env(), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(procs: list[subprocess.Popen[str]], timeout: float = 240) -> list[tuple[int, str, str]]:
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=timeout)
        out.append((proc.returncode, stdout, stderr))
    return out


def _trials(storage: str, name: str) -> list[optuna.trial.FrozenTrial]:
    from pipeline.storages import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(storage)).trials


@pytest.fixture
def mysql_db() -> Iterator[str]:
    """A fresh database on the machine's MySQL (MariaDB) server, dropped afterwards."""
    name = f"pipeline_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(MYSQL_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f"CREATE DATABASE `{name}`"))
    yield MYSQL_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f"DROP DATABASE `{name}`"))
    admin.dispose()


@pytest.mark.parametrize("server", ["postgres_db", "mysql_db"])
def test_read_only_commands_create_no_table_on_an_empty_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, server: str
) -> None:
    url = request.getfixturevalue(server)
    monkeypatch.chdir(tmp_path)
    for command in (
        ["best", "--study-name", "x"],
        ["export", "--study-name", "x"],
        ["report", "--study-name", "x"],
        ["evaluate", "--study-name", "x"],
        ["dashboard", "--port", "0"],
    ):
        done = cli(command[0], "--storage", url, *command[1:])
        assert done.returncode == 2, done.stderr
        assert "holds no Optuna tables" in done.stderr and "make tune" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        assert sqlalchemy.inspect(conn).get_table_names() == []
    engine.dispose()
    assert list(tmp_path.iterdir()) == []  # no file, no directory either


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (POSTGRES_URL.replace("postgres@", "no_such_role_zz:pw@"), "no such user"),
        (POSTGRES_URL.rsplit("/", 1)[0] + "/no_such_db_zz", "no such database"),
        (MYSQL_URL.replace("root@", "root:wrong-pw@"), "access denied"),
        (MYSQL_URL.replace("root@", "nobody_zz@"), "access denied"),
    ],
    ids=["postgres-role", "postgres-database", "mysql-password", "mysql-user"],
)
@pytest.mark.parametrize("command", ["best", "tune"])
def test_a_refused_login_is_one_line_exit_2_and_no_retry(
    tmp_path: Path, url: str, reason: str, command: str
) -> None:
    _tiny_study(tmp_path / "s.yaml", storage=url, storage_retry_seconds=60)
    argv = ["--study-file" if command == "best" else "", str(tmp_path / "s.yaml")]
    started = time.monotonic()
    done = cli(command, *[a for a in argv if a])
    assert done.returncode == 2, done.stderr
    assert reason in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "retrying" not in done.stderr and "wrong-pw" not in done.stderr
    assert time.monotonic() - started < 20  # no back-off


def test_a_role_without_the_right_to_create_tables_is_one_line_exit_2(
    tmp_path: Path, postgres_db: str
) -> None:
    role = f"pipeline_ro_{uuid.uuid4().hex[:8]}"  # may log in (trust), may not create
    admin = sqlalchemy.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE ROLE "{role}" LOGIN'))
    try:
        url = postgres_db.replace("postgres@", f"{role}@")
        _tiny_study(tmp_path / "s.yaml", storage=url, storage_retry_seconds=60)
        done = cli("tune", str(tmp_path / "s.yaml"))
        assert done.returncode == 2 and "permission denied" in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP ROLE "{role}"'))
        admin.dispose()


@pytest.mark.slow
def test_four_postgres_workers_meet_the_budget_exactly_and_run_each_grid_point_once(
    tmp_path: Path, postgres_db: str
) -> None:
    # A grid of 72 points under a budget of 60: the budget queues 60 of them, and four
    # workers race for the queue and for the last slots of the budget.
    study = _tiny_study(
        tmp_path / "s.yaml",
        n_trials=60,
        heartbeat_interval=5,
        sampler={"name": "grid", "seed": 0},
        search_space={
            "lr": {"type": "float", "low": 0.01, "high": 0.5, "grid": [0.01, 0.03, 0.1, 0.5]},
            "hidden": {"type": "int", "low": 2, "high": 32, "grid": [2, 4, 8, 12, 16, 32]},
            "batch_size": {"type": "categorical", "choices": [16, 32, 64]},
        },
    )
    results = _finish(_workers(tmp_path / "s.yaml", 4, postgres_db))
    assert [code for code, _, _ in results] == [0, 0, 0, 0], [err for _, _, err in results]
    trials = _trials(postgres_db, study["study_name"])
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == 60
    points = Counter(tuple(sorted(t.params.items())) for t in finished)
    assert len(points) == 60 and set(points.values()) == {1}  # no grid point ran twice
    # Anything else is a trial skipped in an end-of-study race, never sampled or trained.
    others = [t for t in trials if t.state not in FINISHED]
    assert all(t.user_attrs["fail_reason"].startswith("skipped") and not t.params for t in others)
    assert len({t.user_attrs["worker"] for t in finished}) == 4


@pytest.mark.slow
def test_workers_share_every_backend(tmp_path: Path, shared_storage_url: str) -> None:
    storage_url = shared_storage_url  # study names are unique, so shared servers are fine
    study = _tiny_study(tmp_path / "s.yaml", n_trials=12)
    results = _finish(_workers(tmp_path / "s.yaml", 2, storage_url))
    assert [code for code, _, _ in results] == [0, 0], [err for _, _, err in results]
    trials = _trials(storage_url, study["study_name"])
    assert sum(t.state in FINISHED for t in trials) == 12


@pytest.mark.slow
@pytest.mark.parametrize(
    ("scheme", "heartbeat"),
    [("sqlite", 1), ("sqlite", None), ("journal", None)],
    ids=["sqlite-heartbeat", "sqlite-no-heartbeat", "journal"],
)
def test_a_worker_killed_mid_trial_is_retried_and_the_study_completes(
    tmp_path: Path, scheme: str, heartbeat: int | None
) -> None:
    # With a heartbeat, Optuna's stale-trial check finds the dead trial; without one (or
    # on journal storage, which has none) the liveness rule does: its pid is gone.
    url = f"{scheme}:///{tmp_path}/optuna.{'db' if scheme == 'sqlite' else 'log'}"
    study = _tiny_study(
        tmp_path / "s.yaml",
        n_trials=6,
        max_epochs=40,
        heartbeat_interval=heartbeat,
        grace_period=3 if heartbeat else None,
        task={"name": "tiny_task:tiny", "options": {"n": 2000}},
        search_space={"lr": {"type": "float", "low": 0.01, "high": 0.05}, "batch_size": 8},
    )
    procs = _workers(tmp_path / "s.yaml", 3, url)
    victim = procs[0]
    deadline = time.time() + 120
    killed_trial = None
    while time.time() < deadline and killed_trial is None:
        time.sleep(0.3)
        try:
            trials = _trials(url, study["study_name"])
        except KeyError:
            continue
        running = [
            t for t in trials if t.state == TrialState.RUNNING and len(t.intermediate_values) >= 2
        ]
        if len(running) == 3:  # every worker, the victim included, is mid-trial
            victim.send_signal(signal.SIGKILL)
            killed_trial = running
    assert killed_trial, "no trial started in time"
    results = _finish(procs[1:])
    assert [code for code, _, _ in results] == [0, 0], [err for _, _, err in results]
    victim.communicate()
    trials = _trials(url, study["study_name"])
    assert sum(t.state in FINISHED for t in trials) == 6
    stale = [
        t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get("outcome") != "skipped"
    ]
    assert len(stale) == 1, [(t.number, t.state, t.user_attrs) for t in trials]
    if heartbeat is None:  # the liveness rule says why (Optuna's heartbeat check does not)
        assert re.fullmatch(
            r"its worker process ended during epoch \d+", stale[0].user_attrs["fail_reason"]
        )
        assert stale[0].user_attrs["outcome"] == "failed"
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == stale[0].number]
    assert retry.state in FINISHED and retry.params == stale[0].params
    assert retry.user_attrs["retry_count"] == 1


# How a user hands the pipeline a password: (secret, where the URL goes, the URL's form).
SECRET_FORMS = {
    "userinfo": ("s3cretPW", "file", "userinfo"),
    "userinfo-odd-characters": ("Zq@9:x/y%2F#h?k S7tr", "file", "userinfo"),
    "one-letter": ("p", "file", "userinfo"),
    "query-parameter": ("p/a s@w:rd&", "file", "query"),
    "environment-variable": ("envPW/9", "PIPELINE_STORAGE", "query"),
    "storage-env": ("Zq@9 x", "--storage-env", "userinfo"),
}


def _leaks(text: str, secret: str) -> bool:
    """Whether ``text`` shows ``secret``, percent-encoded or not. A one-letter password is
    in any text: its credential tokens are looked for, and the text must not be garbled."""
    forms = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}
    if len(secret) > 2:
        return any(form in text for form in forms)
    return any(f":{f}@" in text or f"password={f}" in text for f in forms) or (
        "postgresql" not in text and "ostgresql" in text
    )


def _cmdlines() -> list[str]:
    commands = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            commands.append(cmdline.read_bytes().replace(b"\0", b" ").decode("utf-8", "replace"))
    return commands


@pytest.mark.slow
@pytest.mark.parametrize("form", list(SECRET_FORMS))
def test_no_password_form_reaches_any_sink(tmp_path: Path, postgres_db: str, form: str) -> None:
    """Every way of giving a password, crossed with every place a URL can show: the
    console, an error, `ps`, the stored attributes, validate, export, report and the
    dashboard's API. Trust authentication ignores the password, so the run succeeds."""
    secret, where, shape = SECRET_FORMS[form]
    quoted = urllib.parse.quote(secret, safe="")
    if shape == "userinfo":
        written = secret if form == "userinfo-odd-characters" else quoted
        url = postgres_db.replace("postgres@", f"postgres:{written}@")
    else:
        url = f"{postgres_db}?password={quoted}"
    study = _tiny_study(tmp_path / "s.yaml", n_trials=1, workers=1)
    if form == "userinfo-odd-characters":  # unencoded, it cannot be parsed: one clean line
        done = cli("validate", str(tmp_path / "s.yaml"), "--set", f"storage={url}")
        assert done.returncode == 2 and "percent-encode" in done.stderr, done.stderr
        assert not _leaks(done.stdout + done.stderr, secret), done.stderr
        url = postgres_db.replace("postgres@", f"postgres:{quoted}@")
    env, argv = {}, ["tune", str(tmp_path / "s.yaml")]
    if where == "PIPELINE_STORAGE":
        env = {"PIPELINE_STORAGE": url}
    elif where == "--storage-env":
        env, argv = {"MY_DB": url}, [*argv, "--storage-env", "MY_DB"]
    else:
        _tiny_study(tmp_path / "s.yaml", n_trials=1, workers=1, storage=url)
        study_name = yaml.safe_load((tmp_path / "s.yaml").read_text())["study_name"]
        study["study_name"] = study_name
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *argv],
        cwd=REPO,
        env={**_env(), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = 0  # polls that found the run's processes: the ps check was not vacuous
    while proc.poll() is None:
        commands = _cmdlines()
        seen += any("pipeline tune" in c or "multiprocessing" in c for c in commands)
        assert not [c for c in commands if _leaks(c, secret)]
        time.sleep(0.2)
    out, err = proc.communicate()
    assert proc.returncode == 0 and seen, err
    assert not _leaks(out + err, secret)
    assert ("postgres:***@" if shape == "userinfo" else "password=***") in out
    assert "postgresql" in out  # the masking leaves the rest of the text as it was
    stored = optuna.load_study(study_name=study["study_name"], storage=postgres_db)
    assert stored.user_attrs["config"]["storage"].count("***") == 1
    attrs = repr(stored.user_attrs) + repr([t.user_attrs for t in stored.trials])
    assert not _leaks(attrs, secret)
    out_dir = tmp_path / "out"
    for command in (
        ["validate", str(tmp_path / "s.yaml"), "--set", f"storage={url}"],
        ["validate", str(tmp_path / "s.yaml"), "--storage", url],  # refused: echoes argv
        [
            "export",
            "--storage",
            url,
            "--study",
            study["study_name"],
            "--out",
            str(out_dir / "t.csv"),
        ],
        ["report", "--storage", url, "--study", study["study_name"], "--out", str(out_dir)],
    ):
        done = cli(*command)
        refused = "validate" in command and "--storage" in command
        assert done.returncode == (2 if refused else 0), done.stderr
        assert not _leaks(done.stdout + done.stderr, secret), (command, done.stderr)
    for path in out_dir.rglob("*"):
        assert not _leaks(path.read_bytes().decode("utf-8", "replace"), secret), path
    assert not _leaks(_dashboard_api(url), secret)


def _dashboard_api(url: str) -> str:
    """What optuna-dashboard serves over ``url`` at /api/studies and the first study."""
    from wsgiref.simple_server import make_server

    import optuna_dashboard

    from pipeline.results._dashboard import read_only

    port = free_port()
    server = make_server("127.0.0.1", port, read_only(optuna_dashboard.wsgi(url)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        pages = []
        for path in ("/api/studies", "/api/studies/0", "/api/studies/1"):
            with (
                contextlib.suppress(urllib.error.HTTPError),
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r,
            ):
                pages.append(r.read().decode())
    finally:
        server.shutdown()
    return "".join(pages)


@pytest.mark.slow
def test_workers_behind_the_grpc_storage_proxy(tmp_path: Path) -> None:
    port = free_port()
    with open(tmp_path / "proxy.log", "w") as log:
        proxy = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline",
                "storage-proxy",
                "--storage",
                f"sqlite:///{tmp_path}/o.db",
                "--port",
                str(port),
            ],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            for _ in range(100):
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.2)
            study = _tiny_study(tmp_path / "s.yaml", n_trials=6, workers=2)
            result = run_cli(
                "tune", str(tmp_path / "s.yaml"), "--storage", f"grpc://127.0.0.1:{port}"
            )
            assert result.returncode == 0, result.stderr
        finally:
            proxy.send_signal(signal.SIGINT)
            proxy.wait(timeout=20)
    trials = _trials(f"sqlite:///{tmp_path}/o.db", study["study_name"])
    assert sum(t.state in FINISHED for t in trials) == 6


# --- a PostgreSQL server of our own, to stop and start ------------------------------


def _pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(found[-1]) if found else (shutil.which(name) or name)


class ThrowawayPostgres:
    """initdb + pg_ctl in a temporary directory, run as the postgres system user."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pipeline-pg-"))
        self.port = free_port()
        self.user = pwd.getpwnam("postgres")
        os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        self._as_postgres(
            _pg_bin("initdb"), "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres"
        )
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *cmd: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True, timeout=120
        )

    def start(self) -> None:
        self._as_postgres(
            _pg_bin("pg_ctl"),
            "-D",
            str(self.dir / "data"),
            "-l",
            str(self.dir / "log"),
            "-w",
            "-o",
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
            "start",
        )

    def stop(self) -> None:
        self._as_postgres(
            _pg_bin("pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop"
        )

    def remove(self) -> None:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                _pg_bin("pg_ctl"),
                "-D",
                str(self.dir / "data"),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
        )
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def own_postgres() -> Iterator[ThrowawayPostgres]:
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("the postgres system user is missing; install PostgreSQL as .ci/run expects")
    server = ThrowawayPostgres()
    server.start()
    yield server
    server.remove()


@pytest.mark.slow
def test_study_survives_a_database_restart(tmp_path: Path, own_postgres: ThrowawayPostgres) -> None:
    study = _tiny_study(
        tmp_path / "s.yaml",
        n_trials=10,
        max_epochs=15,
        workers=2,
        storage=own_postgres.url,
        heartbeat_interval=2,
        grace_period=4,
        storage_retry_seconds=60,
        task={"name": "tiny_task:tiny", "options": {"n": 1000}},
        search_space={"lr": {"type": "float", "low": 0.01, "high": 0.05}, "batch_size": 8},
    )
    proc = _start_tune(tmp_path / "s.yaml")
    deadline = time.time() + 120
    done_before = 0
    while time.time() < deadline:
        time.sleep(0.5)
        try:
            done_before = sum(
                t.state in FINISHED for t in _trials(own_postgres.url, study["study_name"])
            )
        except Exception:
            continue
        if done_before >= 2:
            break
    assert done_before >= 2, "no trial finished before the restart"
    own_postgres.stop()
    time.sleep(5)
    own_postgres.start()
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    assert "unreachable" in err and "is back" in err
    assert "Traceback" not in err  # the heartbeat thread's errors are one line each
    trials = _trials(own_postgres.url, study["study_name"])
    assert sum(t.state in FINISHED for t in trials) == 10
    assert "Best trial #" in out


@pytest.mark.slow
def test_trials_held_by_workers_that_gave_up_are_released_by_the_rerun(
    tmp_path: Path, own_postgres: ThrowawayPostgres
) -> None:
    # No heartbeat: only the liveness rule can tell that these trials' workers are gone.
    study = _tiny_study(
        tmp_path / "s.yaml",
        n_trials=4,
        max_epochs=40,
        workers=2,
        storage=own_postgres.url,
        storage_retry_seconds=3,
        task={"name": "tiny_task:tiny", "options": {"n": 2000}},
        search_space={"lr": {"type": "float", "low": 0.01, "high": 0.05}, "batch_size": 8},
    )
    proc = _start_tune(tmp_path / "s.yaml")
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.3)
        try:
            running = [
                t
                for t in _trials(own_postgres.url, study["study_name"])
                if t.state == TrialState.RUNNING and t.intermediate_values
            ]
        except Exception:
            continue
        if len(running) == 2:
            break
    own_postgres.stop()  # longer than storage_retry_seconds: the workers give up
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 4 and "giving up" in err
    own_postgres.start()
    held = [
        t for t in _trials(own_postgres.url, study["study_name"]) if t.state == TrialState.RUNNING
    ]
    assert held, "the outage left no trial running"
    rerun = run_cli("tune", str(tmp_path / "s.yaml"), "--set", "storage_retry_seconds=30")
    assert rerun.returncode == 0, rerun.stderr
    assert "left running by a worker that is gone" in rerun.stdout
    trials = _trials(own_postgres.url, study["study_name"])
    assert sum(t.state in FINISHED for t in trials) == 4
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


@pytest.mark.slow
def test_workers_give_up_with_one_message_when_the_database_stays_away(
    tmp_path: Path, own_postgres: ThrowawayPostgres
) -> None:
    study = _tiny_study(
        tmp_path / "s.yaml", n_trials=3, storage=own_postgres.url, storage_retry_seconds=3
    )
    config = parse_study(study)
    prepare_study(config, storage_for(config))
    run_worker(config)  # the study's first trials, in this process
    own_postgres.stop()
    started = time.monotonic()
    result = run_cli("tune", str(tmp_path / "s.yaml"), "--n-trials", "6")
    assert result.returncode == 4
    assert "Traceback" not in result.stderr
    assert "retrying in 1 s" in result.stderr  # it waited, with backoff ...
    assert "unreachable for" in result.stderr and "giving up" in result.stderr  # ... then gave up
    assert time.monotonic() - started < 60
