"""Ray Tune's ASHA rule as an Optuna pruner (``pruner: {name: asha, options: {rule: ray}}``).

Optuna's ``SuccessiveHalvingPruner`` keeps a trial at a rung only while it is among the
top ``1/reduction_factor`` of the trials recorded there, so until ``2 * eta`` trials have
reached a rung a trial survives only as the best so far. Ray Tune continues a trial
whose value reaches the interpolated ``(1 - 1/eta)`` percentile of the values recorded
at the rung, and always continues when none are recorded. This module applies Ray's
rule, as ``_Bracket.cutoff`` and ``_Bracket.on_result`` in
``python/ray/tune/schedulers/async_hyperband.py`` of ray-project/ray write it:

    cutoff = np.nanpercentile(recorded, (1 - 1 / rf) * 100)   # None when none recorded
    stop   = cutoff is not None and cur_rew < cutoff          # cur_rew: metric_op * value

with the rungs at ``grace_period * rf ** k`` for ``k < int(log(max_t / grace_period) /
log(rf) + 1)`` (one bracket). The values recorded at a rung are those of the other trials
that reported that epoch: the trials that reached the rung before this one.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import optuna
from optuna.pruners import BasePruner
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial


class RayAshaPruner(BasePruner):
    """Asynchronous successive halving with Ray Tune's cutoff.

    Args:
        min_resource: The first rung's epoch (Ray's ``grace_period``).
        reduction_factor: ``eta`` (Ray's ``reduction_factor``): rungs are ``eta`` times
            apart and about ``1/eta`` of the trials go on from each.
        max_resource: The last epoch (Ray's ``max_t``); the study's ``max_epochs`` when
            None.
    """

    def __init__(
        self, min_resource: int = 1, reduction_factor: float = 4, max_resource: int | None = None
    ) -> None:
        if min_resource < 1:
            raise ValueError(f"min_resource must be at least 1, got {min_resource}")
        if reduction_factor <= 1:
            raise ValueError(f"reduction_factor must be above 1, got {reduction_factor}")
        if max_resource is not None and max_resource < min_resource:
            raise ValueError("max_resource must be at least min_resource")
        self.min_resource = min_resource
        self.reduction_factor = reduction_factor
        self.max_resource = max_resource

    def rungs(self, max_resource: int) -> list[int]:
        """The epochs at which a trial is judged, as Ray's ``_Bracket`` places them."""
        count = int(
            math.log(max_resource / self.min_resource) / math.log(self.reduction_factor) + 1
        )
        # Ray judges at the first result at or past a milestone: with one report per
        # epoch, the first whole epoch at or past it.
        return [
            math.ceil(self.min_resource * self.reduction_factor**k - 1e-9) for k in range(count)
        ]

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step not in self.rungs(self.max_resource or step):
            return False
        sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0  # Ray's metric_op
        recorded = [
            sign * t.intermediate_values[step]
            for t in study.get_trials(deepcopy=False)
            if t.number != trial.number and step in t.intermediate_values
        ]
        return stops(sign * trial.intermediate_values[step], recorded, self.reduction_factor)


def cutoff(recorded: list[float], reduction_factor: float) -> float | None:
    """Ray's cutoff: the interpolated ``(1 - 1/eta)`` percentile of the recorded values,
    NaN ignored; None when none are recorded."""
    if not recorded:
        return None
    with warnings.catch_warnings():  # all NaN: a NaN cutoff, which stops nothing
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanpercentile(recorded, (1 - 1 / reduction_factor) * 100))


def stops(value: float, recorded: list[float], reduction_factor: float) -> bool:
    """Whether Ray stops a trial whose value (higher is better) is ``value`` at a rung
    where ``recorded`` are the values of the trials that reached it first."""
    limit = cutoff(recorded, reduction_factor)
    return limit is not None and value < limit


__all__ = ["RayAshaPruner", "cutoff", "stops"]
