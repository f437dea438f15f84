"""A task plug-in that lives outside the package, as a user's would: a tiny MLP on
separable random data, a `diverge` switch that makes the loss NaN and a `fail` switch
that raises as a CUDA out-of-memory error would."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from pipeline.tasks import Splits, Task


def _load(options: Mapping[str, Any]) -> Splits:
    g = torch.Generator().manual_seed(options["seed"])
    n = options["n"]
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] > 0).long()
    a, b = int(n * 0.6), int(n * 0.8)
    return Splits(x[:a], y[:a], x[a:b], y[a:b], x[b:], y[b:], num_classes=2)


class _Linear(nn.Module):
    def __init__(self, hidden: int, diverge: bool, fail: bool) -> None:
        super().__init__()
        if fail:
            raise RuntimeError("CUDA out of memory (simulated)")
        self.net = nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, 2))
        self.diverge = diverge

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out * float("nan") if self.diverge else out


def tiny() -> Task:
    return Task(
        name="tiny",
        load=_load,
        build_model=lambda hp, splits: _Linear(hp["hidden"], hp["diverge"], hp["fail"]),
        hyperparameters={"hidden": 8, "diverge": False, "fail": False},
        options={"n": 200, "seed": 0},
        training_defaults={"lr": 0.1, "batch_size": 32},
    )


def not_a_task() -> int:
    return 3


def needs_arguments(size: int) -> Task:
    return tiny()


def raises() -> Task:
    raise RuntimeError("the data server is down")


def float_labels() -> Task:
    """The tiny task with its labels as floats of shape (N, 1): a regression target in a
    classification task, which used to train and report a val_loss of 0."""
    task = tiny()

    def load(options: Mapping[str, Any]) -> Splits:
        s = _load(options)
        column = [t.float().unsqueeze(1) for t in (s.train_y, s.val_y, s.test_y)]
        return Splits(s.train_x, column[0], s.val_x, column[1], s.test_x, column[2], 2)

    return Task(
        name="float_labels",
        load=load,
        build_model=task.build_model,
        hyperparameters=task.hyperparameters,
        options=task.options,
    )
