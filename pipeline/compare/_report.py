"""The comparison report: best-so-far curves with their spread across seeds, a table
and a verdict computed from it (``pipeline compare``)."""

from __future__ import annotations

import html
import math
import statistics
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from pipeline.compare._run import CompareBudget, Run
from pipeline.exceptions import NoResult
from pipeline.visualization import markdown_html, page


def _band(
    runs: list[Run], axis: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Median and inter-quartile band of best-so-far across seeds on a common x grid;
    None when no run finished a trial (a budget of seconds spent before the first)."""
    curves = [r.curves()[axis] for r in runs if r.curves()[axis][0]]
    if not curves:
        return None
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
    table: dict[tuple[str, str], dict[str, Any]], direction: str, budget: CompareBudget
) -> list[str]:
    """A few sentences computed from the table; they hold for this problem and budget."""
    maximize = direction == "maximize"
    pick = max if maximize else min
    lines = []
    best_key = pick(table, key=lambda k: table[k]["best_mean"])
    mean = "mean " if any(row["seeds"] > 1 for row in table.values()) else ""
    lines.append(
        f"Best {mean}{'maximum' if maximize else 'minimum'} reached: {best_key[0]} with pruner "
        f"{best_key[1]} ({table[best_key]['best_mean']:.4f})."
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


def write_report(runs: list[Run], out: Path, budget: CompareBudget, target: float | None) -> Path:
    """index.html, a PNG per axis and summary.md comparing the runs."""
    if not runs:
        raise NoResult("no compare studies found in the storage; run `pipeline compare` first")
    out.mkdir(parents=True, exist_ok=True)
    groups: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        groups.setdefault((r.sampler, r.pruner), []).append(r)
    several = runs[0].scale is not None  # several objectives: ranked by hypervolume
    maximize = several or runs[0].study.direction == optuna.study.StudyDirection.MAXIMIZE
    metric = (
        "hypervolume"
        if several
        else runs[0].study.user_attrs.get("config", {}).get("metric", "value")
    )
    pngs = _plot_bands(groups, metric, out)
    table = {key: _row(members, target) for key, members in sorted(groups.items())}
    md = _markdown(table, metric, "maximize" if maximize else "minimize", budget, target)
    (out / "summary.md").write_text(md)
    images = "".join(
        f'<section><h2>{html.escape(title)}</h2><img src="{p.name}" alt="{html.escape(title)}">'
        "</section>"
        for p, title in pngs
    )
    body = f'{markdown_html(md)}{images}<p><a href="summary.md">summary.md</a></p>'
    (out / "index.html").write_text(page("Sampler comparison", body))
    return out / "index.html"


def _plot_bands(
    groups: dict[tuple[str, str], list[Run]], metric: str, out: Path
) -> list[tuple[Path, str]]:
    """One PNG per x axis, with its title: each sampler/pruner's best-so-far, the median
    and inter-quartile band across seeds where it has more than one seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeded = any(len(members) > 1 for members in groups.values())
    pngs = []
    for axis, label in (
        ("trials", "trials finished"),
        ("epochs", "epochs trained"),
        ("seconds", "wall-clock seconds"),
    ):
        fig, ax = plt.subplots(figsize=(8, 5))
        for (sampler, pruner), members in sorted(groups.items()):
            band = _band(members, axis)
            if band is None:
                continue
            x, med, lo, hi = band
            (line,) = ax.plot(x, med, label=f"{sampler} / {pruner}")
            if len(members) > 1:
                ax.fill_between(x, lo, hi, alpha=0.15, color=line.get_color())
        title = f"Best {metric} so far against {label}"
        ax.set_xlabel(label)
        ax.set_ylabel(f"best {metric} so far")
        # The title says what is drawn: a band only where there are seeds to spread.
        ax.set_title(
            f"{title}\n(median across seeds, band: 25th to 75th percentile)" if seeded else title
        )
        ax.legend()
        fig.tight_layout()
        path = out / f"best_vs_{axis}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        pngs.append(
            (path, f"{title}: median across seeds and its inter-quartile band" if seeded else title)
        )
    return pngs


def _row(members: list[Run], target: float | None) -> dict[str, Any]:
    """One sampler/pruner's figures over its seeds."""
    rows = [m.summary(target) for m in members]
    bests = [r["best"] for r in rows if not math.isnan(r["best"])]
    reached = [r["time_to_target"] for r in rows if r["time_to_target"] is not None]
    if target is None:
        to_target = "-"
    elif reached:
        to_target = f"{statistics.fmean(reached):.0f} s ({len(reached)}/{len(rows)} seeds)"
    else:
        to_target = "not reached"
    return {
        "seeds": len(rows),
        "best_mean": statistics.fmean(bests) if bests else math.nan,
        "best_std": statistics.stdev(bests) if len(bests) > 1 else math.nan,
        "test_name": next((r["test"][0] for r in rows if r["test"][0]), None),
        "test_mean": statistics.fmean(r["test"][1] for r in rows),
        "complete_mean": statistics.fmean(r["complete"] for r in rows),
        "pruned_mean": statistics.fmean(r["pruned"] for r in rows),
        "epochs_mean": statistics.fmean(r["epochs"] for r in rows),
        "seconds_mean": statistics.fmean(r["seconds"] for r in rows),
        "time_to_target": to_target,
    }


def _best(row: dict[str, Any]) -> str:
    if not math.isnan(row["best_std"]):  # a spread needs two seeds with a result
        return f"{row['best_mean']:.4f} ± {row['best_std']:.4f}"
    return f"{row['best_mean']:.4f}"


def _markdown(
    table: dict[tuple[str, str], dict[str, Any]],
    metric: str,
    direction: str,
    budget: CompareBudget,
    target: float | None,
) -> str:
    # A spread needs two seeds: one seed's value stands alone, without "± 0.0000".
    seeded = any(v["seeds"] > 1 for v in table.values())
    test_name = next((v["test_name"] for v in table.values() if v["test_name"]), "test score")
    header = (
        f"| sampler | pruner | seeds | best {metric}{' (mean ± std)' if seeded else ''} "
        f"| {test_name} of best | complete | pruned "
        "| epochs | wall s | time to target |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    rows_md = [
        f"| {s} | {p} | {v['seeds']} | {_best(v)} | {v['test_mean']:.4f} "
        f"| {v['complete_mean']:.1f} | {v['pruned_mean']:.1f} | {v['epochs_mean']:.0f} | {v['seconds_mean']:.0f} "
        f"| {v['time_to_target']} |"
        for (s, p), v in table.items()
    ]
    target_text = f", target {metric} {target:g}" if target is not None else ""
    return (
        f"# Sampler comparison: {budget.label()} per run{target_text}\n\n"
        + header
        + "\n"
        + "\n".join(rows_md)
        + "\n\n## Verdict\n\n"
        + "\n".join(f"- {line}" for line in verdict(table, direction, budget))
        + "\n"
    )


__all__ = ["verdict", "write_report"]
