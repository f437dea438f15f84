"""Population-based training on the shared storage, without a head node.

Each trial is one segment of ``interval`` epochs of one member of the population, and
carries the user attributes ``member``, ``generation`` and ``parent`` (the trial whose
checkpoint it starts from). Generation 0 is queued once, when the study is created; from
then on every worker, on any machine, calls :meth:`Population.advance` before it looks
for work: for each member whose latest segment completed it decides the next one and
queues it with Optuna's ``enqueue_trial``. Optuna hands a queued trial to one worker
only; two workers that queue the same next segment in the same instant both queue it,
and the later copy is skipped when it starts (:meth:`Population.is_duplicate`), so the
storage is the only coordination point.

Exploit and explore follow Ray Tune's ``PopulationBasedTraining`` (``pbt.py``,
``_quantiles`` and ``_explore``): members are ranked by their latest score; one in the
bottom ``quantile`` copies a random member of the top one and perturbs the copied values
by one of ``perturbation_factors``, or draws them anew with ``resample_probability``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from pipeline.config import ParamSpec, SchedulerConfig, StudyConfig
from pipeline.exceptions import ConfigError, UsageError
from pipeline.search import to_distribution
from pipeline.trial import Attr, Outcome, outcome_of, process_identity

_BUSY = (TrialState.WAITING, TrialState.RUNNING)


def member_of(trial: FrozenTrial) -> int | None:
    """The member a trial trains a segment of; None for a trial outside a population."""
    member = trial.user_attrs.get(Attr.MEMBER)
    return int(member) if isinstance(member, int) else None


def generation_of(trial: FrozenTrial) -> int:
    """The segment's index within its member's training (0 for the first)."""
    return int(trial.user_attrs.get(Attr.GENERATION) or 0)


def parent_of(trial: FrozenTrial) -> int | None:
    """The number of the trial whose checkpoint this segment starts from, or None."""
    parent = trial.user_attrs.get(Attr.PARENT)
    return int(parent) if isinstance(parent, int) else None


class Population:
    """The study file's ``scheduler: {name: pbt}`` applied to a study's trials.

    Args:
        config: The scheduler's options.
        space: The search space (what may be mutated, and how values are drawn anew).
        max_epochs: Where the last segment ends.
        seed: Seeds every decision, so one storage's history always gives the same one.
    """

    def __init__(
        self,
        config: SchedulerConfig,
        space: Mapping[str, ParamSpec],
        max_epochs: int,
        seed: int = 0,
    ) -> None:
        self.options = config.options
        self.max_epochs = max_epochs
        self.generations = config.generations(max_epochs)
        self.seed = seed
        dists = {name: to_distribution(spec) for name, spec in space.items()}
        self.distributions = {name: d for name, d in dists.items() if d is not None}
        names = self.options.mutate
        if names is None:  # every searched float and int
            names = [
                n
                for n, d in self.distributions.items()
                if isinstance(d, FloatDistribution | IntDistribution)
            ]
        self.mutate = list(names)

    def segment_end(self, trial: FrozenTrial) -> int:
        """The last epoch of the trial's segment: ``session.max_epochs`` for it."""
        return min((generation_of(trial) + 1) * self.options.interval, self.max_epochs)

    def seed_population(self, study: optuna.Study) -> None:
        """Queue generation 0: one trial per member, its values left to the sampler."""
        for member in range(self.options.population):
            study.enqueue_trial(
                {}, user_attrs={Attr.MEMBER: member, Attr.GENERATION: 0, Attr.PARENT: None}
            )

    @staticmethod
    def is_duplicate(trials: Sequence[FrozenTrial], trial: FrozenTrial) -> bool:
        """Whether an earlier trial, not failed, already trains this segment (two workers
        queued it in the same instant): the later one is skipped."""
        member, generation = member_of(trial), generation_of(trial)
        return member is not None and any(
            t.number < trial.number
            and member_of(t) == member
            and generation_of(t) == generation
            and t.state != TrialState.FAIL
            for t in trials
        )

    def advance(self, study: optuna.Study) -> int:
        """Queue the next segment of every member whose latest segment completed (with
        ``synchronous``, only once no member is still training its generation); return
        how many were queued."""
        trials = study.get_trials(deepcopy=False)
        latest, ahead, busy = _members(trials)
        ready = [
            m
            for m, t in latest.items()
            if generation_of(t) + 1 < self.generations and ahead.get(m, -1) <= generation_of(t)
        ]
        if self.options.synchronous and busy:
            return 0
        sign = -1.0 if study.direction == StudyDirection.MINIMIZE else 1.0
        scores = {m: sign * float(t.value or 0.0) for m, t in latest.items()}
        lower, upper = self.quantiles(scores)
        for member in sorted(ready):
            last = latest[member]
            rng = random.Random(f"{self.seed}-{member}-{generation_of(last)}")
            parent, params = last, dict(last.params)
            if member in lower and upper:
                donor = latest[rng.choice(upper)]
                # A member never goes back a generation: it catches up with a donor ahead
                # of it (and trains the epochs a donor behind it has not).
                if max(generation_of(last), generation_of(donor)) + 1 < self.generations:
                    parent, params = donor, self.explore(donor.params, rng)
            generation = max(generation_of(last), generation_of(parent)) + 1
            study.enqueue_trial(
                params,
                user_attrs={
                    Attr.MEMBER: member,
                    Attr.GENERATION: generation,
                    Attr.PARENT: parent.number,
                },
            )
        return len(ready)

    def quantiles(self, scores: Mapping[int, float]) -> tuple[list[int], list[int]]:
        """The members in the bottom and the top quantile by score (higher is better), as
        Ray's ``_quantiles``: none while fewer than two members have a score."""
        ranked = sorted(scores, key=lambda m: (scores[m], m))
        if len(ranked) <= 1:
            return [], []
        n = math.ceil(len(ranked) * self.options.quantile)
        if n > len(ranked) / 2:
            n = math.floor(len(ranked) / 2)
        return ranked[:n], ranked[-n:] if n else []

    def explore(self, params: Mapping[str, Any], rng: random.Random) -> dict[str, Any]:
        """The donor's values with each mutated one perturbed or drawn anew."""
        new = dict(params)
        for name in self.mutate:
            if name in new and name in self.distributions:
                new[name] = self._mutated(self.distributions[name], new[name], rng)
        return new

    def _mutated(self, dist: BaseDistribution, value: Any, rng: random.Random) -> Any:
        resample = rng.random() < self.options.resample_probability
        if isinstance(dist, CategoricalDistribution):
            choices = list(dist.choices)
            if resample or value not in choices:
                return rng.choice(choices)
            # Ray's rule for a list: move to a neighbouring choice.
            index = choices.index(value) + rng.choice((-1, 1))
            return choices[min(max(index, 0), len(choices) - 1)]
        assert isinstance(dist, FloatDistribution | IntDistribution)
        if resample:
            return _draw(dist, rng)
        moved = float(value) * rng.choice(self.options.perturbation_factors)
        return _snap(dist, moved)


def population_of(config: StudyConfig) -> Population | None:
    """The study's population, or None when it has no ``scheduler``."""
    if config.scheduler is None:
        return None
    return Population(config.scheduler, config.search_space, config.max_epochs, config.seed)


def check_population(config: StudyConfig) -> None:
    """Refuse what PBT cannot run with: no checkpoints (an exploit copies one), several
    objectives (members are ranked on one), packing, a grid or queued configurations
    (the population queues its own segments).

    Raises:
        ConfigError: naming the key to change.
    """
    if config.scheduler is None:
        return
    problems = {
        "keep_checkpoints": (
            "must be at least 1: an exploit copies a checkpoint",
            not config.keep_checkpoints,
        ),
        "objectives": ("PBT ranks members on one objective; list one", config.multi_objective),
        "packing": ("cannot train PBT segments; remove packing", config.packing is not None),
        "sampler.name": (
            "grid cannot draw a population; use random",
            config.sampler.name == "grid",
        ),
        "enqueue": ("the population queues its own segments; remove enqueue", bool(config.enqueue)),
    }
    for key, (message, broken) in problems.items():
        if broken:
            raise ConfigError(key, f"with scheduler pbt: {message}")


def check_shared_checkpoints(study: optuna.Study, artifacts: str | None) -> None:
    """Refuse to join a PBT study from a second machine while its checkpoints are on one
    machine's disk: a segment started here could not read its parent's checkpoint.

    Raises:
        UsageError: another machine already ran trials and ``artifacts`` is not S3.
    """
    if str(artifacts or "").startswith("s3://"):
        return
    mine = process_identity().get("boot_id")
    for trial in study.get_trials(deepcopy=False):
        other = trial.user_attrs.get(Attr.WORKER_PROCESS)
        if (
            member_of(trial) is not None
            and isinstance(other, dict)
            and other.get("boot_id") != mine
        ):
            raise UsageError(
                f"scheduler pbt: trial {trial.number} ran on another machine and checkpoints are "
                f"on one machine's disk ({artifacts or 'the default artifacts directory'}); set "
                "`artifacts: s3://bucket/prefix` in the study file to run PBT on several machines"
            )


def _members(
    trials: Sequence[FrozenTrial],
) -> tuple[dict[int, FrozenTrial], dict[int, int], bool]:
    """Each member's latest complete segment, the highest generation any of its trials
    reached (queued, running or failed), and whether any segment is queued or running."""
    latest: dict[int, FrozenTrial] = {}
    ahead: dict[int, int] = {}
    busy = False
    for t in trials:
        member = member_of(t)
        if member is None or outcome_of(t) == Outcome.SKIPPED:
            continue
        busy = busy or t.state in _BUSY
        ahead[member] = max(ahead.get(member, -1), generation_of(t))
        if t.state == TrialState.COMPLETE:
            best = latest.get(member)
            if best is None or generation_of(t) >= generation_of(best):
                latest[member] = t
    return latest, ahead, busy


def _draw(dist: FloatDistribution | IntDistribution, rng: random.Random) -> float | int:
    low, high = float(dist.low), float(dist.high)
    if dist.log:
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    return _snap(dist, value)


def _snap(dist: FloatDistribution | IntDistribution, value: float) -> float | int:
    """``value`` clipped to the distribution's range and rounded to its step."""
    low, high = dist.low, dist.high
    value = min(max(value, low), high)
    if dist.step is not None:
        value = low + round((value - low) / dist.step) * dist.step
        value = min(max(value, low), high)
    if isinstance(dist, IntDistribution):
        return round(value)
    return float(value)


__all__ = [
    "Population",
    "check_population",
    "check_shared_checkpoints",
    "generation_of",
    "member_of",
    "parent_of",
    "population_of",
]
