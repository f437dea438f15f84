"""One row per trial, as CSV or Parquet: ``pipeline export``."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd

from pipeline.errors import NoResult, UsageError
from pipeline.trials import Attr


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: Optuna's trials dataframe (parameters, state, value, durations,
    user attributes) plus the epochs each trial trained."""
    frame = study.trials_dataframe(multi_index=False)
    if frame.empty:
        raise NoResult(f"study {study.study_name!r} has no trials yet")
    frame["epochs_trained"] = [len(t.intermediate_values) for t in study.trials]
    frame["duration_seconds"] = frame["duration"].dt.total_seconds()
    for column in frame.columns:  # lists and dicts do not fit CSV/Parquet cells
        if frame[column].map(lambda v: isinstance(v, (list, dict))).any():
            frame[column] = frame[column].map(
                lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v
            )
    return frame


def curves_table(study: optuna.Study) -> pd.DataFrame:
    """Long format: one row per trial and epoch with every metric reported that epoch
    (a trial stored before every metric was kept has its study metric only)."""
    metric = (study.metric_names or ["value"])[0]
    rows = []
    for t in study.trials:
        history = {row["epoch"]: row for row in t.user_attrs.get(Attr.HISTORY) or []}
        for step, value in sorted(t.intermediate_values.items()):
            reported = {k: v for k, v in history.get(step, {}).items() if k != "epoch"}
            rows.append(
                {"number": t.number, "state": t.state.name, "epoch": step, metric: value}
                | {k: v for k, v in reported.items() if k != "trial"}
            )
    columns = ["number", "state", "epoch", metric]
    frame = pd.DataFrame(rows)
    return frame[columns + [c for c in frame.columns if c not in columns]] if rows else frame


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
            raise UsageError(f"--out must end in .csv or .parquet, got {path.name}")
    return list(tables)


__all__ = ["curves_table", "export", "trials_table"]
