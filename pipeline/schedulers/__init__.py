"""Schedulers that move checkpoints between trials: population-based training that lives
in the Optuna storage (``_pbt``) and the lineage of its trials (``_lineage``).
"""

from __future__ import annotations

from pipeline.schedulers._lineage import (
    Stretch,
    changing,
    lineage,
    schedule,
    schedule_lines,
    schedule_record,
)
from pipeline.schedulers._pbt import (
    Population,
    check_population,
    check_shared_checkpoints,
    generation_of,
    member_of,
    parent_of,
    population_of,
)

__all__ = [
    "Population",
    "Stretch",
    "changing",
    "check_population",
    "check_shared_checkpoints",
    "generation_of",
    "lineage",
    "member_of",
    "parent_of",
    "population_of",
    "schedule",
    "schedule_lines",
    "schedule_record",
]
