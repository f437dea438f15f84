"""The Pareto front of a study of several objectives, as records for ``pipeline best``
(a table, or JSON with ``--json``), the live reporter's summary and the report.

The front is that of the feasible trials; the trials that would join it if the
constraints were dropped are listed too, marked infeasible, so that a reader sees what
the constraints cost.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.study import StudyDirection

from pipeline.artifacts import live_checkpoint, open_location, where
from pipeline.exceptions import NoResult
from pipeline.results._best import test_scores_of
from pipeline.trial import Attr, front, is_feasible, last_metrics, metric_names

MEASURED = ("params", "latency_ms", "peak_memory_mb", "compute_seconds")


def front_records(study: optuna.Study) -> list[dict[str, Any]]:
    """One record per front member (feasible) and per trial of the unconstrained front
    that breaks a constraint (infeasible), best first in the first objective."""
    trials = study.get_trials(deepcopy=False)
    members = {t.number: t for t in front(trials, study.directions)}
    members |= {t.number: t for t in front(trials, study.directions, feasible_only=False)}
    names = metric_names(study)
    first = study.directions[0] == StudyDirection.MAXIMIZE
    ordered = sorted(members.values(), key=lambda t: ((-1 if first else 1) * t.values[0], t.number))
    return [_record(study, t, names) for t in ordered]


def _record(
    study: optuna.Study, trial: optuna.trial.FrozenTrial, names: list[str]
) -> dict[str, Any]:
    attrs = trial.user_attrs
    measured = {k: attrs[k] for k in MEASURED if isinstance(attrs.get(k), (int, float))}
    return {
        "trial": trial.number,
        "feasible": is_feasible(trial),
        "values": dict(zip(names, trial.values, strict=True)),
        "params": trial.params,
        "metrics": {**last_metrics(trial), **measured},
        "test": test_scores_of(study, trial),
        "constraints": trial.constraints,
        "epochs": attrs.get(Attr.EPOCHS),
    }


def front_result(study: optuna.Study) -> dict[str, Any] | None:
    """The study's objectives and its front; None when no trial completed."""
    records = front_records(study)
    if not records:
        return None
    return {
        "study": study.study_name,
        "objectives": [
            {"metric": name, "direction": d.name.lower()}
            for name, d in zip(metric_names(study), study.directions, strict=True)
        ],
        "front": records,
    }


def front_with_checkpoints(
    study: optuna.Study, storage_url: str, artifacts: str | None = None
) -> dict[str, Any]:
    """:func:`front_result`, each member with where its checkpoint is (``pipeline best``
    of a study of several objectives).

    Raises:
        NoResult: no trial completed yet.
    """
    result = front_result(study)
    if result is None:
        raise NoResult(f"study {study.study_name!r} has no complete trial yet")
    store = open_location(storage_url, artifacts, create=False)
    trials = study.get_trials(deepcopy=False)
    for record in result["front"]:
        artifact_id = live_checkpoint(trials[record["trial"]], store)
        record["checkpoint"] = where(store, artifact_id) if artifact_id else None
    return result


def _num(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    if float(value).is_integer() and abs(value) >= 1:
        return str(int(value))
    return f"{value:.4f}" if abs(value) >= 1e-3 else f"{value:.3e}"


def format_front(result: dict[str, Any]) -> str:
    """The front as a table a person reads: one row per trial, feasibility marked, the
    objectives, then the constrained metrics, then the configuration."""
    records = result["front"]
    objectives = [o["metric"] for o in result["objectives"]]
    constrained = list(dict.fromkeys(k for r in records for k in r["constraints"]))
    extra = [k for k in constrained if k not in objectives]
    feasible = sum(r["feasible"] for r in records)
    said = ", ".join(f"{o['metric']} ({o['direction']})" for o in result["objectives"])
    lines = [
        f"Pareto front of study {result['study']!r}, {said}: {feasible} feasible trial(s)"
        + (
            f", {len(records) - feasible} infeasible shown for comparison"
            if feasible < len(records)
            else ""
        )
    ]
    columns = ["trial", "feasible", *objectives, *extra]
    widths = [max(len(c), 9) for c in columns]
    lines.append("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)) + "  config")
    for r in records:
        known = {**r["metrics"], **r["values"]}
        cells = [str(r["trial"]), "yes" if r["feasible"] else "NO"]
        cells += [_num(known.get(name)) for name in [*objectives, *extra]]
        config = " ".join(
            f"{k}={_num(v) if isinstance(v, float) else v}" for k, v in r["params"].items()
        )
        lines.append(
            "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) + f"  {config}"
        )
    return "\n".join(lines)


__all__ = ["format_front", "front_records", "front_result", "front_with_checkpoints"]
