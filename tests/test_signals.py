"""Signals as the world sends them: SIGTERM and SIGHUP from a scheduler, SIGKILL of the
parent, SIGINT to a job that ignores it, Ctrl-C before anything ran."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from conftest import REPO, with_tests_path
from optuna.trial import TrialState

from pipeline.study import load_study_file

LONG_TRIALS = {
    "n_trials": 4,
    "workers": 2,
    "max_epochs": 30,
    "search_space": {
        "lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True},
        "batch_size": {"type": "categorical", "choices": [2]},
    },
}


def _start(path: Path, ignore_sigint: bool = False) -> subprocess.Popen[str]:
    def preexec() -> None:
        if ignore_sigint:  # as a shell does for a job started in the background by a script
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "tune", str(path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": with_tests_path()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, like a terminal's job
        preexec_fn=preexec,
    )


def _trials(path: Path) -> list[optuna.trial.FrozenTrial]:
    config = load_study_file(path)
    try:
        return optuna.load_study(study_name=config.study_name, storage=config.storage).trials
    except KeyError:
        return []


def _wait_until_training(path: Path, running: int) -> None:
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.3)
        training = [
            t for t in _trials(path) if t.state == TrialState.RUNNING and t.intermediate_values
        ]
        if len(training) >= running:
            return
    pytest.fail("the workers never started training")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_group_gone(pgid: int, seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if not _group_alive(pgid):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_or_sighup_to_tune_requeues_running_trials_and_leaves_no_process(
    write_study: Callable[..., Path], signum: int, code: int
) -> None:
    if signal.getsignal(signum) is signal.SIG_IGN:  # under nohup: tune rightly keeps ignoring it
        pytest.skip(f"{signal.Signals(signum).name} is ignored in this test run")
    path = write_study(**LONG_TRIALS)
    proc = _start(path)
    try:
        _wait_until_training(path, running=2)
        os.kill(proc.pid, signum)  # what a scheduler or `kill` sends: the parent only
        out, err = proc.communicate(timeout=90)
    finally:
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "Interrupted" in out
    assert _wait_group_gone(proc.pid, 5), "a worker outlived tune"
    trials = _trials(path)
    interrupted = [t for t in trials if t.user_attrs.get("outcome") == "interrupted"]
    assert len(interrupted) == 2 and all(t.intermediate_values for t in interrupted)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    queued = sorted(t.params["lr"] for t in trials if t.state == TrialState.WAITING)
    assert queued == sorted(t.params["lr"] for t in interrupted)


@pytest.mark.slow
def test_no_worker_outlives_a_sigkilled_tune_and_the_rerun_recovers_its_trials(
    write_study: Callable[..., Path],
) -> None:
    # Three trials: the rerun recovers the two orphaned ones and runs one new one.
    path = write_study(**{**LONG_TRIALS, "max_epochs": 8, "n_trials": 3})
    proc = _start(path)
    try:
        _wait_until_training(path, running=2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        assert _wait_group_gone(proc.pid, 10), "workers still ran 10 s after tune was killed"
    finally:
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    orphaned = [t for t in _trials(path) if t.state == TrialState.RUNNING]
    assert len(orphaned) == 2  # their workers died with tune, mid-trial
    rerun = _start(path)
    try:
        _out, err = rerun.communicate(timeout=240)
    finally:
        if _group_alive(rerun.pid):
            os.killpg(rerun.pid, signal.SIGKILL)
    assert rerun.returncode == 0, err
    trials = _trials(path)
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 3
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    retried = {t.user_attrs.get("retry_of") for t in trials} - {None}
    assert retried == {t.number for t in orphaned}


@pytest.mark.slow
def test_a_job_that_ignores_sigint_is_not_stopped_by_it(
    write_study: Callable[..., Path],
) -> None:
    path = write_study(**{**LONG_TRIALS, "max_epochs": 4})
    proc = _start(path, ignore_sigint=True)
    try:
        _wait_until_training(path, running=2)
        os.killpg(proc.pid, signal.SIGINT)
        _out, err = proc.communicate(timeout=300)
    finally:
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    finished = [t for t in _trials(path) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 4


@pytest.mark.slow
@pytest.mark.parametrize("after", [0.5, 1.5])
def test_ctrl_c_before_any_trial_is_one_line(
    write_study: Callable[..., Path], after: float
) -> None:
    path = write_study()
    proc = _start(path)
    time.sleep(after)
    os.killpg(proc.pid, signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    if proc.returncode == 0:  # the machine was quick: the study had already finished
        return
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) <= 1, err
