"""The study's note for optuna-dashboard, written by ``tune`` once its workers run.

``tune`` replaces the note on every run (the study file may have changed). It writes it
at its first poll rather than before the workers start, and again at the next poll when
the storage is away at that moment (a database restarting), so that a note never fails
a run; a note still unwritten when the workers end is tried once more before the summary.
"""

from __future__ import annotations

import optuna

from pipeline.config import StudyConfig
from pipeline.study import write_note


class PendingNote:
    """The note of ``study``, written once; :meth:`poll` tries until it is."""

    def __init__(self, study: optuna.Study, config: StudyConfig) -> None:
        self.study = study
        self.config = config
        self.written = False

    def poll(self) -> None:
        """Write the note unless it is written (a storage error propagates: the caller
        tries again at its next poll)."""
        if not self.written:
            write_note(self.study, self.config)
            self.written = True


__all__ = ["PendingNote"]
