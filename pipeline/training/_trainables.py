"""Trainables: the user's own training function, ``def train(config, session)``.

A study file names one with ``trainable: package.module:function`` instead of a task.
The function receives every search-space value in ``config`` and a
:class:`pipeline.training.Session`, through which it reports metrics, saves and restores
checkpoints and learns its device and seed. Optionally ``model:`` names
``function(config) -> nn.Module`` (so :func:`pipeline.load_best` and ``pipeline
evaluate`` can rebuild the winner from its checkpoint) and ``test:`` names
``function(model, config, device) -> {metric: value}`` (the held-out score).

Fixed values that are not hyperparameters go under ``trainable_args``: each function gets
them in ``config`` (after the search-space values), and the trainable also as a keyword
argument where its signature names one so, as ``functools.partial(train, data_dir=...)``
gives it in Ray Tune. They are never Optuna parameters, nor tracked or shown as such.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from pipeline.config import StudyConfig, check_arity, import_function

SIGNATURES = {
    "trainable": ["config", "session"],
    "model": ["config"],
    "test": ["model", "config", "device"],
}


def load_user_function(config: StudyConfig, key: str) -> Callable[..., Any] | None:
    """The function the study file names under ``key`` (trainable, model or test),
    imported and checked; None where the key is not set.

    Raises:
        ConfigError: naming ``key``, in one line.
    """
    target = getattr(config, key)
    if target is None:
        return None
    args = config.trainable_args or {}
    return with_args(import_user_function(target, key, args), key, args)


def import_user_function(
    target: str, key: str, args: Mapping[str, Any] | None = None
) -> Callable[..., Any]:
    """``package.module:function`` imported and checked against the signature of
    ``key`` (trainable, model or test), given the study's ``trainable_args``.

    Raises:
        ConfigError: naming ``key``, in one line.
    """
    names = SIGNATURES[key]
    expected = f"package.module:function taking ({', '.join(names)})"
    found = import_function(target, key, expected)
    check_arity(found, target, key, names, _keywords(found, key, args or {}))
    return found


def with_args(
    function: Callable[..., Any], key: str, args: Mapping[str, Any]
) -> Callable[..., Any]:
    """``function`` (the study's ``key``: trainable, model or test) called with the
    study's ``trainable_args`` in its ``config``, and as keyword arguments where
    :func:`_keywords` says."""
    if not args:
        return function
    at = SIGNATURES[key].index("config")
    keywords = _keywords(function, key, args)

    @functools.wraps(function)
    def call(*given: Any) -> Any:
        values = list(given)
        values[at] = {**values[at], **args}
        return function(*values, **keywords)

    return call


def _keywords(function: Callable[..., Any], key: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """The ``trainable_args`` a trainable's signature names beyond (config, session)."""
    if key != "trainable":
        return {}
    params = list(inspect.signature(function).parameters)[len(SIGNATURES[key]) :]
    return {name: value for name, value in args.items() if name in params}


def check_trainable(config: StudyConfig) -> None:
    """Import and check every function a trainable study names.

    Raises:
        ConfigError: naming the key.
    """
    for key in SIGNATURES:
        load_user_function(config, key)


__all__ = [
    "SIGNATURES",
    "check_trainable",
    "import_user_function",
    "load_user_function",
    "with_args",
]
