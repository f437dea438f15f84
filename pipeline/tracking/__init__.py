"""Trials mirrored to MLflow, TensorBoard and Weights & Biases while they run."""

from __future__ import annotations

from pipeline.tracking._tracking import Tracking, check_tracking, open_tracking

__all__ = [
    "Tracking",
    "check_tracking",
    "open_tracking",
]
