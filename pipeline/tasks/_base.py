"""Tasks: a data set, a model family and their defaults, behind one small interface.

A task is a :class:`Task` value. The built-in ones are listed in :data:`REGISTRY`; a study
file may instead name ``package.module:function``, a function that takes no arguments
and returns a :class:`Task`. Adding a task is one new module and one registry line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from pipeline.config import TaskConfig, import_function, required_arguments
from pipeline.exceptions import ConfigError
from pipeline.search import type_problem
from pipeline.tasks._data import Split, Splits
from pipeline.tasks._metrics import KIND_METRICS

Metric = Callable[[torch.Tensor, torch.Tensor], float]


@dataclass(frozen=True)
class Task:
    """A data set plus a model family.

    ``kind`` sets the loss and the metrics: classification trains with cross-entropy and
    reports loss, accuracy and macro_f1; regression trains with mean squared error and
    reports loss (the MSE), rmse, mae and r2. The hooks, all optional, replace a part of
    the built-in recipe.

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
        kind: ``"classification"`` or ``"regression"``.
        loss: ``(outputs, targets) -> scalar tensor``, a batch mean, replacing the
            kind's loss for training and for the reported ``loss``.
        metrics: ``name -> (predictions, targets) -> float``, computed on a whole split
            (the model's outputs and the labels, concatenated) and reported as
            ``val_<name>``; a study file that optimizes one must give its direction.
        optimizer: ``(model, hyperparameters) -> Optimizer``, for parameter groups (no
            weight decay on biases and norms, say); the schedule still applies.
        outputs: ``model output -> tensor`` for models that return a structure. Without
            it a tuple or list gives its first element and an object with ``.logits``
            (a Hugging Face output) gives that.
        pack_widths: ``hyperparameters -> names`` of the hyperparameters that only widen
            the model (layer widths), for trial packing (see :mod:`pipeline.packing`):
            members that differ only in these are padded to the widest. None for a
            configuration that cannot share a packed model; a task without the hook is
            never packed.
    """

    name: str
    load: Callable[[Mapping[str, Any]], Splits]
    build_model: Callable[[Mapping[str, Any], Splits], nn.Module]
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    training_defaults: Mapping[str, Any] = field(default_factory=dict)
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    check: Callable[[Mapping[str, Any]], None] | None = None
    kind: Literal["classification", "regression"] = "classification"
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    metrics: Mapping[str, Metric] | None = None
    optimizer: Callable[[nn.Module, Mapping[str, Any]], torch.optim.Optimizer] | None = None
    outputs: Callable[[Any], torch.Tensor] | None = None
    pack_widths: Callable[[Mapping[str, Any]], tuple[str, ...] | None] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KIND_METRICS:
            raise ValueError(f"kind must be one of {', '.join(KIND_METRICS)}, got {self.kind!r}")
        clash = set(self.metrics or {}) & {"loss", *KIND_METRICS[self.kind]}
        if clash:
            raise ValueError(f"custom metrics {', '.join(sorted(clash))} shadow built-in ones")

    def metric_names(self) -> tuple[str, ...]:
        """Every metric the training loop reports per epoch for this task:
        ``train_loss``, then ``val_<name>`` for the kind's metrics and the custom ones."""
        names = (*KIND_METRICS[self.kind], *(self.metrics or {}))
        return ("train_loss", *(f"val_{name}" for name in names))

    def resolve_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The task's default options updated with those a study file sets."""
        return {**self.options, **given}


REGISTRY: dict[str, str] = {
    "digits": "pipeline.tasks._digits:digits",
    "mnist1d": "pipeline.tasks._mnist1d:mnist1d",
    "cifar10": "pipeline.tasks._vision:cifar10",
    "fashion_mnist": "pipeline.tasks._vision:fashion_mnist",
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


def check_labels(task: Task, splits: Splits) -> None:
    """Refuse labels that do not fit the task's kind, before any training.

    Classification needs integer labels of shape (N,) within 0..num_classes-1; regression
    needs floating labels of shape (N,) or (N, k). A Dataset split is judged by its first
    item.

    Raises:
        ConfigError: naming ``task``, in one line.
    """
    for name, split in splits.named():
        problem = _label_problem(task.kind, split, splits.num_classes)
        if problem is not None:
            raise ConfigError("task", f"{task.name}: {name} labels {problem}")


def _label_problem(kind: str, split: Split, num_classes: int) -> str | None:
    if len(split) == 0:
        return None
    whole = split.y if split.y is not None else torch.as_tensor(split.first_label()).unsqueeze(0)
    shape = "(N,)" if whole.dim() == 1 else f"(N, {', '.join(map(str, whole.shape[1:]))})"
    found = f"are {str(whole.dtype).removeprefix('torch.')} of shape {shape}"
    if kind == "classification":
        if whole.is_floating_point() or whole.is_complex() or whole.dim() != 1:
            return (
                f"{found} but the task is classification; set kind='regression' on the Task "
                "for continuous targets, or give integer class labels of shape (N,)"
            )
        low, high = int(whole.min()), int(whole.max())
        if low < 0 or high >= num_classes:
            return f"run from {low} to {high}; expected class indices 0..{num_classes - 1}"
        return None
    if not whole.is_floating_point() or whole.dim() not in (1, 2):
        return f"{found}; regression needs floating labels of shape (N,) or (N, k)"
    width = 1 if whole.dim() == 1 else whole.shape[1]
    if num_classes and width != num_classes:
        return f"have {width} column(s) but num_classes says the model outputs {num_classes}"
    return None


__all__ = [
    "REGISTRY",
    "Split",
    "Splits",
    "Task",
    "check_labels",
    "resolve_task",
    "split_indices",
]
