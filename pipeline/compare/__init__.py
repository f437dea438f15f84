"""Sampler and pruner comparison at an equal budget: the runs, their curves, the table,
the verdict, and hypervolume ranking for several objectives.
"""

from __future__ import annotations

from pipeline.compare._pareto import check_names
from pipeline.compare._report import write_report
from pipeline.compare._run import CompareBudget, Run, load_runs, parse_names, run_comparison

__all__ = [
    "CompareBudget",
    "Run",
    "check_names",
    "load_runs",
    "parse_names",
    "run_comparison",
    "write_report",
]
