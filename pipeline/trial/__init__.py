"""The vocabulary every reader of trials shares: stored attribute names, outcomes, the
best trial, state counts, retries and re-queues, which worker owns a trial, and the
Pareto front of several objectives.
"""

from __future__ import annotations

from pipeline.trial._ended import death_reason, describe, exit_reason, fail_dead, running_epoch
from pipeline.trial._liveness import is_local, process_identity, release_orphans
from pipeline.trial._objectives import (
    Limits,
    front,
    hypervolume,
    is_multi_objective,
    limits_of,
    metric_names,
    minimized,
    reference_point,
    study_front,
)
from pipeline.trial._output import TrialOutput, last_lines, output_note, trial_log
from pipeline.trial._trials import (
    FINISHED,
    IN_FLIGHT,
    LINEAGE,
    STOPPED_ATTR,
    Attr,
    Outcome,
    best_trial,
    frozen,
    is_enqueued,
    is_feasible,
    last_metrics,
    metric_values,
    original_number,
    outcome_of,
    rank,
    reason_of,
    requeue,
    retry_history,
    state_counts,
    test_score_name,
)

__all__ = [
    "FINISHED",
    "IN_FLIGHT",
    "LINEAGE",
    "STOPPED_ATTR",
    "Attr",
    "Limits",
    "Outcome",
    "TrialOutput",
    "best_trial",
    "death_reason",
    "describe",
    "exit_reason",
    "fail_dead",
    "front",
    "frozen",
    "hypervolume",
    "is_enqueued",
    "is_feasible",
    "is_local",
    "is_multi_objective",
    "last_lines",
    "last_metrics",
    "limits_of",
    "metric_names",
    "metric_values",
    "minimized",
    "original_number",
    "outcome_of",
    "output_note",
    "process_identity",
    "rank",
    "reason_of",
    "reference_point",
    "release_orphans",
    "requeue",
    "retry_history",
    "running_epoch",
    "state_counts",
    "study_front",
    "test_score_name",
    "trial_log",
]
