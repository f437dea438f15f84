"""The ``pipeline`` command line: argparse, and the mapping of errors to exit codes.

Each ``cmd_*`` reads its flags and calls the module that does the work.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import Any

from pipeline.config import DEFAULT_STORAGE, ConfigError, StudyConfig
from pipeline.errors import (
    EXIT_OK,
    EXIT_STORAGE_LOST,
    EXIT_USAGE,
    PipelineError,
    UsageError,
    exit_code_of,
)


def _study_args(parser: argparse.ArgumentParser, storage_help: str | None) -> None:
    parser.add_argument("study", help="the study file (YAML), e.g. studies/default.yaml")
    if storage_help is not None:
        parser.add_argument("--storage", help=storage_help)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a study-file value, dotted keys, YAML values (repeatable): "
        "--set sampler.name=random --set search_space.lr.high=0.5",
    )


def _load(args: argparse.Namespace, **flags: Any) -> StudyConfig:
    from pipeline.study_file import load_study_file

    overrides = list(args.overrides)
    # Flags become overrides so that they pass the same validation as the file.
    for key, value in flags.items():
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    return load_study_file(args.study, overrides)


def cmd_tune(args: argparse.Namespace) -> int:
    from pipeline.launch import tune

    config = _load(
        args,
        storage=args.storage,
        n_trials=args.n_trials,
        workers=args.workers,
        timeout=args.timeout,
        **{"task.options.download": True if args.download else None},
    )
    parent = None
    if args.branch is not None:
        if not args.branch.strip() or args.branch == config.study_name:
            raise UsageError("--branch: give the new study a name of its own")
        parent, config = config.study_name, dataclasses.replace(config, study_name=args.branch)
    # A fresh process that has computed nothing yet: workers may be forked from it.
    return tune(config, quiet=args.quiet, fresh_process=True, branch_from=parent)


def cmd_worker(args: argparse.Namespace) -> int:
    import os

    from pipeline.launch import join_study

    config = _load(args, storage=args.storage)
    # The index offsets the sampler's seed; distinct per worker unless given.
    worker = args.worker_index if args.worker_index is not None else os.getpid()
    return join_study(config, worker, args.threads or os.cpu_count() or 1, args.timeout)


def cmd_storage_proxy(args: argparse.Namespace) -> int:
    from pipeline.storage import serve_proxy

    serve_proxy(args.storage, args.host, args.port)
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline import compare, compare_report

    config = _load(args, storage=args.storage)
    budget = compare.CompareBudget.parse(args.budget)
    samplers, pruners = compare.names(args.samplers, args.pruners)
    if not args.report_only:
        code = compare.run(config, samplers, pruners, args.seeds, budget, quiet=not args.verbose)
        if code:
            return code
    runs = compare.load_runs(config, samplers, pruners, args.seeds)
    index = compare_report.write_report(runs, Path(args.out), budget, args.target)
    print((Path(args.out) / "summary.md").read_text())
    print(f"wrote {index}")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    import yaml

    from pipeline.storage import mask_url

    config = _load(args)
    resolved = config.to_dict()
    resolved["storage"] = mask_url(resolved["storage"])
    print(f"{args.study}: OK")
    print(yaml.safe_dump(resolved, sort_keys=False), end="")
    return EXIT_OK


def cmd_best(args: argparse.Namespace) -> int:
    from pipeline.best import best_with_checkpoint, format_best
    from pipeline.study import open_existing

    record = best_with_checkpoint(open_existing(args.storage, args.study), args.storage)
    print(json.dumps(record, indent=2) if args.json else format_best(record))
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pipeline import checkpoints, evaluate
    from pipeline.study import open_existing

    study = open_existing(args.storage, args.study)
    store = checkpoints.open_store(checkpoints.artifact_dir_for(args.storage, args.artifacts))
    result = evaluate.run(study, store, retrain_seeds=args.retrain_seeds)
    print(json.dumps(result, indent=2))
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.export import export
    from pipeline.study import open_existing

    study = open_existing(args.storage, args.study)
    for path in export(study, Path(args.out), curves=args.curves):
        print(f"wrote {path}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.report import write_report
    from pipeline.study import open_existing

    study = open_existing(args.storage, args.study)
    index = write_report(study, Path(args.out))
    print(
        f"wrote {index} (open it in a browser; no server needed) and {index.parent / 'summary.md'}"
    )
    return EXIT_OK


def cmd_dashboard(args: argparse.Namespace) -> int:
    from pipeline.dashboard import serve

    serve(args.storage, args.artifacts, args.host, args.port)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The ``pipeline`` parser and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="pipeline",
        description="Hyperparameter tuning for PyTorch from a YAML study file, on Optuna.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run_commands(sub)
    _add_result_commands(sub)
    return parser


def _add_run_commands(sub: Any) -> None:
    """Commands that read a study file and run (or check) it."""
    timeout = {"type": float, "help": "start no trial after this many seconds"}
    p = sub.add_parser("tune", help="run (or resume) a study with parallel local workers")
    _study_args(p, f"storage URL (default: the study file's, else {DEFAULT_STORAGE})")
    p.add_argument("--n-trials", type=int, help="finished trials the study should end with")
    p.add_argument(
        "--workers",
        type=int,
        help="worker processes (default: the study file's, else one per core)",
    )
    p.add_argument("--timeout", **timeout)
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
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser(
        "worker", help="join a study from this machine; run trials until its budget is met"
    )
    _study_args(p, "storage URL shared by all workers (default: the study file's)")
    p.add_argument("--threads", type=int, help="torch threads (default: one per core)")
    p.add_argument(
        "--worker-index", type=int, help="offsets the sampler seed (default: the process id)"
    )
    p.add_argument("--timeout", **timeout)
    p.set_defaults(func=cmd_worker)

    _add_compare(sub)

    p = sub.add_parser("validate", help="check a study file and print it resolved")
    _study_args(p, None)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "storage-proxy", help="serve Optuna's gRPC storage proxy in front of a database"
    )
    p.add_argument("--storage", required=True, help="the database the proxy fronts")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=13000)
    p.set_defaults(func=cmd_storage_proxy)


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
        "--seeds", type=int, default=3, help="repeats per sampler and pruner (default 3)"
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
    p.set_defaults(func=cmd_compare)


def _add_result_commands(sub: Any) -> None:
    """Commands that read what a study left in its storage."""
    storage_help = f"storage URL (default {DEFAULT_STORAGE})"
    artifacts_help = "artifact directory (default: beside the storage file)"
    for name, func, help_ in (
        ("best", cmd_best, "print a study's best trial"),
        ("evaluate", cmd_evaluate, "score the best trial's checkpoint on the test split"),
        ("export", cmd_export, "write one row per trial to CSV or Parquet"),
        ("report", cmd_report, "write an HTML report with plots, PNGs and a Markdown summary"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--storage", default=DEFAULT_STORAGE, help=storage_help)
        p.add_argument("--study", required=True, help="study name")
        p.set_defaults(func=func)
        if name == "best":
            p.add_argument("--json", action="store_true", help="machine-readable output")
        elif name == "evaluate":
            p.add_argument("--artifacts", help=artifacts_help)
            p.add_argument(
                "--retrain-seeds",
                type=int,
                default=0,
                help="also retrain the best configuration on train+validation with K seeds",
            )
        elif name == "export":
            p.add_argument("--out", required=True, help="results.csv or results.parquet")
            p.add_argument(
                "--curves",
                action="store_true",
                help="also write <out>_curves with per-epoch values",
            )
        else:
            p.add_argument(
                "--out", required=True, help="directory for index.html, PNGs, summary.md"
            )

    p = sub.add_parser("dashboard", help="serve optuna-dashboard over a storage")
    p.add_argument("--artifacts", help=artifacts_help)
    p.add_argument("--storage", default=DEFAULT_STORAGE, help=storage_help)
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)"
    )
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(func=cmd_dashboard)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pipeline`` console script: runs a command and turns the
    errors a user can cause into one ``error:`` line and an exit code."""
    from pipeline.signals import raise_on_stop_signals

    raise_on_stop_signals()
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt as interrupt:  # before any trial ran: nothing to record
        print("interrupted", file=sys.stderr)
        return exit_code_of(interrupt)


def _run(args: argparse.Namespace) -> int:
    from pipeline.storage import STORAGE_ERRORS, first_line
    from pipeline.study import set_optuna_logging

    set_optuna_logging()
    try:
        return int(args.func(args))
    except ConfigError as exc:
        # Commands that read a study file name it; the others take only --storage.
        source = args.study if hasattr(args, "overrides") else "--storage"
        print(f"error: {exc.located(source)}", file=sys.stderr)
        return EXIT_USAGE
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except STORAGE_ERRORS as exc:
        print(f"error: cannot reach the storage: {first_line(exc)}", file=sys.stderr)
        return EXIT_STORAGE_LOST


if __name__ == "__main__":
    sys.exit(main())
