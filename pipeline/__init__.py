"""Hyperparameter tuning for PyTorch from a YAML study file, built on Optuna."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


def load_best(
    study_name: str, storage: str, artifacts: str | None = None, device: str = "cpu"
) -> nn.Module:
    """The best trial's model of a study, with its weights, ready to use in Python.

    ``pipeline.load_best("digits-tpe-median", "sqlite:///runs/optuna.db")``; see
    :func:`pipeline.results.load_best`. (Imported lazily: ``import pipeline`` stays cheap.)
    """
    from pipeline.results import load_best as load

    return load(study_name, storage, artifacts, device)


__all__ = ["load_best"]
