"""The Pareto front as the report draws it: front members, the other feasible trials and
the infeasible ones as three groups with a legend, and axes named by each objective's
metric and direction.

Optuna's ``plot_pareto_front`` colours points by trial number, so a front member of an
early trial is drawn almost white and reads as the infeasible grey; here a point's group
is its colour and its marker, and the trial number is in its hover text.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from pipeline.trial import front, is_feasible, metric_names

DASHBOARD_PLOT = "pareto-front"  # the id of the plot publish_front stores

# (legend label, colour, matplotlib marker, plotly symbol) per group, drawn in this order.
GROUPS = (
    ("infeasible", "#b0b0b0", "x", "x"),
    ("feasible, dominated", "#6baed6", "o", "circle"),
    ("Pareto front", "#d62728", "D", "diamond"),
)


def groups(study: optuna.Study) -> dict[str, list[FrozenTrial]]:
    """The complete trials of ``study`` by group label, as :data:`GROUPS` names them."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    members = {t.number for t in front(complete, study.directions)}
    out: dict[str, list[FrozenTrial]] = {label: [] for label, *_ in GROUPS}
    for trial in complete:
        if trial.number in members:
            out["Pareto front"].append(trial)
        elif is_feasible(trial):
            out["feasible, dominated"].append(trial)
        else:
            out["infeasible"].append(trial)
    return out


def axis_titles(study: optuna.Study) -> list[str]:
    """``val_accuracy (maximize)``, one per objective."""
    return [
        f"{name} ({'maximize' if d == StudyDirection.MAXIMIZE else 'minimize'})"
        for name, d in zip(metric_names(study), study.directions, strict=True)
    ]


def pareto_figure(study: optuna.Study) -> Any:
    """The plotly figure: a 2-D scatter, or 3-D for three objectives."""
    import plotly.graph_objects as go

    titles = axis_titles(study)
    three = len(titles) == 3
    fig = go.Figure()
    for label, colour, _, symbol in GROUPS:
        trials = groups(study)[label]
        if not trials:
            continue
        columns = list(zip(*(t.values for t in trials), strict=True))
        text = [f"trial #{t.number}" for t in trials]
        marker = {"color": colour, "symbol": symbol, "size": 7 if three else 10}
        if three:
            fig.add_trace(
                go.Scatter3d(
                    x=columns[0],
                    y=columns[1],
                    z=columns[2],
                    mode="markers",
                    name=label,
                    text=text,
                    marker=marker,
                )
            )
        else:
            fig.add_trace(
                go.Scatter(
                    x=columns[0],
                    y=columns[1],
                    mode="markers",
                    name=label,
                    text=text,
                    marker={**marker, "line": {"width": 1, "color": "#333"}},
                )
            )
    if three:
        fig.update_layout(
            scene={"xaxis_title": titles[0], "yaxis_title": titles[1], "zaxis_title": titles[2]}
        )
    else:
        fig.update_layout(xaxis_title=titles[0], yaxis_title=titles[1])
    fig.update_layout(legend={"title": {"text": "trials"}}, margin={"t": 30})
    return fig


def publish_front(study: optuna.Study) -> None:
    """Store :func:`pareto_figure` in the study as a plot of its own, which optuna-dashboard
    shows on the study's page below the note: the dashboard's built-in Pareto plot colours
    points by trial number and names no axis. Each call replaces the last one."""
    import optuna_dashboard

    figure = pareto_figure(study)
    # A short title, left, and room above the plot: the dashboard's card is narrow and
    # plotly's toolbar sits at its top right.
    figure.update_layout(
        title={"text": "Pareto front by group", "x": 0.02, "xanchor": "left"},
        margin={"t": 70},
    )
    optuna_dashboard.save_plotly_graph_object(study, figure, graph_object_id=DASHBOARD_PLOT)


def pareto_axes(study: optuna.Study) -> Any:
    """The matplotlib version, for the PNG."""
    import matplotlib.pyplot as plt

    titles = axis_titles(study)
    three = len(titles) == 3
    fig = plt.figure(figsize=(8, 6))
    ax: Any = fig.add_subplot(projection="3d") if three else fig.add_subplot()
    for label, colour, marker, _ in GROUPS:
        trials = groups(study)[label]
        if trials:
            columns = list(zip(*(t.values for t in trials), strict=True))
            edge = None if marker == "x" else "#333"  # an x has no face to outline
            ax.scatter(*columns, c=colour, marker=marker, label=label, edgecolors=edge)
    ax.set_xlabel(titles[0])
    ax.set_ylabel(titles[1])
    if three:
        ax.set_zlabel(titles[2])
    ax.legend(title="trials")
    ax.grid(True, alpha=0.3)
    return ax


__all__ = [
    "DASHBOARD_PLOT",
    "GROUPS",
    "axis_titles",
    "groups",
    "pareto_axes",
    "pareto_figure",
    "publish_front",
]
