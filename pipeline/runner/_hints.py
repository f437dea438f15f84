"""The commands ``tune`` prints for what comes next, written so that each runs verbatim
when pasted into a fresh shell in the directory ``tune`` ran in.

``make tune`` runs ``.venv/bin/pipeline``, which a fresh shell does not find on its PATH:
the hints name the script the way this shell reaches it. A storage URL that holds a
password is never printed; the hints read it from ``$PIPELINE_STORAGE`` instead.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

import optuna

from pipeline.config import DEFAULT_STORAGE
from pipeline.storages import mask_url
from pipeline.tracking import Tracking

STORAGE_ENV = "PIPELINE_STORAGE"  # the variable `--storage-env` reads by default


def pipeline_command() -> str:
    """``pipeline`` when the PATH finds this installation's script, else the script's
    path (``.venv/bin/pipeline`` after ``make tune``), else ``python -m pipeline``."""
    script = Path(sys.executable).parent / "pipeline"
    found = shutil.which("pipeline")
    if found is not None and script.exists() and Path(found).resolve() == script.resolve():
        return "pipeline"
    if script.exists():
        relative = os.path.relpath(script)
        return shlex.quote(str(script) if relative.startswith("..") else relative)
    return f"{shlex.quote(sys.executable)} -m pipeline"


def mlflow_hint(uri: str, page: str) -> str:
    """Where the runs table of a study's MLflow experiment is: on the tracking server, or
    in ``mlflow ui`` over a local store."""
    if uri.startswith(("http://", "https://")):
        return f"{mask_url(uri).rstrip('/')}/{page}  (MLflow's runs table)"
    mlflow = Path(sys.executable).parent / "mlflow"
    command = shlex.quote(os.path.relpath(mlflow)) if mlflow.exists() else "mlflow"
    if command.startswith(".."):
        command = shlex.quote(str(mlflow))
    return (
        f"{command} ui --backend-store-uri {shlex.quote(mask_url(uri))}  "
        f"(then http://127.0.0.1:5000/{page}: MLflow's runs table)"
    )


def end_tracking(tracking: Tracking | None, study: optuna.Study) -> list[str]:
    """End the study's tracking; return where its runs are shown (MLflow's runs table)."""
    if tracking is None:
        return []
    tracking.end_study(study)
    return [mlflow_hint(uri, page) for uri, page in tracking.runs_pages()]


def storage_flags(storage: str) -> tuple[str, str]:
    """The flags that name ``storage`` again (" --storage URL", or "" for the default
    one), and a note when the URL holds a password that the flags leave out."""
    if storage == DEFAULT_STORAGE:
        return "", ""
    if mask_url(storage) != storage:
        return (
            " --storage-env " + STORAGE_ENV,
            f"(with {STORAGE_ENV} set to the storage URL; its password is not printed)",
        )
    return f" --storage {shlex.quote(storage)}", ""


__all__ = ["end_tracking", "mlflow_hint", "pipeline_command", "storage_flags"]
