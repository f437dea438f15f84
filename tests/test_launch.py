"""``pipeline launch slurm``: the sbatch script, the storages it refuses, and real runs
on a single-node SLURM cluster (tests/slurm_cluster.py) against PostgreSQL."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from conftest import REPO, cli, minimal_study, with_tests_path
from optuna.trial import TrialState
from slurm_cluster import available, slurm_cluster

from pipeline.storages import open_storage

SECRET = "s3cretPW"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _study(tmp_path: Path, **overrides: Any) -> tuple[Path, dict[str, Any]]:
    data = minimal_study(
        task=None,
        trainable="tiny_trainables:fit_line",
        metric="mse",
        max_epochs=4,
        n_trials=4,
        storage=f"sqlite:///{tmp_path}/optuna.db",
        artifacts=str(tmp_path / "artifacts"),
        search_space={"lr": {"type": "float", "low": 0.01, "high": 0.1}, "sleep": 0.4},
    )
    del data["task"]
    data.update(overrides)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, data


def test_dry_run_prints_a_requeueable_job_array_and_submits_nothing(tmp_path: Path) -> None:
    path, data = _study(tmp_path)
    url = f"postgresql+psycopg://pipeline:{SECRET}@db.example:5432/studies"
    done = cli(
        "launch", "slurm", str(path), "--workers", "3", "--storage", url, "--dry-run",
        "--partition", "gpu", "--time", "01:00:00", "--gpus-per-trial", "1",
        "--sbatch-arg=--account=ml", "--grace", "90",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    script = done.stdout
    for line in ("--array=0-2", "--requeue", "--signal=B:TERM@90", "--partition=gpu",
                 "--time=01:00:00", "--gres=gpu:1", "--account=ml"):  # fmt: skip
        assert f"#SBATCH {line}\n" in script
    assert '--worker-index "$SLURM_ARRAY_TASK_ID"' in script
    assert SECRET not in script and "db.example" not in script
    assert "storage.url" in script  # the URL is read from a file only the user can read
    assert not (REPO / "runs" / "launch" / data["study_name"]).exists()


def test_a_storage_url_from_the_environment_stays_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = _study(tmp_path)
    monkeypatch.setenv("MY_DB", f"postgresql+psycopg://u:{SECRET}@db/x")
    done = cli(
        "launch", "slurm", str(path), "--workers", "2", "--storage-env", "MY_DB", "--dry-run"
    )
    assert done.returncode == 0, done.stderr
    assert "--storage-env MY_DB" in done.stdout and SECRET not in done.stdout


@pytest.mark.parametrize(
    ("storage", "extra", "refused"),
    [
        ("sqlite:///{tmp}/optuna.db", [], True),
        ("journal:///{tmp}/optuna.log", [], True),
        ("journal:///{tmp}/optuna.log", ["--shared-journal"], False),
        ("grpc://proxy.example:13000", [], False),
    ],
)
def test_storages_only_one_machine_reaches_are_refused_in_one_line(
    tmp_path: Path, storage: str, extra: list[str], refused: bool
) -> None:
    path, _ = _study(tmp_path)
    url = storage.format(tmp=tmp_path)
    done = cli(
        "launch", "slurm", str(path), "--workers", "2", "--storage", url, "--dry-run", *extra
    )
    if refused:
        assert done.returncode == 2 and done.stdout == ""
        (line,) = done.stderr.splitlines()
        assert "PostgreSQL" in line and "grpc://" in line and "--shared-journal" in line
    else:
        assert done.returncode == 0, done.stderr


# ---- a real SLURM cluster ---------------------------------------------------------------


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    why = available()
    if why is not None:
        pytest.skip(why)
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as env:
        yield env


def _launch(path: Path, workdir: Path, env: dict[str, str], url: str) -> str:
    env = {**env, "PYTHONPATH": with_tests_path(REPO), "STUDY_DB": url}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "launch", "slurm", str(path),
         "--workers", "2", "--storage-env", "STUDY_DB", "--grace", "10"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    match = re.search(r"submitted job (\d+)", done.stdout)
    assert match and "squeue -j" in done.stdout, done.stdout
    return match.group(1)


def _slurm(env: dict[str, str], *args: str) -> str:
    return subprocess.run(list(args), env=env, capture_output=True, text=True, check=True).stdout


def _trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=name, storage=open_storage(url)).trials
    except KeyError:
        return []


def _poll(until: Any, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def _secret_url(postgres_db: str) -> str:
    return postgres_db.replace("postgres@", f"postgres:{SECRET}@", 1)


@pytest.mark.slow
def test_a_requeued_task_loses_nothing_and_the_array_meets_the_budget(
    tmp_path: Path, slurm: dict[str, str], postgres_db: str
) -> None:
    url = _secret_url(postgres_db)
    path, data = _study(tmp_path, n_trials=5)
    job = _launch(path, tmp_path, slurm, url)
    shown = _slurm(slurm, "scontrol", "show", "job", "-dd", job)
    assert SECRET not in shown and job in shown

    # Re-queue task 0 in the middle of a trial: it stops, its trial goes back to WAITING.
    def mid_trial() -> bool:
        trials = _trials(url, data["study_name"])
        return any(
            t.state == TrialState.RUNNING and len(t.intermediate_values) >= 2
            and t.user_attrs.get("worker") == 0 for t in trials
        )  # fmt: skip

    _poll(mid_trial)
    _slurm(slurm, "scontrol", "requeue", f"{job}_0")
    _poll(lambda: sum(t.state in FINISHED for t in _trials(url, data["study_name"])) >= 5)
    # SLURM holds a re-queued task back for a while before it starts again; the study
    # needs it no more, so it is cancelled once no task runs.
    _poll(lambda: not _slurm(slurm, "squeue", "-h", "-t", "R", "-j", job).strip())
    _slurm(slurm, "scancel", job)
    trials = _trials(url, data["study_name"])
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == 5
    assert len({t.params["lr"] for t in finished}) == 5
    retried = [t for t in finished if "retry_of" in t.user_attrs]
    assert len(retried) == 1 and retried[0].user_attrs["resumed_from"]["epoch"] >= 1
    logs = "".join(p.read_text() for p in (tmp_path / "runs" / "launch").rglob("*.out"))
    # The one traceback allowed is Optuna's log of the interrupted trial (at WARNING in
    # `pipeline worker`); no other error.
    assert logs.count("Traceback") == logs.count("TrialInterrupted: trial"), logs
    assert "interrupted; its running trial was re-queued" in logs and SECRET not in logs


@pytest.mark.slow
def test_scancel_then_a_second_launch_reaches_exactly_n_trials(
    tmp_path: Path, slurm: dict[str, str], postgres_db: str
) -> None:
    url = postgres_db
    path, data = _study(tmp_path, n_trials=6, max_epochs=3)
    job = _launch(path, tmp_path, slurm, url)
    _poll(lambda: sum(t.state in FINISHED for t in _trials(url, data["study_name"])) >= 1)
    _slurm(slurm, "scancel", job)
    _poll(lambda: not _slurm(slurm, "squeue", "-h", "-j", job).strip())
    job = _launch(path, tmp_path, slurm, url)
    _poll(lambda: not _slurm(slurm, "squeue", "-h", "-j", job).strip(), timeout=240)
    trials = _trials(url, data["study_name"])
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == 6, Counter(t.state for t in trials)
    assert len({t.params["lr"] for t in finished}) == 6
