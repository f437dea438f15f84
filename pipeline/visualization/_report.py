"""Pictures of a study: an HTML + PNG + Markdown report built from Optuna's own
visualization module (``pipeline report``)."""

from __future__ import annotations

import html
import math
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.importance import FanovaImportanceEvaluator, get_param_importances
from optuna.search_space import intersection_search_space
from optuna.trial import TrialState

from pipeline.exceptions import NoResult
from pipeline.trial import FINISHED
from pipeline.visualization._front_plot import publish_front
from pipeline.visualization._page import figure_html, markdown_html, page
from pipeline.visualization._pareto import (
    pareto_plots,
)
from pipeline.visualization._population import has_population, population_plots
from pipeline.visualization._summary import summary_markdown


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
    fig.update_layout(
        title="Learning curves (dotted: pruned)",
        xaxis_title="epoch",
        yaxis_title=metric_name(study),
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
    ax.set_ylabel(metric_name(study))
    ax.set_title("Learning curves (dotted: pruned)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def metric_name(study: optuna.Study) -> str:
    """What the study optimizes, as every axis should name it: Optuna's metric name, else
    the study file's ``metric``."""
    names = study.metric_names
    return names[0] if names else str(study.user_attrs.get("config", {}).get("metric", "value"))


def _numeric(distribution: BaseDistribution) -> bool:
    """Whether a contour may interpolate along the parameter: numbers, including a
    categorical of numbers (batch sizes, powers of two), which Optuna also draws on a
    numeric axis; not names such as optimizers."""
    if isinstance(distribution, CategoricalDistribution):
        return all(
            isinstance(c, int | float) and not isinstance(c, bool) for c in distribution.choices
        )
    return True


def contour_params(study: optuna.Study, limit: int = 3) -> list[str]:
    """The ``limit`` most important numeric parameters that every complete trial set and
    that took more than one value; a contour needs two of them, so fewer means none."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return []
    space = intersection_search_space(complete)
    numeric = [
        name
        for name, dist in space.items()
        if _numeric(dist) and len({t.params[name] for t in complete}) > 1
    ]
    if len(numeric) < 2:
        return []
    ranked = get_param_importances(study, evaluator=_evaluator(), params=numeric)
    return list(ranked)[:limit]


def _evaluator() -> FanovaImportanceEvaluator:
    return FanovaImportanceEvaluator(seed=0)  # the same ranking on every run of the report


def _plots(study: optuna.Study) -> dict[str, tuple[str, Any, Any]]:
    """name -> (title, plotly figure factory, matplotlib axes factory), each factory
    taking the study and naming the metric on its axes."""
    import optuna.visualization as pv
    import optuna.visualization.matplotlib as pm

    if len(study.directions) > 1:
        return pareto_plots(study)
    metric = metric_name(study)
    plots: dict[str, tuple[str, Any, Any]] = {
        "history": (
            f"Optimization history: {metric} of each trial and the best so far",
            partial(pv.plot_optimization_history, target_name=metric),
            partial(pm.plot_optimization_history, target_name=metric),
        ),
        "curves": (f"Learning curves: {metric} per epoch", _learning_curves, None),
    }
    if has_population(study):  # PBT: the members' curves and the winner's schedule
        plots.update(population_plots(study, metric))
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    params = {p for t in complete for p in t.params}
    if len(complete) >= 2 and params:
        plots["importances"] = (
            f"Parameter importances for {metric}",
            partial(pv.plot_param_importances, evaluator=_evaluator(), target_name=metric),
            partial(pm.plot_param_importances, evaluator=_evaluator(), target_name=metric),
        )
        plots["parallel"] = (
            f"Parallel coordinates: each line a trial, coloured by {metric}",
            lambda s: _relabel_missing(pv.plot_parallel_coordinate(s, target_name=metric)),
            lambda s: _relabel_missing_mpl(pm.plot_parallel_coordinate(s, target_name=metric)),
        )
        plots["slice"] = (
            f"Slice plots: {metric} against each parameter",
            partial(pv.plot_slice, target_name=metric),
            partial(pm.plot_slice, target_name=metric),
        )
    top = contour_params(study)
    if top:
        plots["contour"] = (
            f"Contour plots of {metric} over the most important numeric parameters "
            f"({', '.join(top)})",
            lambda s: _tall(pv.plot_contour(s, params=top, target_name=metric), len(top)),
            partial(pm.plot_contour, params=top, target_name=metric),
        )
    return plots


def _tall(figure: Any, n_params: int) -> Any:
    """Give a grid of contours rows as tall as the page's width makes its columns wide."""
    if n_params > 2:
        figure.update_layout(height=320 * n_params)
    return figure


# Optuna puts a trial that did not set a conditional parameter (momentum without SGD) on a
# tick labelled "None", which reads as a value of the parameter.
_MISSING = "not set"


def _relabel_missing(figure: Any) -> Any:
    for note in figure.layout.annotations:  # the axes' ticks
        if note.text == "None":
            note.text = _MISSING
    for trace in figure.data:  # what hovering over a line shows
        if trace.customdata is not None:
            trace.customdata = [
                [name, _MISSING if text == "None" else text] for name, text in trace.customdata
            ]
    return figure


def _relabel_missing_mpl(ax: Any) -> Any:
    for axis in ax.get_figure().axes:
        labels = [t.get_text() for t in axis.get_yticklabels()]
        if "None" in labels:
            axis.set_yticks(axis.get_yticks(), [_MISSING if t == "None" else t for t in labels])
    return ax


def _pad_vertically(ax: Any, fraction: float = 0.06) -> None:
    """Leave room above and below every axis of a parallel-coordinate plot, so that the
    end ticks' labels sit inside the frame. The parameters' axes are twins of ``ax``,
    placed over it; each gets the same margin, so the lines still meet their values."""
    for axis in ax.get_figure().axes:
        if axis is not ax and axis.get_position().bounds != ax.get_position().bounds:
            continue  # the colour bar
        log = axis.get_yscale() == "log"
        low, high = (math.log10(v) for v in axis.get_ylim()) if log else axis.get_ylim()
        pad = fraction * (high - low)
        low, high = low - pad, high + pad
        axis.set_ylim((10**low, 10**high) if log else (low, high))
        if axis is not ax:
            axis.grid(False)  # a twin's grid lines run across every other axis's labels
        for label in axis.get_yticklabels():  # readable where a line crosses it
            label.set_bbox({"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1})


def _png(study: optuna.Study, name: str, mpl_fn: Any, path: Path) -> None:
    """Optuna's matplotlib version of a plot, large enough for its labels not to collide."""
    import matplotlib.pyplot as plt

    if mpl_fn is None:
        _learning_curves_png(study, path)
        return
    with warnings.catch_warnings():  # Optuna marks its matplotlib plots experimental
        warnings.simplefilter("ignore")
        axes = mpl_fn(study)
        fig = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
        width, height = fig.get_size_inches()
        if name == "parallel":  # one axis per parameter, each with its own tick labels
            width = max(width, 1.6 * len(axes.get_xticks()) + 2)
            _pad_vertically(axes)
        elif name == "contour" and hasattr(axes, "shape"):  # an n x n grid of contours
            width, height = max(width, 4 * axes.shape[0] + 2), max(height, 3.5 * axes.shape[0])
        fig.set_size_inches(max(8, width), max(5, height))
        fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close("all")


def write_report(study: optuna.Study, out: Path) -> Path:
    """Write ``index.html`` (self-contained), a PNG per plot and ``summary.md`` to ``out``."""
    if not [t for t in study.trials if t.state in FINISHED]:
        raise NoResult(f"study {study.study_name!r} has no finished trial to report on")
    import matplotlib

    matplotlib.use("Agg")

    out.mkdir(parents=True, exist_ok=True)
    sections: list[str] = []
    for name, (title, plotly_fn, mpl_fn) in _plots(study).items():
        div = figure_html(plotly_fn(study), include_plotlyjs=not sections)
        png = out / f"{name}.png"
        _png(study, name, mpl_fn, png)
        sections.append(
            f'<section id="{name}"><h2>{html.escape(title)}</h2>{div}'
            f'<p><a href="{png.name}">{png.name}</a></p></section>'
        )
    evaluation = study.user_attrs.get("final_evaluation")
    summary = summary_markdown(study, evaluation)
    (out / "summary.md").write_text(summary)
    body = f'{markdown_html(summary)}{"".join(sections)}<p><a href="summary.md">summary.md</a></p>'
    (out / "index.html").write_text(page(f"Study {study.study_name}", body))
    if len(study.directions) > 1 and study.best_trials:
        publish_front(study)  # the dashboard shows the same drawing
    return out / "index.html"


__all__ = ["contour_params", "metric_name", "write_report"]
