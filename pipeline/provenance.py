"""Provenance stored on every study: what ran, with which code, where."""

from __future__ import annotations

import importlib.metadata
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

import optuna

from pipeline.config import StudyConfig
from pipeline.storage import mask_url

_PACKAGES = (
    "optuna-pipeline",
    "optuna",
    "optuna-dashboard",
    "torch",
    "torchvision",
    "numpy",
    "pandas",
)


def versions() -> dict[str, str]:
    """Python and the installed versions of the packages a result depends on."""
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def git_revision(path: Path | None = None) -> str | None:
    """The checkout's commit (with ``-dirty`` when it has local changes), if any."""
    where = path or Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev or None


def collect(config: StudyConfig) -> dict[str, Any]:
    """The provenance record of one ``tune`` run; storage passwords are masked."""
    resolved = config.to_dict()
    resolved["storage"] = mask_url(resolved["storage"])
    return {
        "config": resolved,
        "study_file": config.source,
        "versions": versions(),
        "git_revision": git_revision(),
        "host": socket.gethostname(),
        "seed": config.seed,
    }


def record(study: optuna.Study, config: StudyConfig) -> None:
    """Store the provenance as study user attributes (shown by the dashboard)."""
    for key, value in collect(config).items():
        study.set_user_attr(key, value)


__all__ = ["collect", "git_revision", "record", "versions"]
