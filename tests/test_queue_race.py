"""A queued trial goes to exactly one worker, on every storage, when workers start together.

pysqlite used to open SQLite transactions only at the first write, so two processes both
read a queued trial as WAITING and both ran it (optuna/optuna#4002). The race depends on
timing, so the workers here are released at the same instant by a barrier, and the test
repeats.
"""

from __future__ import annotations

import multiprocessing as mp
import uuid
from collections import Counter
from multiprocessing.synchronize import Barrier
from pathlib import Path

import optuna
import pytest
from conftest import POSTGRES_URL
from optuna.trial import TrialState

from pipeline.storages import open_storage

WORKERS = 4
QUEUED = 40
REPEATS = 10


def _pop_queued(url: str, names: list[str], barrier: Barrier, out: mp.Queue) -> None:
    """Take queued trials until none is left, study after study; report what was taken."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_storage(url)
    studies = [optuna.load_study(study_name=name, storage=storage) for name in names]
    for study in studies:
        barrier.wait(timeout=120)
        taken, errors = [], []
        while True:
            trial = study.ask()
            if trial.number >= QUEUED:  # the queue was empty: Optuna made a new trial
                study.tell(trial, state=TrialState.FAIL)
                break
            taken.append(trial.number)
            try:
                study.tell(trial, float(trial.number))
            except Exception as exc:  # two owners: the second tell fails
                errors.append(f"{type(exc).__name__}: {exc}")
        out.put((study.study_name, taken, errors))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "journal", "postgresql"])
def test_each_queued_trial_runs_once_when_workers_start_together(
    backend: str, tmp_path: Path
) -> None:
    url = _url(backend, tmp_path)
    storage = open_storage(url)
    names = []
    for _ in range(REPEATS):
        study = optuna.create_study(study_name=f"race-{uuid.uuid4().hex[:8]}", storage=storage)
        for i in range(QUEUED):
            study.enqueue_trial({"x": float(i)})
        names.append(study.study_name)
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_pop_queued, args=(url, names, barrier, out)) for _ in range(WORKERS)
    ]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=60) for _ in range(WORKERS * REPEATS)]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    for name in names:
        taken = Counter(n for study, numbers, _ in results if study == name for n in numbers)
        errors = [e for study, _, errs in results if study == name for e in errs]
        twice = sorted(n for n, count in taken.items() if count > 1)
        assert not twice and not errors, f"{name}: trials taken twice {twice}; {errors[:2]}"
        assert sorted(taken) == list(range(QUEUED))


def _url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/race.db"
    if backend == "journal":
        return f"journal:///{tmp_path}/race.log"
    return POSTGRES_URL
