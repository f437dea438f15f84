"""Creating and resuming a study: its storage, sampler, pruner, provenance and queue.

Grid search enqueues every grid point once, up front; workers then only take queued
trials, and Optuna hands each queued trial to exactly one worker, so no point repeats.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import logging
import random
import time
import warnings
from pathlib import Path
from types import ModuleType

import optuna

from pipeline.config import StudyConfig
from pipeline.exceptions import ConfigError, UsageError
from pipeline.schedulers import population_of
from pipeline.search import grid_points, make_pruner, make_sampler
from pipeline.storages import mask_url, open_storage
from pipeline.study._branch import import_trials, warm_start
from pipeline.study._drift import DEFINITION_ATTR, check_resume, definition
from pipeline.study._grid import grid_values_of, new_grid_points
from pipeline.study._provenance import note, record
from pipeline.training import TrialInterrupted, TrialSkipped

GRID_ATTR = "grid_points"  # study user attribute: how many grid points were queued
GRID_VALUES_ATTR = "grid_values"  # ... and the values per parameter they were made of
PREPARED_ATTR = "prepared"  # study user attribute: note written and queue filled
PREPARE_WAIT_S = 120.0  # how long others wait for the creator before finishing for it


def set_optuna_logging(level: int = logging.WARNING) -> None:
    """The one place that sets Optuna's log level: warnings in the command's process,
    errors only in workers (the live table shows their trials)."""
    optuna.logging.set_verbosity(level)
    optimize_log = logging.getLogger("optuna.study._optimize")
    if not any(isinstance(f, _NoSkippedTrials) for f in optimize_log.filters):
        optimize_log.addFilter(_NoSkippedTrials())


class _NoSkippedTrials(logging.Filter):
    """Optuna logs a trial that raised as failed, with its traceback. Two ends are
    routine and say nothing in the log: a trial skipped because other workers met the
    budget first (marked skipped), and one a stop signal interrupted (marked interrupted
    and re-queued; a SLURM task's log held its traceback at every preemption)."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped: set[str] = set()  # "Trial 24 failed": its second line goes too

    def filter(self, record: logging.LogRecord) -> bool:
        head = " ".join(record.getMessage().split()[:3])
        if record.exc_info and isinstance(record.exc_info[1], TrialSkipped | TrialInterrupted):
            self.skipped.add(head)
            return False
        return head not in self.skipped


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
    """Create or load the study with this worker's sampler and the study's pruner.

    The sampler is seeded from the study's seed, the worker and how many trials the
    study already holds, so that a resumed study draws new configurations.
    """
    study = optuna.create_study(
        study_name=config.study_name,
        storage=storage,
        pruner=make_pruner(config.pruner, config.max_epochs),
        directions=config.directions,
        load_if_exists=True,
    )
    progress = len(study.get_trials(deepcopy=False))
    study.sampler = make_sampler(config.sampler, config.search_space, worker, progress)
    return study


def prepare_study(
    config: StudyConfig,
    storage: optuna.storages.BaseStorage,
    joining: bool = False,
    branch_from: str | None = None,
    note: bool = True,
) -> optuna.Study:
    """Create or resume the study, check that the file still means what the study's
    trials mean, record provenance, queue the study's ``enqueue`` configurations and, for
    grid search, the grid.

    Workers often start together (a SLURM array, a Kubernetes Job). Creation is atomic in
    every storage, so exactly one process creates the study; it writes the note and fills
    the queue, then marks the study prepared. Every other process waits for that mark
    before it returns, so none samples while the queue is still being filled.

    Args:
        joining: A worker joining a study that may already run elsewhere: it records
            provenance and queues new grid points only if it is the one that creates it.
        branch_from: A new study imports the valid finished trials of this one.
        note: Write the dashboard's note on a new study (``tune`` writes it itself, on
            every run, once its workers run).

    Raises:
        ConfigError: the file changes what the trials of the stored study mean.
    """
    try:
        study = optuna.create_study(
            study_name=config.study_name,
            storage=storage,
            sampler=make_sampler(config.sampler, config.search_space),
            pruner=make_pruner(config.pruner, config.max_epochs),
            directions=config.directions,
        )
    except optuna.exceptions.DuplicatedStudyError:
        study = load_study(config, storage)
        if not _wait_until_prepared(study):  # its creator died half-way: finish for it
            _fill(study, storage, config, branch_from, again=True, note=note)
        check_resume(study, definition(config))
        if joining:
            return study
    else:
        _fill(study, storage, config, branch_from, again=False, note=note)
        record(study, config)
        return study
    record(study, config)
    if config.sampler.name == "grid":
        _queue_grid(study, config)
    return study


def _fill(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    config: StudyConfig,
    branch_from: str | None,
    again: bool,
    note: bool = True,
) -> None:
    """Everything a new study holds before any worker samples: metric names, definition,
    note, branched trials, ``enqueue`` and the grid; then the mark that it is prepared.
    ``again``: another process may have done part of it; queue no point twice."""
    with warnings.catch_warnings():  # experimental since 3.2; used on purpose
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(config.metric_names)  # else the dashboard says "Objective 0"
    study.set_user_attr(DEFINITION_ATTR, definition(config))
    if note:
        write_note(study, config)
    if branch_from is not None and not (again and study.get_trials(deepcopy=False)):
        _branch(study, storage, branch_from, config)
    if config.warm_start is not None and not (again and study.get_trials(deepcopy=False)):
        try:  # an earlier study's best, queued before enqueue:
            warm_start(study, storage, config.storage, config.warm_start, config.search_space)
        except ConfigError:  # refused: no half-made study to resume
            optuna.delete_study(study_name=config.study_name, storage=storage)
            raise
    for point in config.enqueue:  # configurations to run first, queued once
        study.enqueue_trial(point, skip_if_exists=again)
    if config.sampler.name == "grid":
        _queue_grid(study, config, skip_if_exists=again)
    population = population_of(config)
    if population is not None and not (again and study.get_trials(deepcopy=False)):
        population.seed_population(study)  # generation 0, once
    study.set_user_attr(PREPARED_ATTR, True)


def _wait_until_prepared(study: optuna.Study) -> bool:
    """Wait for the process that created ``study`` to fill it; False if it never did
    within ``PREPARE_WAIT_S`` (it died half-way)."""
    deadline = time.monotonic() + PREPARE_WAIT_S
    while True:
        attrs = study.user_attrs
        # "config" (provenance) is recorded after the queue: a study made before the
        # prepared mark existed is prepared when it has it.
        if PREPARED_ATTR in attrs or "config" in attrs:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def write_note(study: optuna.Study, config: StudyConfig) -> None:
    """The study's description as its note in optuna-dashboard (replacing the last one),
    written by optuna-dashboard's own ``save_note``."""
    _dashboard_notes().save_note(study, note(config))


@functools.cache
def _dashboard_notes() -> ModuleType:
    """optuna-dashboard's note module (``save_note``, ``get_note``). Importing the
    package imports its server and scikit-learn, 1.5 s of CPU in every ``tune``; the
    module itself needs only Optuna, so it is loaded from its file, under a name of its
    own, where it is found. Elsewhere the package is imported."""
    spec = importlib.util.find_spec("optuna_dashboard")  # finds it, runs none of it
    if spec is not None and spec.submodule_search_locations:
        path = Path(spec.submodule_search_locations[0]) / "_note.py"
        found = importlib.util.spec_from_file_location("pipeline._dashboard_notes", path)
        if path.is_file() and found is not None and found.loader is not None:
            module = importlib.util.module_from_spec(found)
            found.loader.exec_module(module)
            if hasattr(module, "save_note"):
                return module
    import optuna_dashboard

    return optuna_dashboard


def _branch(
    study: optuna.Study, storage: optuna.storages.BaseStorage, parent: str, config: StudyConfig
) -> None:
    try:
        source = optuna.load_study(study_name=parent, storage=storage)
    except KeyError:
        raise UsageError(f"--branch: there is no study {parent!r} to branch from") from None
    import_trials(source, study, definition(config), config.search_space)


def _queue_grid(study: optuna.Study, config: StudyConfig, skip_if_exists: bool = False) -> None:
    """Queue the grid once; later, queue only the points that added grid values make."""
    if GRID_ATTR not in study.user_attrs:
        points = grid_points(config.search_space)
        if config.n_trials is not None and config.n_trials < len(points):
            points = random.Random(config.sampler.seed).sample(points, config.n_trials)
        total = len(points)
    else:
        stored = study.user_attrs.get(GRID_VALUES_ATTR, grid_values_of(config.search_space))
        points = new_grid_points(stored, config.search_space)
        total = int(study.user_attrs[GRID_ATTR]) + len(points)
    for point in points:
        study.enqueue_trial(point, skip_if_exists=skip_if_exists)
    study.set_user_attr(GRID_ATTR, total)
    study.set_user_attr(GRID_VALUES_ATTR, grid_values_of(config.search_space))


def open_existing(storage_url: str, name: str, study_file: str | None = None) -> optuna.Study:
    """A study that must already exist (for ``best``, ``export``, ``report``...).

    Args:
        study_file: The study file the name and storage came from, if any: the messages
            name it rather than the flags.

    Raises:
        UsageError: the storage holds no study (the message says how to create one), or
            none of that name (it names the closest and lists those that are).
    """
    try:
        storage = open_storage(storage_url, readers_only=True, must_exist=True)
    except UsageError as exc:
        raise UsageError(f"{exc}; {create_hint(study_file)}") from None
    names = [
        s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
    ]
    if name not in names:
        where = f"{study_file}: study_name" if study_file else "--study-name"
        if not names:
            raise UsageError(
                f"{where}: {mask_url(storage_url)} holds no study yet; {create_hint(study_file)}"
            )
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UsageError(
            f"{where}: no study {name!r} in {mask_url(storage_url)}; "
            f"{hint}studies there: {', '.join(names)}"
        )
    return optuna.load_study(study_name=name, storage=storage)


def create_hint(study_file: str | None = None) -> str:
    """How a user puts a study into a storage: the hint where a command found none."""
    return f"`make tune STUDY={study_file or 'studies/<file>.yaml'}` creates one"


__all__ = [
    "GRID_ATTR",
    "create_hint",
    "load_study",
    "open_existing",
    "prepare_study",
    "set_optuna_logging",
    "storage_for",
]
