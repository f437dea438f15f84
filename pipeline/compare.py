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
import html
import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
from optuna.trial import TrialState

from pipeline.config import ConfigError, ParamSpec, PrunerConfig, SamplerConfig, StudyConfig

BudgetKind = Literal["trials", "epochs", "seconds"]
# Pruner options used when the study file's own pruner is another one.
PRUNER_DEFAULTS: dict[str, dict[str, Any]] = {
    "asha": {"min_resource": 1, "reduction_factor": 2},
    "median": {"n_startup_trials": 4, "n_warmup_steps": 2},
    "hyperband": {"min_resource": 1, "reduction_factor": 3},
}


@dataclass(frozen=True)
class Budget:
    kind: BudgetKind
    amount: int

    @classmethod
    def parse(cls, text: str) -> Budget:
        """``trials:20``, ``epochs:200`` or ``seconds:120``."""
        kind, _, amount = text.partition(":")
        if kind not in ("trials", "epochs", "seconds") or not amount.isdigit() or int(amount) < 1:
            raise ConfigError(
                "--budget", "", f"expected trials:N, epochs:N or seconds:N, got {text!r}"
            )
        return cls(kind, int(amount))  # type: ignore[arg-type]

    def label(self) -> str:
        return f"{self.amount} {self.kind}"


def grid_space(space: dict[str, ParamSpec], target: int) -> dict[str, ParamSpec]:
    """The search space with ``grid:`` values on every numeric parameter that lacks them,
    so that the grid has about ``target`` points: categorical parameters keep all their
    choices; numeric ones get k evenly spaced values (log-spaced with ``log: true``)."""
    from pipeline.space import grid_size

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


def _trials_in(budget: Budget, config: StudyConfig) -> int:
    """About how many trials the budget buys."""
    if budget.kind == "trials":
        return budget.amount
    if budget.kind == "epochs":
        return max(1, budget.amount // config.max_epochs)
    return 16


def variants(
    config: StudyConfig, samplers: Sequence[str], pruners: Sequence[str], seeds: int, budget: Budget
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
    sampler: str
    pruner: str
    seed: int
    study: optuna.Study

    def finished(self) -> list[optuna.trial.FrozenTrial]:
        trials = [
            t for t in self.study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        ]
        return sorted(trials, key=lambda t: t.datetime_complete)  # type: ignore[arg-type,return-value]

    def curves(self) -> dict[str, tuple[list[float], list[float]]]:
        """Best-so-far value against trials, epochs trained and wall-clock seconds."""
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

    def summary(self, target: float | None) -> dict[str, Any]:
        trials = self.finished()
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        best = self.study.best_trial if complete else None
        seconds = self.curves()["seconds"]
        reached = None
        if target is not None and best is not None:
            maximize = self.study.direction == optuna.study.StudyDirection.MAXIMIZE
            for x, y in zip(*seconds, strict=True):
                if not math.isnan(y) and (y >= target if maximize else y <= target):
                    reached = x
                    break
        return {
            "best": best.value if best else math.nan,
            "test_accuracy": best.user_attrs.get("test_accuracy", math.nan) if best else math.nan,
            "complete": len(complete),
            "pruned": len(trials) - len(complete),
            "epochs": sum(len(t.intermediate_values) for t in trials),
            "seconds": seconds[0][-1] if seconds[0] else 0.0,
            "time_to_target": reached,
        }


def run(
    config: StudyConfig,
    samplers: Sequence[str],
    pruners: Sequence[str],
    seeds: int,
    budget: Budget,
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
        if code == 130:
            return 130
        if code not in (0, 1):
            return code
    return 0


def load_runs(
    config: StudyConfig, samplers: Sequence[str], pruners: Sequence[str], seeds: int
) -> list[Run]:
    """The studies a compare left in the storage (missing ones are skipped)."""
    from pipeline.storage import open_storage

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
    return runs


def _band(runs: list[Run], axis: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Median and inter-quartile band of best-so-far across seeds on a common x grid."""
    curves = [r.curves()[axis] for r in runs if r.curves()[axis][0]]
    top = max(max(xs) for xs, _ in curves)
    grid = np.linspace(0, top, 100)
    rows = []
    for xs, ys in curves:
        idx = np.searchsorted(np.asarray(xs), grid, side="right") - 1
        rows.append(np.where(idx >= 0, np.asarray(ys, dtype=float)[np.clip(idx, 0, None)], np.nan))
    data = np.vstack(rows)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # all-NaN columns before a seed's first trial
        return (
            grid,
            np.nanmedian(data, 0),
            np.nanpercentile(data, 25, 0),
            np.nanpercentile(data, 75, 0),
        )


def verdict(
    table: dict[tuple[str, str], dict[str, Any]], direction: str, budget: Budget
) -> list[str]:
    """A few sentences computed from the table; they hold for this problem and budget."""
    maximize = direction == "maximize"
    pick = max if maximize else min
    lines = []
    best_key = pick(table, key=lambda k: table[k]["best_mean"])
    lines.append(
        f"Best mean {'maximum' if maximize else 'minimum'} reached: {best_key[0]} with pruner {best_key[1]} "
        f"({table[best_key]['best_mean']:.4f})."
    )
    for pruner in sorted({k[1] for k in table}):
        grid, rand = table.get(("grid", pruner)), table.get(("random", pruner))
        if grid and rand:
            better = (
                (rand["best_mean"] > grid["best_mean"])
                if maximize
                else (rand["best_mean"] < grid["best_mean"])
            )
            lines.append(
                f"Random {'beat' if better else 'did not beat'} grid with pruner {pruner}: "
                f"{rand['best_mean']:.4f} vs {grid['best_mean']:.4f} in {rand['seconds_mean']:.0f} s vs "
                f"{grid['seconds_mean']:.0f} s."
            )
    samplers = sorted({k[0] for k in table})
    pruners = sorted({k[1] for k in table})
    if "none" in pruners and len(pruners) > 1:
        for pruner in (p for p in pruners if p != "none"):
            saved = [
                1 - table[(s, pruner)]["epochs_mean"] / table[(s, "none")]["epochs_mean"]
                for s in samplers
                if (s, pruner) in table
                and (s, "none") in table
                and table[(s, "none")]["epochs_mean"]
            ]
            if saved:
                lines.append(
                    f"Pruning with {pruner} trained {100 * statistics.fmean(saved):.0f}% fewer epochs than no "
                    "pruning, on average over samplers."
                )
    lines.append(
        f"These hold for this problem, this search space and a budget of {budget.label()}; rerun with more seeds to tighten them."
    )
    return lines


def write_report(runs: list[Run], out: Path, budget: Budget, target: float | None) -> Path:
    """index.html, a PNG per axis and summary.md comparing the runs."""
    if not runs:
        raise ConfigError(
            "compare", "", "no compare studies found in the storage; run `pipeline compare` first"
        )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    groups: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        groups.setdefault((r.sampler, r.pruner), []).append(r)
    direction = (
        "maximize"
        if runs[0].study.direction == optuna.study.StudyDirection.MAXIMIZE
        else "minimize"
    )
    metric = runs[0].study.user_attrs.get("config", {}).get("metric", "value")
    pngs = []
    for axis, label in (
        ("trials", "trials finished"),
        ("epochs", "epochs trained"),
        ("seconds", "wall-clock seconds"),
    ):
        fig, ax = plt.subplots(figsize=(8, 5))
        for (sampler, pruner), members in sorted(groups.items()):
            x, med, lo, hi = _band(members, axis)
            (line,) = ax.plot(x, med, label=f"{sampler} / {pruner}")
            ax.fill_between(x, lo, hi, alpha=0.15, color=line.get_color())
        ax.set_xlabel(label)
        ax.set_ylabel(f"best {metric} so far")
        ax.set_title(f"Best-so-far {metric} vs {label} (median across seeds, IQR band)")
        ax.legend()
        fig.tight_layout()
        path = out / f"best_vs_{axis}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        pngs.append(path)
    table: dict[tuple[str, str], dict[str, Any]] = {}
    for key, members in sorted(groups.items()):
        rows = [m.summary(target) for m in members]
        bests = [r["best"] for r in rows if not math.isnan(r["best"])]
        reached = [r["time_to_target"] for r in rows if r["time_to_target"] is not None]
        table[key] = {
            "seeds": len(rows),
            "best_mean": statistics.fmean(bests) if bests else math.nan,
            "best_std": statistics.stdev(bests) if len(bests) > 1 else 0.0,
            "test_mean": statistics.fmean(r["test_accuracy"] for r in rows),
            "complete_mean": statistics.fmean(r["complete"] for r in rows),
            "pruned_mean": statistics.fmean(r["pruned"] for r in rows),
            "epochs_mean": statistics.fmean(r["epochs"] for r in rows),
            "seconds_mean": statistics.fmean(r["seconds"] for r in rows),
            "time_to_target": (
                f"{statistics.fmean(reached):.0f} s ({len(reached)}/{len(rows)} seeds)"
                if reached
                else "not reached"
            )
            if target is not None
            else "-",
        }
    header = (
        f"| sampler | pruner | seeds | best {metric} (mean ± std) | test accuracy of best | complete | pruned "
        "| epochs | wall s | time to target |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    rows_md = [
        f"| {s} | {p} | {v['seeds']} | {v['best_mean']:.4f} ± {v['best_std']:.4f} | {v['test_mean']:.4f} "
        f"| {v['complete_mean']:.1f} | {v['pruned_mean']:.1f} | {v['epochs_mean']:.0f} | {v['seconds_mean']:.0f} "
        f"| {v['time_to_target']} |"
        for (s, p), v in table.items()
    ]
    verdict_lines = verdict(table, direction, budget)
    target_text = f", target {metric} {target:g}" if target is not None else ""
    md = (
        f"# Sampler comparison: {budget.label()} per run{target_text}\n\n"
        + header
        + "\n"
        + "\n".join(rows_md)
        + "\n\n## Verdict\n\n"
        + "\n".join(f"- {line}" for line in verdict_lines)
        + "\n"
    )
    (out / "summary.md").write_text(md)
    images = "".join(
        f'<h2>{html.escape(p.stem)}</h2><img src="{p.name}" alt="{p.stem}">' for p in pngs
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Sampler comparison</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
        "pre{background:#f6f6f6;padding:1em;white-space:pre-wrap}img{max-width:100%}</style></head>"
        f"<body><h1>Sampler comparison</h1><pre>{html.escape(md)}</pre>{images}"
        '<p><a href="summary.md">summary.md</a></p></body></html>'
    )
    (out / "index.html").write_text(page)
    return out / "index.html"


__all__ = ["Budget", "grid_space", "load_runs", "run", "variants", "verdict", "write_report"]
