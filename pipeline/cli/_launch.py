"""``pipeline launch slurm`` and ``pipeline launch k8s``: flags to a launcher."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pipeline.cli._arguments import STORAGE_ENV
from pipeline.config import StudyConfig
from pipeline.exceptions import EXIT_OK, UsageError


def _load(args: argparse.Namespace) -> StudyConfig:
    from pipeline.study import load_study_file

    return load_study_file(args.study, list(args.overrides))


def cmd_launch(args: argparse.Namespace) -> int:
    from pipeline.launch import SlurmLaunch, check_shared, launch_slurm

    if args.launcher == "k8s":
        return _launch_k8s(args)

    env = args.storage_env or (
        STORAGE_ENV if args.storage is None and STORAGE_ENV in os.environ else None
    )
    if env is not None and env not in os.environ:
        raise UsageError(f"--storage-env: the environment variable {env} is not set")
    config = _load(args)
    url = args.storage or (os.environ[env] if env else config.storage)
    check_shared(url, args.shared_journal)
    launch = SlurmLaunch(
        study_file=args.study,
        study_name=config.study_name,
        workers=args.workers,
        storage_env=env,
        partition=args.partition,
        time=args.time,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        grace=args.grace,
        sbatch_args=list(args.sbatch_arg),
        overrides=list(args.overrides),
    )
    print(launch_slurm(launch, url, dry_run=args.dry_run), end="")
    return EXIT_OK


def _launch_k8s(args: argparse.Namespace) -> int:
    from pipeline.launch import check_artifacts, k8s_manifests, write_k8s
    from pipeline.study import masked

    config = _load(args)
    check_artifacts(config.artifacts, args.workers)
    manifests = k8s_manifests(
        masked(config),
        workers=args.workers,
        image=args.image,
        secret=args.storage_secret,
        namespace=args.namespace,
        gpus_per_worker=args.gpus_per_worker,
        cpus_per_trial=args.cpus_per_trial,
    )
    out = Path(args.out or Path("runs/launch") / config.study_name / "k8s")
    print(write_k8s(manifests, out), end="")
    return EXIT_OK


__all__ = ["cmd_launch"]
