"""Workers and the trial budget: N processes pulling trials from one shared storage.

``tune`` prepares the study (provenance, the grid queue), starts ``workers`` worker
processes and shows their progress; each worker loads the task's data once and runs
trials until the budget is met. The budget counts finished trials (complete or pruned)
across all workers, so a study ends with exactly ``n_trials`` of them:

- before each trial a worker checks that finished + running + queued trials leave room;
- after the trial is created it checks again by trial number, since another worker may
  have been admitted in the same instant; a trial created in that race is recorded as
  failed with reason "skipped" before anything is sampled or trained.

Grid search enqueues every grid point once, up front; workers then only take queued
trials, and Optuna hands each queued trial to exactly one worker, so no point repeats.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing as mp
import os
import random
import signal
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from typing import Literal, TextIO

import optuna
import redis.exceptions
import sqlalchemy.exc
import torch
from optuna.trial import FrozenTrial, TrialState

from pipeline import checkpoints, provenance, space
from pipeline.config import ConfigError, StudyConfig
from pipeline.objective import Objective, original_trial_number, system_attrs
from pipeline.pruners import make_pruner
from pipeline.reporter import LiveReporter
from pipeline.resources import Slot, plan
from pipeline.samplers import make_sampler
from pipeline.storage import mask_url, open_storage, release_connections, scheme_of
from pipeline.tasks import resolve_task
from pipeline.train import warm_up

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
IN_FLIGHT = (TrialState.RUNNING, TrialState.WAITING)
GRID_ATTR = "grid_points"  # study user attribute: how many grid points were queued
# A worker whose trials keep failing stops rather than burn the study's time; the
# failures' reasons are in the trials' user attributes.
MAX_CONSECUTIVE_FAILURES = 5
EXIT_FAILING = 3  # a worker's trials kept failing
EXIT_STORAGE_LOST = 4  # the storage stayed unreachable
POLL_SECONDS = 0.5

Admission = Literal["run", "wait", "stop"]

# What an unreachable database, Redis server or proxy raises through Optuna.
STORAGE_ERRORS: tuple[type[BaseException], ...] = (
    optuna.exceptions.StorageInternalError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    redis.exceptions.ConnectionError,
    ConnectionRefusedError,
    ConnectionResetError,
)


def resolve_device(name: str, config_source: str = "<memory>") -> torch.device:
    """``auto`` picks CUDA when present; anything else is taken as written."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            config_source,
            "device",
            f"{name!r} was asked for but CUDA is not available; use auto or cpu",
        )
    return device


def storage_for(config: StudyConfig) -> optuna.storages.BaseStorage:
    """The study's storage with its heartbeat and stale-trial retry settings."""
    return open_storage(
        config.storage,
        heartbeat_interval=config.heartbeat_interval,
        grace_period=config.grace_period,
        stale_retries=max(1, config.max_retries),
    )


def load_study(
    config: StudyConfig, storage: optuna.storages.BaseStorage, worker: int = 0
) -> optuna.Study:
    """Create or load the study with this worker's sampler and the study's pruner."""
    return optuna.create_study(
        study_name=config.study_name,
        storage=storage,
        sampler=make_sampler(config.sampler, config.search_space, worker),
        pruner=make_pruner(config.pruner, config.max_epochs),
        direction=config.direction,
        load_if_exists=True,
    )


def prepare_study(
    config: StudyConfig, storage: optuna.storages.BaseStorage, joining: bool = False
) -> optuna.Study:
    """Create or resume the study, record provenance, queue the study's ``enqueue``
    configurations and, for grid search, the grid.

    Args:
        joining: A worker joining a study that may already run elsewhere: it records
            provenance and queues the grid only if it is the one that creates the study
            (creation is atomic in every storage, so exactly one worker does).
    """
    try:
        study = optuna.create_study(
            study_name=config.study_name,
            storage=storage,
            sampler=make_sampler(config.sampler, config.search_space),
            pruner=make_pruner(config.pruner, config.max_epochs),
            direction=config.direction,
        )
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = load_study(config, storage)
        created = False
    if joining and not created:
        return study
    provenance.record(study, config)
    if created:  # configurations to run first, queued once by whoever creates the study
        for point in config.enqueue:
            study.enqueue_trial(point)
    if config.sampler.name == "grid" and GRID_ATTR not in study.user_attrs:
        points = space.grid_points(config.search_space)
        if config.n_trials is not None and config.n_trials < len(points):
            points = random.Random(config.sampler.seed).sample(points, config.n_trials)
        for point in points:
            study.enqueue_trial(point)
        study.set_user_attr(GRID_ATTR, len(points))
    return study


@dataclass
class Budget:
    """When a worker may start a trial, and whether a new trial is one too many.

    Args:
        n_trials: Finished trials the study needs; None for no limit.
        deadline: ``time.time()`` after which no trial starts; None for none.
        queue_only: Grid search: run queued trials only, never sample new ones.
        max_total_epochs: Epochs all trials together may train (a running trial counts
            as ``max_epochs`` until it ends); None for no limit.
    """

    n_trials: int | None
    deadline: float | None = None
    queue_only: bool = False
    max_total_epochs: int | None = None
    max_epochs: int = 1

    def admit(self, study: optuna.Study) -> Admission:
        if self.deadline is not None and time.time() >= self.deadline:
            return "stop"
        trials = study.get_trials(deepcopy=False)
        waiting = sum(t.state == TrialState.WAITING for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        finished = sum(t.state in FINISHED for t in trials)
        if self.max_total_epochs is not None:
            trained = sum(
                len(t.intermediate_values) for t in trials if t.state != TrialState.RUNNING
            )
            if trained + (running + 1) * self.max_epochs > self.max_total_epochs:
                return "wait" if running else "stop"
        if self.queue_only:
            return "run" if waiting else ("wait" if running else "stop")
        if self.n_trials is None:
            return "run"
        if finished >= self.n_trials:
            return "stop"
        if waiting or finished + running < self.n_trials:
            return "run"
        return "wait"

    def remaining(self, study: optuna.Study) -> int:
        """Trials still to start (queued ones included); a large number for no limit."""
        trials = study.get_trials(deepcopy=False)
        waiting = sum(t.state == TrialState.WAITING for t in trials)
        if self.queue_only:
            return waiting
        if self.n_trials is None:
            return sys.maxsize
        busy = sum(t.state in (*FINISHED, TrialState.RUNNING) for t in trials)
        return max(waiting, self.n_trials - busy)

    def is_surplus(self, study: optuna.Study, trial: optuna.Trial) -> bool:
        if self.queue_only:
            attrs = system_attrs(trial)
            return "fixed_params" not in attrs and "failed_trial" not in attrs
        if self.n_trials is None:
            return False
        ahead = sum(
            t.number < trial.number and t.state in FINISHED + IN_FLIGHT
            for t in study.get_trials(deepcopy=False)
        )
        return ahead >= self.n_trials


def budget_for(config: StudyConfig, study: optuna.Study, deadline: float | None) -> Budget:
    """The budget a worker enforces for this study."""
    grid = config.sampler.name == "grid"
    return Budget(
        n_trials=study.user_attrs.get(GRID_ATTR) if grid else config.n_trials,
        deadline=deadline,
        queue_only=grid,
        max_total_epochs=config.max_total_epochs,
        max_epochs=config.max_epochs,
    )


def requeue(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue a re-run of ``trial`` with the same parameters, keeping Optuna's retry
    bookkeeping (``failed_trial``, ``retry_history``) so retries chain."""
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            system_attrs={"failed_trial": original_trial_number(trial), "retry_history": history},
        )
    )


def storage_error_in(exc: BaseException) -> BaseException | None:
    """The storage error behind ``exc``, if any. Optuna's optimize loop can mask a failed
    commit with an error of its own (an UnboundLocalError in its ``finally``), so the
    whole chain of causes is searched."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, STORAGE_ERRORS):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class StorageLost(Exception):
    """The storage stayed unreachable for longer than ``storage_retry_seconds``."""


class _Outage:
    """Retries with exponential backoff while the storage is unreachable.

    Finished trials are already committed; a trial that was running when the storage
    went away is failed by the heartbeat of whichever worker next reaches the database
    and re-queued with its parameters.
    """

    def __init__(self, config: StudyConfig, worker: int, log: TextIO) -> None:
        self.limit = config.storage_retry_seconds
        self.url = mask_url(config.storage)
        self.who = f"worker {worker}" if worker >= 0 else "pipeline"
        self.log = log
        self.since: float | None = None
        self.delay = 1.0

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self.since = self.since if self.since is not None else now
        waited = now - self.since
        reason = mask_url(
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        )
        if waited + self.delay > self.limit:
            raise StorageLost(
                f"{self.who}: the storage {self.url} has been unreachable for "
                f"{waited:.0f} s ({reason}); giving up. Finished trials are safe in it; "
                "start the worker again once it is back (storage_retry_seconds sets the wait)"
            ) from exc
        print(
            f"{self.who}: storage {self.url} unreachable ({reason[:160]}); "
            f"retrying in {self.delay:.0f} s",
            file=self.log,
            flush=True,
        )
        time.sleep(self.delay)
        self.delay = min(self.delay * 2, 15.0)

    def ok(self) -> None:
        if self.since is not None:
            print(f"{self.who}: storage {self.url} is back", file=self.log, flush=True)
        self.since = None
        self.delay = 1.0


def open_with_retry(config: StudyConfig, joining: bool, log: TextIO = sys.stderr) -> optuna.Study:
    """:func:`prepare_study` on the study's storage, waiting out an unreachable storage
    for up to ``storage_retry_seconds`` (a worker may start before its database)."""
    outage = _Outage(config, -1, log)
    while True:
        try:
            study = prepare_study(config, storage_for(config), joining=joining)
        except STORAGE_ERRORS as exc:
            outage.failed(exc)
            continue
        outage.ok()
        return study


def run_worker(
    config: StudyConfig,
    worker: int = 0,
    deadline: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    log: TextIO = sys.stderr,
) -> int:
    """Run trials until the budget is met; return the number of trials this worker ran,
    negated when it stopped because its trials kept failing.

    Loads the task's data once, onto the device, for all the trials it runs.

    Raises:
        StorageLost: the storage stayed unreachable past ``storage_retry_seconds``.
    """
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    device = resolve_device(config.device)
    task = resolve_task(config.task, config.source)
    splits = task.load(task.resolve_options(config.task.options)).to(device)
    if config.channels_last and splits.train_x.dim() == 4:
        splits = splits.to(device, memory_format=torch.channels_last)
    warm_up()
    outage = _Outage(config, worker, log)
    while True:
        try:
            study = load_study(config, storage_for(config), worker)
            budget = budget_for(config, study, deadline)
            break
        except STORAGE_ERRORS as exc:
            outage.failed(exc)
    outage.ok()
    store = (
        checkpoints.open_store(checkpoints.artifact_dir(config))
        if config.keep_checkpoints
        else None
    )
    objective = Objective(
        config,
        task,
        splits,
        device,
        should_stop=should_stop,
        is_surplus=lambda trial: budget.is_surplus(study, trial),
        worker=worker,
        store=store,
    )
    failures = 0
    ran = 0

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        nonlocal failures
        if trial.state != TrialState.FAIL:
            failures = 0
            if store is not None and trial.state == TrialState.COMPLETE:
                checkpoints.keep_top(study, store, config.keep_checkpoints)
            return
        reason = str(trial.user_attrs.get("fail_reason", trial.system_attrs.get("fail_reason", "")))
        if reason.startswith("skipped"):
            return
        if reason == "interrupted":
            requeue(study, trial)
            return
        failures += 1
        retries = len(trial.system_attrs.get("retry_history", []))
        retry = retries < config.max_retries
        print(
            f"worker {worker}: trial {trial.number} failed: {reason}"
            + (f" (retry {retries + 1} of {config.max_retries} queued)" if retry else ""),
            file=log,
            flush=True,
        )
        if retry:
            requeue(study, trial)

    while not should_stop():
        try:
            decision = budget.admit(study)
            if decision == "stop":
                break
            if decision == "wait":
                with warnings.catch_warnings():  # experimental API, used on purpose
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.storages.fail_stale_trials(study)
                outage.ok()
                time.sleep(POLL_SECONDS)
                continue
            study.optimize(
                objective,
                n_trials=1,
                catch=(Exception,),
                callbacks=[after_trial],
                gc_after_trial=False,
            )
            outage.ok()
        except optuna.exceptions.UpdateFinishedTrialError:
            # The trial was declared dead (no heartbeat during an outage) and re-queued
            # while this worker still trained it; the re-run owns it now.
            print(
                f"worker {worker}: a trial of this worker was taken over after an outage",
                file=log,
                flush=True,
            )
            continue
        except Exception as exc:
            cause = storage_error_in(exc)
            if cause is None:
                raise
            outage.failed(cause)
            continue
        ran += 1
        if failures >= MAX_CONSECUTIVE_FAILURES:
            print(
                f"worker {worker}: stopping after {failures} failed trials in a row; "
                "see the trials' fail_reason and fix the study file or the task",
                file=log,
                flush=True,
            )
            return -ran
    return ran


def _worker_process(config: StudyConfig, slot: Slot, stop: Event, deadline: float | None) -> None:
    # Ctrl-C reaches every process of the terminal's group: let the running epoch end
    # and the trial be recorded instead of dying mid-write.
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    torch.set_num_threads(slot.threads)
    if slot.visible_gpus is not None:  # pinned by CUDA_VISIBLE_DEVICES: its GPU is "cuda"
        config = dataclasses.replace(config, device="cuda")
    try:
        ran = run_worker(config, slot.index, deadline, should_stop=stop.is_set)
    except StorageLost as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(EXIT_STORAGE_LOST)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    sys.exit(EXIT_FAILING if ran < 0 else 0)


def start_method(config: StudyConfig, fresh_process: bool = False) -> str:
    """How worker processes start: forked from a fresh process on the CPU, else spawned.

    A forked worker inherits the imported modules (torch, optuna, the task) and starts
    its first trial about 3 s sooner on a 2-core machine. But a child forked after its
    parent ran a parallel torch operation hangs in its first one (libgomp's thread team
    does not survive fork), so only a caller that knows this process has not computed
    yet (``pipeline tune``) passes ``fresh_process``; ``compare``, which runs studies
    one after another in one process, and library callers get spawn. CUDA cannot be used
    in a forked child either, gRPC channels do not survive a fork, and macOS system
    libraries are not fork-safe: those are spawned too.
    """
    if (
        fresh_process
        and config.device == "cpu"
        and scheme_of(config.storage) != "grpc"
        and sys.platform == "linux"
    ):
        return "fork"
    return "spawn"


def worker_slots(config: StudyConfig, remaining: int) -> list[Slot]:
    """Where this machine's workers run: threads each and, on CUDA, which GPU(s)."""
    gpu_ids: list[str] = []
    pinned = None
    gpus_per_trial = config.gpus_per_trial
    if config.device.startswith("cuda") or (config.device == "auto" and torch.cuda.is_available()):
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpu_ids = (
            [v.strip() for v in visible.split(",") if v.strip()]
            if visible is not None
            else [str(i) for i in range(torch.cuda.device_count())]
        )
        if ":" in config.device:
            pinned = gpu_ids[int(config.device.split(":")[1])]
        gpus_per_trial = gpus_per_trial or 1.0
    cores = os.cpu_count() or 1
    common = {
        "cores": cores,
        "cpus_per_trial": config.cpus_per_trial,
        "gpu_ids": gpu_ids,
        "gpus_per_trial": gpus_per_trial,
        "pinned_gpu": pinned,
    }
    capacity = len(plan(workers=config.workers, **common))  # type: ignore[arg-type]
    # No more workers than trials left to run: a worker without a trial would only race
    # the others for one and record it as skipped.
    return plan(workers=min(capacity, max(1, remaining)), **common)  # type: ignore[arg-type]


def tune(
    config: StudyConfig, quiet: bool = False, out: TextIO = sys.stdout, fresh_process: bool = False
) -> int:
    """Run a study with ``config.workers`` local worker processes; return an exit code.

    Args:
        fresh_process: This process has run no torch computation yet, so workers may be
            forked from it (see :func:`start_method`).
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Refuse cuda without CUDA here, once, rather than in every worker.
    resolve_device(config.device, config.source)
    try:
        study = open_with_retry(config, joining=False)
    except StorageLost as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_STORAGE_LOST
    deadline = time.time() + config.timeout if config.timeout is not None else None
    budget = budget_for(config, study, deadline)
    try:
        slots = worker_slots(config, budget.remaining(study))
    except (ValueError, IndexError) as exc:
        raise ConfigError(config.source, "gpus_per_trial", f"cannot place workers: {exc}") from None
    n_workers, threads = len(slots), slots[0].threads
    reporter = LiveReporter(study, config, budget.n_trials, quiet=quiet, out=out)
    reporter.header(n_workers, threads, mask_url(config.storage))
    if budget.admit(study) == "stop" and deadline is None:
        reporter.poll()
        print("The study's budget is already met; raise --n-trials to run more.", file=out)
        return reporter.summary()

    if start_method(config, fresh_process) == "fork":
        release_connections(study)
        ctx: mp.context.ForkContext | mp.context.SpawnContext = mp.get_context("fork")
    else:
        ctx = mp.get_context("spawn")
    stop = ctx.Event()
    procs = []
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        for slot in slots:
            # A spawned process inherits the environment at start: pin its GPU(s) here.
            if slot.visible_gpus is not None:
                os.environ["CUDA_VISIBLE_DEVICES"] = slot.visible_gpus
            proc = ctx.Process(
                target=_worker_process,
                args=(config, slot, stop, deadline),
                name=f"worker-{slot.index}",
            )
            proc.start()
            procs.append(proc)
    finally:
        if inherited is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = inherited
    try:
        while any(p.is_alive() for p in procs):
            # During an outage the workers report and retry; the table resumes after it.
            with contextlib.suppress(*STORAGE_ERRORS):
                reporter.poll()
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        stop.set()
        print(
            "\nInterrupted: running trials stop after their current epoch ...", file=out, flush=True
        )
        _join(procs)
        reporter.poll()
        print("Stopped. Run the same command again to resume the study.", file=out, flush=True)
        return 130
    failed = [p for p in procs if p.exitcode not in (0, None)]
    if any(p.exitcode == EXIT_STORAGE_LOST for p in failed):
        print(
            f"error: the workers lost the storage {mask_url(config.storage)} (see above); "
            "finished trials are kept: run the same command again once it is back",
            file=sys.stderr,
        )
        return EXIT_STORAGE_LOST
    reporter.poll()
    code = reporter.summary()
    if code == 0 and config.keep_checkpoints:
        _final_evaluation(study, config, out)
    if failed:
        names = ", ".join(p.name or "worker" for p in failed)
        print(f"error: {names} exited with an error (see above)", file=sys.stderr)
        return 1
    return code


def _final_evaluation(study: optuna.Study, config: StudyConfig, out: TextIO) -> None:
    """Reload the best trial's checkpoint and score it on the test split: proof that the
    stored model is the one that was selected."""
    from pipeline import evaluate

    store = checkpoints.open_store(checkpoints.artifact_dir(config))
    try:
        result = evaluate.run(study, store)
    except evaluate.NothingToEvaluate as exc:
        print(f"(no final evaluation: {exc})", file=out)
        return
    print(
        f"Checkpoint of trial #{result['trial']} reloaded from {checkpoints.artifact_dir(config)}: "
        f"test accuracy {result['test_accuracy']:.4f} (stored as the study's final_evaluation)",
        file=out,
        flush=True,
    )


def _join(procs: Sequence[mp.process.BaseProcess]) -> None:
    try:
        for proc in procs:
            proc.join()
    except KeyboardInterrupt:  # a second Ctrl-C: stop now
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.join()


__all__ = ["Budget", "load_study", "prepare_study", "requeue", "run_worker", "storage_for", "tune"]
