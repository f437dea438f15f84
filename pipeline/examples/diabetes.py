"""Regression on scikit-learn's bundled diabetes data, with an MLP family that contains
linear regression.

442 patients, ten baseline measurements each (age, sex, BMI, blood pressure, six blood
serum values); the target is a measure of disease progression one year later. The data
ships inside scikit-learn, so a study on it runs offline.

Features and target are standardised with the mean and standard deviation of the
training split only. The reported ``loss`` (MSE), ``rmse`` and ``mae`` are therefore in
standard deviations of the training target (the whole data set's is 77.0 units of
progression; multiply by it for the original scale); ``r2`` is unitless and the same on
either scale.

Use it from a study file as ``task: {name: pipeline.examples.diabetes:diabetes}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from pipeline.tasks import Splits, Task, split_indices


def load(options: Mapping[str, Any]) -> Splits:
    """The data split by a seeded permutation into train/val/test, standardised with
    the training split's statistics; labels of shape (N,), one output column."""
    from sklearn.datasets import load_diabetes

    features, target = load_diabetes(return_X_y=True)
    x = torch.as_tensor(features, dtype=torch.float32)
    y = torch.as_tensor(target, dtype=torch.float32)
    train, val, test = split_indices(
        len(y), (options["val_fraction"], options["test_fraction"]), options["split_seed"]
    )
    x = (x - x[train].mean(0)) / x[train].std(0)
    y = (y - y[train].mean()) / y[train].std()
    return Splits(x[train], y[train], x[val], y[val], x[test], y[test], num_classes=1)


def mlp(inputs: int, outputs: int, width: int, depth: int, dropout: float) -> nn.Module:
    """``depth`` hidden layers of ``width`` ReLU units (with dropout) before a linear
    output layer; depth 0 is a linear model."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(inputs if i == 0 else width, width), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(width if depth else inputs, outputs))
    return nn.Sequential(*layers)


def _build(hp: Mapping[str, Any], splits: Splits) -> nn.Module:
    inputs = splits.train_x.shape[1]
    return mlp(inputs, splits.num_classes, hp["width"], hp["depth"], hp["dropout"])


def diabetes() -> Task:
    """The diabetes regression task (kind regression: MSE loss; rmse, mae, r2)."""
    return Task(
        name="diabetes",
        load=load,
        build_model=_build,
        hyperparameters={"width": 32, "depth": 1, "dropout": 0.0},
        options={"val_fraction": 0.2, "test_fraction": 0.2, "split_seed": 0},
        training_defaults={"optimizer": "adam", "lr": 0.01, "batch_size": 32},
        kind="regression",
    )


__all__ = ["diabetes", "load", "mlp"]
