"""Running a study: ``tune`` (local worker processes, the exit code) and ``worker``, each
worker's loop, placement on CPU threads and GPUs, the live console table and stop
signals; ``replay`` of a PBT winner's schedule.
"""

from __future__ import annotations

from pipeline.runner._launch import join_study, tune
from pipeline.runner._live import LiveReporter
from pipeline.runner._placement import Slot, plan
from pipeline.runner._replay import format_replay, replay
from pipeline.runner._worker import run_worker

__all__ = [
    "LiveReporter",
    "Slot",
    "format_replay",
    "join_study",
    "plan",
    "replay",
    "run_worker",
    "tune",
]
