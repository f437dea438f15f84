"""Many workers, many backends, and what must survive: real servers, real processes.

PostgreSQL and Redis are the machine's own (see .ci/run); the database-restart test runs
a throwaway PostgreSQL cluster of its own so that it can stop it safely.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from conftest import (
    REPO,
    cli,
    free_port,
    minimal_study,
    run_cli,
    with_tests_path,
)
from optuna.trial import TrialState

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
        t for t in trials if t.state == TrialState.FAIL and not t.user_attrs.get("fail_reason")
    ]
    assert len(stale) == 1, [(t.number, t.state, t.user_attrs) for t in trials]
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == stale[0].number]
    assert retry.state in FINISHED and retry.params == stale[0].params
    assert retry.user_attrs["retry_count"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("secret", ["s3cretPW", "p/a s@w:rd"])
def test_passwords_never_reach_output_or_stored_attributes(
    tmp_path: Path, postgres_db: str, secret: str
) -> None:
    quoted = urllib.parse.quote(secret, safe="")
    url = postgres_db.replace("postgres@", f"postgres:{quoted}@")  # trust auth ignores it
    study = _tiny_study(tmp_path / "s.yaml", n_trials=2, workers=1, storage=url)
    result = run_cli("tune", str(tmp_path / "s.yaml"))
    assert result.returncode == 0, result.stderr
    shown = result.stdout + result.stderr
    assert secret not in shown and quoted not in shown
    assert "postgres:***@" in result.stdout
    stored = optuna.load_study(study_name=study["study_name"], storage=postgres_db)
    attrs = repr(stored.user_attrs) + repr([t.user_attrs for t in stored.trials])
    assert secret not in attrs and quoted not in attrs
    validated = cli("validate", str(tmp_path / "s.yaml")).stdout
    assert secret not in validated and quoted not in validated
    out = tmp_path / "out"
    for command in (
        ["export", "--out", str(out / "t.csv"), "--curves"],
        ["report", "--out", str(out)],
    ):
        done = cli(command[0], "--storage", url, "--study", study["study_name"], *command[1:])
        assert done.returncode == 0, done.stderr
        assert secret not in done.stdout + done.stderr and quoted not in done.stdout + done.stderr
    for path in out.rglob("*"):
        text = path.read_bytes().decode("utf-8", "replace")
        assert secret not in text and quoted not in text, path


@pytest.mark.slow
def test_a_storage_url_from_the_environment_never_shows_in_ps(
    tmp_path: Path, postgres_db: str
) -> None:
    secret = "p/a s@w:rd"
    quoted = urllib.parse.quote(secret, safe="")
    url = postgres_db.replace("postgres@", f"postgres:{quoted}@")
    study = _tiny_study(tmp_path / "s.yaml", n_trials=6, workers=2, max_epochs=20)
    proc = _start_tune(tmp_path / "s.yaml", PIPELINE_STORAGE=url)
    seen_workers = 0
    while proc.poll() is None:
        commands = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                commands.append(
                    cmdline.read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
                )
            except OSError:
                continue
        ours = [c for c in commands if "multiprocessing" in c or "pipeline tune" in c]
        seen_workers = max(seen_workers, len(ours))
        assert not [c for c in commands if secret in c or quoted in c]
        time.sleep(0.2)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert secret not in out + err and quoted not in out + err
    stored = optuna.load_study(study_name=study["study_name"], storage=postgres_db)
    assert sum(t.state in FINISHED for t in stored.trials) == 6 and seen_workers >= 1


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
    _tiny_study(tmp_path / "s.yaml", n_trials=3, storage=own_postgres.url, storage_retry_seconds=3)
    assert run_cli("tune", str(tmp_path / "s.yaml")).returncode == 0
    own_postgres.stop()
    started = time.monotonic()
    result = run_cli("tune", str(tmp_path / "s.yaml"), "--n-trials", "6")
    assert result.returncode == 4
    assert "Traceback" not in result.stderr
    assert "retrying in 1 s" in result.stderr  # it waited, with backoff ...
    assert "unreachable for" in result.stderr and "giving up" in result.stderr  # ... then gave up
    assert time.monotonic() - started < 60
