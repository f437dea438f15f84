"""Workers and the budget: exact trial counts, grid exactly once, resume, retries."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from conftest import REPO, free_port, minimal_study, run_cli, with_tests_path
from optuna.trial import FrozenTrial, TrialState

from pipeline.results import evaluate_best
from pipeline.runner import run_worker, tune
from pipeline.runner._placement import start_method
from pipeline.study import Budget, prepare_study, storage_for
from pipeline.study._file import parse_study
from pipeline.trial import frozen


def _load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


def _started(trial: FrozenTrial) -> datetime:
    assert trial.datetime_start is not None
    return trial.datetime_start


def test_budget_marks_a_racing_trial_as_surplus() -> None:
    study = optuna.create_study()
    budget = Budget(n_trials=2)
    assert budget.admit(study) == "run" and budget.remaining(study) == 2
    first, second = study.ask(), study.ask()
    assert budget.admit(study) == "wait"  # two running fill the budget; one may still fail
    third = study.ask()  # a worker admitted in the same instant
    assert not budget.is_surplus(study, frozen(first))
    assert not budget.is_surplus(study, frozen(second))
    assert budget.is_surplus(study, frozen(third))
    study.tell(first, 1.0)
    study.tell(third, state=TrialState.FAIL)  # what the worker does with a surplus trial
    assert budget.admit(study) == "wait"
    study.tell(second, state=TrialState.FAIL)  # a failure frees its slot
    assert budget.admit(study) == "run"
    fourth = study.ask()
    assert not budget.is_surplus(study, frozen(fourth))
    assert budget.remaining(study) == 0
    study.tell(fourth, state=TrialState.PRUNED)
    assert budget.admit(study) == "stop"


def test_deadline_stops_new_trials() -> None:
    assert Budget(n_trials=None, deadline=time.time() - 1).admit(optuna.create_study()) == "stop"


def test_a_raising_trial_is_retried_with_the_same_parameters(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    config = parse_study(
        minimal_study(
            storage=url,
            n_trials=1,
            max_retries=2,
            task={"name": "tiny_task:tiny"},
            search_space={"fail": {"type": "categorical", "choices": [True]}},
        )
    )
    prepare_study(config, storage_for(config))
    with open(tmp_path / "log", "w") as log:
        run_worker(config, log=log)
    trials = _load(url, config.study_name).trials
    assert [t.state for t in trials[:3]] == [TrialState.FAIL] * 3
    assert [t.params for t in trials[:3]] == [{"fail": True}] * 3
    assert [t.user_attrs.get("retry_count") for t in trials[:3]] == [None, 1, 2]
    assert all(t.user_attrs.get("retry_of", 0) == 0 for t in trials[:3])
    # The reason names the last frame of the user's code (the plug-in task), not ours.
    reason = trials[2].user_attrs["fail_reason"]
    assert re.fullmatch(
        r"RuntimeError: CUDA out of memory \(simulated\) \(at tiny_task\.py:\d+ in \w+\)", reason
    ), reason
    text = (tmp_path / "log").read_text()
    assert "(retry 1 of 2 queued)" in text and "(retry 2 of 2 queued)" in text


@pytest.mark.slow
def test_two_workers_end_with_exactly_n_trials(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    # Trials of about a second, so both workers are up before the budget is spent.
    path = write_study(n_trials=9, workers=2, max_epochs=4)
    result = run_cli("tune", str(path))
    assert result.returncode == 0, result.stderr
    config = parse_study(__import__("yaml").safe_load(path.read_text()))
    trials = _load(config.storage, config.study_name).trials
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 9
    assert {t.user_attrs["worker"] for t in finished} == {0, 1}
    assert "Best trial #" in result.stdout and "test accuracy:" in result.stdout


@pytest.mark.slow
def test_grid_runs_every_point_exactly_once_with_two_workers(
    write_study: Callable[..., Path],
) -> None:
    path = write_study(
        n_trials=None,
        workers=2,
        max_epochs=1,
        sampler={"name": "grid", "seed": 0},
        search_space={
            "lr": {"type": "float", "low": 0.001, "high": 0.1, "grid": [0.001, 0.01, 0.1]},
            "batch_size": {"type": "categorical", "choices": [16, 32, 64]},
            "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
        },
    )
    result = run_cli("tune", str(path))
    assert result.returncode == 0, result.stderr
    config = parse_study(__import__("yaml").safe_load(path.read_text()))
    trials = _load(config.storage, config.study_name).trials
    points = Counter(
        tuple(sorted(t.params.items())) for t in trials if t.state == TrialState.COMPLETE
    )
    assert len(points) == 18 and set(points.values()) == {1}
    # A worker that found the queue emptied between its check and its ask records a
    # skipped trial (no parameters, nothing trained); no grid point runs twice.
    others = [t for t in trials if t.state != TrialState.COMPLETE]
    assert all(t.user_attrs["fail_reason"].startswith("skipped") and not t.params for t in others)


@pytest.mark.parametrize(
    ("device", "storage", "fresh", "method"),
    [
        ("cpu", "sqlite:///x.db", True, "fork"),  # inherits torch and the task: no re-import
        ("cpu", "postgresql+psycopg://u@h/db", True, "fork"),
        ("cpu", "sqlite:///x.db", False, "spawn"),  # the process may have used OpenMP
        ("cpu", "grpc://127.0.0.1:13000", True, "spawn"),  # gRPC channels do not survive fork
        ("cuda", "sqlite:///x.db", True, "spawn"),  # CUDA cannot be used in a forked child
        ("auto", "sqlite:///x.db", True, "spawn"),
    ],
)
@pytest.mark.skipif(sys.platform != "linux", reason="workers fork on Linux only")
def test_workers_fork_only_where_it_is_safe(
    device: str, storage: str, fresh: bool, method: str
) -> None:
    config = parse_study(minimal_study(device=device, storage=storage))
    assert start_method(config.device, config.storage, fresh_process=fresh) == method


def test_enqueued_configurations_run_first_and_only_once(tmp_path: Path) -> None:
    first = [{"lr": 0.09, "batch_size": 64}, {"lr": 0.011, "batch_size": 32}]
    raw = minimal_study(
        n_trials=3, max_epochs=1, enqueue=first, storage=f"sqlite:///{tmp_path}/s.db"
    )
    for n_trials in (3, 4):  # the second run resumes the study: nothing is queued again
        config = parse_study({**raw, "n_trials": n_trials})
        prepare_study(config, storage_for(config))
        run_worker(config, worker=0)
    trials = _load(config.storage, config.study_name).trials
    assert [t.params for t in trials[:2]] == first
    assert len(trials) == 4
    assert all(t.params not in first for t in trials[2:])


@pytest.mark.slow
def test_rerun_resumes_instead_of_starting_over(write_study: Callable[..., Path]) -> None:
    path = write_study(n_trials=3, max_epochs=1)
    config = parse_study(__import__("yaml").safe_load(path.read_text()))
    prepare_study(config, storage_for(config))
    run_worker(config)  # the first run, in this process: three trials
    again = run_cli("tune", str(path))
    assert again.returncode == 0
    assert "already met" in again.stdout
    more = run_cli("tune", str(path), "--n-trials", "5")
    assert more.returncode == 0
    trials = _load(config.storage, config.study_name).trials
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]


@pytest.mark.slow
def test_two_sqlite_workers_and_an_open_dashboard_never_lock(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_study(
        n_trials=16,
        workers=2,
        max_epochs=3,
        pruner={"name": "median", "options": {"n_startup_trials": 2}},
    )
    url = f"sqlite:///{tmp_path}/optuna.db"
    port = free_port()
    config = parse_study(__import__("yaml").safe_load(path.read_text()))
    prepare_study(config, storage_for(config))  # the study and the file the dashboard opens
    log = open(tmp_path / "dashboard.log", "w")  # a pipe nobody reads would fill and block it
    dashboard = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "dashboard", "--storage", url, "--port", str(port)],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    errors: list[str] = []
    latencies: list[float] = []
    reads = 0
    done = threading.Event()

    def read_like_a_browser() -> None:
        nonlocal reads
        while not done.is_set():
            try:
                t0 = time.perf_counter()
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/studies", timeout=30
                ) as r:
                    studies = json.load(r)["study_summaries"]
                for study in studies:
                    url_ = f"http://127.0.0.1:{port}/api/studies/{study['study_id']}?after=0"
                    with urllib.request.urlopen(url_, timeout=30) as r:
                        json.load(r)
                reads += 1
                latencies.append(time.perf_counter() - t0)
            except OSError as exc:
                if reads:  # before the first answer the server may still be starting
                    errors.append(repr(exc))
                time.sleep(0.2)

    reader = threading.Thread(target=read_like_a_browser)
    reader.start()
    try:
        result = run_cli("tune", str(path))
    finally:
        done.set()
        reader.join()
        dashboard.terminate()
        dashboard.wait(timeout=10)
        log.close()
    out = (tmp_path / "dashboard.log").read_text()
    assert result.returncode == 0, result.stderr
    assert reads > 5, out
    assert not errors, (errors, sorted(latencies)[-5:])
    for text in (result.stdout, result.stderr, out):
        assert "locked" not in text
    trials = _load(url, config.study_name).trials
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 16
    # A trial created in the instant another worker took the last slot is recorded as
    # skipped (never sampled or trained); nothing else may fail.
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert all(t.user_attrs["fail_reason"].startswith("skipped") and not t.params for t in failed)


@pytest.mark.slow
def test_ctrl_c_stops_records_interrupted_trials_and_the_rerun_resumes_them(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    import os
    import signal

    # Long enough per trial that Ctrl-C lands mid-training; three trials, so that the
    # rerun has two re-queued ones and a new one to order.
    path = write_study(
        n_trials=3,
        workers=2,
        max_epochs=12,
        search_space={
            "lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True},
            "batch_size": {"type": "categorical", "choices": [2]},
        },
    )
    env = {**os.environ, "PYTHONPATH": with_tests_path()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "tune", str(path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, like a terminal's job
    )
    config = parse_study(__import__("yaml").safe_load(path.read_text()))
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until both workers train
        time.sleep(0.5)
        try:
            trials = _load(config.storage, config.study_name).trials
        except KeyError:
            continue
        if (
            sum(len(t.intermediate_values) > 0 for t in trials if t.state == TrialState.RUNNING)
            == 2
        ):
            break
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends: the whole group
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Interrupted" in out
    trials = _load(config.storage, config.study_name).trials
    interrupted = [t for t in trials if t.user_attrs.get("fail_reason") == "interrupted"]
    assert len(interrupted) == 2
    assert all(t.state == TrialState.FAIL and t.intermediate_values for t in interrupted)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    queued = [t for t in trials if t.state == TrialState.WAITING]
    assert sorted(t.params["lr"] for t in queued) == sorted(t.params["lr"] for t in interrupted)

    rerun = run_cli("tune", str(path))
    assert rerun.returncode == 0, rerun.stderr
    trials = _load(config.storage, config.study_name).trials
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3
    retried = sorted((t for t in finished if "retry_of" in t.user_attrs), key=lambda t: t.number)
    assert sorted(t.user_attrs["retry_of"] for t in retried) == sorted(
        t.number for t in interrupted
    )
    # The interrupted configurations ran first in the rerun.
    first_two = sorted(finished, key=_started)[:2]
    assert {t.number for t in first_two} == {t.number for t in retried}


@pytest.mark.slow
def test_no_more_workers_than_trials_left(write_study: Callable[..., Path]) -> None:
    path = write_study(n_trials=1, workers=2, max_epochs=1)
    result = run_cli("tune", str(path))
    assert result.returncode == 0, result.stderr
    assert "1 worker(s)" in result.stdout
    config = parse_study(__import__("yaml").safe_load(path.read_text()))
    assert len(_load(config.storage, config.study_name).trials) == 1


@pytest.mark.slow
def test_the_final_evaluation_runs_on_the_study_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    config = parse_study(
        minimal_study(
            n_trials=1, max_epochs=1, storage=f"sqlite:///{tmp_path}/optuna.db", keep_checkpoints=1
        )
    )
    # Stand in for a CUDA machine in the parent only: the spawned worker trains on the CPU.
    study_device = torch.device("cpu", 0)
    seen: list[torch.device | None] = []
    real_run = evaluate_best

    def run(
        study: optuna.Study, store: Any, retrain_seeds: int = 0, device: torch.device | None = None
    ) -> dict[str, Any]:
        seen.append(device)
        return real_run(study, store, retrain_seeds, device=torch.device("cpu"))

    monkeypatch.setattr("pipeline.runner._launch.resolve_device", lambda name: study_device)
    monkeypatch.setattr("pipeline.results._evaluate.evaluate_best", run)
    assert tune(config, quiet=True) == 0
    assert seen == [study_device]


def test_resuming_a_seeded_study_twice_draws_no_configuration_again(tmp_path: Path) -> None:
    raw = minimal_study(max_epochs=1, storage=f"sqlite:///{tmp_path}/optuna.db")
    for n_trials in (3, 6, 9):  # the first run, then two resumes, each of a fresh worker
        config = parse_study({**raw, "n_trials": n_trials})
        prepare_study(config, storage_for(config))
        run_worker(config, worker=0)
    trials = _load(config.storage, config.study_name).trials
    params = [tuple(sorted(t.params.items())) for t in trials]
    assert len(params) == 9 and len(set(params)) == 9


def test_the_dashboard_note_is_written_without_importing_optuna_dashboard(tmp_path: Path) -> None:
    # The package imports scikit-learn (1.5 s of CPU in every tune); its note module is
    # loaded on its own, and what it writes is what optuna-dashboard reads.
    url = f"sqlite:///{tmp_path}/n.db"
    code = (
        "import sys, optuna\n"
        "from conftest import minimal_study\n"
        "from pipeline.study import write_note\n"
        "from pipeline.study._file import parse_study\n"
        f"study = optuna.create_study(study_name='n', storage={url!r})\n"
        "write_note(study, parse_study(minimal_study(study_name='n')))\n"
        "print(sorted(m for m in ('sklearn', 'optuna_dashboard') if m in sys.modules))\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": with_tests_path()},
        check=True,
    )
    assert shown.stdout.strip() == "[]", shown.stderr
    import optuna_dashboard

    assert optuna_dashboard.get_note(_load(url, "n")).startswith("**n**: task `digits`")
