"""User code named in a study file: ``package.module:function``, imported and checked,
and the schema of the forms that name it: ``trainable:``, ``lightning:`` (a
LightningModule) and ``transformers:`` (a Hugging Face model and Trainer), and the fixed
arguments a trainable gets (``trainable_args``).

A study file names code, as any Python configuration does, but it may only name a plain
Python function defined in the module it names. Whatever goes wrong while importing or
checking it is one :class:`ConfigError` line naming the key, never a traceback.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.exceptions import ConfigError


@dataclass(frozen=True)
class LightningConfig:
    """``lightning:``: a LightningModule the pipeline trains with a Trainer it builds
    (docs/own-code.md#pytorch-lightning)."""

    module: str  # package.module:function(config) -> LightningModule
    datamodule: str | None = None  # package.module:function(config) -> LightningDataModule
    trainer: dict[str, Any] = field(default_factory=dict)  # more Trainer(...) arguments


@dataclass(frozen=True)
class TransformersConfig:
    """``transformers:``: a Hugging Face model and the Trainer the user's factory builds
    around the TrainingArguments the pipeline sets (docs/own-code.md#hugging-face-trainer)."""

    model_init: str  # package.module:function(config) -> PreTrainedModel
    trainer: str  # package.module:function(config, model, args) -> transformers.Trainer
    args: dict[str, Any] = field(default_factory=dict)  # more TrainingArguments(...) fields


def check_what_trains(
    task: object, trainable: str | None, lightning: object, transformers: object
) -> None:
    """Exactly one of ``task``, ``trainable``, ``lightning`` and ``transformers``.

    Raises:
        ConfigError: naming the keys to choose from.
    """
    given = [
        key
        for key, value in (
            ("task", task),
            ("trainable", trainable),
            ("lightning", lightning),
            ("transformers", transformers),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise ConfigError(
            given[0],
            f"set one of task (a data set and model the built-in loop trains), trainable "
            f"(your own training function), lightning or transformers, not both {given[0]} "
            f"and {given[1]}",
        )
    if not given:
        raise ConfigError(
            "task",
            "is missing: set task (name: digits, ...), trainable: package.module:function, "
            "lightning: {module: ...} or transformers: {model_init: ..., trainer: ...}",
        )


def user_code(
    trainable: str | None,
    lightning: LightningConfig | None,
    transformers: TransformersConfig | None,
) -> tuple[str, str] | None:
    """The form of the user's code a study trains and its main function:
    ``("trainable", target)``, ``("lightning", module)``, ``("transformers", model_init)``;
    None for a task."""
    if trainable is not None:
        return "trainable", trainable
    if lightning is not None:
        return "lightning", lightning.module
    if transformers is not None:
        return "transformers", transformers.model_init
    return None


def import_function(target: str, key: str, expected: str) -> Callable[..., Any]:
    """Import ``package.module:function`` and return the function.

    Args:
        key: The study-file key that names it, for the message.
        expected: What the key accepts, for the message ("a function(config, session)").

    Raises:
        ConfigError: naming ``key``, in one line.
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(key, f"unknown {key.split('.')[0]} {target!r}; expected {expected}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module_name.startswith(exc.name):
            raise ConfigError(key, f"cannot import {module_name!r} ({exc})") from None
        raise ConfigError(  # the user's own package is not where Python looks
            key,
            f"cannot import {module_name!r}: no module named {exc.name!r}; install your "
            "package (pip install -e .) or put its directory on PYTHONPATH",
        ) from None
    except Exception as exc:  # a module may fail to import in any way: say so in one line
        raise ConfigError(
            key, f"cannot import {module_name!r} ({type(exc).__name__}: {exc})"
        ) from None
    function = getattr(module, attr, None)
    if function is None:
        raise ConfigError(key, f"{module_name!r} has no function {attr!r}")
    if not inspect.isfunction(function) or function.__module__ != module.__name__:
        raise ConfigError(
            key,
            f"{target} is not a Python function defined in {module_name!r}; expected {expected}",
        )
    return function


def required_arguments(function: Callable[..., Any]) -> list[str]:
    """The names of the arguments a call must give ``function``."""
    return [
        p.name
        for p in inspect.signature(function).parameters.values()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def check_arity(
    function: Callable[..., Any],
    target: str,
    key: str,
    names: list[str],
    given: Collection[str] = (),
) -> None:
    """Refuse a function that cannot be called with ``len(names)`` positional arguments
    and the keyword arguments ``given``.

    Raises:
        ConfigError: naming ``key`` and the signature it needs.
    """
    params = list(inspect.signature(function).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
    kept = {p.name for p in positional[: len(names)]}  # the positional ones take no keyword
    required = [n for n in required_arguments(function) if n in kept or n not in given]
    if len(required) > len(names) or (len(positional) < len(names) and not varargs):
        wanted = f"{target.partition(':')[2]}({', '.join(names)})"
        have = ", ".join(p.name for p in params) or "no arguments"
        raise ConfigError(key, f"{target} must be def {wanted}; it takes {have}")


def check_trainable_args(
    args: Mapping[str, Any] | None, search_space: Collection[str], trainable: str | None
) -> None:
    """Refuse ``trainable_args`` (values the trainable gets in ``config``, never searched
    nor shown as hyperparameters) without a trainable, or naming a search-space entry.

    Raises:
        ConfigError: naming the key.
    """
    if args is None:
        return
    if trainable is None:
        raise ConfigError(
            "trainable_args", "is for trainables; a task's settings go in task.options"
        )
    for name in args:
        if name in search_space:
            raise ConfigError(
                f"trainable_args.{name}",
                "is in search_space too; keep it in one of them (search_space for a "
                "hyperparameter, trainable_args for a fixed value that is not one)",
            )


__all__ = [
    "LightningConfig",
    "TransformersConfig",
    "check_arity",
    "check_trainable_args",
    "check_what_trains",
    "import_function",
    "required_arguments",
    "user_code",
]
