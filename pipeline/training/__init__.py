"""Training one trial: the one training loop, its optimizers and schedules, the session a
trainable reports through, the built-in trainable over a task, the user's trainable, the
measured metrics, and the objective Optuna calls.
"""

from __future__ import annotations

from pipeline.training._builtin import TaskTrainable, hyperparameters
from pipeline.training._loop import (
    EVAL_BATCH,
    EpochResult,
    autocast_context,
    evaluate,
    fit,
    loss_function,
    warm_up,
)
from pipeline.training._measure import PeakMemory, count_params, latency_ms, too_large
from pipeline.training._objective import (
    Objective,
    Trainable,
    TrialInterrupted,
    TrialPlan,
    TrialSkipped,
    record_end,
)
from pipeline.training._optim import make_optimizer, make_scheduler
from pipeline.training._session import EpochBudgetReached, Session, TrainableError
from pipeline.training._trainables import check_trainable, import_user_function, load_user_function

__all__ = [
    "EVAL_BATCH",
    "EpochBudgetReached",
    "EpochResult",
    "Objective",
    "PeakMemory",
    "Session",
    "TaskTrainable",
    "Trainable",
    "TrainableError",
    "TrialInterrupted",
    "TrialPlan",
    "TrialSkipped",
    "autocast_context",
    "check_trainable",
    "count_params",
    "evaluate",
    "fit",
    "hyperparameters",
    "import_user_function",
    "latency_ms",
    "load_user_function",
    "loss_function",
    "make_optimizer",
    "make_scheduler",
    "record_end",
    "too_large",
    "warm_up",
]
