"""One log file per trial for what the trial prints, so that the console keeps the live
table and the pipeline's own lines.

What a trainable and the libraries it calls print (its ``print``, warnings, a
DataLoader's complaints, MLflow's run links, a C extension writing to fd 2) goes to
``<directory>/<study>/trial-<n>.log``. The redirection is of the process's file
descriptors 1 and 2, so output from threads and child processes is caught too; it
switches when the next trial begins, so what is printed between two trials (an
``optimize`` callback's lines) is filed under the trial that caused it. The worker's own
lines go to :attr:`TrialOutput.console`, the terminal the worker was started on.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections import deque
from pathlib import Path
from typing import TextIO

from optuna.trial import FrozenTrial

from pipeline.trial._trials import Attr


def trial_log(directory: str | Path, study_name: str, number: int | str) -> Path:
    """Where trial ``number`` of ``study_name`` writes what it prints."""
    return Path(directory) / study_name / f"trial-{number}.log"


class TrialOutput:
    """Files a worker's stdout and stderr under the trial it is running.

    Args:
        directory: The folder of the studies' log folders (``trial_logs`` in the study
            file).
        study_name: The study whose trials this worker runs.
    """

    def __init__(self, directory: str | Path, study_name: str) -> None:
        self.directory = Path(directory)
        self.study_name = study_name
        self._saved = (os.dup(1), os.dup(2))
        self._streams = (sys.stdout, sys.stderr)
        self._file: TextIO | None = None
        # Line-buffered, so the worker's lines interleave with the parent's in order.
        self.console: TextIO = os.fdopen(os.dup(2), "w", buffering=1)

    def switch(self, number: int) -> Path:
        """Send what this process prints from now on to trial ``number``'s log; returns
        the log's absolute path."""
        path = trial_log(self.directory, self.study_name, number).absolute()
        path.parent.mkdir(parents=True, exist_ok=True)
        _flush()
        file = open(path, "a", buffering=1, encoding="utf-8", errors="backslashreplace")
        os.dup2(file.fileno(), 1)
        os.dup2(file.fileno(), 2)
        # Python's own streams too, where something (a notebook, pytest) replaced them.
        sys.stdout = sys.stderr = file
        if self._file is not None:
            self._file.close()
        self._file = file
        return path

    def close(self) -> None:
        """Give the process its console back."""
        _flush()
        for target, saved in zip((1, 2), self._saved, strict=True):
            os.dup2(saved, target)
            os.close(saved)
        sys.stdout, sys.stderr = self._streams
        if self._file is not None:
            self._file.close()
        self.console.close()


def output_note(trial: FrozenTrial) -> str:
    """``; its output: PATH`` for a trial whose output went to a log file, to end the
    line that says it failed."""
    path = trial.user_attrs.get(Attr.LOG)
    return f"; its output: {path}" if path else ""


def last_lines(path: str | Path, count: int = 12) -> list[str]:
    """The last ``count`` lines of a log file (none when it cannot be read)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return [line.rstrip("\n") for line in deque(file, maxlen=count)]
    except OSError:
        return []


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed or broken by user code
            stream.flush()


__all__ = ["TrialOutput", "last_lines", "output_note", "trial_log"]
