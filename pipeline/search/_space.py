"""The search-space grammar: study-file parameter specs to Optuna distributions.

Each entry of ``search_space`` is one of::

    lr:         {type: float, low: 1.0e-4, high: 0.1, log: true}     # also step:
    depth:      {type: int, low: 1, high: 4}                         # also log:, step:
    optimizer:  {type: categorical, choices: [sgd, adam]}
    l1:         {type: pow2, low: 4, high: 256}   # 2 ** randint(2, 9), as in the tutorial
    epochs_x:   {type: fixed, value: 3}           # or simply `epochs_x: 3`
    momentum:   {type: float, low: 0.5, high: 0.99, when: {optimizer: sgd}}

``grid:`` lists the values a grid search takes for a float or int parameter; ``when:``
makes a parameter conditional on earlier categorical ones (a value or a list of values).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from pipeline.config import ParamSpec
from pipeline.exceptions import ConfigError
from pipeline.search._params import (
    MAX_SIZE,
    TRAINING_DEFAULTS,
    check_combinations,
    check_spec,
    is_size,
    rule_for,
    whole_numbers_only,
)


class TaskHyperparameters(Protocol):
    """What a search space is checked against: a task's name, kind and the defaults of
    the hyperparameters it reads (:class:`pipeline.tasks.Task` has them)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def training_defaults(self) -> Mapping[str, Any]: ...
    @property
    def hyperparameters(self) -> Mapping[str, Any]: ...


# Which spec fields each type accepts (beyond `type`, `when`).
_ALLOWED = {
    "float": {"low", "high", "log", "step", "grid"},
    "int": {"low", "high", "log", "step", "grid"},
    "categorical": {"choices"},
    "pow2": {"low", "high"},
    "fixed": {"value"},
}
_SCALARS = (str, int, float, bool, type(None))


def to_distribution(spec: ParamSpec) -> BaseDistribution | None:
    """The Optuna distribution a spec describes, or None for a fixed value.

    Raises:
        ValueError: with a message naming the field to change.
    """
    _check_fields(spec)
    if spec.type == "fixed":
        return None
    if spec.type == "categorical":
        choices = spec.choices or []
        if not choices:
            raise ValueError("choices: must list at least one value")
        for choice in choices:
            if not isinstance(choice, _SCALARS):
                raise ValueError(f"choices: {choice!r} is not a string, number, boolean or null")
        if len(set(map(repr, choices))) != len(choices):
            raise ValueError("choices: values must be distinct")
        return CategoricalDistribution(choices)
    low, high = _range(spec)
    if spec.type == "pow2":
        if high > MAX_SIZE:
            raise ValueError(
                f"high: {high:g} is past {MAX_SIZE}, the largest a pow2 range reaches; list a "
                "larger value explicitly as a categorical choice"
            )
        exponents = [_log2_exact(low, "low"), _log2_exact(high, "high")]
        return CategoricalDistribution([2**e for e in range(exponents[0], exponents[1] + 1)])
    if spec.log and spec.step is not None:
        raise ValueError("step: cannot be combined with log: true")
    if spec.log and low <= 0:
        raise ValueError(f"low: must be positive with log: true, got {low:g}")
    if spec.step is not None and spec.step <= 0:
        raise ValueError(f"step: must be positive, got {spec.step:g}")
    if spec.type == "int":
        for name, value in (("low", low), ("high", high), ("step", spec.step)):
            if value is not None and value != int(value):
                raise ValueError(f"{name}: must be an integer for type int, got {value:g}")
        dist: BaseDistribution = IntDistribution(
            int(low), int(high), log=spec.log, step=int(spec.step or 1)
        )
    else:
        if spec.step is not None and spec.step > high - low:
            raise ValueError(f"step: {spec.step:g} is larger than the range {low:g}..{high:g}")
        dist = FloatDistribution(low, high, log=spec.log, step=spec.step)
    for value in spec.grid or []:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"grid: {value!r} is not a number")
        if not contains(dist, value):
            raise ValueError(f"grid: {value!r} lies outside {low:g}..{high:g}")
    if spec.grid is not None and not spec.grid:
        raise ValueError("grid: must list at least one value")
    return dist


def contains(dist: BaseDistribution, value: Any) -> bool:
    """Whether ``dist`` can take ``value``, by Optuna's own rule: the one that
    ``create_trial`` applies to every parameter it is given."""
    try:
        optuna.trial.create_trial(value=0.0, params={"p": value}, distributions={"p": dist})
    except (ValueError, TypeError):
        return False
    return True


def _check_fields(spec: ParamSpec) -> None:
    allowed = _ALLOWED[spec.type]
    for name in ("low", "high", "log", "step", "choices", "value", "grid"):
        if getattr(spec, name) not in (None, False) and name not in allowed:
            raise ValueError(
                f"{name}: not used by type {spec.type} (it takes {', '.join(sorted(allowed))})"
            )


def _range(spec: ParamSpec) -> tuple[float, float]:
    if spec.low is None or spec.high is None:
        raise ValueError(f"{'low' if spec.low is None else 'high'}: required for type {spec.type}")
    if not (math.isfinite(spec.low) and math.isfinite(spec.high)):
        raise ValueError("low/high: must be finite numbers")
    if spec.low >= spec.high:
        relation = "empty" if spec.low == spec.high else "inverted"
        raise ValueError(
            f"low/high: the range {spec.low:g}..{spec.high:g} is {relation}; low must be less "
            "than high (use type: fixed for a constant)"
        )
    return spec.low, spec.high


def _log2_exact(value: float, name: str) -> int:
    exponent = round(math.log2(value)) if value > 0 else -1
    if value <= 0 or 2**exponent != value:
        raise ValueError(f"{name}: must be a power of two for type pow2, got {value:g}")
    return exponent


def check_space(space: Mapping[str, ParamSpec], task: TaskHyperparameters | None) -> None:
    """Validate a whole search space against the task's hyperparameters, or for a
    trainable (``task`` None), which reads any name from its ``config``.

    Raises:
        ConfigError: naming ``search_space.<param>.<field>``.
    """
    if not any(spec.type != "fixed" for spec in space.values()):
        raise ConfigError("search_space", "must have at least one parameter to search")
    seen: dict[str, ParamSpec] = {}
    known: dict[str, Any] = {}
    if task is not None:
        known = {**TRAINING_DEFAULTS, **task.training_defaults, **task.hyperparameters}
    for name, spec in space.items():
        key = f"search_space.{name}"
        if task is not None and name not in known:
            raise ConfigError(
                key,
                f"unknown hyperparameter for task {task.name}; expected one of: "
                + ", ".join(sorted(known)),
            )
        try:
            to_distribution(spec)
        except ValueError as exc:
            field, _, message = str(exc).partition(": ")
            raise ConfigError(f"{key}.{field}", message) from None
        if spec.type == "fixed" and not isinstance(spec.value, _SCALARS):
            raise ConfigError(f"{key}.value", "must be a string, number, boolean or null")
        if task is not None:
            whole = whole_numbers_only(name, known)
            check_spec(name, spec, rule_for(name, known), whole, is_size(name, known))
        for parent, wanted in (spec.when or {}).items():
            _check_condition(seen, parent, wanted, f"{key}.when.{parent}")
        seen[name] = spec
    if task is not None:
        check_combinations(space, known, task.kind)


def check_enqueued(points: list[dict[str, Any]], space: Mapping[str, ParamSpec]) -> None:
    """Each configuration to run first must give searched parameters values they can take
    (parameters it leaves out are sampled as usual).

    Raises:
        ConfigError: naming ``enqueue[i].<param>``.
    """
    for i, point in enumerate(points):
        for name, value in point.items():
            key = f"enqueue[{i}].{name}"
            spec = space.get(name)
            dist = None if spec is None else to_distribution(spec)
            if dist is None:
                raise ConfigError(key, "not a searched parameter of search_space")
            if not contains(dist, value):
                raise ConfigError(key, f"{value!r} is outside the search space ({dist})")


def _check_condition(seen: Mapping[str, ParamSpec], parent: str, wanted: Any, key: str) -> None:
    if parent not in seen:
        raise ConfigError(key, "must name a categorical parameter listed above this one")
    spec = seen[parent]
    dist = to_distribution(spec)
    if isinstance(dist, CategoricalDistribution):
        values = list(dist.choices)
    elif spec.type == "fixed":
        values = [spec.value]
    else:
        raise ConfigError(key, f"{parent} is {spec.type}; conditions need categorical values")
    for value in wanted if isinstance(wanted, list) else [wanted]:
        if value not in values:
            raise ConfigError(key, f"{value!r} is not one of {parent}'s values {values}")


def is_active(spec: ParamSpec, values: Mapping[str, Any]) -> bool:
    """Whether a conditional parameter applies, given the values chosen before it."""
    for parent, wanted in (spec.when or {}).items():
        options = wanted if isinstance(wanted, list) else [wanted]
        if parent not in values or values[parent] not in options:
            return False
    return True


def suggest(trial: optuna.Trial, space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """Ask the trial for every active parameter, in file order; fixed values pass through."""
    values: dict[str, Any] = {}
    for name, spec in space.items():
        if not is_active(spec, values):
            continue
        if spec.type == "fixed":
            values[name] = spec.value
            continue
        dist = to_distribution(spec)
        if isinstance(dist, CategoricalDistribution):
            values[name] = trial.suggest_categorical(name, dist.choices)
        elif isinstance(dist, IntDistribution):
            values[name] = trial.suggest_int(
                name, dist.low, dist.high, step=dist.step, log=dist.log
            )
        elif isinstance(dist, FloatDistribution):
            values[name] = trial.suggest_float(
                name, dist.low, dist.high, step=dist.step, log=dist.log
            )
    return values


def grid_values(name: str, spec: ParamSpec) -> list[Any]:
    """The values a grid search tries for one parameter.

    Raises:
        ValueError: for a continuous parameter without a ``grid:`` list.
    """
    if spec.type == "fixed":
        return [spec.value]
    dist = to_distribution(spec)
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if spec.grid is None:
        raise ValueError(
            f"{name}: a {spec.type} range needs an explicit `grid: [...]` list for the grid "
            "sampler (or make it categorical)"
        )
    return list(spec.grid)


def grid_points(space: Mapping[str, ParamSpec]) -> list[dict[str, Any]]:
    """Every distinct combination of searched values, respecting conditions.

    Fixed values are left out: they are not Optuna parameters.
    """
    items = list(space.items())
    per_param = {name: grid_values(name, spec) for name, spec in items}

    def expand(index: int, chosen: dict[str, Any]) -> Iterator[dict[str, Any]]:
        if index == len(items):
            yield chosen
            return
        name, spec = items[index]
        if not is_active(spec, chosen):
            yield from expand(index + 1, chosen)
            return
        for value in per_param[name]:
            yield from expand(index + 1, {**chosen, name: value})

    fixed = {name for name, spec in items if spec.type == "fixed"}
    points = [{k: v for k, v in p.items() if k not in fixed} for p in expand(0, {})]
    unique = {tuple(sorted(p.items(), key=lambda kv: kv[0])): p for p in points}
    return list(unique.values())


def grid_size(space: Mapping[str, ParamSpec]) -> int:
    """How many points :func:`grid_points` yields."""
    return len(grid_points(space))


__all__ = [
    "check_enqueued",
    "check_space",
    "contains",
    "grid_points",
    "grid_size",
    "grid_values",
    "is_active",
    "suggest",
    "to_distribution",
]
