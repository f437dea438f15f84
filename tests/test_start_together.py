"""Workers that create the same new study at the same instant lose nothing.

A SLURM array or a Kubernetes Job starts every worker at once. Exactly one creates the
study; the queue (``enqueue:``) must be full before any of them samples, or sampled
trials spend the budget and queued points never run (issue 25: on PostgreSQL and journal
24 of 24 queued points stayed WAITING; on SQLite 36 of 72 never ran). Each process here
does what ``pipeline worker`` does, in-process: prepare the study, then run trials of a
zero-cost trainable; a barrier releases them together, 2 to 6 at a time, 10 times.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue as queue_module
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import optuna
import pytest
from conftest import POSTGRES_URL, minimal_study
from optuna.trial import TrialState

from pipeline.storages import open_storage

QUEUED = 12
REPEATS = 10
MOST = 6  # processes; repetition r starts 2 + r % 5 of them


def _study(url: str, name: str) -> dict[str, Any]:
    data = minimal_study(
        study_name=name,
        storage=url,
        trainable="tiny_trainables:instant",
        metric="mse",
        max_epochs=1,
        n_trials=QUEUED,
        search_space={"x": {"type": "float", "low": 0.0, "high": 1.0}},
        enqueue=[{"x": i / 100} for i in range(QUEUED)],
    )
    del data["task"]
    return data


def _racer(
    index: int, jobs: mp.Queue, done: mp.Queue, barriers: dict[int, Barrier], err: str
) -> None:
    """One process of the pool: run each job (a storage URL and its study names) until
    told to stop (None); say when each is done."""
    os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_APPEND), 2)  # tracebacks, if any
    sys.stderr = os.fdopen(2, "w", buffering=1)
    while (job := jobs.get()) is not None:
        url, names = job
        _start_each(index, url, names, barriers)
        done.put(index)


def _start_each(index: int, url: str, names: list[str], barriers: dict[int, Barrier]) -> None:
    """Start each study this process takes part in as ``tune`` (even index) or
    ``worker`` (odd) does, released by its barrier; then take trials as a worker would,
    until Optuna hands out a sampled trial rather than a queued one."""
    from pipeline.study import prepare_study, storage_for
    from pipeline.study._file import parse_study

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    for r, name in enumerate(names):
        count = 2 + r % 5
        if index >= count:
            continue
        config = parse_study(_study(url, name))
        barriers[count].wait(timeout=60)
        study = prepare_study(config, storage_for(config), joining=index % 2 == 1)
        while True:
            trial = study.ask()
            record = study.get_trials(deepcopy=False)[trial.number]
            queued = "fixed_params" in record.system_attrs
            x = trial.suggest_float("x", 0.0, 1.0)
            if not queued:  # the queue is empty: as the budget is met, stop
                study.tell(trial, state=TrialState.FAIL)
                break
            study.tell(trial, x)


def _url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/optuna.db"  # made by the racing processes themselves
    if backend == "journal":
        return f"journal:///{tmp_path}/optuna.log"
    return POSTGRES_URL


@pytest.fixture(scope="module")
def racers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[list[mp.Queue], mp.Queue, list[Path]]]:
    """MOST processes, started once (each imports the pipeline: seconds), that every
    backend's test reuses."""
    folder = tmp_path_factory.mktemp("racers")
    ctx = mp.get_context("spawn")
    barriers = {count: ctx.Barrier(count) for count in range(2, MOST + 1)}
    jobs = [ctx.Queue() for _ in range(MOST)]
    done = ctx.Queue()
    errs = [folder / f"racer{i}.err" for i in range(MOST)]
    procs = [
        ctx.Process(target=_racer, args=(i, jobs[i], done, barriers, str(errs[i])))
        for i in range(MOST)
    ]
    for proc in procs:
        proc.start()
    yield jobs, done, errs
    for queue in jobs:
        queue.put(None)
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "journal", "postgresql"])
def test_workers_that_create_one_study_together_run_each_queued_point_once(
    backend: str, tmp_path: Path, racers: tuple[list[mp.Queue], mp.Queue, list[Path]]
) -> None:
    jobs, done, errs = racers
    url = _url(backend, tmp_path)
    names = [f"together-{uuid.uuid4().hex[:8]}" for _ in range(REPEATS)]
    for queue in jobs:
        queue.put((url, names))
    finished = []
    with contextlib.suppress(queue_module.Empty):
        for _ in range(MOST):
            finished.append(done.get(timeout=180))
    logs = [err.read_text() if err.exists() else "" for err in errs]
    assert sorted(finished) == list(range(MOST)), logs
    assert not [log for log in logs if log.strip()], logs  # no traceback, no "already exists"
    storage = open_storage(url)
    queued = sorted(i / 100 for i in range(QUEUED))
    for name in names:
        study = optuna.load_study(study_name=name, storage=storage)
        trials = study.trials
        ran = Counter(t.params["x"] for t in trials if t.state == TrialState.COMPLETE)
        assert sorted(ran) == queued and set(ran.values()) == {1}, (name, ran)
        # A trial sampled while the queue was still being filled comes before a queued one.
        sampled = [t.number for t in trials if t.state == TrialState.FAIL]
        assert min(sampled) > max(t.number for t in trials if t.state == TrialState.COMPLETE)
        assert study.metric_names == ["mse"] and "prepared" in study.user_attrs


def test_a_study_whose_creator_died_half_way_is_finished_without_a_point_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.study import _create, prepare_study, storage_for
    from pipeline.study._file import parse_study

    monkeypatch.setattr(_create, "PREPARE_WAIT_S", 0.3)
    config = parse_study(_study(f"sqlite:///{tmp_path}/optuna.db", "orphaned"))
    storage = storage_for(config)
    # The creator made the study and queued 5 of its 12 points, then died.
    half = optuna.create_study(study_name="orphaned", storage=storage)
    for point in config.enqueue[:5]:
        half.enqueue_trial(point)
    study = prepare_study(config, storage, joining=True)
    queued = study.get_trials(states=(TrialState.WAITING,))
    waiting = [t.system_attrs["fixed_params"]["x"] for t in queued]
    assert sorted(waiting) == sorted(i / 100 for i in range(QUEUED))
    assert study.user_attrs["prepared"] is True
