"""The study's note for optuna-dashboard, written beside the workers at idle priority.

optuna-dashboard imports scikit-learn when it is imported: about 1.5 s of CPU, which in
``tune``'s own process would compete with the first trials for cores the workers fill.
Where the workers are forked, ``tune`` forks one more process for the note and gives it
the lowest CPU priority (nice 19): it runs on time the trials leave idle (between
trials, at the study's tail) and the note is in the study by the time ``tune`` prints
its summary. Where workers are spawned, the note is written in ``tune``'s process at its
first poll, as it is when other threads run in it (MLflow's client), which a forked
child could find holding a lock. A storage outage fails the write; the next poll tries
again.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading

import optuna
from optuna.storages import BaseStorage

from pipeline.config import StudyConfig
from pipeline.signals import die_with_parent
from pipeline.storages import STORAGE_ERRORS, release_connections
from pipeline.study import write_note

IDLE_PRIORITY = 19  # the niceness of the process that writes the note


class PendingNote:
    """The note of ``study``, written once; :meth:`poll` moves it on, :meth:`finish`
    waits for it.

    Args:
        method: How ``tune`` starts its workers: "fork" writes from a forked process at
            idle priority, anything else in this process.
    """

    def __init__(
        self, study: optuna.Study, config: StudyConfig, storage: BaseStorage, method: str
    ) -> None:
        self.study = study
        self.config = config
        self.storage = storage
        self.method = method
        self.written = False
        self.writer: mp.process.BaseProcess | None = None

    def poll(self) -> None:
        """Start the writer, or see whether it is done (and start another if it failed)."""
        if self.written:
            return
        if self.method != "fork" or threading.active_count() > 1:
            write_note(self.study, self.config)
            self.written = True
            return
        if self.writer is not None:
            if self.writer.is_alive():
                return
            self.written = self.writer.exitcode == 0
            self.writer = None
            if self.written:
                return
        release_connections(self.storage)  # the child must not share this process's
        writer = mp.get_context("fork").Process(
            target=_write_at_idle_priority,
            args=(self.study, self.config, os.getpid()),
            name="dashboard-note",
            daemon=True,
        )
        writer.start()
        self.writer = writer

    def finish(self) -> None:
        """Wait for the writer; write the note here if it failed (the storage is back)."""
        if self.writer is not None:
            self.writer.join()
            self.written = self.writer.exitcode == 0
            self.writer = None
        if not self.written:
            self.method = "here"
            self.poll()

    def stop(self) -> None:
        """After a stop signal: end the writer; the next run writes the note."""
        if self.writer is not None:
            self.writer.kill()
            self.writer.join()
            self.writer = None


def _write_at_idle_priority(study: optuna.Study, config: StudyConfig, parent: int) -> None:
    die_with_parent(parent)
    os.nice(IDLE_PRIORITY)
    try:
        write_note(study, config)
    except STORAGE_ERRORS:
        sys.exit(1)  # quietly: the next poll tries again


__all__ = ["PendingNote"]
