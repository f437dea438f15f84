"""The live console reporter, in the spirit of Ray Tune's CLIReporter.

It reads the shared storage (never the workers' memory), so it shows the trials of every
worker, local or remote: a row per finished trial, a progress line with trials done, the
best value so far and an ETA, and each running trial's epoch and best value so far (from
the intermediate values it reported). On a terminal the progress line is rewritten in
place; in a log, a running-trials line is printed only when it changed, at most every
``RUNNING_EVERY`` seconds.
"""

from __future__ import annotations

import math
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from pipeline.config import StudyConfig, user_code
from pipeline.results import (
    best_record,
    deepest_record,
    format_best,
    format_front,
    front_result,
)
from pipeline.runner._hints import pipeline_command, storage_flags
from pipeline.storages import mask_url
from pipeline.study import stop_reason
from pipeline.trial import (
    FINISHED,
    Outcome,
    best_trial,
    front,
    is_feasible,
    last_metrics,
    outcome_of,
    reason_of,
    state_counts,
)

_ENDED = (*FINISHED, TrialState.FAIL)


def _fmt(value: Any) -> str:
    """A cell: floats with 4 decimals (scientific notation outside 0.001..10000), so that
    a column's numbers line up on their decimal point."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.3e}" if value and not 1e-3 <= abs(value) < 1e4 else f"{value:.4f}"
    return "-" if value is None else str(value)


MAX_METRIC_COLUMNS = 5
MIN_WIDTH = 9  # fits 1.234e-05
RUNNING_EVERY = 5.0  # seconds between running-trials lines in a log


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class LiveReporter:
    """Prints finished trials as they appear in the storage.

    Args:
        metric: The study metric's name, for the progress line.
        params: The searched parameters, one column each.
        total: The number of finished trials the study aims at (None: no trial limit).
        description: The header's first lines (what runs, where it is stored).
        device: Where the trials run, for the header.
        dashboard: The command that browses this storage, for the summary.
        storage_flag: `` --storage URL`` for the next commands (:func:`storage_flags`), or "".
        quiet: Print only the final summary (for logs).
        max_epochs: The study's epochs per trial, for the running trials' progress.
    """

    def __init__(
        self,
        study: optuna.Study,
        *,
        metric: str,
        params: list[str],
        total: int | None,
        description: str = "",
        device: str = "cpu",
        dashboard: str = "pipeline dashboard",
        storage_flag: str = "",
        quiet: bool = False,
        out: TextIO = sys.stdout,
        max_epochs: int | None = None,
        objectives: list[str] | None = None,
        stopped: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.study = study
        self.stopped = stopped  # why the study stopped before its budget, if it did
        self.objectives = objectives or [metric]  # the first is ``metric``
        self.storage_flag = storage_flag  # " --storage URL" for the next commands, or ""
        self.metric = metric
        self.params = params
        self.total = total
        self.description = description
        self.device = device
        self.dashboard = dashboard
        self.quiet = quiet
        self.out = out
        self.tty = out.isatty()
        self.widths = {n: max(len(n), MIN_WIDTH) for n in [*self.params, *self.objectives]}
        self.metrics: list[str] | None = None  # the columns, from the first trial's report
        self.started = time.time()
        self.printed: set[int] = set()
        self.finished_before: int | None = None
        self._progress_shown = False
        self.max_epochs = max_epochs
        self.hints: list[str] = []  # more lines for next_steps (where the runs are tracked)
        self._running_said = ("", 0.0)  # the last running-trials line in a log, and when

    @classmethod
    def for_study(
        cls,
        study: optuna.Study,
        config: StudyConfig,
        total: int | None,
        quiet: bool = False,
        out: TextIO = sys.stdout,
    ) -> LiveReporter:
        """The reporter of a study file's run."""
        limit = "no limit" if total is None else str(total)
        code = user_code(config.trainable, config.lightning, config.transformers)
        code = code or ("task", config.task.name if config.task else "")
        description = (
            f"Study {config.study_name!r}: "
            + f"{code[0]} {code[1]}, "
            + f"sampler {config.sampler.name}, pruner {config.pruner.name}, "
            + ", ".join(f"{o.metric} ({o.direction})" for o in config.objectives)
            + f", {limit} trials, "
            f"{config.max_epochs} epochs max\nStorage {mask_url(config.storage)}"
        )
        storage_flag, secret_note = storage_flags(config.storage)
        dashboard = f"{pipeline_command()} dashboard{storage_flag}"
        if secret_note:
            dashboard += f"  {secret_note}"
        return cls(
            study,
            metric=config.metric,
            params=[n for n, s in config.search_space.items() if s.type != "fixed"],
            total=total,
            description=description,
            device=config.device,
            dashboard=dashboard,
            storage_flag=storage_flag,
            quiet=quiet,
            out=out,
            max_epochs=config.max_epochs,
            objectives=config.metric_names,
            stopped=lambda: stop_reason(study, config.stop),
        )

    def header(self, workers: int, threads: int) -> None:
        """The description; the table's column names follow with its first row, when the
        reported metrics are known."""
        if self.quiet:
            return
        print(
            f"{self.description}; {workers} worker(s) x {threads} thread(s) on {self.device}",
            file=self.out,
            flush=True,
        )

    def _columns(self, trial: FrozenTrial) -> None:
        """Print the column names: the searched parameters, then the metrics this trial
        reported (the study metric first), epochs and seconds."""
        reported = [k for k in last_metrics(trial) if k not in self.objectives]
        self.metrics = [*self.objectives, *reported][
            : max(MAX_METRIC_COLUMNS, len(self.objectives))
        ]
        for name in self.metrics:
            self.widths[name] = max(len(name), MIN_WIDTH)
        cols = ["trial", "state   "] + [n.rjust(self.widths[n]) for n in self.params]
        cols += [n.rjust(self.widths[n]) for n in self.metrics] + ["epochs", "seconds"]
        print("  ".join(cols), file=self.out)

    def poll(self) -> None:
        """Print rows for newly finished trials and refresh the progress line."""
        if self.quiet and self.finished_before is not None:
            return  # nothing to print before the summary, which reads the trials itself
        trials = self.study.get_trials(deepcopy=False)
        finished = [t for t in trials if t.state in _ENDED]
        if self.finished_before is None:
            self.finished_before = sum(t.state in FINISHED for t in trials)
            self.printed.update(t.number for t in finished)
        new = sorted(
            (t for t in finished if t.number not in self.printed),
            key=lambda t: t.datetime_complete or 0,
        )
        if self.quiet:
            self.printed.update(t.number for t in new)
            return
        if new and self.tty and self._progress_shown:
            print("\r\033[K", end="", file=self.out)
        for trial in new:
            self.printed.add(trial.number)
            if self.metrics is None:
                self._columns(trial)
            print(self._row(trial), file=self.out)
        running = self._running(trials)
        if self.tty:
            line = self._progress(trials) + (f" {running}" if running else "")
            width = shutil.get_terminal_size().columns - 1  # a wrapped line is not erased
            print("\r\033[K" + line[:width], end="", file=self.out, flush=True)
            self._progress_shown = True
            return
        if new:
            print(self._progress(trials), file=self.out, flush=True)
        said, when = self._running_said
        if running and running != said and time.time() - when >= RUNNING_EVERY:
            print(running, file=self.out, flush=True)
            self._running_said = (running, time.time())

    def _running(self, trials: list[FrozenTrial]) -> str:
        """Each running trial's last reported epoch and its best value so far, numbers
        right-aligned in cells of fixed width; "" when none runs."""
        minimize = self.study.directions[0] == StudyDirection.MINIMIZE
        of = f"/{self.max_epochs}" if self.max_epochs else ""
        epoch_width = len(str(self.max_epochs or 0))
        number_width = len(str(len(trials)))
        cells = []
        for trial in sorted(trials, key=lambda t: t.number):
            if trial.state != TrialState.RUNNING:
                continue
            values = [v for v in trial.intermediate_values.values() if math.isfinite(v)]
            epoch = max(trial.intermediate_values, default=0)
            best = (min if minimize else max)(values) if values else None
            cells.append(
                f"#{trial.number:>{number_width}d} {epoch:>{epoch_width}d}{of} "
                + _fmt(best).rjust(self.widths[self.metric])
            )
        if not cells:
            return ""
        if len(self.study.directions) > 1:  # no intermediate values: only the trials
            running = [t for t in trials if t.state == TrialState.RUNNING]
            return "running: " + " | ".join(f"#{t.number}" for t in running)
        return f"running (epoch, best {self.metric} so far): " + " | ".join(cells)

    def _row(self, trial: FrozenTrial) -> str:
        attrs = trial.user_attrs
        metrics = {**{k: attrs.get(k) for k in self.objectives}, **last_metrics(trial)}
        seconds = (
            (trial.datetime_complete - trial.datetime_start).total_seconds()
            if trial.datetime_complete and trial.datetime_start
            else None
        )
        outcome = outcome_of(trial)
        state = outcome.label if outcome is not None else trial.state.name
        if outcome in (Outcome.FAILED, Outcome.TIMED_OUT):
            state = "FAIL"
        cells = [f"{trial.number:5d}", f"{state:8s}"]
        cells += [_fmt(trial.params.get(n)).rjust(self.widths[n]) for n in self.params]
        cells += [_fmt(metrics.get(n)).rjust(self.widths[n]) for n in self.metrics or []]
        cells += [
            _fmt(attrs.get("epochs")).rjust(6),
            ("-" if seconds is None else f"{seconds:.1f}").rjust(7),
        ]
        row = "  ".join(cells)
        if trial.state == TrialState.COMPLETE and not is_feasible(trial):
            row += "  (infeasible)"
        reason = reason_of(trial)
        if reason:  # why it was pruned or failed; a complete trial's note
            row += f"  ({reason})"
        return row

    def _progress(self, trials: list[FrozenTrial]) -> str:
        done = sum(t.state in FINISHED for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        elapsed = time.time() - self.started
        parts = [
            f"{done}/{self.total if self.total is not None else '-'} done",
            f"{running} running",
        ]
        if len(self.study.directions) > 1:  # several objectives: the front's size
            size = len(front(trials, self.study.directions))
            parts.append(f"front {size} feasible trial{'s' if size != 1 else ''}")
        elif (best := best_trial(self.study, trials=trials)) is not None:
            parts.append(f"best {self.metric} {_fmt(best.value)} (#{best.number})")
        parts.append(f"elapsed {_clock(elapsed)}")
        new_done = done - (self.finished_before or 0)
        if self.total is not None and new_done > 0 and done < self.total:
            parts.append(f"ETA {_clock(elapsed / new_done * (self.total - done))}")
        return "[" + " | ".join(parts) + "]"

    def summary(self) -> int:
        """Print the final summary; return 0, or 1 when no trial completed."""
        if self.tty and self._progress_shown and not self.quiet:
            print(file=self.out)
        c = state_counts(self.study.get_trials(deepcopy=False))
        print(
            f"\nStudy {self.study.study_name!r}: {c['complete']} complete, {c['pruned']} pruned, "
            f"{c['fail']} failed, {c['running']} running, {c['waiting']} waiting "
            f"({_clock(time.time() - self.started)} this run)",
            file=self.out,
        )
        stopped = self.stopped()
        if stopped:
            print(stopped[0].upper() + stopped[1:], file=self.out)
        front = front_result(self.study) if len(self.study.directions) > 1 else None
        record = best_record(self.study) if front is None else None
        if record is None and front is None and not c["complete"]:
            record = deepest_record(self.study)  # every trial pruned: the deepest one
        if record is None and front is None:
            print(
                "No trial completed, so there is no best configuration yet."
                if not c["complete"]
                else "No complete trial met the constraints, so there is no best one yet.",
                file=self.out,
            )
            return 1
        print(format_best(record) if record else format_front(front or {}), file=self.out)
        print(
            f"\nBrowse every trial: {self.dashboard}  (http://127.0.0.1:8080)",
            file=self.out,
            flush=True,
        )
        return 0

    def next_steps(self) -> None:
        """The commands that show the study's results, with its real name and storage."""
        name = shlex.quote(self.study.study_name)
        out = f"reports/{self.study.study_name}"
        command = pipeline_command()
        print(
            f"Next: {command} report{self.storage_flag} --study-name {name} "
            f"--out {shlex.quote(out)}  (HTML report and plots)\n"
            f"      {command} export{self.storage_flag} --study-name {name} "
            f"--out {shlex.quote(out + '.csv')} --curves  (one row per trial)",
            *(f"      {hint}" for hint in self.hints),
            sep="\n",
            file=self.out,
            flush=True,
        )


__all__ = ["LiveReporter"]
