"""A study from a study file: the file loaded and checked against the components,
creation and resume (drift, branching, grid), provenance, and the trial budget that
every worker shares.
"""

from __future__ import annotations

from pipeline.study._branch import BRANCH_ATTR
from pipeline.study._budget import Budget, budget_for
from pipeline.study._create import (
    create_hint,
    load_study,
    open_existing,
    prepare_study,
    set_optuna_logging,
    storage_for,
    write_note,
)
from pipeline.study._file import load_study_file, parse_study
from pipeline.study._provenance import RUNS_ATTR, masked, note
from pipeline.study._stops import clear_stop, stop_reason

__all__ = [
    "BRANCH_ATTR",
    "RUNS_ATTR",
    "Budget",
    "budget_for",
    "clear_stop",
    "create_hint",
    "load_study",
    "load_study_file",
    "masked",
    "note",
    "open_existing",
    "parse_study",
    "prepare_study",
    "set_optuna_logging",
    "stop_reason",
    "storage_for",
    "write_note",
]
