"""The ``pipeline`` command line: tune, worker, storage-proxy, validate, best, dashboard."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from typing import Any

from pipeline.config import DEFAULT_STORAGE, ConfigError, StudyConfig, load_study_file


def _study_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", help="the study file (YAML), e.g. studies/default.yaml")
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
    overrides = list(args.overrides)
    # Flags become overrides so that they pass the same validation as the file.
    for key, value in flags.items():
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    return load_study_file(args.study, overrides)


def cmd_tune(args: argparse.Namespace) -> int:
    from pipeline.runner import tune

    config = _load(
        args,
        storage=args.storage,
        n_trials=args.n_trials,
        workers=args.workers,
        timeout=args.timeout,
        **{"task.options.download": True if args.download else None},
    )
    # A fresh process that has computed nothing yet: workers may be forked from it.
    return tune(config, quiet=args.quiet, fresh_process=True)


def cmd_worker(args: argparse.Namespace) -> int:
    import os
    import signal
    import threading
    import time

    import optuna
    import torch

    from pipeline.runner import (
        EXIT_FAILING,
        EXIT_STORAGE_LOST,
        STORAGE_ERRORS,
        StorageLost,
        open_with_retry,
        run_worker,
    )
    from pipeline.storage import mask_url

    config = _load(args, storage=args.storage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # end the epoch, record, re-queue
        signal.signal(signum, lambda *_: stop.set())
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    # The index offsets the sampler's seed; distinct per worker unless given.
    worker = args.worker_index if args.worker_index is not None else os.getpid()
    deadline = time.time() + args.timeout if args.timeout is not None else None
    try:
        open_with_retry(config, joining=True)
        ran = run_worker(config, worker, deadline, should_stop=stop.is_set)
    except StorageLost as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_STORAGE_LOST
    except STORAGE_ERRORS as exc:
        print(
            f"error: cannot reach the storage {mask_url(config.storage)}: {mask_url(str(exc))}",
            file=sys.stderr,
        )
        return EXIT_STORAGE_LOST
    if stop.is_set():
        print(f"worker {worker}: interrupted; its running trial was re-queued", file=sys.stderr)
        return 130
    if ran < 0:
        return EXIT_FAILING
    print(f"worker {worker}: the study's budget is met; this worker ran {ran} trial(s)")
    return 0


def cmd_storage_proxy(args: argparse.Namespace) -> int:
    from optuna.storages import run_grpc_proxy_server

    from pipeline.storage import mask_url, open_storage

    storage = open_storage(args.storage)
    print(
        f"gRPC storage proxy for {mask_url(args.storage)} on {args.host}:{args.port}; "
        f"workers use --storage grpc://{args.host}:{args.port} (Ctrl-C stops it)",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        run_grpc_proxy_server(storage, host=args.host, port=args.port)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline import compare

    config = _load(args, storage=args.storage)
    budget = compare.Budget.parse(args.budget)
    samplers = [s for s in args.samplers.split(",") if s]
    pruners = [p for p in args.pruners.split(",") if p]
    from pipeline.pruners import PRUNERS
    from pipeline.samplers import SAMPLERS

    for name in samplers:
        if name not in SAMPLERS:
            raise ConfigError(
                "--samplers",
                "",
                f"unknown sampler {name!r}; expected some of {', '.join(SAMPLERS)}",
            )
    for name in pruners:
        if name not in PRUNERS:
            raise ConfigError(
                "--pruners", "", f"unknown pruner {name!r}; expected some of {', '.join(PRUNERS)}"
            )
    if not args.report_only:
        code = compare.run(config, samplers, pruners, args.seeds, budget, quiet=not args.verbose)
        if code:
            return code
    runs = compare.load_runs(config, samplers, pruners, args.seeds)
    index = compare.write_report(runs, Path(args.out), budget, args.target)
    print((Path(args.out) / "summary.md").read_text())
    print(f"wrote {index}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    import yaml

    from pipeline.storage import mask_url

    config = _load(args)
    resolved = config.to_dict()
    resolved["storage"] = mask_url(resolved["storage"])
    print(f"{args.study}: OK")
    print(yaml.safe_dump(resolved, sort_keys=False), end="")
    return 0


def _open_study(args: argparse.Namespace) -> Any:
    import optuna

    from pipeline.storage import mask_url, open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(args.storage)
    names = [
        s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
    ]
    if args.study not in names:
        known = ", ".join(names) or "none"
        raise ConfigError(
            "--study",
            "",
            f"no study {args.study!r} in {mask_url(args.storage)} (studies there: {known})",
        )
    return optuna.load_study(study_name=args.study, storage=storage)


def cmd_best(args: argparse.Namespace) -> int:
    from pipeline.checkpoints import artifact_dir_for, live_checkpoint, open_store
    from pipeline.results import best_record, format_best

    study = _open_study(args)
    record = best_record(study)
    if record is None:
        print(f"error: study {args.study!r} has no complete trial yet", file=sys.stderr)
        return 1
    artifacts = artifact_dir_for(args.storage)
    artifact_id = live_checkpoint(study.best_trial, open_store(artifacts))
    record["checkpoint"] = artifact_id
    record["checkpoint_path"] = str(artifacts / artifact_id) if artifact_id else None
    print(json.dumps(record, indent=2) if args.json else format_best(record))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pipeline import checkpoints, evaluate

    study = _open_study(args)
    store = checkpoints.open_store(checkpoints.artifact_dir_for(args.storage, args.artifacts))
    try:
        result = evaluate.run(study, store, retrain_seeds=args.retrain_seeds)
    except evaluate.NothingToEvaluate as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline import report

    study = _open_study(args)
    try:
        written = report.export(study, Path(args.out), curves=args.curves)
    except (report.EmptyStudy, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline import report

    study = _open_study(args)
    try:
        index = report.write_report(study, Path(args.out))
    except report.EmptyStudy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"wrote {index} (open it in a browser; no server needed) and {index.parent / 'summary.md'}"
    )
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    import optuna_dashboard

    from pipeline.storage import mask_url, open_storage

    storage = open_storage(args.storage)
    print(
        f"optuna-dashboard for {mask_url(args.storage)} on http://{args.host}:{args.port} (Ctrl-C stops it)"
    )
    optuna_dashboard.run_server(storage, host=args.host, port=args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pipeline",
        description="Hyperparameter tuning for PyTorch from a YAML study file, on Optuna.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tune", help="run (or resume) a study with parallel local workers")
    _study_args(p)
    p.add_argument(
        "--storage", help=f"storage URL (default: the study file's, else {DEFAULT_STORAGE})"
    )
    p.add_argument("--n-trials", type=int, help="finished trials the study should end with")
    p.add_argument(
        "--workers",
        type=int,
        help="worker processes (default: the study file's, else one per core)",
    )
    p.add_argument("--timeout", type=float, help="start no trial after this many seconds")
    p.add_argument("--quiet", action="store_true", help="print only the final summary")
    p.add_argument(
        "--download",
        action="store_true",
        help="let the task download its data set (cifar10, fashion_mnist) if it is missing",
    )
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser(
        "worker", help="join a study from this machine; run trials until its budget is met"
    )
    _study_args(p)
    p.add_argument(
        "--storage", help="storage URL shared by all workers (default: the study file's)"
    )
    p.add_argument("--threads", type=int, help="torch threads (default: one per core)")
    p.add_argument(
        "--worker-index", type=int, help="offsets the sampler seed (default: the process id)"
    )
    p.add_argument("--timeout", type=float, help="start no trial after this many seconds")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser(
        "storage-proxy", help="serve Optuna's gRPC storage proxy in front of a database"
    )
    p.add_argument("--storage", required=True, help="the database the proxy fronts")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=13000)
    p.set_defaults(func=cmd_storage_proxy)

    p = sub.add_parser(
        "compare", help="run the study under several samplers/pruners and seeds at an equal budget"
    )
    _study_args(p)
    p.add_argument("--storage", help="storage URL (default: the study file's)")
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
    p.add_argument("--budget", default="trials:20", help="per run: trials:N, epochs:N or seconds:N")
    p.add_argument(
        "--target", type=float, help="report the time each run took to reach this metric value"
    )
    p.add_argument(
        "--out", default="reports/compare", help="report directory (default reports/compare)"
    )
    p.add_argument("--report-only", action="store_true", help="rebuild the report from the storage")
    p.add_argument("--verbose", action="store_true", help="show each run's live table")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("validate", help="check a study file and print it resolved")
    _study_args(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("best", help="print a study's best trial")
    p.add_argument(
        "--storage", default=DEFAULT_STORAGE, help=f"storage URL (default {DEFAULT_STORAGE})"
    )
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_best)

    for name, func, help_ in (
        ("evaluate", cmd_evaluate, "score the best trial's checkpoint on the test split"),
        ("export", cmd_export, "write one row per trial to CSV or Parquet"),
        ("report", cmd_report, "write an HTML report with plots, PNGs and a Markdown summary"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument(
            "--storage", default=DEFAULT_STORAGE, help=f"storage URL (default {DEFAULT_STORAGE})"
        )
        p.add_argument("--study", required=True, help="study name")
        p.set_defaults(func=func)
        if name == "evaluate":
            p.add_argument(
                "--artifacts", help="artifact directory (default: beside the storage file)"
            )
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
                "--out", required=True, help="directory for index.html, PNGs and summary.md"
            )

    p = sub.add_parser("dashboard", help="serve optuna-dashboard over a storage")
    p.add_argument("--artifacts", help="artifact directory (default: beside the storage file)")
    p.add_argument(
        "--storage", default=DEFAULT_STORAGE, help=f"storage URL (default {DEFAULT_STORAGE})"
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)"
    )
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(func=cmd_dashboard)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pipeline`` console script."""
    from pipeline.runner import EXIT_STORAGE_LOST, STORAGE_ERRORS
    from pipeline.storage import mask_url

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except STORAGE_ERRORS as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: cannot reach the storage: {mask_url(first)}", file=sys.stderr)
        return EXIT_STORAGE_LOST


if __name__ == "__main__":
    sys.exit(main())
