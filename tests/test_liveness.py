"""Which worker owns a running trial, when workers share a hostname.

Containers with the host's network (Docker ``--network host``, Kubernetes
``hostNetwork``, several SLURM tasks in containers) give workers the same hostname but
their own PID namespace: a pid seen from one namespace means nothing in another. A worker
judges a trial's owner only when the owner runs on the same kernel (boot id) and in the
same PID namespace; every other trial is left to Optuna's heartbeat.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import REPO, minimal_study, with_tests_path
from optuna.trial import TrialState

from pipeline.storages import open_storage
from pipeline.trial import process_identity
from pipeline.trial._liveness import is_gone


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_dead_worker_in_this_namespace_is_gone_and_this_one_is_alive() -> None:
    me = process_identity()
    assert not is_gone(me)
    assert is_gone({**me, "pid": _dead_pid()})


@pytest.mark.parametrize("other", ["pid_namespace", "boot_id"])
def test_a_worker_of_another_namespace_or_kernel_is_never_judged(other: str) -> None:
    # The same hostname and a pid that is dead here: in another PID namespace (or on
    # another machine that shares the hostname) that pid is someone else's live worker.
    me = process_identity()
    assert is_gone({**me, "pid": _dead_pid()})
    assert not is_gone({**me, "pid": _dead_pid(), other: "elsewhere"})


def test_each_process_gets_its_own_random_id() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from pipeline.trial import process_identity as p; print(p()['id'])",
        ],
        env={**os.environ, "PYTHONPATH": with_tests_path(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    mine = process_identity()["id"]
    assert len(mine) == 32 and out.stdout.strip() not in ("", mine)


def test_trials_recorded_before_the_namespace_fields_are_left_to_the_heartbeat() -> None:
    assert not is_gone({"host": os.uname().nodename, "pid": _dead_pid(), "started": 1})


def _unshare_works() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True
    )
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _unshare_works(), reason="needs root and unshare(1) for a PID namespace")
@pytest.mark.parametrize("backend", ["sqlite", "journal", "postgresql"])
def test_workers_with_one_hostname_in_two_pid_namespaces_fail_nothing(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    # The repro of issue 25: one worker under `unshare --pid --fork --mount-proc`, one
    # outside, the same study without a heartbeat. Each worker, waiting for room in the
    # budget, checks the other's running trial: by hostname and pid, each judged the
    # other dead and failed its trials (on SQLite: 76 trials, 74 FAIL).
    url = {
        "sqlite": f"sqlite:///{tmp_path}/optuna.db",
        "journal": f"journal:///{tmp_path}/optuna.log",
    }.get(backend) or request.getfixturevalue("postgres_db")
    # Trials of about 2 s (fit_line sleeps 0.6 s an epoch): both workers are up before either
    # could run the whole budget alone.
    study = minimal_study(
        task=None,
        trainable="tiny_trainables:fit_line",
        metric="mse",
        max_epochs=3,
        n_trials=6,
        search_space={"lr": {"type": "float", "low": 0.01, "high": 0.1}, "sleep": 0.6},
    )
    del study["task"]
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    command = [sys.executable, "-m", "pipeline", "worker", str(path), "--storage", url]
    command += ["--threads", "1"]
    env = {**os.environ, "PYTHONPATH": with_tests_path(REPO)}
    procs = [
        subprocess.Popen(
            [*prefix, *command, "--worker-index", str(i)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, prefix in enumerate([[], ["unshare", "--pid", "--fork", "--mount-proc"]])
    ]
    started = time.monotonic()
    results = [proc.communicate(timeout=240) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err for _, err in results]
    assert not [err for _, err in results if "Traceback" in err], results
    trials = optuna.load_study(study_name=study["study_name"], storage=open_storage(url)).trials
    states = Counter(t.state for t in trials)
    assert states == {TrialState.COMPLETE: 6}, (states, time.monotonic() - started)
    params = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(params)) == 6
    # Both namespaces ran trials: the test covered two workers, not one.
    assert len({t.user_attrs["worker_process"]["pid_namespace"] for t in trials}) == 2
