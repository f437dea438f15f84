"""The pictures and summary of a study of several objectives, for ``pipeline report``:
the Pareto front, the hypervolume history and the front as a table, every axis named
after the objectives' metrics."""

from __future__ import annotations

import warnings
from functools import partial
from typing import Any

import optuna

from pipeline.objectives import Limits, metric_names, reference_point
from pipeline.pareto import front_result
from pipeline.trials import Attr


def pareto_plots(study: optuna.Study) -> dict[str, tuple[str, Any, Any]]:
    """name -> (title, plotly figure factory, matplotlib axes factory), as
    :func:`pipeline.report._plots` returns them."""
    import optuna.visualization as pv
    import optuna.visualization.matplotlib as pm

    names = metric_names(study)
    constraints = _constraints(study)
    plots: dict[str, tuple[str, Any, Any]] = {
        "pareto": (
            f"Pareto front: {' against '.join(names)}"
            + (" (infeasible trials in grey)" if constraints else ""),
            # constraints_func is deprecated (removed in Optuna 6, which pyproject excludes)
            # in favour of what samplers store; random and grid store none, so it stays.
            partial(_quiet, pv.plot_pareto_front, target_names=names, constraints_func=constraints),
            partial(_quiet, pm.plot_pareto_front, target_names=names, constraints_func=constraints),
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
    with warnings.catch_warnings():  # experimental or deprecated in Optuna; used on purpose
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return plot(study, **kwargs)


def _constraints(study: optuna.Study) -> Limits | None:
    """The feasibility the trials stored, as a ``constraints_func`` for the plots."""
    names = list(
        dict.fromkeys(
            k
            for t in study.get_trials(deepcopy=False)
            for k in t.user_attrs.get(Attr.CONSTRAINTS) or {}
        )
    )
    return Limits(tuple((n, None, None) for n in names)) if names else None


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


__all__ = ["front_markdown", "pareto_plots"]
