"""Trial bookkeeping throughput: how many trials per second the storages sustain.

Each worker process runs a trivial objective through the same calls a real trial makes
(ask, a report per epoch, tell) against one shared study, for a fixed time after a
common start signal. Trials per second count finished trials over that window; errors
count exceptions raised by the storage. Every backend and worker count gets a fresh
study (a fresh database for PostgreSQL); figures are medians of repeats.

    python benchmarks/storage_throughput.py [--workers 1,2,4,8] [--seconds 3] [--repeats 3]
        [--backends sqlite,journal,redis,postgresql] [--epochs 5]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable

import optuna
import sqlalchemy

from pipeline.storages import open_storage

POSTGRES_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"


def _worker(url: str, name: str, start: float, seconds: float, epochs: int, out: mp.Queue) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    done = errors = 0
    while time.time() < start:
        time.sleep(0.001)
    end = start + seconds
    while time.time() < end:
        try:
            trial = study.ask()
            x = trial.suggest_float("x", -1, 1)
            for epoch in range(1, epochs + 1):
                trial.report(x * x / epoch, epoch)
            study.tell(trial, x * x)
            done += 1
        except Exception:  # counted, not hidden: the target is zero
            errors += 1
    out.put((done, errors))


def _fresh_url(backend: str, tmp: str) -> tuple[str, Callable[[], None]]:
    if backend == "sqlite":
        return f"sqlite:///{tmp}/{uuid.uuid4().hex}.db", lambda: None
    if backend == "journal":
        return f"journal:///{tmp}/{uuid.uuid4().hex}.log", lambda: None
    if backend == "redis":
        return REDIS_URL, lambda: None
    db = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{db}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE "{db}" WITH (FORCE)'))
        admin.dispose()

    return POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{db}", drop


def measure(backend: str, workers: int, seconds: float, epochs: int, tmp: str) -> tuple[float, int]:
    url, cleanup = _fresh_url(backend, tmp)
    name = f"bench-{uuid.uuid4().hex[:8]}"
    optuna.create_study(study_name=name, storage=open_storage(url))
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    start = time.time() + 2.0 + 0.3 * workers  # after every process has imported optuna
    procs = [
        ctx.Process(target=_worker, args=(url, name, start, seconds, epochs, out))
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join()
    cleanup()
    return sum(d for d, _ in results) / seconds, sum(e for _, e in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--backends", default="sqlite,journal,redis,postgresql")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    counts = [int(w) for w in args.workers.split(",")]
    print(
        f"Trial bookkeeping throughput (ask + {args.epochs} reports + tell, trivial objective), "
        f"trials/s, median of {args.repeats} x {args.seconds:g} s windows"
    )
    print(
        f"{'backend':>10}  " + "  ".join(f"{w:>2} worker(s)" for w in counts) + "  errors  8 vs 1"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            rates: dict[int, list[float]] = {w: [] for w in counts}
            errors = 0
            for _ in range(args.repeats):
                for w in counts:
                    rate, err = measure(backend, w, args.seconds, args.epochs, tmp)
                    rates[w].append(rate)
                    errors += err
            med = {w: statistics.median(r) for w, r in rates.items()}
            ratio = f"{med[counts[-1]] / med[counts[0]]:.2f}x" if med[counts[0]] else "-"
            cells = "  ".join(f"{med[w]:11.1f}" for w in counts)
            print(f"{backend:>10}  {cells}  {errors:6d}  {ratio}", flush=True)


if __name__ == "__main__":
    main()
