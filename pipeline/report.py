"""Pictures of a study: an HTML + PNG + Markdown report built from Optuna's own
visualization module (``pipeline report``)."""

from __future__ import annotations

import html
import json
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from pipeline.best import best_record
from pipeline.errors import NoResult
from pipeline.trials import FINISHED, state_counts


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
    counts = state_counts(trials)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    max_epochs = study.user_attrs.get("config", {}).get("max_epochs")
    lines = [f"# Study `{study.study_name}`", ""]
    lines.append(
        f"{counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed trials."
    )
    if max_epochs and pruned:
        trained = sum(len(t.intermediate_values) for t in pruned)
        saved = len(pruned) * int(max_epochs) - trained
        total = sum(len(t.intermediate_values) for t in trials)
        lines.append(
            f"Pruning stopped {len(pruned)} trials early, saving {saved} of "
            f"{total + saved} epochs ({100 * saved / (total + saved):.0f}%)."
        )
    record = best_record(study)
    if record is not None:
        lines += [
            "",
            f"## Best trial: #{record['trial']}",
            "",
            "| parameter | value |",
            "|---|---|",
        ]
        lines += [f"| {k} | {v} |" for k, v in record["params"].items()]
        lines += ["", "| metric | value |", "|---|---|"]
        for key, value in {**record["metrics"], **record["test"]}.items():
            lines.append(f"| {key} | {value:.4f} |")
        lines.append(f"| epochs | {record['epochs']} |")
    lines += _evaluation_lines(evaluation) + _provenance_lines(study)
    return "\n".join(lines) + "\n"


def _evaluation_lines(evaluation: dict[str, Any] | None) -> list[str]:
    if not evaluation:
        return []
    scores = ", ".join(
        f"{k.removeprefix('test_')} {v:.4f}" for k, v in evaluation.items() if k.startswith("test_")
    )
    lines = [
        "",
        "## Final evaluation",
        "",
        f"Checkpoint of trial #{evaluation['trial']} on the test split: {scores or 'not scored'}.",
    ]
    retrained = evaluation.get("retrained")
    if retrained:
        score = "accuracy" if "test_accuracy_mean" in retrained else "r2"
        lines.append(
            f"Retrained on train + validation with {retrained['seeds']} seeds: test {score} "
            f"{retrained[f'test_{score}_mean']:.4f} ± {retrained[f'test_{score}_std']:.4f}."
        )
    return lines


def _provenance_lines(study: optuna.Study) -> list[str]:
    prov = {
        k: study.user_attrs.get(k)
        for k in ("study_file", "git_revision", "host", "seed", "versions")
    }
    if not any(prov.values()):
        return []
    return ["", "## Provenance", ""] + [
        f"- {k}: `{json.dumps(v) if isinstance(v, dict) else v}`" for k, v in prov.items() if v
    ]


def write_report(study: optuna.Study, out: Path) -> Path:
    """Write ``index.html`` (self-contained), a PNG per plot and ``summary.md`` to ``out``."""
    if not [t for t in study.trials if t.state in FINISHED]:
        raise NoResult(f"study {study.study_name!r} has no finished trial to report on")
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


__all__ = ["summary_markdown", "write_report"]
