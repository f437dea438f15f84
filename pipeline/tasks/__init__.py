"""Tasks: a data set plus a model family plus its defaults, behind one small interface
(:class:`Task`) and a registry; each kind's metrics, accumulated on the device.
"""

from __future__ import annotations

from pipeline.tasks._base import Task, check_labels, resolve_task, split_indices
from pipeline.tasks._data import Split, Splits
from pipeline.tasks._metrics import KIND_METRICS, align, meter_for

__all__ = [
    "KIND_METRICS",
    "Split",
    "Splits",
    "Task",
    "align",
    "check_labels",
    "meter_for",
    "resolve_task",
    "split_indices",
]
