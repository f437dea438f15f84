"""Grid vs random vs Bayesian, on one problem and one budget: ``pipeline compare``.

The same task and search space run under each sampler (and pruner), each repeated with
K seeds, each as its own study in the same storage, named
``<study>--<sampler>-<pruner>-seed<k>`` so the dashboard lists them together. The budget
is equal for every run: a number of finished trials, of epochs trained, or of seconds.
Grid gets a grid of about the budget's size, built from the search space; TPE and GP,
unless the study file says otherwise, spend a quarter of it on random start-up trials
(their default of 10 can be the whole budget). Runs use the parallel workers of
``tune`` and resume: a rerun adds nothing to a finished run.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import TrialState

from pipeline.compare._pareto import check_names, common_scale, hypervolume_curves
from pipeline.config import ParamSpec, PrunerConfig, SamplerConfig, StudyConfig
from pipeline.exceptions import EXIT_INTERRUPTED, EXIT_NO_RESULT, EXIT_OK, UsageError
from pipeline.results import test_scores_of
from pipeline.trial import FINISHED, best_trial, test_score_name

BudgetKind = Literal["trials", "epochs", "seconds"]
# Pruner options used when the study file's own pruner is another one.
PRUNER_DEFAULTS: dict[str, dict[str, Any]] = {
    "asha": {"min_resource": 1, "reduction_factor": 2},
    "median": {"n_startup_trials": 4, "n_warmup_steps": 2},
    "hyperband": {"min_resource": 1, "reduction_factor": 3},
}


@dataclass(frozen=True)
class CompareBudget:
    """The budget each run of a comparison gets: finished trials, epochs or seconds."""

    kind: BudgetKind
    amount: int

    @classmethod
    def parse(cls, text: str) -> CompareBudget:
        """``trials:20``, ``epochs:200`` or ``seconds:120``."""
        kind, _, amount = text.partition(":")
        if kind not in ("trials", "epochs", "seconds") or not amount.isdigit() or int(amount) < 1:
            raise UsageError(f"--budget: expected trials:N, epochs:N or seconds:N, got {text!r}")
        return cls(kind, int(amount))  # type: ignore[arg-type]

    def label(self) -> str:
        return f"{self.amount} {self.kind}"


def parse_names(samplers: str, pruners: str) -> tuple[list[str], list[str]]:
    """The ``--samplers`` and ``--pruners`` lists, each name checked against its table."""
    from pipeline.search import PRUNERS, SAMPLERS

    out = []
    for text, known, flag in ((samplers, SAMPLERS, "--samplers"), (pruners, PRUNERS, "--pruners")):
        listed = [n for n in text.split(",") if n]
        for name in listed:
            if name not in known:
                raise UsageError(
                    f"{flag}: unknown name {name!r}; expected some of {', '.join(known)}"
                )
        out.append(listed)
    return out[0], out[1]


def grid_space(space: dict[str, ParamSpec], target: int) -> dict[str, ParamSpec]:
    """The search space with ``grid:`` values on every numeric parameter that lacks them,
    so that the grid has about ``target`` points: categorical parameters keep all their
    choices; numeric ones get k evenly spaced values (log-spaced with ``log: true``)."""
    from pipeline.search import grid_size

    numeric = [n for n, s in space.items() if s.type in ("float", "int") and s.grid is None]
    fixed_size = grid_size({n: s for n, s in space.items() if n not in numeric}) or 1
    k = max(2, round((target / fixed_size) ** (1 / len(numeric)))) if numeric else 0
    out = dict(space)
    for name in numeric:
        spec = space[name]
        assert spec.low is not None and spec.high is not None
        values = (np.geomspace if spec.log else np.linspace)(spec.low, spec.high, k)
        if spec.type == "int":
            grid: list[Any] = sorted({round(float(v)) for v in values})
        else:
            grid = [float(f"{v:.6g}") for v in values]
            grid = [min(max(v, spec.low), spec.high) for v in grid]
        out[name] = dataclasses.replace(
            spec, grid=grid, step=None if spec.type == "float" else spec.step
        )
        if spec.type == "int" and spec.step not in (None, 1):
            out[name] = dataclasses.replace(
                out[name],
                grid=[v for v in grid if (v - spec.low) % spec.step == 0] or [int(spec.low)],
            )
    return out


def _trials_in(budget: CompareBudget, config: StudyConfig) -> int:
    """About how many trials the budget buys."""
    if budget.kind == "trials":
        return budget.amount
    if budget.kind == "epochs":
        return max(1, budget.amount // config.max_epochs)
    return 16


def variants(
    config: StudyConfig,
    samplers: Sequence[str],
    pruners: Sequence[str],
    seeds: int,
    budget: CompareBudget,
) -> list[tuple[str, str, int, StudyConfig]]:
    """One study config per sampler x pruner x seed, all with the same budget."""
    out = []
    for sampler in samplers:
        for pruner in pruners:
            for seed in range(seeds):
                sampler_options = dict(
                    config.sampler.options if sampler == config.sampler.name else {}
                )
                if sampler in ("tpe", "gp") and "n_startup_trials" not in sampler_options:
                    # Their default of 10 random start-up trials can be the whole budget;
                    # a quarter of it leaves the model-based phase room to show.
                    sampler_options["n_startup_trials"] = max(3, _trials_in(budget, config) // 4)
                pruner_options = (
                    config.pruner.options
                    if pruner == config.pruner.name
                    else PRUNER_DEFAULTS.get(pruner, {})
                )
                space = config.search_space
                n_trials: int | None = None
                timeout: float | None = None
                total_epochs: int | None = None
                if budget.kind == "trials":
                    n_trials = budget.amount
                elif budget.kind == "seconds":
                    timeout = float(budget.amount)
                else:
                    total_epochs = budget.amount
                if sampler == "grid":
                    space = grid_space(space, _trials_in(budget, config))
                cfg = dataclasses.replace(
                    config,
                    study_name=f"{config.study_name}--{sampler}-{pruner}-seed{seed}",
                    sampler=SamplerConfig(sampler, seed, dict(sampler_options)),
                    pruner=PrunerConfig(
                        pruner,
                        dict(pruner_options),
                        config.pruner.patience if pruner == config.pruner.name else None,
                    ),
                    search_space=space,
                    n_trials=n_trials,
                    timeout=timeout,
                    max_total_epochs=total_epochs,
                    seed=seed,
                )
                out.append((sampler, pruner, seed, cfg))
    return out


@dataclass
class Run:
    """One compared study. Of several objectives its score is the hypervolume of its
    feasible front, the objectives scaled so that ``scale`` (the best and the worst
    value of every objective over all the compared runs, minimize form) maps to 0 and 1,
    against the reference point 1.1 in every objective: see docs/multi-objective.md."""

    sampler: str
    pruner: str
    seed: int
    study: optuna.Study
    scale: tuple[list[float], list[float]] | None = None

    def finished(self) -> list[optuna.trial.FrozenTrial]:
        trials = [t for t in self.study.trials if t.state in FINISHED]
        return sorted(trials, key=lambda t: t.datetime_complete)  # type: ignore[arg-type,return-value]

    def curves(self) -> dict[str, tuple[list[float], list[float]]]:
        """Best-so-far value (of several objectives, the front's hypervolume) against
        trials, epochs trained and wall-clock seconds."""
        if self.scale is not None:
            return hypervolume_curves(self.finished(), self.study.directions, self.scale)
        sign = -1.0 if self.study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
        best = math.inf
        xs: dict[str, list[float]] = {"trials": [], "epochs": [], "seconds": []}
        ys: list[float] = []
        trials = self.finished()
        if not trials:
            return {k: ([], []) for k in xs}
        start = min(t.datetime_start for t in trials if t.datetime_start)
        epochs = 0
        for i, t in enumerate(trials, start=1):
            epochs += len(t.intermediate_values)
            if t.state == TrialState.COMPLETE and t.value is not None:
                best = min(best, sign * t.value)
            xs["trials"].append(i)
            xs["epochs"].append(epochs)
            xs["seconds"].append((t.datetime_complete - start).total_seconds())  # type: ignore[operator]
            ys.append(sign * best if math.isfinite(best) else math.nan)
        return {k: (v, ys) for k, v in xs.items()}

    def _test_score(self, best: optuna.trial.FrozenTrial | None) -> tuple[str | None, float]:
        """The best trial's test score that stands for the study metric, by name."""
        if best is None:
            return None, math.nan
        metric = (self.study.metric_names or [""])[0]
        scores = test_scores_of(self.study, best)
        name = test_score_name(metric, scores)
        return name, scores[name] if name else math.nan

    def summary(self, target: float | None) -> dict[str, Any]:
        trials = self.finished()
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        best = best_trial(self.study)
        seconds = self.curves()["seconds"]
        reached = None
        if target is not None and best is not None:
            maximize = self.scale is not None or self.study.direction == StudyDirection.MAXIMIZE
            for x, y in zip(*seconds, strict=True):
                if not math.isnan(y) and (y >= target if maximize else y <= target):
                    reached = x
                    break
        value: float | None = math.nan if best is None else best.values[0]
        if self.scale is not None:  # several objectives: the hypervolume
            value = seconds[1][-1] if seconds[1] else 0.0
        return {
            "best": value,
            "test": self._test_score(best),
            "complete": len(complete),
            "pruned": len(trials) - len(complete),
            "epochs": sum(
                len(t.intermediate_values) or int(t.user_attrs.get("epochs") or 0) for t in trials
            ),
            "seconds": seconds[0][-1] if seconds[0] else 0.0,
            "time_to_target": reached,
        }


def run_comparison(
    config: StudyConfig,
    samplers: Sequence[str],
    pruners: Sequence[str],
    seeds: int,
    budget: CompareBudget,
    quiet: bool = True,
) -> int:
    """Run every variant that has not finished yet; return an exit code (130 when
    interrupted: a rerun resumes where it stopped)."""
    from pipeline.runner import tune

    for sampler, pruner, seed, cfg in variants(config, samplers, pruners, seeds, budget):
        print(
            f"== {sampler} / {pruner} / seed {seed}: {cfg.study_name} ({budget.label()})",
            flush=True,
        )
        code = tune(cfg, quiet=quiet)
        if code == EXIT_INTERRUPTED:
            return code
        if code not in (EXIT_OK, EXIT_NO_RESULT):
            return code
    return EXIT_OK


def load_runs(
    config: StudyConfig, samplers: Sequence[str], pruners: Sequence[str], seeds: int
) -> list[Run]:
    """The studies a compare left in the storage (missing ones are skipped)."""
    from pipeline.storages import open_storage

    storage = open_storage(config.storage)
    names = {
        s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
    }
    runs = []
    for sampler in samplers:
        for pruner in pruners:
            for seed in range(seeds):
                name = f"{config.study_name}--{sampler}-{pruner}-seed{seed}"
                if name in names:
                    runs.append(
                        Run(
                            sampler,
                            pruner,
                            seed,
                            optuna.load_study(study_name=name, storage=storage),
                        )
                    )
    if config.multi_objective and runs:
        scale = common_scale([r.study for r in runs])
        runs = [dataclasses.replace(r, scale=scale) for r in runs]
    return runs


__all__ = [
    "CompareBudget",
    "Run",
    "check_names",
    "grid_space",
    "load_runs",
    "parse_names",
    "run_comparison",
    "variants",
]
