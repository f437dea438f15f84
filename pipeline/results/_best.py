"""The best trial of a study, as a record for printing or JSON (``pipeline best``)."""

from __future__ import annotations

from typing import Any

import optuna

from pipeline.artifacts import live_checkpoint, open_location, where
from pipeline.exceptions import NoResult
from pipeline.schedulers import (
    Stretch,
    lineage,
    member_of,
    schedule,
    schedule_lines,
    schedule_record,
)
from pipeline.trial import Attr, best_trial, last_metrics


def label(name: str) -> str:
    """How a metric's name reads in a summary: ``val_macro_f1`` -> ``validation macro f1``."""
    return ("validation_" + name[4:] if name.startswith("val_") else name).replace("_", " ")


FINAL_EVALUATION = "final_evaluation"  # study user attribute: the best checkpoint's scores


def _score(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def test_scores_of(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, float]:
    """The trial's held-out ``test_*`` scores: those it recorded while it ran (a task's
    test split), and those the study's final evaluation gave its checkpoint (a trainable's
    ``test:`` function, scored at the end of ``tune`` or by ``pipeline evaluate``)."""
    scores = {
        k: float(v) for k, v in trial.user_attrs.items() if k.startswith("test_") and _score(v)
    }
    evaluation = study.user_attrs.get(FINAL_EVALUATION) or {}
    for result in evaluation.get("front", [evaluation]):
        if isinstance(result, dict) and result.get("trial") == trial.number:
            for name, value in result.items():
                if name.startswith("test_") and _score(value):
                    scores.setdefault(name, float(value))
    return dict(sorted(scores.items()))


def best_record(study: optuna.Study) -> dict[str, Any] | None:
    """The best complete trial's number, parameters and metrics; None if none finished.

    ``metrics`` are those of its last epoch, as reported (the study metric first);
    ``test`` its held-out scores. Both are also given at the top level, by name.
    """
    best = best_trial(study)
    if best is None:
        return None
    attrs = best.user_attrs
    metric = (study.metric_names or ["value"])[0]
    last = last_metrics(best)
    metrics = {metric: last.pop(metric, best.value), **last}
    test = test_scores_of(study, best)
    return {
        "study": study.study_name,
        "trial": best.number,
        "metric": metric,
        "value": best.value,
        "params": best.params,
        **metrics,
        **test,
        "metrics": metrics,
        "test": test,
        "epochs": attrs.get(Attr.EPOCHS),
        "checkpoint_error": attrs.get(Attr.CHECKPOINT_ERROR),
        **_lineage(study, best),
    }


def _lineage(study: optuna.Study, best: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """A PBT winner's member and hyperparameter schedule: the segments it descends from."""
    if member_of(best) is None:
        return {}
    stretches = schedule(lineage(study.get_trials(deepcopy=False), best))
    return {"member": member_of(best), "schedule": schedule_record(stretches)}


def deepest_record(study: optuna.Study) -> dict[str, Any] | None:
    """When no trial completed, every one pruned: the trial best at the deepest epoch any
    trial reached, as :func:`best_record` (with ``pruned`` and ``epoch``); None if no
    trial reported an epoch, or the study has several objectives."""
    pruned = [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))
        if t.intermediate_values
    ]
    if not pruned or len(study.directions) > 1:
        return None
    depth = max(max(t.intermediate_values) for t in pruned)
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    best = min(
        (t for t in pruned if depth in t.intermediate_values),
        key=lambda t: (sign * t.intermediate_values[depth], t.number),
    )
    metric = (study.metric_names or ["value"])[0]
    value = best.intermediate_values[depth]
    last = last_metrics(best)
    metrics = {metric: last.pop(metric, value), **last}
    return {
        "study": study.study_name,
        "trial": best.number,
        "metric": metric,
        "value": value,
        "params": best.params,
        **metrics,
        "metrics": metrics,
        "test": {},
        "epochs": best.user_attrs.get(Attr.EPOCHS, depth),
        "pruned": True,
        "epoch": depth,
        "checkpoint_error": None,
    }


def best_with_checkpoint(
    study: optuna.Study, storage_url: str, artifacts: str | None = None
) -> dict[str, Any]:
    """:func:`best_record` with where its checkpoint is (``pipeline best``).

    Raises:
        NoResult: no trial completed yet.
    """
    record = best_record(study)
    best = best_trial(study)
    if record is None and _complete(study) == "complete":  # none completed
        pruned = deepest_record(study)  # every trial pruned: still an answer
        if pruned is not None:
            return pruned
    if record is None or best is None:
        raise NoResult(f"study {study.study_name!r} has no {_complete(study)} trial yet")
    store = open_location(storage_url, artifacts, create=False)
    artifact_id = live_checkpoint(best, store)
    record["checkpoint"] = artifact_id
    record["checkpoint_path"] = where(store, artifact_id) if artifact_id else None
    return record


def _complete(study: optuna.Study) -> str:
    """``complete``, or ``feasible complete`` where complete trials broke a constraint."""
    some = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return "feasible complete" if some else "complete"


def format_best(record: dict[str, Any]) -> str:
    """A few lines a person reads at the end of a study."""
    params = "\n".join(f"    {name}: {value}" for name, value in record["params"].items())

    def num(value: Any) -> str:
        if value is None:
            return "n/a"
        return str(int(value)) if float(value).is_integer() and abs(value) >= 1 else f"{value:.4f}"

    title = f"Best trial #{record['trial']} of study {record['study']!r}"
    if record.get("pruned"):
        title += (
            f" at epoch {record['epoch']}, the deepest any trial reached "
            "(no trial completed: every one was pruned)"
        )
    lines = [f"{title}:", f"  config:\n{params}"]
    if record.get("schedule"):  # population-based training: how the values changed
        lines.append(f"  schedule (member {record['member']} and the members it descends from):")
        lines += [f"    {line}" for line in schedule_lines(_stretches(record["schedule"]))]
    rows = [
        (label(name), num(value)) for name, value in {**record["metrics"], **record["test"]}.items()
    ]
    if "test_accuracy" not in record["test"] and "val_accuracy" in record["metrics"]:
        rows.append(("test accuracy", "n/a"))
    rows.append(("epochs trained", str(record["epochs"])))
    if "checkpoint_path" in record:  # the caller looked for one
        rows.append(("checkpoint", _checkpoint(record)))
    width = max(21, *(len(name) + 2 for name, _ in rows))  # a long metric name keeps a space
    lines += [f"  {name + ':':{width}s}{value}" for name, value in rows]
    return "\n".join(lines)


def _stretches(rows: list[dict[str, Any]]) -> list[Stretch]:
    return [
        Stretch(
            r["epochs"][0],
            r["epochs"][1],
            r["member"],
            tuple(r["trials"]),
            r["params"],
            r["exploit"],
        )
        for r in rows
    ]


def _checkpoint(record: dict[str, Any]) -> str:
    if record["checkpoint_path"]:
        return str(record["checkpoint_path"])
    error = record.get("checkpoint_error")
    return "none" + (f" (not saved: {error})" if error else "")


__all__ = [
    "FINAL_EVALUATION",
    "best_record",
    "best_with_checkpoint",
    "deepest_record",
    "format_best",
    "test_scores_of",
]
