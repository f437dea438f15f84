"""Trainables: the user's own training function, ``def train(config, session)``.

A study file names one with ``trainable: package.module:function`` instead of a task.
The function receives every search-space value in ``config`` and a
:class:`pipeline.training.Session`, through which it reports metrics, saves and restores
checkpoints and learns its device and seed. Optionally ``model:`` names
``function(config) -> nn.Module`` (so :func:`pipeline.load_best` and ``pipeline
evaluate`` can rebuild the winner from its checkpoint) and ``test:`` names
``function(model, config, device) -> {metric: value}`` (the held-out score).
"""

from __future__ import annotations

from collections.abc import Callable
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
    return None if target is None else import_user_function(target, key)


def import_user_function(target: str, key: str) -> Callable[..., Any]:
    """``package.module:function`` imported and checked against the signature of
    ``key`` (trainable, model or test).

    Raises:
        ConfigError: naming ``key``, in one line.
    """
    names = SIGNATURES[key]
    expected = f"package.module:function taking ({', '.join(names)})"
    found = import_function(target, key, expected)
    check_arity(found, target, key, names)
    return found


def check_trainable(config: StudyConfig) -> None:
    """Import and check every function a trainable study names.

    Raises:
        ConfigError: naming the key.
    """
    for key in SIGNATURES:
        load_user_function(config, key)


__all__ = ["SIGNATURES", "check_trainable", "import_user_function", "load_user_function"]
