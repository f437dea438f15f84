"""MNIST-1D, generated offline by the ``mnist1d`` package, with a 1-D CNN family.

``make_dataset`` with its default arguments gives 4000 training and 1000 test signals of
length 40; a seeded slice of the training set becomes the validation set. The model
family varies width, depth and kernel size; the paper's reference CNN reaches 94% test
accuracy and a human expert 96%.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from pipeline.tasks import Splits, Task, split_indices


def load(options: Mapping[str, Any]) -> Splits:
    """Generate the data set (about a second) and split off validation data."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = options["data_seed"]
    data = make_dataset(args)
    x = torch.as_tensor(data["x"], dtype=torch.float32).unsqueeze(1)
    y = torch.as_tensor(data["y"], dtype=torch.int64)
    train, val, _ = split_indices(len(y), (options["val_fraction"], 0.0), options["split_seed"])
    test_x = torch.as_tensor(data["x_test"], dtype=torch.float32).unsqueeze(1)
    test_y = torch.as_tensor(data["y_test"], dtype=torch.int64)
    return Splits(x[train], y[train], x[val], y[val], test_x, test_y, num_classes=10)


class ConvNet1d(nn.Module):
    """``depth`` blocks of conv(k) + batch norm + ReLU, with max-pooling after every
    second block, then a linear classifier over the flattened features: position along
    the signal carries information in MNIST-1D, so features are not averaged away."""

    def __init__(
        self, length: int, width: int, depth: int, kernel_size: int, dropout: float, classes: int
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for block in range(depth):
            layers += [
                nn.Conv1d(channels, width, kernel_size, padding=kernel_size // 2),
                nn.BatchNorm1d(width),
                nn.ReLU(),
            ]
            channels = width
            if block % 2 == 1 and length >= 8:
                layers.append(nn.MaxPool1d(2))
                length //= 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(width * length, classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class TutorialNet1d(nn.Module):
    """The Ray Tune tutorial's network with 1-D convolutions: conv 1->6 k5, pool,
    conv 6->16 k5, pool, fc ->l1, fc l1->l2, fc l2->classes."""

    def __init__(self, length: int, l1: int, l2: int, classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, 6, 5),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool1d(2),
        )
        flat = 16 * (((length - 4) // 2 - 4) // 2)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, l1),
            nn.ReLU(),
            nn.Linear(l1, l2),
            nn.ReLU(),
            nn.Linear(l2, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_model(hp: Mapping[str, Any], splits: Splits) -> nn.Module:
    """``arch: cnn`` (the searchable family) or ``arch: tutorial`` (the tutorial's net)."""
    length = splits.train_x.shape[-1]
    if hp["arch"] == "tutorial":
        return TutorialNet1d(length, hp["l1"], hp["l2"], splits.num_classes)
    if hp["arch"] != "cnn":
        raise ValueError(f"unknown mnist1d arch {hp['arch']!r}; expected cnn or tutorial")
    return ConvNet1d(
        length, hp["width"], hp["depth"], hp["kernel_size"], hp["dropout"], splits.num_classes
    )


def mnist1d() -> Task:
    """The ``mnist1d`` task."""
    return Task(
        name="mnist1d",
        load=load,
        build_model=build_model,
        hyperparameters={
            "arch": "cnn",
            "width": 32,
            "depth": 3,
            "kernel_size": 5,
            "dropout": 0.0,
            "l1": 64,
            "l2": 32,
        },
        options={"val_fraction": 0.1, "split_seed": 0, "data_seed": 42},
        training_defaults={"lr": 0.01, "batch_size": 64, "optimizer": "adamw"},
    )
