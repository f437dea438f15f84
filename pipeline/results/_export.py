"""One row per trial, and one per trial and epoch, as CSV or Parquet: ``pipeline export``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from pipeline.artifacts import ArtifactStore, live_checkpoint, where
from pipeline.exceptions import NoResult, UsageError
from pipeline.results._best import test_scores_of
from pipeline.trial import LINEAGE, Attr, is_feasible, last_metrics, outcome_of, reason_of

if TYPE_CHECKING:  # pandas costs 0.4 s to import; `tune` imports this room
    import pandas as pd


def trials_table(study: optuna.Study, store: ArtifactStore | None = None) -> pd.DataFrame:
    """One row per trial, with columns named for people: the trial's number and how it
    ended, one column per parameter, the study metric under its own name, the other
    metrics of its last epoch and its test scores (of a PBT population, its member,
    generation and parent), epochs and seconds, the worker, the
    trial it re-ran, why it was pruned or failed, and its checkpoint where the file is
    still in ``store``."""
    trials = study.get_trials(deepcopy=False)
    if not trials:
        raise NoResult(f"study {study.study_name!r} has no trials yet")
    objectives = study.metric_names or ["value"]
    rows = [_row(study, t, objectives, store) for t in trials]
    params = sorted({name for t in trials for name in t.params})  # as every storage agrees
    metrics = list(dict.fromkeys(k for row in rows for k in row["metrics"]))
    constrained = any(t.constraints for t in trials)
    import pandas as pd

    frame = pd.DataFrame(
        [
            {"number": row["number"], "state": row["state"]}
            | {_param_column(p, metrics): row["params"].get(p) for p in params}
            | {m: row["metrics"].get(m) for m in metrics}
            | ({"feasible": row["feasible"]} if constrained else {})
            | row["rest"]
            for row in rows
        ]
    )
    if any(Attr.MEMBER in t.user_attrs for t in trials):  # PBT: who trained what, from where
        for index, key in enumerate(LINEAGE):
            values = [t.user_attrs.get(key) for t in trials]
            frame.insert(2 + index, key, pd.array(values, dtype="Int64"))
    for param in params:  # a parameter some trials did not set stays whole, not 128.0
        values = [row["params"][param] for row in rows if param in row["params"]]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            column = _param_column(param, metrics)
            frame[column] = frame[column].astype("Int64")
    return frame


def _param_column(name: str, metrics: list[str]) -> str:
    clash = name in metrics or name in _REST
    return f"param_{name}" if clash else name


_REST = ("epochs", "seconds", "worker", "retry_of", "reason", "checkpoint", *LINEAGE)


def _row(
    study: optuna.Study, trial: FrozenTrial, objectives: list[str], store: ArtifactStore | None
) -> dict[str, Any]:
    """One trial: every objective first (one column each, by its metric's name), then
    the other metrics of its last epoch, the constrained ones and its test scores."""
    attrs = trial.user_attrs
    last = last_metrics(trial)
    values = trial.values or [None] * len(objectives)
    metrics = {
        name: last.get(name, attrs.get(name, value))
        for name, value in zip(objectives, values, strict=True)
    }
    metrics |= {k: v for k, v in last.items() if k not in objectives}
    for name in trial.constraints:
        metrics.setdefault(name, attrs.get(name))
    metrics |= test_scores_of(study, trial)
    duration = trial.duration.total_seconds() if trial.duration is not None else None
    found = live_checkpoint(trial, store) if store is not None else None
    checkpoint = where(store, found) if found and store is not None else found
    rest = {
        "epochs": attrs.get(Attr.EPOCHS, len(trial.intermediate_values)),
        "seconds": duration,
        "worker": attrs.get(Attr.WORKER),
        "retry_of": attrs.get(Attr.RETRY_OF),
        "reason": reason_of(trial),
        "checkpoint": checkpoint,
    }
    return {
        "number": trial.number,
        "state": _state(trial),
        "params": trial.params,
        "metrics": metrics,
        # Feasible: complete, and every constraint met (a pruned trial is no candidate).
        "feasible": trial.state == TrialState.COMPLETE and is_feasible(trial),
        "rest": rest,
    }


def _state(trial: FrozenTrial) -> str:
    """complete, pruned, failed, interrupted, skipped; running or waiting."""
    outcome = outcome_of(trial)
    return outcome.value if outcome is not None else trial.state.name.lower()


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def curves_table(study: optuna.Study) -> pd.DataFrame:
    """Long format: one row per trial and epoch with every metric reported that epoch
    (a trial stored before every metric was kept has its study metric only)."""
    metric = (study.metric_names or ["value"])[0]
    rows = []
    for t in study.trials:
        history = {row["epoch"]: row for row in t.user_attrs.get(Attr.HISTORY) or []}
        # Several objectives keep no intermediate values: the first one's, per epoch.
        steps = t.intermediate_values or {e: row.get(metric) for e, row in history.items()}
        for step, value in sorted(steps.items()):
            reported = {k: v for k, v in history.get(step, {}).items() if k != "epoch"}
            rows.append(
                {"number": t.number, "state": _state(t), "epoch": step, metric: value}
                | {k: v for k, v in reported.items() if k != "trial"}
            )
    columns = ["number", "state", "epoch", metric]
    import pandas as pd

    frame = pd.DataFrame(rows)
    return frame[columns + [c for c in frame.columns if c not in columns]] if rows else frame


def export(
    study: optuna.Study, out: Path, curves: bool = False, store: ArtifactStore | None = None
) -> list[Path]:
    """Write the trials table (and the curves, as ``<name>_curves.<ext>``) as CSV or
    Parquet, chosen by the file's extension."""
    tables = {out: trials_table(study, store)}
    if curves:
        tables[out.with_name(f"{out.stem}_curves{out.suffix}")] = curves_table(study)
    out.parent.mkdir(parents=True, exist_ok=True)
    for path, frame in tables.items():
        if path.suffix == ".csv":
            frame.to_csv(path, index=False)
        elif path.suffix == ".parquet":
            frame.to_parquet(path, index=False)
        else:
            raise UsageError(f"--out must end in .csv or .parquet, got {path.name}")
    return list(tables)


__all__ = ["curves_table", "export", "trials_table"]
