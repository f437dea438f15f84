"""The ``pipeline`` command line's arguments: every subcommand and its flags."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from pipeline.config import DEFAULT_STORAGE
from pipeline.exceptions import EXIT_USAGE

STORAGE_ENV = "PIPELINE_STORAGE"  # where a storage URL with a password may come from


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake as one ``error:`` line (exit 2) like every other
    mistake, rather than the usage block and a second line."""

    def error(self, message: str) -> NoReturn:
        from pipeline.storages import mask_url  # argparse echoes the words it refused

        message = mask_url(message)
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {low} or more, got {value}")
        return value

    parse.__name__ = "integer"  # what argparse names in its message
    return parse


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, got {value}")
    return value


def _study_args(parser: argparse.ArgumentParser, storage_help: str | None) -> None:
    parser.add_argument("study", help="the study file (YAML), e.g. studies/default.yaml")
    if storage_help is not None:
        _storage_args(parser, storage_help, None)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a study-file value, dotted keys, YAML values (repeatable): "
        "--set sampler.name=random --set search_space.lr.high=0.5",
    )


def _storage_args(parser: argparse.ArgumentParser, help_: str, default: str | None) -> None:
    parser.add_argument("--storage", help=help_)
    parser.add_argument(
        "--storage-env",
        metavar="NAME",
        help=f"read the storage URL from environment variable NAME (default {STORAGE_ENV}), "
        "so that its password never shows in `ps`",
    )
    parser.set_defaults(storage_default=default)


def _study_source_args(parser: argparse.ArgumentParser, named: bool, artifacts: bool) -> None:
    """Where a result command finds the study: its name (``named``) or its study file,
    which gives the name, the storage and the checkpoints' directory (``artifacts``)."""
    if named:
        parser.add_argument(
            "--study-name",
            "--study",
            dest="study",
            metavar="NAME",
            help="the study's name (or give --study-file)",
        )
    parser.add_argument(
        "--study-file",
        metavar="PATH",
        help="the study file the study was tuned from: "
        + ("its study_name, storage and artifacts" if named else "its storage and artifacts"),
    )
    _storage_args(
        parser,
        f"storage URL (default: the study file's, else {DEFAULT_STORAGE})",
        DEFAULT_STORAGE,
    )
    if artifacts:
        parser.add_argument(
            "--artifacts",
            help="checkpoint directory (default: the study file's, else beside the storage file)",
        )


def build_parser() -> argparse.ArgumentParser:
    """The ``pipeline`` parser and its subcommands."""
    return _build()[0]


def _build() -> tuple[argparse.ArgumentParser, Any]:
    parser = _Parser(
        prog="pipeline",
        description="Hyperparameter tuning for PyTorch from a YAML study file, on Optuna.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run_commands(sub)
    _add_result_commands(sub)
    return parser, sub


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line parsed; a mistyped command gets the closest one as a hint.

    Raises:
        SystemExit: with code 2 and one ``error:`` line on a usage mistake.
    """
    parser, sub = _build()
    argv = list(sys.argv[1:] if argv is None else argv)
    # The top-level parser has no option with a value: its first word is the command.
    command = next((word for word in argv if not word.startswith("-")), None)
    if command is not None and command not in sub.choices:
        close = difflib.get_close_matches(command, list(sub.choices), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        parser.error(f"no command {command!r}; {hint}commands: {', '.join(sub.choices)}")
    return parser.parse_args(argv)


def _add_run_commands(sub: Any) -> None:
    """Commands that read a study file and run (or check) it."""
    timeout = {"type": float, "help": "start no trial after this many seconds"}
    trial_timeout = {
        "metavar": "DURATION",
        "help": "fail a trial that runs longer (seconds, or 20s, 30m, 2h; the study file's "
        "trial_timeout)",
    }
    p = sub.add_parser("tune", help="run (or resume) a study with parallel local workers")
    _study_args(p, f"storage URL (default: the study file's, else {DEFAULT_STORAGE})")
    p.add_argument("--n-trials", type=int, help="finished trials the study should end with")
    p.add_argument(
        "--workers",
        type=int,
        help="worker processes (default: the study file's, else one per core)",
    )
    p.add_argument("--timeout", **timeout)
    p.add_argument("--trial-timeout", **trial_timeout)
    p.add_argument("--quiet", action="store_true", help="print only the final summary")
    p.add_argument(
        "--branch",
        metavar="NEW_NAME",
        help="start study NEW_NAME from this file, importing the study's finished trials "
        "that are still valid (for a file that changed what the trials mean)",
    )
    p.add_argument(
        "--download",
        action="store_true",
        help="let the task download its data set (cifar10, fashion_mnist) if it is missing",
    )

    p = sub.add_parser(
        "worker", help="join a study from this machine; run trials until its budget is met"
    )
    _study_args(p, "storage URL shared by all workers (default: the study file's)")
    p.add_argument(
        "--cpus-per-trial",
        "--threads",
        dest="threads",
        type=_at_least(1),
        metavar="N",
        help="torch threads for each trial (default: the study file's cpus_per_trial, "
        "else one per core)",
    )
    p.add_argument(
        "--worker-index",
        type=_at_least(0),
        help="offsets the sampler seed (default: the process id)",
    )
    p.add_argument("--timeout", **timeout)
    p.add_argument("--trial-timeout", **trial_timeout)

    _add_compare(sub)
    _add_launch(sub)

    p = sub.add_parser("validate", help="check a study file and print it resolved")
    _study_args(p, None)

    p = sub.add_parser(
        "storage-proxy", help="serve Optuna's gRPC storage proxy in front of a database"
    )
    _storage_args(p, "the database the proxy fronts", None)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=13000)


def _add_compare(sub: Any) -> None:
    p = sub.add_parser(
        "compare", help="run the study under several samplers/pruners and seeds at an equal budget"
    )
    _study_args(p, "storage URL (default: the study file's)")
    p.add_argument(
        "--samplers",
        default="grid,random,tpe,gp",
        help="comma-separated (default grid,random,tpe,gp)",
    )
    p.add_argument(
        "--pruners", default="none", help="comma-separated, e.g. none,asha (default none)"
    )
    p.add_argument(
        "--seeds", type=_at_least(1), default=3, help="repeats per sampler and pruner (default 3)"
    )
    p.add_argument(
        "--budget",
        default="trials:20",
        help="per run: trials:N, epochs:N or seconds:N (default trials:20)",
    )
    p.add_argument("--target", type=float, help="report the time each run took to reach this value")
    p.add_argument(
        "--out", default="reports/compare", help="report directory (default reports/compare)"
    )
    p.add_argument("--report-only", action="store_true", help="rebuild the report from the storage")
    p.add_argument("--verbose", action="store_true", help="show each run's live table")


def _add_result_commands(sub: Any) -> None:
    """Commands that read what a study left in its storage."""
    for name, help_ in (
        ("best", "print a study's best trial"),
        ("evaluate", "score the best trial's checkpoint on the test split"),
        ("export", "write one row per trial to CSV or Parquet"),
        ("report", "write an HTML report with plots, PNGs and a Markdown summary"),
        ("replay", "retrain a PBT winner's hyperparameter schedule from scratch; its test score"),
    ):
        p = sub.add_parser(name, help=help_)
        _study_source_args(p, named=True, artifacts=name in ("best", "evaluate", "export"))
        if name == "best":
            p.add_argument("--json", action="store_true", help="machine-readable output")
            p.add_argument(
                "--replay",
                action="store_true",
                help="PBT: then retrain the winner's schedule from scratch (pipeline replay)",
            )
        elif name == "replay":
            p.add_argument("--json", action="store_true", help="machine-readable output")
        elif name == "evaluate":
            p.add_argument(
                "--retrain-seeds",
                type=_at_least(0),
                default=0,
                help="also retrain the best configuration on train+validation with K seeds",
            )
        elif name == "export":
            p.add_argument(
                "--out", help="results.csv or results.parquet (default reports/STUDY_NAME.csv)"
            )
            p.add_argument(
                "--curves",
                action="store_true",
                help="also write <out>_curves with per-epoch values",
            )
        else:
            p.add_argument(
                "--out",
                help="directory for index.html, PNGs, summary.md (default reports/STUDY_NAME)",
            )

    p = sub.add_parser("dashboard", help="serve optuna-dashboard over a storage")
    _study_source_args(p, named=False, artifacts=True)
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)"
    )
    p.add_argument("--port", type=_port, default=8080)
    p.add_argument(
        "--allow-writes",
        action="store_true",
        help="on an address other than 127.0.0.1, let visitors delete, rename and edit "
        "studies (refused by default)",
    )


def _add_launch(sub: Any) -> None:
    """``pipeline launch slurm``: a study's workers as a cluster job."""
    launch = sub.add_parser("launch", help="run a study's workers on a cluster (SLURM, Kubernetes)")
    kinds = launch.add_subparsers(dest="launcher", required=True, metavar="CLUSTER")
    p = kinds.add_parser("slurm", help="submit the study's workers as one SLURM job array")
    _study_args(p, None)
    p.add_argument("--workers", type=_at_least(1), required=True, help="array tasks (workers)")
    p.add_argument("--storage", help="storage URL every node reaches (default: the study file's)")
    p.add_argument(
        "--storage-env",
        metavar="NAME",
        help=f"the tasks read the storage URL from environment variable NAME (default "
        f"{STORAGE_ENV} when it is set); sbatch carries it from this shell",
    )
    p.add_argument("--partition", help="SLURM partition")
    p.add_argument("--time", help="time limit of each task, e.g. 04:00:00")
    p.add_argument("--cpus-per-trial", type=_at_least(1), default=1, metavar="N")
    p.add_argument("--gpus-per-trial", type=_at_least(0), default=0, metavar="N")
    p.add_argument(
        "--grace",
        type=_at_least(1),
        default=120,
        metavar="S",
        help="seconds before a time limit when the worker is told to stop (default 120)",
    )
    p.add_argument(
        "--sbatch-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="one more sbatch option, e.g. --sbatch-arg=--account=ml (repeatable)",
    )
    p.add_argument(
        "--shared-journal",
        action="store_true",
        help="the journal:/// file is on a file system every node shares",
    )
    p.add_argument("--dry-run", action="store_true", help="print the script; submit nothing")

    p = kinds.add_parser("k8s", help="write a Kubernetes Indexed Job for the study's workers")
    _study_args(p, None)
    p.add_argument("--workers", type=_at_least(1), required=True, help="pods (workers)")
    p.add_argument("--image", required=True, help="the worker image (see the Dockerfile written)")
    p.add_argument(
        "--storage-secret",
        required=True,
        metavar="NAME",
        help="the Secret whose key `url` holds the storage URL",
    )
    p.add_argument("--namespace", default="default")
    p.add_argument("--gpus-per-worker", type=_at_least(0), default=0, metavar="N")
    p.add_argument("--cpus-per-trial", type=_at_least(1), default=1, metavar="N")
    p.add_argument("--out", help="folder for the manifests (default runs/launch/<study>/k8s)")


__all__ = ["STORAGE_ENV", "build_parser", "parse_args"]
