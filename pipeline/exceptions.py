"""Exit codes and the errors a user can cause, in one hierarchy.

Every error a user can cause is a :class:`PipelineError` carrying the exit code its
command ends with, as Click's exceptions do; the command line turns one into a single
``error: ...`` line with one ``except``. Anything else is a bug and raises. This module
imports nothing, so every room can raise these.
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


class ConfigError(PipelineError, ValueError):
    """A mistake in a study file or an override, phrased for the user who has to fix it.

    Validators raise it with the dotted ``key`` and the ``message``; whoever read the file
    attaches its name with :meth:`located`, so no validator needs to know the source.
    """

    exit_code = EXIT_USAGE

    def __init__(self, key: str, message: str, source: str = "") -> None:
        self.key = key
        self.message = message
        self.source = source
        where = "".join(f"{part}: " for part in (source, key) if part)
        super().__init__(where + message)

    def located(self, source: str) -> ConfigError:
        """The same error, naming ``source`` (a file or a flag) unless it names one."""
        return self if self.source else ConfigError(self.key, self.message, source)


class NoResult(PipelineError):
    """The study holds nothing to show yet: no trial, no finished trial, no checkpoint."""

    exit_code = EXIT_NO_RESULT


class StorageLost(PipelineError):
    """The storage stayed unreachable for longer than ``storage_retry_seconds``."""

    exit_code = EXIT_STORAGE_LOST


class StorageProblem(PipelineError):
    """The storage answers but cannot be used (a corrupt or read-only file, a full disk);
    retrying would not help."""

    exit_code = EXIT_STORAGE_LOST


class StorageDenied(PipelineError):
    """The storage refused the credentials or the access (no such user or database, a
    wrong password, no permission): a mistake in the URL, never retried."""

    exit_code = EXIT_USAGE


class S3Error(PipelineError, OSError):
    """A bucket that cannot be reached, read or written (boto's error, as an OSError, so
    that checkpoint code handles it as it handles a full local disk)."""


class ModelTooLarge(PipelineError):
    """The trial's model would not fit in the device's memory; the trial fails at once
    with this reason instead of its worker being killed by the kernel."""


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
    "ConfigError",
    "Interrupted",
    "ModelTooLarge",
    "NoResult",
    "PipelineError",
    "S3Error",
    "StorageDenied",
    "StorageLost",
    "StorageProblem",
    "UsageError",
    "exit_code_of",
]
