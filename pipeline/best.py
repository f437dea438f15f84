"""The best trial of a study, as a record for printing or JSON (``pipeline best``)."""

from __future__ import annotations

from typing import Any

import optuna

from pipeline.checkpoints import artifact_dir_for, live_checkpoint, open_store
from pipeline.errors import NoResult
from pipeline.trials import best_trial


def best_record(study: optuna.Study) -> dict[str, Any] | None:
    """The best complete trial's number, parameters and metrics; None if none finished."""
    best = best_trial(study)
    if best is None:
        return None
    attrs = best.user_attrs
    return {
        "study": study.study_name,
        "trial": best.number,
        "value": best.value,
        "params": best.params,
        "val_loss": attrs.get("val_loss"),
        "val_accuracy": attrs.get("val_accuracy"),
        "test_accuracy": attrs.get("test_accuracy"),
        "test_loss": attrs.get("test_loss"),
        "val_r2": attrs.get("val_r2"),  # regression tasks
        "test_r2": attrs.get("test_r2"),
        "test_rmse": attrs.get("test_rmse"),
        "epochs": attrs.get("epochs"),
        "checkpoint_error": attrs.get("checkpoint_error"),
    }


def best_with_checkpoint(study: optuna.Study, storage_url: str) -> dict[str, Any]:
    """:func:`best_record` with where its checkpoint is (``pipeline best``).

    Raises:
        NoResult: no trial completed yet.
    """
    record = best_record(study)
    best = best_trial(study)
    if record is None or best is None:
        raise NoResult(f"study {study.study_name!r} has no complete trial yet")
    artifacts = artifact_dir_for(storage_url)
    artifact_id = live_checkpoint(best, open_store(artifacts, create=False))
    record["checkpoint"] = artifact_id
    record["checkpoint_path"] = str(artifacts / artifact_id) if artifact_id else None
    return record


def format_best(record: dict[str, Any]) -> str:
    """A few lines a person reads at the end of a study."""
    params = "\n".join(f"    {name}: {value}" for name, value in record["params"].items())

    def num(value: Any) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    regression = record.get("val_r2") is not None or record.get("test_r2") is not None
    shown = _REGRESSION_LINES if regression else _CLASSIFICATION_LINES
    metrics = "".join(f"  {label + ':':<21}{num(record.get(key))}\n" for key, label in shown)
    return (
        f"Best trial #{record['trial']} of study {record['study']!r}:\n"
        f"  config:\n{params}\n"
        f"{metrics}"
        f"  epochs trained:      {record['epochs']}" + _checkpoint_line(record)
    )


_CLASSIFICATION_LINES = (
    ("val_loss", "validation loss"),
    ("val_accuracy", "validation accuracy"),
    ("test_accuracy", "test accuracy"),
)
_REGRESSION_LINES = (
    ("val_loss", "validation loss"),
    ("val_r2", "validation r2"),
    ("test_r2", "test r2"),
    ("test_rmse", "test rmse"),
)


def _checkpoint_line(record: dict[str, Any]) -> str:
    if "checkpoint_path" not in record:  # the caller did not look for one
        return ""
    if record["checkpoint_path"]:
        return f"\n  checkpoint:          {record['checkpoint_path']}"
    error = record.get("checkpoint_error")
    return "\n  checkpoint:          none" + (f" (not saved: {error})" if error else "")


__all__ = ["best_record", "best_with_checkpoint", "format_best"]
