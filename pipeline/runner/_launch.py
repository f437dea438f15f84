"""Starting workers: ``pipeline tune`` (N local processes and the live table) and
``pipeline worker`` (this process joins a study that may run on other machines too).

``tune`` prepares the study, places its workers on CPU threads and GPUs, starts them,
polls the live reporter until they end, and turns how they ended into an exit code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing as mp
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.synchronize import Event
from typing import TextIO

import optuna
import torch
from optuna.storages import BaseStorage

from pipeline.artifacts import location, open_location
from pipeline.config import StudyConfig
from pipeline.exceptions import (
    EXIT_FAILING,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STORAGE_LOST,
    EXIT_USAGE,
    ConfigError,
    StorageLost,
    exit_code_of,
)
from pipeline.packing import check_device
from pipeline.results import print_final_evaluation
from pipeline.runner._hints import end_tracking
from pipeline.runner._live import LiveReporter
from pipeline.runner._note import PendingNote
from pipeline.runner._placement import (
    Slot,
    resolve_device,
    start_method,
    visible_gpus,
    worker_slots,
)
from pipeline.runner._watch import Supervisor, last_words
from pipeline.runner._worker import POLL_SECONDS, open_with_retry, run_worker
from pipeline.schedulers import check_shared_checkpoints
from pipeline.signals import StopOnSignal, die_with_parent
from pipeline.storages import (
    STORAGE_ERRORS,
    mask_url,
    release_connections,
    report_thread_errors,
)
from pipeline.study import (
    BRANCH_ATTR,
    RUNS_ATTR,
    budget_for,
    note,
    set_optuna_logging,
)
from pipeline.tracking import open_tracking
from pipeline.training import warm_up
from pipeline.trial import release_orphans


def tune(
    config: StudyConfig,
    quiet: bool = False,
    out: TextIO = sys.stdout,
    fresh_process: bool = False,
    branch_from: str | None = None,
) -> int:
    """Run a study with ``config.workers`` local worker processes; return an exit code.

    Args:
        fresh_process: This process has run no torch computation yet, so workers may be
            forked from it (see :func:`start_method`).
        branch_from: Create ``config.study_name`` from this study's valid trials.

    Raises:
        ConfigError: the study cannot run here (CUDA asked for and missing, GPUs short).
        StorageLost: the storage stayed unreachable before any worker started.
    """
    device = resolve_device(config.device)  # refuse cuda without CUDA once, not per worker
    check_device(config.packing, device)  # and packing without a GPU
    study, storage = open_with_retry(config, joining=False, branch_from=branch_from)
    tracking = open_tracking(
        config.tracking, config.study_name, config.metric, lambda: note(config), "pipeline"
    )
    _say_what_changed(study, branch_from, out)
    release_orphans(study, config.max_retries, lambda line: print(line, file=out), storage)
    deadline = time.time() + config.timeout if config.timeout is not None else None
    budget = budget_for(config, study, deadline)
    slots = worker_slots(config, budget.remaining(study))
    reporter = LiveReporter.for_study(study, config, budget.n_trials, quiet=quiet, out=out)
    reporter.header(len(slots), slots[0].threads)
    if budget.admit(study) == "stop" and deadline is None:
        reporter.poll()
        print("The study's budget is already met; raise --n-trials to run more.", file=out)
        return reporter.summary()

    method = start_method(config.device, config.storage, fresh_process)
    if method == "fork":  # what every worker would pay, paid once and inherited
        release_connections(storage)
        warm_up()
    ctx = mp.get_context(method)
    stop = ctx.Event()
    supervisor = Supervisor(
        study,
        storage,
        [],
        lambda i: _restart(ctx, config, slots[i], stop, deadline, storage, method),
        trial_timeout=config.trial_timeout,
        max_retries=config.max_retries,
        say=lambda line: print(line, file=out, flush=True),
    )
    pending = PendingNote(study, config)
    try:
        for slot in slots:
            supervisor.procs.append(_start(ctx, config, slot, stop, deadline))
        if tracking is not None:  # after the fork: MLflow's client starts threads
            tracking.start_study(study)
        # During an outage the workers report and retry; the table resumes after it.
        supervisor.watch(lambda: _quietly(pending.poll, reporter.poll), POLL_SECONDS)
    except KeyboardInterrupt as interrupt:  # Ctrl-C, SIGTERM or SIGHUP (see signals.py)
        return _interrupted(interrupt, stop, supervisor, reporter, out)
    reporter.hints += end_tracking(tracking, study)  # where its runs are shown
    _quietly(pending.poll)  # the storage was away at every poll so far
    try:
        return _finish(study, config, reporter, supervisor.procs, device, out)
    finally:  # its last connection closed, SQLite writes its log into the file
        release_connections(storage)


def _interrupted(
    interrupt: KeyboardInterrupt,
    stop: Event,
    supervisor: Supervisor,
    reporter: LiveReporter,
    out: TextIO,
) -> int:
    """After Ctrl-C, SIGTERM or SIGHUP: the workers end their epoch, their trials are
    re-queued; the exit code says which signal."""
    stop.set()
    print("\nInterrupted: running trials stop after their current epoch ...", file=out, flush=True)
    supervisor.join()
    _quietly(reporter.poll)
    print("Stopped. Run the same command again to resume the study.", file=out, flush=True)
    return exit_code_of(interrupt)


def _quietly(*polls: Callable[[], object]) -> None:
    for poll in polls:  # each on its own: one that meets an outage skips no other
        with contextlib.suppress(*STORAGE_ERRORS):
            poll()


def _restart(
    ctx: mp.context.BaseContext,
    config: StudyConfig,
    slot: Slot,
    stop: Event,
    deadline: float | None,
    storage: BaseStorage,
    method: str,
) -> mp.process.BaseProcess:
    """A replacement worker; a forked one must not share this process's connections."""
    if method == "fork":
        release_connections(storage)
    return _start(ctx, config, slot, stop, deadline)


def _say_what_changed(study: optuna.Study, branch_from: str | None, out: TextIO) -> None:
    attrs = study.user_attrs
    branched = attrs.get(BRANCH_ATTR)
    if branch_from is not None and branched and branched.get("study") == branch_from:
        print(
            f"Branched from study {branch_from!r}: imported {len(branched['trials'])} finished "
            "trial(s) valid under this file",
            file=out,
        )
    runs = attrs.get(RUNS_ATTR, [])
    if len(runs) > 1 and runs[-1]["changes"]:
        print(f"Changed since the last run: {'; '.join(runs[-1]['changes'])}", file=out)


def _start(
    ctx: mp.context.BaseContext,
    config: StudyConfig,
    slot: Slot,
    stop: Event,
    deadline: float | None,
) -> mp.process.BaseProcess:
    """Start one worker process; a spawned one is pinned to its GPU(s) by the
    environment it inherits at start."""
    with visible_gpus(slot.visible_gpus):
        proc = ctx.Process(  # type: ignore[attr-defined]
            target=_worker_process,
            args=(config, slot, stop, deadline, os.getpid()),
            name=f"worker-{slot.index}",
        )
        proc.start()
    return proc


def _worker_process(
    config: StudyConfig, slot: Slot, stop: Event, deadline: float | None, parent: int
) -> None:
    die_with_parent(parent)
    # Ctrl-C reaches every process of the terminal's group, SIGTERM may too: let the
    # running epoch end and the trial be recorded instead of dying mid-write.
    signals = StopOnSignal(stop.set)
    report_thread_errors(f"worker {slot.index}")
    set_optuna_logging(logging.ERROR)
    torch.set_num_threads(slot.threads)
    if slot.visible_gpus is not None:  # pinned by CUDA_VISIBLE_DEVICES: its GPU is "cuda"
        config = dataclasses.replace(config, device="cuda")
    try:
        ran = run_worker(config, slot.index, deadline, should_stop=stop.is_set)
    except StorageLost as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(EXIT_STORAGE_LOST)
    except ConfigError as exc:
        print(f"error: {exc.located(config.source)}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USAGE)
    if signals.signum is not None or stop.is_set():
        sys.exit(EXIT_INTERRUPTED)  # the parent must not take the budget for met
    sys.exit(EXIT_FAILING if ran < 0 else EXIT_OK)


def _finish(
    study: optuna.Study,
    config: StudyConfig,
    reporter: LiveReporter,
    procs: Sequence[mp.process.BaseProcess],
    device: torch.device,
    out: TextIO,
) -> int:
    """The exit code of a run whose workers all ended, after the summary and the final
    evaluation of the best checkpoint."""
    stopped = [p for p in procs if p.exitcode == EXIT_INTERRUPTED]
    if stopped:  # a signal reached the workers only (a process group, or a scheduler)
        print(
            f"Interrupted: {len(stopped)} worker(s) were stopped by a signal before the budget "
            "was met. Run the same command again to resume the study.",
            file=out,
            flush=True,
        )
        return EXIT_INTERRUPTED
    failed = [p for p in procs if p.exitcode not in (0, None)]
    if failed and all(p.exitcode == EXIT_USAGE for p in failed):
        return EXIT_USAGE  # each said why in one line (labels that do not fit the task...)
    if any(p.exitcode == EXIT_STORAGE_LOST for p in failed):
        raise StorageLost(
            f"the workers lost the storage {mask_url(config.storage)} (see above); "
            "finished trials are kept: run the same command again once it is back"
        )
    reporter.poll()
    code = reporter.summary()
    if code == EXIT_OK and config.keep_checkpoints:
        print_final_evaluation(
            study,
            open_location(config.storage, config.artifacts),
            location(config.storage, config.artifacts),
            device,
            out,
        )
    if code == EXIT_OK and not reporter.quiet:
        reporter.next_steps()
    if failed:
        names = ", ".join(p.name or "worker" for p in failed)
        print(f"error: {names} exited with an error (see above)", file=sys.stderr)
        for proc in failed:
            last_words(study, proc)
        return 1
    return code


def join_study(config: StudyConfig, worker: int, threads: int, timeout: float | None = None) -> int:
    """``pipeline worker``: run trials in this process until the study's budget is met;
    return an exit code. SIGINT and SIGTERM end the running epoch, record the trial and
    re-queue it."""
    stop = threading.Event()
    signals = StopOnSignal(stop.set)
    report_thread_errors(f"worker {worker}")
    torch.set_num_threads(threads)
    deadline = time.time() + timeout if timeout is not None else None
    study, storage = open_with_retry(config, joining=True)
    if config.scheduler is not None:
        check_shared_checkpoints(study, config.artifacts)
    tracking = open_tracking(
        config.tracking, config.study_name, config.metric, lambda: note(config), f"worker {worker}"
    )
    if tracking is not None:
        tracking.start_study(study)
    release_orphans(study, config.max_retries, lambda line: print(line, file=sys.stderr), storage)
    ran = run_worker(config, worker, deadline, should_stop=stop.is_set)
    if stop.is_set():
        print(f"worker {worker}: interrupted; its running trial was re-queued", file=sys.stderr)
        return signals.exit_code
    if ran < 0:
        return EXIT_FAILING
    if tracking is not None:
        tracking.end_study(study)
    print(f"worker {worker}: the study's budget is met; this worker ran {ran} trial(s)")
    return EXIT_OK


__all__ = ["join_study", "tune"]
