"""Hyperparameter tuning for PyTorch from a YAML study file, built on Optuna."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


def load_best(
    study_name: str,
    storage: str,
    artifacts: str | None = None,
    device: str = "cpu",
    trial: int | None = None,
) -> nn.Module:
    """The best trial's model of a study (or trial number ``trial``'s, any member of a
    Pareto front say), with its weights, ready to use in Python.

    ``pipeline.load_best("digits-tpe-median", "sqlite:///runs/optuna.db")``; see
    :func:`pipeline.results.load_best`. (Imported lazily: ``import pipeline`` stays cheap.)
    """
    from pipeline.results import load_best as load

    return load(study_name, storage, artifacts, device, trial)


__all__ = ["load_best"]
