"""Exit codes and the errors a user can cause, in one place.

The command line maps every :class:`PipelineError` (and the schema's ``ConfigError``) to
one ``error: ...`` line and the error's exit code; anything else is a bug and raises.
"""

from __future__ import annotations

from typing import ClassVar

EXIT_OK = 0
EXIT_NO_RESULT = 1  # the study ran, but left nothing to show (no complete trial)
EXIT_USAGE = 2  # a wrong study file, flag or name: nothing was run or stored
EXIT_FAILING = 3  # a worker stopped because its trials kept failing
EXIT_STORAGE_LOST = 4  # the storage stayed unreachable
EXIT_INTERRUPTED = 130  # Ctrl-C: running trials were recorded and re-queued


class PipelineError(Exception):
    """An error with a message for the user and the exit code the command ends with."""

    exit_code: ClassVar[int] = 1


class UsageError(PipelineError):
    """A wrong command-line flag or study name (study-file mistakes are ConfigErrors)."""

    exit_code = EXIT_USAGE


class NoResult(PipelineError):
    """The study holds nothing to show yet: no trial, no finished trial, no checkpoint."""

    exit_code = EXIT_NO_RESULT


class StorageLost(PipelineError):
    """The storage stayed unreachable for longer than ``storage_retry_seconds``."""

    exit_code = EXIT_STORAGE_LOST


class Interrupted(KeyboardInterrupt):
    """A stop signal reached the command: SIGINT, SIGTERM or SIGHUP. Running trials end
    at their epoch and are re-queued; the exit code is 128 + the signal's number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP."""
        return 128 + self.signum


def exit_code_of(interrupt: KeyboardInterrupt) -> int:
    """The exit code a command ends with after ``interrupt`` (Ctrl-C: 130)."""
    return interrupt.exit_code if isinstance(interrupt, Interrupted) else EXIT_INTERRUPTED


__all__ = [
    "EXIT_FAILING",
    "EXIT_INTERRUPTED",
    "EXIT_NO_RESULT",
    "EXIT_OK",
    "EXIT_STORAGE_LOST",
    "EXIT_USAGE",
    "Interrupted",
    "NoResult",
    "PipelineError",
    "StorageLost",
    "UsageError",
    "exit_code_of",
]
