"""Tasks: a data set, a model family and their defaults, behind one small interface.

A task is a :class:`Task` value. The built-in ones are listed in :data:`REGISTRY`; a study
file may instead name ``package.module:function``, a function that takes no arguments
and returns a :class:`Task`. Adding a task is one new module and one registry line.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pipeline.config import ConfigError, TaskConfig


@dataclass(frozen=True)
class Splits:
    """Fixed train/validation/test tensors; inputs float32, labels int64."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int

    def to(self, device: torch.device, memory_format: torch.memory_format | None = None) -> Splits:
        """The same splits on ``device`` (moved once per worker, not per trial); inputs
        optionally in ``memory_format`` (channels-last)."""
        fmt = {} if memory_format is None else {"memory_format": memory_format}
        moved = {
            name: getattr(self, name).to(device, **fmt) for name in ("train_x", "val_x", "test_x")
        }
        labels = {name: getattr(self, name).to(device) for name in ("train_y", "val_y", "test_y")}
        return Splits(**moved, **labels, num_classes=self.num_classes)

    def sizes(self) -> tuple[int, int, int]:
        """Number of train, validation and test examples."""
        return len(self.train_y), len(self.val_y), len(self.test_y)


@dataclass(frozen=True)
class Task:
    """A data set plus a model family.

    Attributes:
        name: Shown in messages and stored with the study.
        load: ``options -> Splits`` on the CPU; called once per worker process.
        build_model: ``(hyperparameters, splits) -> nn.Module``.
        hyperparameters: The model's hyperparameters and their defaults; the search space
            may name these and the training loop's own (lr, batch_size, ...).
        options: The task options a study file may set, with their defaults.
        training_defaults: Overrides of the training loop's defaults for this task.
        augment: ``(batch, generator) -> batch``, applied to training batches on the
            device when the ``augment`` hyperparameter is true.
        check: ``options -> None``; raises ConfigError when the data is not where the
            options say (run when the study file is validated, before any worker).
    """

    name: str
    load: Callable[[Mapping[str, Any]], Splits]
    build_model: Callable[[Mapping[str, Any], Splits], nn.Module]
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    training_defaults: Mapping[str, Any] = field(default_factory=dict)
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    check: Callable[[Mapping[str, Any]], None] | None = None

    def resolve_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The task's default options updated with those a study file sets."""
        return {**self.options, **given}


REGISTRY: dict[str, str] = {
    "digits": "pipeline.tasks.digits:digits",
    "mnist1d": "pipeline.tasks.mnist1d:mnist1d",
    "cifar10": "pipeline.tasks.vision:cifar10",
    "fashion_mnist": "pipeline.tasks.vision:fashion_mnist",
}


def resolve_task(config: TaskConfig) -> Task:
    """Turn ``task.name`` into a :class:`Task` and check ``task.options`` against it.

    Raises:
        ConfigError: for an unknown name, an import failure or an unknown option.
    """
    target = REGISTRY.get(config.name, config.name)
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(
            "task.name",
            f"unknown task {config.name!r}; expected one of {', '.join(REGISTRY)} "
            "or package.module:function",
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError("task.name", f"cannot import {module_name!r} ({exc})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError("task.name", f"{module_name!r} has no function {attr!r}")
    task = factory()
    if not isinstance(task, Task):
        raise ConfigError(
            "task.name",
            f"{target} returned {type(task).__name__}, expected pipeline.tasks.Task",
        )
    for key in config.options:
        if key not in task.options:
            known = ", ".join(task.options) or "none"
            raise ConfigError(
                f"task.options.{key}",
                f"unknown option for task {task.name}; expected: {known}",
            )
    if task.check is not None:
        task.check(task.resolve_options(config.options))
    return task


def split_indices(n: int, fractions: tuple[float, float], seed: int) -> tuple[torch.Tensor, ...]:
    """A seeded permutation of ``range(n)`` cut into (rest, first, second) by the fractions.

    Used to carve validation (and test) sets that are identical in every worker.
    """
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    first = round(n * fractions[0])
    second = round(n * fractions[1])
    return perm[first + second :], perm[:first], perm[first : first + second]


__all__ = ["REGISTRY", "Splits", "Task", "resolve_task", "split_indices"]
