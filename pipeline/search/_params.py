"""What each hyperparameter and task option accepts, checked when a study file loads.

The training loop's own hyperparameters have rules (a positive learning rate, a batch of
at least one example, a known optimizer); a task's hyperparameters and options take
values of the type of their default. A search space is checked at its ends: every value
it can produce must be one the loop or the task accepts, so no trial fails at run time
on a value the file allowed.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pipeline.config import ParamSpec
from pipeline.exceptions import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
# The largest size (a layer width, a batch) an int or pow2 range may reach: past it, one
# trial can take minutes or the machine's memory. A larger size is stated explicitly, as
# a fixed value or a categorical choice.
MAX_SIZE = 2**16
WIDTH_NAMES = frozenset({"width", "hidden", "channels", "l1", "l2", "l3", "conv1", "conv2"})
SCHEDULERS = ("none", "cosine", "onecycle", "step")

# The hyperparameters the training loop reads, with their defaults. Tasks may override
# the defaults (Task.training_defaults) and study files may search any of them.
TRAINING_DEFAULTS: dict[str, Any] = {
    "optimizer": "sgd",
    "lr": 0.01,
    "momentum": 0.9,
    "weight_decay": 0.0,
    "batch_size": 32,
    "nesterov": False,  # sgd only; needs momentum above 0
    "scheduler": "none",  # stepped per batch: none, cosine, onecycle or step
    "warmup_epochs": 0,  # linear warm-up before the schedule; 0 = none
    "step_size": 10,  # scheduler step: epochs between lr drops ...
    "gamma": 0.1,  # ... each multiplying the lr by gamma
    "label_smoothing": 0.0,  # classification only
    "grad_clip": 0.0,  # max norm of all gradients together; 0 = no clipping
    "loader_workers": 0,  # DataLoader processes, for tasks whose splits are Datasets
}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


Rule = Callable[[Any], str | None]

LOOP_RULES: dict[str, Rule] = {
    "optimizer": lambda v: None if v in OPTIMIZERS else f"expected one of {', '.join(OPTIMIZERS)}",
    "lr": lambda v: None if _number(v) and v > 0 else "expected a positive number",
    "momentum": lambda v: None if _number(v) and 0 <= v <= 1 else "expected a number in 0..1",
    "weight_decay": lambda v: None if _number(v) and v >= 0 else "expected 0 or a positive number",
    "batch_size": lambda v: None if _whole(v) and v >= 1 else "expected a whole number, 1 or more",
    "nesterov": lambda v: None if isinstance(v, bool) else "expected true or false",
    "scheduler": lambda v: None if v in SCHEDULERS else f"expected one of {', '.join(SCHEDULERS)}",
    "warmup_epochs": lambda v: (
        None if _whole(v) and v >= 0 else "expected a whole number, 0 or more"
    ),
    "step_size": lambda v: None if _whole(v) and v >= 1 else "expected a whole number, 1 or more",
    "gamma": lambda v: (
        None if _number(v) and 0 < v <= 1 else "expected a number above 0, at most 1"
    ),
    "label_smoothing": lambda v: (
        None if _number(v) and 0 <= v <= 1 else "expected a number in 0..1"
    ),
    "grad_clip": lambda v: (
        None if _number(v) and v >= 0 else "expected 0 (off) or a positive number"
    ),
    "loader_workers": lambda v: (
        None if _whole(v) and v >= 0 else "expected a whole number, 0 or more"
    ),
}


def check_combinations(space: Mapping[str, ParamSpec], known: Mapping[str, Any], kind: str) -> None:
    """Refuse loop settings that no trial could use together: Nesterov momentum with
    sgd and a momentum fixed at 0, or label smoothing in a regression task. Where only
    some sampled values clash, the trial fails with torch's message instead.

    Args:
        known: Every hyperparameter's default (loop, then task).
        kind: The task's kind.

    Raises:
        ConfigError: naming the search-space entry to change.
    """
    fixed = {name: _only_value(name, space, known) for name in ("optimizer", "nesterov")}
    if fixed == {"optimizer": "sgd", "nesterov": True} and _only_value(
        "momentum", space, known
    ) in (0, 0.0):
        key = "search_space.nesterov" if "nesterov" in space else "search_space.momentum"
        raise ConfigError(key, "nesterov needs momentum above 0; set momentum or nesterov: false")
    if kind == "regression" and _only_value("label_smoothing", space, known) != 0:
        raise ConfigError(
            "search_space.label_smoothing", "applies to classification; this task is regression"
        )


_VARIES = object()


def _only_value(name: str, space: Mapping[str, ParamSpec], known: Mapping[str, Any]) -> Any:
    """The one value ``name`` takes in every trial, or a marker when it can vary."""
    spec = space.get(name)
    if spec is None:
        return known.get(name)
    if spec.when:
        return _VARIES
    if spec.type == "fixed":
        return spec.value
    if spec.type == "categorical" and len(spec.choices or []) == 1:
        return (spec.choices or [None])[0]
    return _VARIES


def type_problem(value: Any, default: Any) -> str | None:
    """Why ``value`` cannot stand where ``default`` stands (same type), or None."""
    if default is None or (value is None and default is None):
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "expected true or false"
    if isinstance(default, int):
        return None if _whole(value) else "expected a whole number"
    if isinstance(default, float):
        return None if _number(value) else "expected a finite number"
    if isinstance(default, str):  # null stands for "none" (a cache directory, say)
        return None if isinstance(value, str) or value is None else "expected a string"
    return None


def rule_for(name: str, defaults: Mapping[str, Any]) -> Rule:
    """The rule of one hyperparameter: the loop's own, else the type of its default; a
    size (see :func:`is_size`) is 1 or more."""
    if name in LOOP_RULES:
        return LOOP_RULES[name]
    default = defaults.get(name)
    if is_size(name, defaults):
        return lambda v: None if _whole(v) and v >= 1 else "a size: expected a whole number >= 1"
    return lambda value: type_problem(value, default)


def is_size(name: str, defaults: Mapping[str, Any]) -> bool:
    """Whether a hyperparameter is a size: a whole number named as the built-in models
    name their layer widths (``l1``, ``width``, ``conv2``, ``hidden``...) or ending in
    ``_size`` or ``_width`` (``batch_size``, ``kernel_size``). A depth is not: 0 layers
    is a linear model."""
    if name != "batch_size" and not _whole(defaults.get(name)):
        return False
    return name in WIDTH_NAMES or name.endswith(("_size", "_width"))


def check_spec(name: str, spec: ParamSpec, rule: Rule, whole: bool, size: bool = False) -> None:
    """Refuse a search-space entry that can produce a value ``rule`` refuses.

    Args:
        whole: The parameter takes whole numbers only.
        size: The parameter is a size: a range of it reaches at most ``MAX_SIZE``.

    Raises:
        ConfigError: naming ``search_space.<name>``.
    """
    key = f"search_space.{name}"
    if whole and spec.type == "float":
        raise ConfigError(f"{key}.type", f"{name} takes whole numbers; use int or pow2")
    if spec.type == "fixed":
        candidates = [spec.value]
    elif spec.type == "categorical":
        candidates = list(spec.choices or [])
    else:
        candidates = [spec.low, spec.high, *(spec.grid or [])]
    for value in candidates:
        problem = rule(value)
        if problem is not None:
            raise ConfigError(key, f"{value!r} cannot be used: {problem}")
    if size and spec.type in ("int", "pow2") and (spec.high or 0) > MAX_SIZE:
        raise ConfigError(
            f"{key}.high",
            f"{spec.high:g} is past {MAX_SIZE}, the largest size a range reaches; list a "
            "larger size explicitly ({type: categorical, choices: [...]} or type: fixed)",
        )


def whole_numbers_only(name: str, defaults: Mapping[str, Any]) -> bool:
    """Whether a hyperparameter takes whole numbers (its default is one)."""
    default = defaults.get(name)
    return name == "batch_size" or (isinstance(default, int) and not isinstance(default, bool))


def check_options(
    factory: Callable[..., Any], options: Mapping[str, Any], key: str, partial: bool = False
) -> None:
    """Refuse a sampler or pruner option its constructor does not take, a required one
    that is missing (unless ``partial``: the pipeline passes the rest), or one whose value
    is not of the type the constructor declares (where it declares a plain int, float,
    bool or str, or one of them or None).

    Raises:
        ConfigError: naming ``key`` or ``key.<option>``.
    """
    signature = inspect.signature(factory)
    try:
        (signature.bind_partial if partial else signature.bind)(**options)
    except TypeError as exc:
        raise ConfigError(key, f"{factory.__name__}: {exc}") from None
    parameters = signature.parameters
    for name, value in options.items():
        allowed = _plain_types(parameters[name].annotation) if name in parameters else None
        if allowed is None or (value is None and type(None) in allowed):
            continue
        ok = any(
            _number(value) if tp is float else _whole(value) if tp is int else isinstance(value, tp)
            for tp in allowed
            if tp is not type(None)
        )
        if not ok:
            names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
            raise ConfigError(f"{key}.{name}", f"expected {names}, got {value!r}")


_PLAIN = {"int": int, "float": float, "bool": bool, "str": str, "None": type(None)}


def _plain_types(annotation: Any) -> tuple[type, ...] | None:
    """``int``, ``int | None``... as types; None for anything richer. Annotations are
    read as written (libraries with postponed annotations keep them as strings)."""
    if isinstance(annotation, str):
        names = [part.strip() for part in annotation.split("|")]
        return tuple(_PLAIN[n] for n in names) if all(n in _PLAIN for n in names) else None
    if annotation in (int, float, bool, str):
        return (annotation,)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if all(a in (int, float, bool, str, type(None)) for a in args):
            return tuple(args)
    return None


__all__ = [
    "LOOP_RULES",
    "MAX_SIZE",
    "OPTIMIZERS",
    "SCHEDULERS",
    "TRAINING_DEFAULTS",
    "check_combinations",
    "check_options",
    "check_spec",
    "is_size",
    "rule_for",
    "type_problem",
    "whole_numbers_only",
]
