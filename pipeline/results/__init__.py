"""What a finished study gives: the best trial and the Pareto front as records, the final
evaluation of the best checkpoint, the winner rebuilt in Python, export to CSV/Parquet,
and optuna-dashboard with the checkpoints.
"""

from __future__ import annotations

from pipeline.results._best import (
    best_record,
    best_with_checkpoint,
    deepest_record,
    format_best,
    test_scores_of,
)
from pipeline.results._dashboard import serve
from pipeline.results._evaluate import evaluate_best, print_final_evaluation, test_scores
from pipeline.results._export import export
from pipeline.results._pareto import format_front, front_result, front_with_checkpoints
from pipeline.results._winner import load_best

__all__ = [
    "best_record",
    "best_with_checkpoint",
    "deepest_record",
    "evaluate_best",
    "export",
    "format_best",
    "format_front",
    "front_result",
    "front_with_checkpoints",
    "load_best",
    "print_final_evaluation",
    "serve",
    "test_scores",
    "test_scores_of",
]
