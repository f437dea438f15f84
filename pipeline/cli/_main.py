"""The ``pipeline`` command line: argparse, and the mapping of errors to exit codes.

Each ``cmd_*`` reads its flags and calls the module that does the work.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from pipeline.cli._arguments import STORAGE_ENV, parse_args
from pipeline.cli._launch import cmd_launch
from pipeline.config import StudyConfig, study_name_problem
from pipeline.exceptions import (
    EXIT_OK,
    EXIT_STORAGE_LOST,
    ConfigError,
    PipelineError,
    UsageError,
    exit_code_of,
)


def _resolve_storage(args: argparse.Namespace) -> None:
    """--storage, else the variable --storage-env names, else $PIPELINE_STORAGE, else the
    study file's (or, for commands without one, the default)."""
    if not hasattr(args, "storage_default") or args.storage:
        return
    if args.storage_env and args.storage_env not in os.environ:
        raise UsageError(f"--storage-env: the environment variable {args.storage_env} is not set")
    args.storage = os.environ.get(args.storage_env or STORAGE_ENV) or args.storage_default
    if args.storage is None and args.command == "storage-proxy":
        raise UsageError(f"--storage: give the database URL (or set {STORAGE_ENV})")


def _study_source(args: argparse.Namespace) -> None:
    """Result commands and the dashboard: a ``--study-file`` gives the study's name, the
    default storage and the checkpoints' directory; ``--storage`` still wins."""
    if not hasattr(args, "study_file"):
        return
    named = hasattr(args, "study")
    if named and (args.study is None) == (args.study_file is None):
        given = "not both" if args.study else "one of them"
        raise UsageError(f"give --study-name NAME or --study-file PATH ({given})")
    if args.study_file is None:
        return
    from pipeline.study import load_study_file

    config = load_study_file(args.study_file, code=False)  # no need of the user's package
    if named:
        args.study = config.study_name
    args.storage_default = config.storage
    if getattr(args, "artifacts", None) is None and config.artifacts:
        args.artifacts = config.artifacts


def _open(args: argparse.Namespace) -> Any:
    """The study a result command reads (an ``optuna.Study``)."""
    from pipeline.study import open_existing

    return open_existing(args.storage, args.study, study_file=args.study_file)


def _out(args: argparse.Namespace, suffix: str = "") -> str:
    """--out, else ``reports/<study name><suffix>``, never outside reports/."""
    if args.out:
        return str(args.out)
    problem = study_name_problem(args.study)
    if problem:
        raise UsageError(f"the study name {problem}; pass --out PATH")
    return f"reports/{args.study}{suffix}"


def _load(args: argparse.Namespace, **flags: Any) -> StudyConfig:
    from pipeline.study import load_study_file

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
        trial_timeout=args.trial_timeout,
        **{"task.options.download": True if args.download else None},
    )
    parent = None
    if args.branch is not None:
        if not args.branch.strip() or args.branch == config.study_name:
            raise UsageError("--branch: give the new study a name of its own")
        if study_name_problem(args.branch):
            raise UsageError(f"--branch: the name {study_name_problem(args.branch)}")
        parent, config = config.study_name, dataclasses.replace(config, study_name=args.branch)
    # A fresh process that has computed nothing yet: workers may be forked from it.
    code = tune(config, quiet=args.quiet, fresh_process=True, branch_from=parent)
    if config.multi_objective and code == EXIT_OK:
        import optuna

        from pipeline.study import storage_for
        from pipeline.visualization import publish_front

        # The honest Pareto plot, for the dashboard too.
        publish_front(optuna.load_study(study_name=config.study_name, storage=storage_for(config)))
    return code


def cmd_worker(args: argparse.Namespace) -> int:
    import os

    from pipeline.runner import join_study

    config = _load(args, storage=args.storage, trial_timeout=args.trial_timeout)
    # The index offsets the sampler's seed; distinct per worker unless given.
    worker = args.worker_index if args.worker_index is not None else os.getpid()
    threads = args.threads or config.cpus_per_trial or os.cpu_count() or 1
    return join_study(config, worker, threads, args.timeout)


def cmd_storage_proxy(args: argparse.Namespace) -> int:
    from pipeline.storages import serve_proxy

    serve_proxy(args.storage, args.host, args.port)
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.compare import (
        CompareBudget,
        check_names,
        load_runs,
        parse_names,
        run_comparison,
        write_report,
    )

    config = _load(args, storage=args.storage)
    budget = CompareBudget.parse(args.budget)
    samplers, pruners = parse_names(args.samplers, args.pruners)
    check_names(config.objectives, samplers, pruners)
    if not args.report_only:
        code = run_comparison(config, samplers, pruners, args.seeds, budget, quiet=not args.verbose)
        if code:
            return code
    runs = load_runs(config, samplers, pruners, args.seeds)
    index = write_report(runs, Path(args.out), budget, args.target)
    print((Path(args.out) / "summary.md").read_text())
    print(f"wrote {index}")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    import yaml

    from pipeline.study import masked

    config = _load(args)
    resolved = masked(config)
    print(f"{args.study}: OK")
    print(yaml.safe_dump(resolved, sort_keys=False), end="")
    return EXIT_OK


def cmd_best(args: argparse.Namespace) -> int:
    from pipeline.results import (
        best_with_checkpoint,
        format_best,
        format_front,
        front_with_checkpoints,
    )
    from pipeline.trial import is_multi_objective

    study, artifacts = _open(args), getattr(args, "artifacts", None)
    if is_multi_objective(study):  # several objectives: the Pareto front
        front = front_with_checkpoints(study, args.storage, artifacts)
        print(json.dumps(front, indent=2) if args.json else format_front(front))
        return EXIT_OK
    record = best_with_checkpoint(study, args.storage, artifacts)
    print(json.dumps(record, indent=2) if args.json else format_best(record))
    return cmd_replay(args) if args.replay else EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from pipeline.runner import format_replay, replay

    result = replay(_open(args))
    print(json.dumps(result, indent=2) if args.json else format_replay(result))
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pipeline.artifacts import open_location
    from pipeline.results import evaluate_best

    study = _open(args)
    store = open_location(args.storage, args.artifacts, create=False)
    result = evaluate_best(study, store, retrain_seeds=args.retrain_seeds)
    print(json.dumps(result, indent=2))
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.artifacts import open_location
    from pipeline.results import export

    study = _open(args)
    store = open_location(args.storage, args.artifacts, create=False)
    out = _out(args, ".csv")
    with _writing(out):
        written = export(study, Path(out), curves=args.curves, store=store)
    for path in written:
        print(f"wrote {path}")
    return EXIT_OK


@contextlib.contextmanager
def _writing(out: str) -> Iterator[None]:
    """An --out that cannot be written is the user's to change: one line."""
    try:
        yield
    except OSError as exc:
        raise UsageError(f"--out: cannot write {exc.filename or out} ({exc.strerror})") from None


def cmd_report(args: argparse.Namespace) -> int:
    import logging
    from pathlib import Path

    from pipeline.study import set_optuna_logging
    from pipeline.visualization import write_report

    study = _open(args)
    # Optuna's plots warn once per plot about a parameter with one value: not news.
    set_optuna_logging(logging.ERROR)
    out = _out(args)
    with _writing(out):
        index = write_report(study, Path(out))
    print(
        f"wrote {index} (open it in a browser; no server needed) and {index.parent / 'summary.md'}"
    )
    return EXIT_OK


def cmd_dashboard(args: argparse.Namespace) -> int:
    from pipeline.results import serve

    serve(
        args.storage,
        args.artifacts,
        args.host,
        args.port,
        allow_writes=args.allow_writes,
        study_file=args.study_file,
    )
    return EXIT_OK


COMMANDS = {
    "tune": cmd_tune,
    "worker": cmd_worker,
    "storage-proxy": cmd_storage_proxy,
    "launch": cmd_launch,
    "compare": cmd_compare,
    "validate": cmd_validate,
    "best": cmd_best,
    "evaluate": cmd_evaluate,
    "export": cmd_export,
    "report": cmd_report,
    "replay": cmd_replay,
    "dashboard": cmd_dashboard,
}


def run() -> None:
    """The ``pipeline`` console script (and ``python -m pipeline``): :func:`main`, then
    exit after one garbage collection instead of Python's several over all that torch
    and a study left in memory (about 1 s of a 2-core machine at every exit). That one
    closes what the command left open (a SQLite storage writes its log into the file as
    it closes); ``tune`` closes its storage itself."""
    code = main()
    gc.collect()  # once: what the command left unreferenced is closed now
    gc.freeze()
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pipeline`` console script: runs a command and turns the
    errors a user can cause into one ``error:`` line and an exit code."""
    from pipeline.signals import raise_on_stop_signals

    raise_on_stop_signals()
    try:
        args = parse_args(argv)
    except SystemExit as done:  # --help, or a usage mistake, already printed in one line
        return int(done.code or 0)
    try:
        return _run(args)
    except KeyboardInterrupt as interrupt:  # before any trial ran: nothing to record
        print("interrupted", file=sys.stderr)
        return exit_code_of(interrupt)


def _run(args: argparse.Namespace) -> int:
    from pipeline.storages import STORAGE_ERRORS, first_line, mask_url
    from pipeline.study import set_optuna_logging

    set_optuna_logging()
    try:
        _study_source(args)
        _resolve_storage(args)
        return int(COMMANDS[args.command](args))
    except PipelineError as exc:
        if isinstance(exc, ConfigError):
            # Commands that read a study file name it; the others take only --storage.
            exc = exc.located(args.study if hasattr(args, "overrides") else "--storage")
        print(f"error: {mask_url(str(exc))}", file=sys.stderr)  # a URL in any key
        return exc.exit_code
    except STORAGE_ERRORS as exc:
        print(f"error: cannot reach the storage: {first_line(exc)}", file=sys.stderr)
        return EXIT_STORAGE_LOST


if __name__ == "__main__":
    sys.exit(main())
