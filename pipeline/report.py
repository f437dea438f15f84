"""Tables and pictures of a study: CSV/Parquet export, and an HTML + PNG + Markdown report
built from Optuna's own visualization module."""

from __future__ import annotations

import html
import json
import warnings
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class EmptyStudy(Exception):
    """The study has no finished trial to tabulate or plot."""


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: Optuna's trials dataframe (parameters, state, value, durations,
    user attributes) plus the epochs each trial trained."""
    frame = study.trials_dataframe(multi_index=False)
    if frame.empty:
        raise EmptyStudy(f"study {study.study_name!r} has no trials yet")
    frame["epochs_trained"] = [len(t.intermediate_values) for t in study.trials]
    frame["duration_seconds"] = frame["duration"].dt.total_seconds()
    for column in frame.columns:  # lists and dicts do not fit CSV/Parquet cells
        if frame[column].map(lambda v: isinstance(v, (list, dict))).any():
            frame[column] = frame[column].map(
                lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v
            )
    return frame


def curves_table(study: optuna.Study) -> pd.DataFrame:
    """Long format: one row per trial and epoch with the reported metric."""
    rows = [
        {"number": t.number, "state": t.state.name, "epoch": step, "value": value}
        for t in study.trials
        for step, value in sorted(t.intermediate_values.items())
    ]
    return pd.DataFrame(rows, columns=["number", "state", "epoch", "value"])


def export(study: optuna.Study, out: Path, curves: bool = False) -> list[Path]:
    """Write the trials table (and the curves, as ``<name>_curves.<ext>``) as CSV or
    Parquet, chosen by the file's extension."""
    tables = {out: trials_table(study)}
    if curves:
        tables[out.with_name(f"{out.stem}_curves{out.suffix}")] = curves_table(study)
    out.parent.mkdir(parents=True, exist_ok=True)
    for path, frame in tables.items():
        if path.suffix == ".csv":
            frame.to_csv(path, index=False)
        elif path.suffix == ".parquet":
            frame.to_parquet(path, index=False)
        else:
            raise ValueError(f"--out must end in .csv or .parquet, got {path.name}")
    return list(tables)


# --- report ---------------------------------------------------------------------------


def _learning_curves(study: optuna.Study) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for t in study.trials:
        if not t.intermediate_values:
            continue
        steps, values = zip(*sorted(t.intermediate_values.items()), strict=True)
        pruned = t.state == TrialState.PRUNED
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=values,
                mode="lines+markers" if not pruned else "lines",
                name=f"#{t.number} {t.state.name.lower()}",
                line={"dash": "dot" if pruned else "solid", "width": 1 if pruned else 2},
                opacity=0.5 if pruned else 0.9,
            )
        )
    metric = study.user_attrs.get("config", {}).get("metric", "value")
    fig.update_layout(
        title="Learning curves (dotted: pruned)", xaxis_title="epoch", yaxis_title=metric
    )
    return fig


def _learning_curves_png(study: optuna.Study, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for t in study.trials:
        if t.intermediate_values:
            steps, values = zip(*sorted(t.intermediate_values.items()), strict=True)
            pruned = t.state == TrialState.PRUNED
            ax.plot(
                steps,
                values,
                linestyle=":" if pruned else "-",
                alpha=0.5 if pruned else 0.9,
                marker="x" if pruned else None,
            )
    ax.set_xlabel("epoch")
    ax.set_ylabel(study.user_attrs.get("config", {}).get("metric", "value"))
    ax.set_title("Learning curves (dotted: pruned)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plots(study: optuna.Study) -> dict[str, tuple[str, Any, Any]]:
    """name -> (title, plotly figure factory, matplotlib axes factory)."""
    import optuna.visualization as pv
    import optuna.visualization.matplotlib as pm

    plots: dict[str, tuple[str, Any, Any]] = {
        "history": (
            "Optimization history",
            pv.plot_optimization_history,
            pm.plot_optimization_history,
        ),
        "curves": ("Learning curves", _learning_curves, None),
    }
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    params = {p for t in complete for p in t.params}
    if len(complete) >= 2 and params:
        plots["importances"] = (
            "Parameter importances",
            pv.plot_param_importances,
            pm.plot_param_importances,
        )
        plots["parallel"] = (
            "Parallel coordinates",
            pv.plot_parallel_coordinate,
            pm.plot_parallel_coordinate,
        )
        plots["slice"] = ("Slice plots", pv.plot_slice, pm.plot_slice)
    if len(complete) >= 2 and len(params) >= 2:
        plots["contour"] = ("Contour plots", pv.plot_contour, pm.plot_contour)
    return plots


def summary_markdown(study: optuna.Study, evaluation: dict[str, Any] | None) -> str:
    """Best configuration, its validation and test metrics, and what pruning saved."""
    trials = study.trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    max_epochs = study.user_attrs.get("config", {}).get("max_epochs")
    lines = [f"# Study `{study.study_name}`", ""]
    lines.append(
        f"{len(complete)} complete, {len(pruned)} pruned, "
        f"{sum(t.state == TrialState.FAIL for t in trials)} failed trials."
    )
    if max_epochs and pruned:
        trained = sum(len(t.intermediate_values) for t in pruned)
        saved = len(pruned) * int(max_epochs) - trained
        total = sum(len(t.intermediate_values) for t in trials)
        lines.append(
            f"Pruning stopped {len(pruned)} trials early, saving {saved} of "
            f"{total + saved} epochs ({100 * saved / (total + saved):.0f}%)."
        )
    if complete:
        best = study.best_trial
        lines += ["", f"## Best trial: #{best.number}", "", "| parameter | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in best.params.items()]
        attrs = best.user_attrs
        lines += ["", "| metric | value |", "|---|---|"]
        for key in ("val_loss", "val_accuracy", "test_loss", "test_accuracy", "epochs"):
            if key in attrs:
                value = attrs[key]
                lines.append(
                    f"| {key} | {value:.4f} |"
                    if isinstance(value, float)
                    else f"| {key} | {value} |"
                )
    if evaluation:
        lines += [
            "",
            "## Final evaluation",
            "",
            f"Checkpoint of trial #{evaluation['trial']} on the test split: "
            f"accuracy {evaluation['test_accuracy']:.4f}, loss {evaluation['test_loss']:.4f}.",
        ]
        retrained = evaluation.get("retrained")
        if retrained:
            lines.append(
                f"Retrained on train + validation with {retrained['seeds']} seeds: test accuracy "
                f"{retrained['test_accuracy_mean']:.4f} ± {retrained['test_accuracy_std']:.4f}."
            )
    prov = {
        k: study.user_attrs.get(k)
        for k in ("study_file", "git_revision", "host", "seed", "versions")
    }
    if any(prov.values()):
        lines += ["", "## Provenance", ""]
        lines += [
            f"- {k}: `{json.dumps(v) if isinstance(v, dict) else v}`" for k, v in prov.items() if v
        ]
    return "\n".join(lines) + "\n"


def write_report(study: optuna.Study, out: Path) -> Path:
    """Write ``index.html`` (self-contained), a PNG per plot and ``summary.md`` to ``out``."""
    if not [t for t in study.trials if t.state in FINISHED]:
        raise EmptyStudy(f"study {study.study_name!r} has no finished trial to report on")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.io as pio

    out.mkdir(parents=True, exist_ok=True)
    sections = []
    first = True
    for name, (title, plotly_fn, mpl_fn) in _plots(study).items():
        figure = plotly_fn(study)
        # plotly.js goes inline once, so the page opens from disk with no server or network.
        div = pio.to_html(figure, full_html=False, include_plotlyjs="inline" if first else False)
        first = False
        png = out / f"{name}.png"
        if mpl_fn is None:
            _learning_curves_png(study, png)
        else:
            with warnings.catch_warnings():  # Optuna marks its matplotlib plots experimental
                warnings.simplefilter("ignore")
                axes = mpl_fn(study)
                fig = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
                fig.set_size_inches(
                    max(8, fig.get_size_inches()[0]), max(5, fig.get_size_inches()[1])
                )
                fig.savefig(png, dpi=100, bbox_inches="tight")
            plt.close("all")
        sections.append(
            f'<section id="{name}"><h2>{html.escape(title)}</h2>{div}'
            f'<p><a href="{png.name}">{png.name}</a></p></section>'
        )
    evaluation = study.user_attrs.get("final_evaluation")
    summary = summary_markdown(study, evaluation)
    (out / "summary.md").write_text(summary)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Study {html.escape(study.study_name)}</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
        "pre{background:#f6f6f6;padding:1em;white-space:pre-wrap}</style></head><body>"
        f"<h1>Study {html.escape(study.study_name)}</h1>"
        f"<pre>{html.escape(summary)}</pre>{''.join(sections)}"
        '<p><a href="summary.md">summary.md</a></p></body></html>'
    )
    (out / "index.html").write_text(page)
    return out / "index.html"


__all__ = [
    "EmptyStudy",
    "curves_table",
    "export",
    "summary_markdown",
    "trials_table",
    "write_report",
]
