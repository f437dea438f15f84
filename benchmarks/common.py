"""Shared helpers for the benchmarks: run a study as a whole process, read its trials."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Run:
    """One study run: its wall time and the trials it left in the storage."""

    wall_seconds: float
    trials: list[optuna.trial.FrozenTrial]

    @property
    def finished(self) -> list[optuna.trial.FrozenTrial]:
        return [t for t in self.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]

    def compute_seconds(self) -> float:
        """Time inside forward, backward and evaluation, summed over trials."""
        return sum(t.user_attrs.get("compute_seconds", 0.0) for t in self.trials)

    def worker_span_seconds(self) -> float:
        """Per worker, first trial start to last trial end, summed over workers."""
        spans = defaultdict(list)
        for t in self.trials:
            if t.datetime_start and t.datetime_complete:
                spans[t.user_attrs.get("worker")].append((t.datetime_start, t.datetime_complete))
        return sum(
            (max(end for _, end in v) - min(start for start, _ in v)).total_seconds()
            for v in spans.values()
        )

    def trial_seconds(self) -> float:
        return sum(
            (t.datetime_complete - t.datetime_start).total_seconds()
            for t in self.trials
            if t.datetime_start and t.datetime_complete
        )


def run_study(study_file: str, *overrides: str) -> Run:
    """Run ``pipeline tune`` on a fresh SQLite file as its own process and read it back."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        cmd = [sys.executable, "-m", "pipeline", "tune", study_file, "--quiet", "--storage", url]
        for item in overrides:
            cmd += ["--set", item]
        started = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        summaries = optuna.get_all_study_summaries(url)
        study = optuna.load_study(study_name=summaries[0].study_name, storage=url)
        return Run(wall, study.get_trials(deepcopy=True))


def describe(values: list[float], fmt: str = "{:.3f}") -> str:
    """``median (min-max, n=N)``."""
    return (
        f"{fmt.format(statistics.median(values))} "
        f"(min {fmt.format(min(values))}, max {fmt.format(max(values))}, n={len(values)})"
    )


NOTES_MARKER = "<!-- Written by hand below this line; `make bench` keeps it. -->"


def write_results(path: Path, text: str, append: bool = False) -> None:
    """Write (or append) generated tables to a results file, above the hand-written
    notes that follow :data:`NOTES_MARKER`, which a rerun keeps."""
    old = path.read_text() if path.exists() else ""
    generated, marker, notes = old.partition(NOTES_MARKER)
    generated = (generated.rstrip("\n") + "\n" + text) if append else text
    path.write_text(generated.rstrip("\n") + "\n\n" + marker + notes if marker else generated)
