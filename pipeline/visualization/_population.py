"""The report's pictures of population-based training: the population's curves, one per
member, with the exploits marked, and the winner's hyperparameter schedule."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from pipeline.schedulers import changing, generation_of, lineage, member_of, parent_of, schedule
from pipeline.trial import best_trial

Point = tuple[int, float]


def has_population(study: optuna.Study) -> bool:
    """Whether the study's trials are segments of population-based training."""
    return any(member_of(t) is not None for t in study.get_trials(deepcopy=False))


def member_curves(study: optuna.Study) -> dict[int, tuple[list[Point], list[tuple[Point, str]]]]:
    """Per member: its (epoch, value) points, each segment contributing the epochs it
    trained, and the exploits, each as its first point and what it copied."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    curves: dict[int, tuple[list[Point], list[tuple[Point, str]]]] = {}
    for trial in sorted(trials, key=lambda t: (generation_of(t), t.number)):
        member = member_of(trial)
        if member is None:
            continue
        points, exploits = curves.setdefault(member, ([], []))
        parent = by_number.get(parent_of(trial) or -1)
        start = max(parent.intermediate_values, default=0) if parent is not None else 0
        own = [(e, v) for e, v in sorted(trial.intermediate_values.items()) if e > start]
        if own and parent is not None and member_of(parent) != member:
            exploits.append((own[0], f"copied member {member_of(parent)} (trial {parent.number})"))
        points.extend(own)
    return curves


def _winner(study: optuna.Study) -> tuple[FrozenTrial | None, list[Any]]:
    best = best_trial(study)
    if best is None or member_of(best) is None:
        return None, []
    return best, schedule(lineage(study.get_trials(deepcopy=False), best))


def population_figure(study: optuna.Study, metric: str) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for member, (points, exploits) in sorted(member_curves(study).items()):
        if points:
            x, y = zip(*points, strict=True)
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=f"member {member}"))
        if exploits:
            fig.add_trace(
                go.Scatter(
                    x=[p[0] for p, _ in exploits],
                    y=[p[1] for p, _ in exploits],
                    mode="markers",
                    marker={"symbol": "star", "size": 11},
                    name=f"member {member}: exploits",
                    text=[why for _, why in exploits],
                )
            )
    fig.update_layout(
        title="The population: each member's curve; stars mark exploits (a copied checkpoint)",
        xaxis_title="epoch",
        yaxis_title=metric,
    )
    return fig


def population_axes(study: optuna.Study, metric: str) -> Any:
    import matplotlib.pyplot as plt

    _fig, ax = plt.subplots(figsize=(9, 5))
    for member, (points, exploits) in sorted(member_curves(study).items()):
        if points:
            x, y = zip(*points, strict=True)
            (line,) = ax.plot(x, y, label=f"member {member}")
            for (epoch, value), _ in exploits:
                ax.plot([epoch], [value], marker="*", markersize=12, color=line.get_color())
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title("The population (stars: exploits)")
    ax.legend(fontsize="small")
    return ax


def schedule_figure(study: optuna.Study) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    best, stretches = _winner(study)
    names = changing(stretches)
    fig = make_subplots(rows=max(len(names), 1), cols=1, shared_xaxes=True)
    for row, name in enumerate(names, start=1):
        x = [e for s in stretches for e in (s.first, s.last)]
        y = [s.params.get(name) for s in stretches for _ in (0, 1)]
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=name), row=row, col=1)
        fig.update_yaxes(title_text=name, row=row, col=1)
    number = best.number if best is not None else "?"
    fig.update_layout(title=f"The winner's schedule (trial #{number}): each value per epoch")
    fig.update_xaxes(title_text="epoch", row=max(len(names), 1), col=1)
    return fig


def schedule_axes(study: optuna.Study) -> Any:
    import matplotlib.pyplot as plt

    best, stretches = _winner(study)
    names = changing(stretches)
    _fig, axes = plt.subplots(max(len(names), 1), 1, figsize=(9, 2.2 * max(len(names), 1)))
    flat = list(axes.flat) if hasattr(axes, "flat") else [axes]
    for ax, name in zip(flat, names, strict=False):
        x = [e for s in stretches for e in (s.first, s.last)]
        y = [s.params.get(name) for s in stretches for _ in (0, 1)]
        ax.plot(x, y)
        ax.set_ylabel(name)
    flat[-1].set_xlabel("epoch")
    number = best.number if best is not None else "?"
    flat[0].set_title(f"The winner's schedule (trial #{number})")
    return flat[0]


def population_plots(study: optuna.Study, metric: str) -> dict[str, tuple[str, Any, Any]]:
    """The report's sections for a PBT study: name -> (title, plotly, matplotlib)."""
    return {
        "population": (
            f"The population: {metric} per epoch of each member, exploits starred",
            lambda s: population_figure(s, metric),
            lambda s: population_axes(s, metric),
        ),
        "schedule": (
            "The winner's hyperparameter schedule",
            schedule_figure,
            schedule_axes,
        ),
    }


__all__ = ["has_population", "member_curves", "population_plots"]
