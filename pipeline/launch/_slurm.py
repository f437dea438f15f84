"""``pipeline launch slurm``: a study's workers as one SLURM job array.

Each array task runs ``pipeline worker STUDY --worker-index $SLURM_ARRAY_TASK_ID``. The
job is submitted with ``--requeue``, so a preempted task goes back to the queue, and with
``--signal=B:TERM@GRACE``, so before a time limit the worker ends its epoch and puts the
running trial back to WAITING; whichever task takes it resumes it from its checkpoint.

The storage URL never enters the script (nor, so, ``scontrol show job``): the tasks read
it from an environment variable that sbatch carries over from the submitting shell, or
from a file only the user can read.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipeline.exceptions import UsageError
from pipeline.storages import mask_url, scheme_of

LAUNCH_DIR = Path("runs/launch")
URL_ENV = "PIPELINE_STORAGE"  # what the tasks read the storage URL from


@dataclass(frozen=True)
class SlurmLaunch:
    """What one ``pipeline launch slurm`` submits.

    Args:
        storage_env: The environment variable the tasks read the storage URL from (set
            in the submitting shell); None when ``url_file`` holds it.
        url_file: A file, readable by the user only, that holds the storage URL.
    """

    study_file: str
    study_name: str
    workers: int
    storage_env: str | None = None
    url_file: str | None = None
    partition: str | None = None
    time: str | None = None
    cpus_per_trial: int = 1
    gpus_per_trial: int = 0
    grace: int = 120
    sbatch_args: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)  # --set KEY=VALUE, for every task


def check_shared(url: str, shared_journal: bool) -> None:
    """Refuse a storage that only one machine can reach: the tasks of an array run on
    many nodes.

    Raises:
        UsageError: SQLite, or a journal file not declared shared with ``--shared-journal``.
    """
    scheme = scheme_of(url)
    if scheme == "sqlite" or (scheme == "journal" and not shared_journal):
        raise UsageError(
            f"--storage: {mask_url(url)} is a file only one machine can reach; a cluster "
            "launch needs PostgreSQL or MySQL (postgresql+psycopg://...), a gRPC storage "
            "proxy (grpc://host:port), or a journal file on a shared file system given "
            "with --shared-journal"
        )


def sbatch_script(launch: SlurmLaunch, folder: Path, workdir: Path) -> str:
    """The sbatch script of ``launch``: a job array of ``workers`` tasks."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", launch.study_name)
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name=pipeline-{name}",
        f"#SBATCH --array=0-{launch.workers - 1}",
        "#SBATCH --ntasks=1",
        f"#SBATCH --cpus-per-task={launch.cpus_per_trial}",
        "#SBATCH --requeue",
        f"#SBATCH --signal=B:TERM@{launch.grace}",
        "#SBATCH --open-mode=append",
        f"#SBATCH --output={folder.resolve()}/%A_%a.out",
    ]
    if launch.gpus_per_trial:
        lines.append(f"#SBATCH --gres=gpu:{launch.gpus_per_trial}")
    if launch.partition:
        lines.append(f"#SBATCH --partition={launch.partition}")
    if launch.time:
        lines.append(f"#SBATCH --time={launch.time}")
    lines += [f"#SBATCH {arg}" for arg in launch.sbatch_args]
    env = launch.storage_env or URL_ENV
    lines += [
        "",
        "# Written by `pipeline launch slurm`. The storage URL is not in this file: it is",
        "# read from the environment (carried over by sbatch) or a file only you can read.",
        "set -euo pipefail",
        f"cd {shlex.quote(str(workdir.resolve()))}",
    ]
    if launch.url_file is not None:
        lines.append(f'{env}="$(cat {shlex.quote(launch.url_file)})"; export {env}')
    else:
        lines.append(f': "${{{env}:?is not set: export it before sbatch}}"')
    worker = [sys.executable, "-m", "pipeline", "worker", launch.study_file]
    worker += [word for override in launch.overrides for word in ("--set", override)]
    # exec: the worker is the batch shell, so B:TERM reaches it and it re-queues its trial.
    lines.append(
        f"exec {shlex.join(worker)} --storage-env {env} "
        f'--worker-index "$SLURM_ARRAY_TASK_ID" --threads {launch.cpus_per_trial}'
    )
    return "\n".join(lines) + "\n"


def launch_slurm(
    launch: SlurmLaunch, url: str, dry_run: bool = False, workdir: Path | None = None
) -> str:
    """Write the script under ``runs/launch/<study>/`` and, unless ``dry_run``, submit
    it; return what to print (the script, or the job id and how to watch it).

    Raises:
        UsageError: no ``sbatch`` on this machine.
    """
    workdir = workdir or Path.cwd()
    folder = workdir / LAUNCH_DIR / re.sub(r"[^A-Za-z0-9_.-]", "_", launch.study_name)
    if launch.storage_env is None:
        launch = replace(launch, url_file=str((folder / "storage.url").resolve()))
    script = sbatch_script(launch, folder, workdir)
    if dry_run:
        return script
    if shutil.which("sbatch") is None:
        raise UsageError("sbatch is not on PATH: run this on a SLURM login node (or --dry-run)")
    folder.mkdir(parents=True, exist_ok=True)
    if launch.url_file is not None:
        _write_private(Path(launch.url_file), url)
    path = folder / "job.sbatch"
    path.write_text(script)
    done = subprocess.run(
        ["sbatch", "--parsable", str(path)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise UsageError(f"sbatch refused {path}: {done.stderr.strip() or done.stdout.strip()}")
    job = done.stdout.strip().split(";")[0]
    return (
        f"submitted job {job}: {launch.workers} worker(s) of study {launch.study_name!r} "
        f"({path})\n"
        f"watch it: squeue -j {job}; logs in {folder}/; "
        f"make dashboard STUDY={launch.study_file} STORAGE=...\n"
    )


def _write_private(path: Path, url: str) -> None:
    """Keep ``url`` in a file only the user can read, for the tasks to read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(url)
    os.chmod(path, 0o600)


__all__ = ["SlurmLaunch", "check_shared", "launch_slurm", "sbatch_script"]
