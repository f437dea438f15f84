"""Provenance stored on every study: what ran, with which code, where."""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import importlib.util
import platform
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna

from pipeline.config import StudyConfig, user_code
from pipeline.storages import mask_url
from pipeline.study._drift import changes
from pipeline.trial import trial_log

RUNS_ATTR = "runs"  # study user attribute: one entry per run, oldest first

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


def code_revision(config: StudyConfig) -> str | None:
    """The git revision of the user's own code the study runs (its trainable's or task
    plug-in's module), beside the pipeline's own; None for a built-in task."""
    code = user_code(config.trainable, config.lightning, config.transformers)
    targets = [code[1] if code else None, config.task.name if config.task else None]
    for target in targets:
        if target and ":" in target:
            try:
                spec = importlib.util.find_spec(target.partition(":")[0])
            except (ImportError, ValueError):
                continue
            if spec is not None and spec.origin:
                return git_revision(Path(spec.origin).resolve().parent)
    return None


def masked(config: StudyConfig) -> dict[str, Any]:
    """The resolved study as plain data, with the passwords of its URLs masked (the
    storage's, and an MLflow server's given as ``http://user:password@host``)."""
    resolved = config.to_dict()
    resolved["storage"] = mask_url(resolved["storage"])
    if resolved.get("tracking", {}).get("mlflow"):
        resolved["tracking"]["mlflow"] = mask_url(resolved["tracking"]["mlflow"])
    return resolved


def collect(config: StudyConfig) -> dict[str, Any]:
    """The provenance record of one ``tune`` run; storage passwords are masked."""
    return {
        "config": masked(config),
        "study_file": config.source,
        "versions": versions(),
        "git_revision": git_revision(),
        "code_git_revision": code_revision(config),
        "host": socket.gethostname(),
        "seed": config.seed,
    }


def record(study: optuna.Study, config: StudyConfig) -> list[str]:
    """Store the provenance as study user attributes (shown by the dashboard): the first
    run's record once, never overwritten, and one entry per run in ``runs``. Return what
    changed in the study file since the last run."""
    first = collect(config)
    if "config" not in study.user_attrs:
        for key, value in first.items():
            study.set_user_attr(key, value)
    runs = list(study.user_attrs.get(RUNS_ATTR, []))
    previous = runs[-1]["config"] if runs else study.user_attrs.get("config", first["config"])
    changed = [c for c in changes(previous, first["config"]) if not c.startswith("study_name")]
    runs.append(
        {
            "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "command": mask_url(" ".join(sys.argv)),
            "study_file": config.source,
            "file_sha256": _sha256(config.source),
            "git_revision": first["git_revision"],
            "code_git_revision": first["code_git_revision"],
            "host": first["host"],
            "changes": changed,
            "config": first["config"],
        }
    )
    study.set_user_attr(RUNS_ATTR, runs)
    return changed


def _sha256(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _command() -> str:
    return " ".join(["pipeline", *(shlex.quote(a) for a in sys.argv[1:])])


def note(config: StudyConfig) -> str:
    """The study's description, in Markdown, for the dashboard's note: what is trained,
    what is searched, how, with which budget, and the command of its latest run."""
    form, name = user_code(config.trainable, config.lightning, config.transformers) or (
        "task",
        config.task.name if config.task else "",
    )
    what = f"{form} `{name}`"
    budget = ", ".join(
        f"{label} {value}"
        for label, value in (
            ("trials", config.n_trials),
            ("seconds", config.timeout),
            ("total epochs", config.max_total_epochs),
        )
        if value is not None
    )
    space = "\n".join(
        f"| `{name}` | {spec.type} | "
        + (
            f"{spec.value!r}"
            if spec.type == "fixed"
            else ", ".join(map(repr, spec.choices or []))
            if spec.type == "categorical"
            else f"{spec.low} .. {spec.high}{' (log)' if spec.log else ''}"
        )
        + " |"
        for name, spec in config.search_space.items()
    )
    objectives = ", ".join(f"{o.metric} ({o.direction})" for o in config.objectives)
    limits = "".join(
        f", {name}"
        + (f" >= {c.min:g}" if c.min is not None else "")
        + (f" <= {c.max:g}" if c.max is not None else "")
        for name, c in config.constraints.items()
    )
    return (
        f"**{config.study_name}**: {what}, {objectives}"
        + (f" (constraints{limits.replace(', ', ' ', 1)})" if limits else "")
        + ", "
        f"up to {config.max_epochs} epoch{'s' if config.max_epochs != 1 else ''} per trial.\n\n"
        f"Sampler `{config.sampler.name}` (seed {config.sampler.seed}), pruner "
        f"`{config.pruner.name}`; budget: {budget or 'the grid'}.\n\n"
        f"| parameter | type | values |\n|---|---|---|\n{space}\n\n"
        + _population(config)
        + f"Last run with `{mask_url(_command())}` from `{config.source}`."
        + (
            f" What each trial printed is in `{trial_log(config.trial_logs, config.study_name, 'N')}`"
            " on the host that ran it (the trial's `log` attribute)."
            if config.trial_logs
            else ""
        )
    )


def _population(config: StudyConfig) -> str:
    """The note's paragraph on population-based training: how to read its trials."""
    if config.scheduler is None:
        return ""
    o = config.scheduler.options
    return (
        f"Population-based training: {o.population} members, segments of {o.interval} "
        f"epochs, mutating {', '.join(o.mutate) if o.mutate else 'every float and int'}. "
        "Each trial is one segment; its user attributes `member`, `generation` and `parent` "
        "(the trial whose checkpoint it started from) give the lineage, and a segment whose "
        "parent is another member's is an exploit. `pipeline best` prints the winner's "
        "schedule.\n\n"
    )


__all__ = ["code_revision", "collect", "git_revision", "masked", "note", "record", "versions"]
