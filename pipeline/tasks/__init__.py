"""Tasks: a data set, a model family and their defaults, behind one small interface.

A task is a :class:`Task` value. The built-in ones are listed in :data:`REGISTRY`; a study
file may instead name ``package.module:function``, a function that takes no arguments
and returns a :class:`Task`. Adding a task is one new module and one registry line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pipeline.config import ConfigError, TaskConfig
from pipeline.params import type_problem
from pipeline.plugins import import_function, required_arguments


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
        ConfigError: for an unknown name, a plug-in that is not a task factory, an
            import or factory error, or an unknown or ill-typed option.
    """
    target = REGISTRY.get(config.name, config.name)
    task = load_plugin(target, "task.name", _known_tasks())
    if not isinstance(task, Task):
        raise ConfigError(
            "task.name", f"{target} returned {type(task).__name__}, expected pipeline.tasks.Task"
        )
    for key, value in config.options.items():
        if key not in task.options:
            known = ", ".join(task.options) or "none"
            raise ConfigError(
                f"task.options.{key}", f"unknown option for task {task.name}; expected: {known}"
            )
        problem = type_problem(value, task.options[key])
        if problem is not None:
            raise ConfigError(f"task.options.{key}", f"{problem}, got {value!r}")
    options = task.resolve_options(config.options)
    _check_fractions(options)
    if task.check is not None:
        task.check(options)
    return task


def _known_tasks() -> str:
    return f"one of {', '.join(REGISTRY)} or package.module:function"


def load_plugin(target: str, key: str, expected: str) -> Any:
    """Import ``package.module:function`` and call the function, which takes no
    arguments. The target is checked before it is called: a study file names code, as any
    Python configuration does, but it may only name a plain Python function.

    Raises:
        ConfigError: naming ``key``, in one line, for anything that goes wrong.
    """
    factory = import_function(target, key, expected)
    required = required_arguments(factory)
    if required:
        hint = (
            f"; a training function(config, session) is named with trainable: {target}"
            if len(required) == 2 and key == "task.name"
            else ""
        )
        raise ConfigError(
            key, f"{target} must take no arguments; it requires {', '.join(required)}{hint}"
        )
    try:
        return factory()
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(key, f"{target} raised {type(exc).__name__}: {exc}") from None


def _check_fractions(options: Mapping[str, Any]) -> None:
    """Options named ``*_fraction`` are shares of the data set: each in [0, 1), and
    together they must leave examples to train on."""
    fractions = {k: v for k, v in options.items() if k.endswith("_fraction")}
    for key, value in fractions.items():
        if not 0 <= value < 1:
            raise ConfigError(f"task.options.{key}", f"must be at least 0 and below 1, got {value}")
    if sum(fractions.values()) >= 1:
        raise ConfigError(
            "task.options",
            f"{' + '.join(fractions)} add up to {sum(fractions.values()):g}; "
            "they must leave data to train on",
        )


def split_indices(n: int, fractions: tuple[float, float], seed: int) -> tuple[torch.Tensor, ...]:
    """A seeded permutation of ``range(n)`` cut into (rest, first, second) by the fractions.

    Used to carve validation (and test) sets that are identical in every worker.
    """
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    first = round(n * fractions[0])
    second = round(n * fractions[1])
    return perm[first + second :], perm[:first], perm[first : first + second]


__all__ = ["REGISTRY", "Splits", "Task", "resolve_task", "split_indices"]
