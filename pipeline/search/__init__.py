"""The search: the search-space grammar turned into Optuna distributions, the rules every
hyperparameter value must keep, and the name -> factory tables of Optuna's samplers and
pruners.
"""

from __future__ import annotations

from pipeline.search._params import OPTIMIZERS, TRAINING_DEFAULTS, type_problem
from pipeline.search._pruners import (
    PRUNERS,
    FirstObjectivePruning,
    check_pruner,
    check_pruner_objectives,
    make_pruner,
)
from pipeline.search._samplers import (
    SAMPLERS,
    check_sampler,
    check_sampler_objectives,
    make_sampler,
)
from pipeline.search._space import (
    check_enqueued,
    check_space,
    contains,
    grid_points,
    grid_size,
    grid_values,
    is_active,
    suggest,
    to_distribution,
)

__all__ = [
    "OPTIMIZERS",
    "PRUNERS",
    "SAMPLERS",
    "TRAINING_DEFAULTS",
    "FirstObjectivePruning",
    "check_enqueued",
    "check_pruner",
    "check_pruner_objectives",
    "check_sampler",
    "check_sampler_objectives",
    "check_space",
    "contains",
    "grid_points",
    "grid_size",
    "grid_values",
    "is_active",
    "make_pruner",
    "make_sampler",
    "suggest",
    "to_distribution",
    "type_problem",
]
