"""This project against Ray Tune and a bare Optuna script on the tutorial task, plus
overhead, scaling and pruning savings. Figures print as they are measured; the whole
set is written as Markdown (``--markdown``) for the README to quote.

Every run is a whole process, start to exit, timed from outside: ``pipeline tune`` on a
fresh SQLite file (with its live table, checkpoints and final evaluation), the bare
script (benchmarks/bare_optuna.py), and Ray Tune from its own venv
(benchmarks/ray_tune_tutorial.py; ``make bench-ray-env``), once with its defaults and
once with ``reuse_actors=True``. Repeat r gives every tool the same 20 configurations
(seed r); the order of the tools rotates from repeat to repeat. The best configuration
each tool finds is retrained by this script, one procedure for all (10 epochs on the
training split, seed 0), and scored on the test split, outside the timed runs.

"Busy" is the share of worker-slot time (2 slots x wall time) spent inside forward,
backward and evaluation, as each tool's trials measured it; "overhead per trial" is the
rest, divided by the number of trials.

    python benchmarks/tutorial_bench.py [--repeats 3] [--tools project,bare,ray,ray-reuse]
        [--sections tools,scaling,pruning] [--markdown benchmarks/RESULTS.md]
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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml
from common import write_results
from tutorial_task import (
    CONCURRENT,
    MAX_EPOCHS,
    N_TRIALS,
    load_data,
    retrain_test_accuracy,
    study_config,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


@dataclass
class Measure:
    """One whole-process run of one tool."""

    tool: str
    seed: int
    wall: float
    trials: int
    epochs: int
    stopped: int
    compute: float
    best_config: dict[str, Any]
    best_val_loss: float
    best_val_accuracy: float
    slots: int = CONCURRENT
    test_accuracy: float = float("nan")

    @property
    def busy(self) -> float:
        return self.compute / (self.slots * self.wall)

    @property
    def overhead_per_trial(self) -> float:
        return (self.slots * self.wall - self.compute) / self.trials


@dataclass
class Bench:
    ray_python: str
    log_dir: Path
    splits: Any
    measures: list[Measure] = field(default_factory=list)
    _tests: dict[str, float] = field(default_factory=dict)

    def run(self, tool: str, seed: int) -> Measure:
        started = time.strftime("%H:%M:%S")
        measure = RUNNERS[tool](self, seed)
        measure.test_accuracy = self.test_accuracy(measure.best_config)
        self.measures.append(measure)
        print(
            f"    [{started}] {tool:<16} seed {seed}: {measure.wall:6.1f} s, "
            f"{measure.epochs} epochs, {measure.stopped}/{measure.trials} stopped early, "
            f"busy {100 * measure.busy:.1f}%, best val loss {measure.best_val_loss:.4f}, "
            f"test acc {measure.test_accuracy:.4f}",
            flush=True,
        )
        return measure

    def of(self, tool: str) -> list[Measure]:
        return sorted((m for m in self.measures if m.tool == tool), key=lambda m: m.seed)

    def test_accuracy(self, config: dict[str, Any]) -> float:
        key = json.dumps(config, sort_keys=True)
        if key not in self._tests:
            self._tests[key] = retrain_test_accuracy(config, self.splits)
        return self._tests[key]

    def _process(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> float:
        """Run one tool's process; its output goes to a log file; return its wall time."""
        log = self.log_dir / f"{name}.log"
        with log.open("w") as out:
            started = time.perf_counter()
            done = subprocess.run(
                cmd, cwd=self.log_dir, stdout=out, stderr=subprocess.STDOUT, env=env
            )
            wall = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"error: {name} exited {done.returncode}; its output is in {log}")
        return wall


def run_project(
    bench: Bench, seed: int, pruner: str = "asha", workers: int = CONCURRENT
) -> Measure:
    name = f"project-{pruner}-{workers}w-{seed}"
    with tempfile.TemporaryDirectory(dir=bench.log_dir) as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        study_file = Path(tmp) / "study.yaml"
        study_file.write_text(
            yaml.safe_dump({**study_config(seed, pruner, workers), "storage": url})
        )
        cmd = [sys.executable, "-m", "pipeline", "tune", str(study_file)]
        wall = bench._process(name, cmd)
        summary = optuna.get_all_study_summaries(url)[0]
        study = optuna.load_study(study_name=summary.study_name, storage=url)
        trials = study.get_trials(deepcopy=False)
        best = study.best_trial
        return Measure(
            tool="project" if (pruner, workers) == ("asha", CONCURRENT) else name.rsplit("-", 1)[0],
            seed=seed,
            wall=wall,
            trials=len(trials),
            epochs=sum(t.user_attrs.get("epochs", 0) for t in trials),
            stopped=sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
            compute=sum(t.user_attrs.get("compute_seconds", 0.0) for t in trials),
            best_config=best.params,
            best_val_loss=float(best.value or 0.0),
            best_val_accuracy=best.user_attrs["val_accuracy"],
            slots=workers,
        )


def _from_json(bench: Bench, tool: str, seed: int, cmd: list[str], **env: str) -> Measure:
    out = bench.log_dir / f"{tool}-{seed}.json"
    wall = bench._process(
        f"{tool}-{seed}", [*cmd, "--seed", str(seed), "--out", str(out)], {**os.environ, **env}
    )
    data = json.loads(out.read_text())
    if data.get("errors"):
        sys.exit(f"error: {tool} had {data['errors']} failed trials; see {bench.log_dir}")
    return Measure(
        tool=tool,
        seed=seed,
        wall=wall,
        trials=data["trials"],
        epochs=data["epochs"],
        stopped=data["stopped_early"],
        compute=data["compute_seconds"],
        best_config=data["best_config"],
        best_val_loss=data["best_val_loss"],
        best_val_accuracy=data["best_val_accuracy"],
    )


def run_bare(bench: Bench, seed: int) -> Measure:
    return _from_json(bench, "bare", seed, [sys.executable, str(HERE / "bare_optuna.py")])


def run_ray(bench: Bench, seed: int, reuse: bool = False) -> Measure:
    cmd = [bench.ray_python, str(HERE / "ray_tune_tutorial.py")] + (
        ["--reuse-actors"] if reuse else []
    )
    # Ray's worker processes import tutorial_task from here.
    return _from_json(bench, "ray-reuse" if reuse else "ray", seed, cmd, PYTHONPATH=str(HERE))


RUNNERS: dict[str, Callable[[Bench, int], Measure]] = {
    "project": run_project,
    "bare": run_bare,
    "ray": run_ray,
    "ray-reuse": lambda bench, seed: run_ray(bench, seed, reuse=True),
    "project-none-2w": lambda bench, seed: run_project(bench, seed, pruner="none"),
    "project-median-2w": lambda bench, seed: run_project(bench, seed, pruner="median"),
    "project-asha-1w": lambda bench, seed: run_project(bench, seed, workers=1),
}
LABELS = {
    "project": "this project",
    "bare": "bare Optuna script",
    "ray": "Ray Tune (defaults)",
    "ray-reuse": "Ray Tune (reuse_actors=True)",
}


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    """``median (min-max)``."""
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def tools_table(bench: Bench, tools: list[str]) -> list[str]:
    rows = [
        "| tool | wall s | epochs trained | stopped early | best val loss | test acc (mean) | busy % | overhead s/trial |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for tool in tools:
        ms = bench.of(tool)
        rows.append(
            f"| {LABELS[tool]} | {spread([m.wall for m in ms])} | {spread([m.epochs for m in ms], '{:.0f}')} "
            f"| {spread([m.stopped for m in ms], '{:.0f}')}/{N_TRIALS} | {spread([m.best_val_loss for m in ms], '{:.3f}')} "
            f"| {statistics.fmean(m.test_accuracy for m in ms):.4f} | {spread([100 * m.busy for m in ms])} "
            f"| {spread([m.overhead_per_trial for m in ms], '{:.2f}')} |"
        )
    return rows


def ratio_lines(bench: Bench, tools: list[str]) -> list[str]:
    lines = []
    for other in [t for t in tools if t != "project"]:
        pairs = list(zip(bench.of("project"), bench.of(other), strict=True))
        ratios = [p.wall / o.wall for p, o in pairs]
        lines.append(
            f"- wall time, this project / {LABELS[other]}: **{spread(ratios, '{:.2f}')}** "
            f"(median of {len(ratios)} pairs, min-max)"
        )
    return lines


def scaling_table(bench: Bench) -> list[str]:
    rows = [
        "| workers | wall s | trials/min | epochs/min | busy % |",
        "|---|---|---|---|---|",
    ]
    for workers, tool in ((1, "project-asha-1w"), (2, "project")):
        ms = bench.of(tool)
        rows.append(
            f"| {workers} | {spread([m.wall for m in ms])} | {spread([60 * m.trials / m.wall for m in ms])} "
            f"| {spread([60 * m.epochs / m.wall for m in ms])} | {spread([100 * m.busy for m in ms])} |"
        )
    one, two = bench.of("project-asha-1w"), bench.of("project")
    ratios = [
        (60 * b.epochs / b.wall) / (60 * a.epochs / a.wall) for a, b in zip(one, two, strict=True)
    ]
    rows.append("")
    rows.append(f"- epochs/min, 2 workers / 1 worker: **{spread(ratios, '{:.2f}')}**")
    return rows


def pruning_table(bench: Bench) -> list[str]:
    rows = [
        "| pruner | epochs trained | stopped early | wall s | best val acc | best val loss | test acc (mean) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, tool in (
        ("none", "project-none-2w"),
        ("median", "project-median-2w"),
        ("ASHA", "project"),
    ):
        ms = bench.of(tool)
        rows.append(
            f"| {label} | {spread([m.epochs for m in ms], '{:.0f}')} | {spread([m.stopped for m in ms], '{:.0f}')}/{N_TRIALS} "
            f"| {spread([m.wall for m in ms])} | {spread([m.best_val_accuracy for m in ms], '{:.4f}')} "
            f"| {spread([m.best_val_loss for m in ms], '{:.3f}')} | {statistics.fmean(m.test_accuracy for m in ms):.4f} |"
        )
    none, asha = bench.of("project-none-2w"), bench.of("project")
    shares = [a.epochs / n.epochs for n, a in zip(none, asha, strict=True)]
    gaps = [
        100 * (n.best_val_accuracy - a.best_val_accuracy) for n, a in zip(none, asha, strict=True)
    ]
    rows.append("")
    rows.append(f"- ASHA epochs / no-pruning epochs: **{spread(shares, '{:.2f}')}**")
    rows.append(f"- best val accuracy, no pruning minus ASHA: **{spread(gaps, '{:+.1f}')} points**")
    return rows


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, optuna {optuna.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tools", default="project,bare,ray,ray-reuse")
    parser.add_argument("--sections", default="tools,scaling,pruning")
    parser.add_argument("--ray-python", default=str(REPO / ".venv-ray/bin/python"))
    parser.add_argument("--markdown", default=None, help="write the tables here (Markdown)")
    args = parser.parse_args()
    tools = args.tools.split(",")
    sections = args.sections.split(",")
    if any(t.startswith("ray") for t in tools) and not Path(args.ray_python).exists():
        sys.exit(f"error: {args.ray_python} not found; run `make bench-ray-env` first")
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ray_version = (
        subprocess.run(
            [args.ray_python, "-c", "import ray; print(ray.__version__)"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        if "ray" in args.tools
        else "-"
    )
    print(
        f"Tutorial benchmark: {N_TRIALS} trials, <= {MAX_EPOCHS} epochs, {CONCURRENT} at a time; {machine()}; ray {ray_version}"
    )
    with tempfile.TemporaryDirectory(prefix="tutorial-bench-") as logs:
        bench = Bench(args.ray_python, Path(logs), load_data())
        started = time.perf_counter()
        for seed in range(args.repeats):
            order = tools[seed % len(tools) :] + tools[: seed % len(tools)]
            if "tools" not in sections:
                order = ["project"]
            if "scaling" in sections:
                order.append("project-asha-1w")
            if "pruning" in sections:
                order += ["project-none-2w", "project-median-2w"]
            print(f"  repeat {seed + 1}/{args.repeats}", flush=True)
            for tool in order:
                bench.run(tool, seed)
        elapsed = time.perf_counter() - started
    header = [
        f"Measured {date.today().isoformat()} on {machine()}; Ray {ray_version}.",
        f"{args.repeats} repeats; each cell: median (min-max) over repeats. "
        f"`python benchmarks/tutorial_bench.py --repeats {args.repeats}` took {elapsed / 60:.0f} min.",
    ]
    out = ["## This project, a bare Optuna script and Ray Tune", "", *header, ""]
    if "tools" in sections:
        out += [*tools_table(bench, tools), "", *ratio_lines(bench, tools), ""]
    if "scaling" in sections:
        out += ["## Scaling: 1 and 2 workers (this project, ASHA)", "", *scaling_table(bench), ""]
    if "pruning" in sections:
        out += ["## Pruning savings (this project, 2 workers)", "", *pruning_table(bench), ""]
    text = "\n".join(out)
    print()
    print(text)
    if args.markdown:
        write_results(Path(args.markdown), text)


if __name__ == "__main__":
    main()
