"""The pictures and summary of a study of several objectives, for ``pipeline report``:
the Pareto front, the hypervolume history and the front as a table, every axis named
after the objectives' metrics."""

from __future__ import annotations

import warnings
from functools import partial
from typing import Any

import optuna

from pipeline.results import front_result
from pipeline.trial import metric_names, reference_point
from pipeline.visualization._front_plot import pareto_axes, pareto_figure


def pareto_plots(study: optuna.Study) -> dict[str, tuple[str, Any, Any]]:
    """name -> (title, plotly figure factory, matplotlib axes factory), as
    :func:`pipeline.visualization._report._plots` returns them."""
    import optuna.visualization as pv
    import optuna.visualization.matplotlib as pm

    names = metric_names(study)
    constrained = any(t.constraints for t in study.get_trials(deepcopy=False))
    plots: dict[str, tuple[str, Any, Any]] = {
        "pareto": (
            f"Pareto front: {' against '.join(names)}: front members, "
            + ("other feasible trials and infeasible trials" if constrained else "other trials"),
            pareto_figure,
            pareto_axes,
        )
    }
    reference = reference_point(study.get_trials(deepcopy=False), study.directions)
    if reference is not None:
        shown = ", ".join(f"{n} {v:.4g}" for n, v in zip(names, reference, strict=True))
        plots["hypervolume"] = (
            f"Hypervolume of the feasible front after each trial (reference point: {shown})",
            partial(_quiet, pv.plot_hypervolume_history, reference_point=reference),
            partial(_quiet, pm.plot_hypervolume_history, reference_point=reference),
        )
    return plots


def _quiet(plot: Any, study: optuna.Study, **kwargs: Any) -> Any:
    with warnings.catch_warnings():  # experimental in Optuna; used on purpose
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return plot(study, **kwargs)


def front_markdown(study: optuna.Study) -> list[str]:
    """The front as a Markdown table: trial, feasibility, objectives, configuration."""
    result = front_result(study)
    if result is None:
        return []
    names = [o["metric"] for o in result["objectives"]]
    said = ", ".join(f"{o['metric']} ({o['direction']})" for o in result["objectives"])
    lines = [
        "",
        f"## Pareto front: {said}",
        "",
        "| trial | feasible | " + " | ".join(names) + " | configuration |",
        "|---" * (len(names) + 3) + "|",
    ]
    for r in result["front"]:
        values = " | ".join(f"{r['values'][n]:.4g}" for n in names)
        config = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["params"].items()
        )
        lines.append(
            f"| #{r['trial']} | {'yes' if r['feasible'] else 'no'} | {values} | {config} |"
        )
    return lines


def front_evaluation_lines(evaluation: dict[str, Any]) -> list[str]:
    """The final evaluation of every front member, one line each."""
    return ["", "## Final evaluation", ""] + [
        f"- trial #{r['trial']} on the test split: "
        + ", ".join(
            f"{k.removeprefix('test_')} {v:.4f}" for k, v in r.items() if k.startswith("test_")
        )
        for r in evaluation["front"]
    ]


def epochs_trained(trial: optuna.trial.FrozenTrial) -> int:
    """Epochs the trial trained (several objectives keep no intermediate values)."""
    return len(trial.intermediate_values) or int(trial.user_attrs.get("epochs") or 0)


__all__ = ["epochs_trained", "front_evaluation_lines", "front_markdown", "pareto_plots"]
