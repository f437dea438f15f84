"""Population-based training against random search with ASHA (both rules) and Ray Tune's
``PopulationBasedTraining``, at the same number of epochs, on a task where the learning
rate's schedule matters: the Ray tutorial's 1-D CNN on MNIST-1D, SGD, 20 epochs.

Four runs, one after another, for each seed:

- ``pbt``: this project, ``scheduler: pbt`` (population 8, interval 2, quantile 0.25,
  resample probability 0.25, factors 0.8 and 1.2, lr and momentum mutated): 8 x 20 epochs;
- ``asha-optuna`` and ``asha-ray``: this project, random sampling with ``pruner: asha``
  (``rule: optuna``, Optuna's SuccessiveHalvingPruner, or ``rule: ray``, Ray's cutoff;
  min_resource 1, reduction factor 4) and ``max_total_epochs`` 160, the same epochs;
- ``ray-pbt``: Ray Tune's PopulationBasedTraining with the same population, interval and
  mutations (benchmarks/ray_tune_pbt.py, from ``.venv-ray``: ``make bench-ray-env``).

Each run is a whole process timed from outside, two trials at a time on two cores. The
test accuracy is the winner's own: the best trial's scores on the test split (PBT: the
winning member's final model; ASHA: the best complete trial; Ray: its best trial's last
checkpoint). Medians over the seeds are written to ``--markdown``.

    python benchmarks/pbt.py [--seeds 3] [--markdown benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EPOCHS = 20
POPULATION = 8
TOTAL_EPOCHS = EPOCHS * POPULATION
SECTION = "## Population-based training against random + ASHA and Ray Tune's PBT"
RUNS = ("pbt", "asha-optuna", "asha-ray", "ray-pbt")


def study(seed: int, run: str, storage: str) -> dict[str, Any]:
    """The project's study file of ``run`` as data."""
    config: dict[str, Any] = {
        "study_name": f"bench-{run}-{seed}",
        "task": {
            "name": "mnist1d",
            "options": {"val_fraction": 0.1, "split_seed": 0, "data_seed": 42},
        },
        "metric": "val_accuracy",
        "direction": "maximize",
        "max_epochs": EPOCHS,
        "sampler": {"name": "random", "seed": seed},
        "search_space": {
            "arch": "tutorial",
            "l1": {"type": "pow2", "low": 16, "high": 128},
            "l2": {"type": "pow2", "low": 16, "high": 64},
            "lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
            "momentum": {"type": "float", "low": 0.5, "high": 0.99},
            "optimizer": "sgd",
            "batch_size": 32,
        },
        "storage": storage,
        "workers": 2,
        "device": "cpu",
        "seed": seed,
    }
    if run == "pbt":
        config["pruner"] = {"name": "none"}
        config["scheduler"] = {
            "name": "pbt",
            "options": {"population": POPULATION, "interval": 2, "mutate": ["lr", "momentum"]},
        }
    else:
        rule = run.removeprefix("asha-")
        config["pruner"] = {
            "name": "asha",
            "options": {"rule": rule, "min_resource": 1, "reduction_factor": 4},
        }
        config["n_trials"] = 200  # the epoch budget ends the study first
        config["max_total_epochs"] = TOTAL_EPOCHS
    return config


def run_project(seed: int, run: str, logs: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        path = Path(tmp) / "study.yaml"
        path.write_text(yaml.safe_dump(study(seed, run, url), sort_keys=False))
        wall = _timed(
            [sys.executable, "-m", "pipeline", "tune", str(path)], logs / f"{run}-{seed}.log"
        )
        s = optuna.load_study(study_name=f"bench-{run}-{seed}", storage=url)
        from pipeline.trial import best_trial  # the project's rule: PBT's deepest segments

        best = best_trial(s)
        assert best is not None
        trials = s.get_trials(deepcopy=False)
        return {
            "wall": wall,
            "epochs": _epochs(trials),
            "trials": len(trials),
            "val_accuracy": float(best.value or 0.0),
            "test_accuracy": float(best.user_attrs["test_accuracy"]),
        }


def _epochs(trials: list[optuna.trial.FrozenTrial]) -> int:
    """Epochs trained: a PBT segment's own epochs, after its parent's."""
    by_number = {t.number: t for t in trials}
    total = 0
    for t in trials:
        parent = by_number.get(
            t.user_attrs.get("parent", -1) if t.user_attrs.get("parent") is not None else -1
        )
        before = max(parent.intermediate_values, default=0) if parent is not None else 0
        total += sum(step > before for step in t.intermediate_values)
    return total


def run_ray(seed: int, logs: Path, ray_python: str) -> dict[str, Any]:
    out = logs / f"ray-pbt-{seed}.json"
    cmd = [ray_python, str(HERE / "ray_tune_pbt.py"), "--seed", str(seed), "--out", str(out)]
    cmd += ["--population", str(POPULATION)]
    wall = _timed(cmd, logs / f"ray-pbt-{seed}.log", {**os.environ, "PYTHONPATH": str(HERE)})
    data = json.loads(out.read_text())
    return {
        "wall": wall,
        "epochs": data["epochs"],
        "trials": data["trials"],
        "val_accuracy": data["best_val_accuracy"],
        "test_accuracy": data["test_accuracy"],
    }


def _timed(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> float:
    with log.open("w") as out:
        started = time.perf_counter()
        done = subprocess.run(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
        wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"error: {cmd[1]} exited {done.returncode}; its output is in {log}")
    return wall


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


def _cell(rows: list[dict[str, Any]], key: str, fmt: str) -> str:
    values = [r[key] for r in rows]
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def markdown(
    results: dict[str, list[dict[str, Any]]], seeds: int, minutes: float, shared: bool
) -> str:
    labels = {
        "pbt": "this project, `scheduler: pbt`",
        "asha-optuna": "this project, random + `asha` (`rule: optuna`)",
        "asha-ray": "this project, random + `asha` (`rule: ray`)",
        "ray-pbt": "Ray Tune `PopulationBasedTraining`",
    }
    cpu = platform.processor() or "cpu"
    lines = [
        SECTION,
        "",
        f"Measured {date.today()} on {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"torch {torch.__version__}, optuna {optuna.__version__}. {seeds} seeds, each cell: median "
        f"(min-max). "
        + (f"`python benchmarks/pbt.py --seeds {seeds}` took {minutes:.0f} min." if minutes else "")
        + (
            " The machine was shared with other jobs while it ran: wall times are inflated and noisy."
            if shared
            else ""
        ),
        "",
        "| run | seeds | wall s | epochs trained | trials | best val acc | test acc |",
        "|---|---|---|---|---|---|---|",
    ]
    for run, rows in results.items():
        if rows:
            lines.append(
                f"| {labels[run]} | {len(rows)} | {_cell(rows, 'wall', '{:.0f}')} | {_cell(rows, 'epochs', '{:.0f}')} "
                f"| {_cell(rows, 'trials', '{:.0f}')} | {_cell(rows, 'val_accuracy', '{:.3f}')} "
                f"| {_cell(rows, 'test_accuracy', '{:.3f}')} |"
            )
    lines += ["", "Targets (medians):"]
    pbt = results.get("pbt") or []
    for other in ("asha-optuna", "asha-ray"):
        if pbt and results.get(other):
            a, b = _median(pbt, "test_accuracy"), _median(results[other], "test_accuracy")
            lines.append(
                f"- PBT test acc {a:.3f} vs {labels[other]} {b:.3f}: {'met' if a >= b else 'NOT met'}"
            )
    if pbt and results.get("ray-pbt"):
        a, b = _median(pbt, "test_accuracy"), _median(results["ray-pbt"], "test_accuracy")
        ratio = _median(pbt, "wall") / _median(results["ray-pbt"], "wall")
        met = a >= b and ratio <= 0.6
        lines.append(
            f"- PBT test acc {a:.3f} vs Ray PBT {b:.3f}, wall time {ratio:.2f}x Ray's "
            f"(target: >= and <= 0.6x): {'met' if met else 'NOT met'}"
        )
    return "\n".join(lines) + "\n"


def write_section(path: Path, text: str) -> None:
    """Replace this benchmark's section of ``path`` (or append it)."""
    old = path.read_text() if path.exists() else ""
    start = old.find(SECTION)
    if start < 0:
        path.write_text(old.rstrip("\n") + "\n\n" + text)
        return
    end = old.find("\n## ", start + len(SECTION))
    rest = old[end + 1 :] if end >= 0 else ""
    path.write_text(old[:start] + text + ("\n" + rest if rest else ""))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--ray-python", default=str(REPO / ".venv-ray/bin/python"))
    parser.add_argument("--markdown", default=None, help="write the table into this file")
    parser.add_argument("--shared", action="store_true", help="say the machine was shared")
    parser.add_argument(
        "--from-log",
        nargs="*",
        help="write the table from the `seed N run: {...}` lines of earlier runs' output",
    )
    parser.add_argument(
        "--seed-list", default=None, help="seeds to run, e.g. 1,2 (default: 0..seeds-1)"
    )
    args = parser.parse_args()
    runs = args.runs.split(",")
    if args.from_log is not None:  # runs measured earlier, perhaps in several sittings
        found: dict[str, list[dict[str, Any]]] = {run: [] for run in RUNS}
        for log in args.from_log:
            for line in Path(log).read_text().splitlines():
                head, _, data = line.partition(": ")
                if head.startswith("seed ") and head.split()[-1] in found:
                    found[head.split()[-1]].append(json.loads(data))
        seeds = max(len(rows) for rows in found.values())
        text = markdown(found, seeds, 0.0, args.shared)
        print(text)
        if args.markdown:
            write_section(Path(args.markdown), text)
        return
    if "ray-pbt" in runs and not Path(args.ray_python).exists():
        sys.exit(f"error: {args.ray_python} not found; run `make bench-ray-env` first")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    results: dict[str, list[dict[str, Any]]] = {run: [] for run in runs}
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp)
        chosen = (
            [int(x) for x in args.seed_list.split(",")] if args.seed_list else range(args.seeds)
        )
        for seed in chosen:
            for run in runs:
                row = (
                    run_ray(seed, logs, args.ray_python)
                    if run == "ray-pbt"
                    else run_project(seed, run, logs)
                )
                results[run].append(row)
                print(f"seed {seed} {run}: {json.dumps(row)}", flush=True)
    text = markdown(results, args.seeds, (time.perf_counter() - started) / 60, args.shared)
    print(text)
    if args.markdown:
        write_section(Path(args.markdown), text)


if __name__ == "__main__":
    main()
