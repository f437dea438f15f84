"""scikit-learn's bundled 8x8 handwritten digits with a CNN in the tutorial's shape.

The data ships inside scikit-learn, so a study on it runs offline with nothing to fetch.
It is read from scikit-learn's own file (``datasets/data/digits.csv.gz``, what
``load_digits`` reads) without importing scikit-learn, which costs every worker a
second; where that file is not found, ``load_digits`` reads it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.tasks._base import Task, split_indices
from pipeline.tasks._data import Splits


def load(options: Mapping[str, Any]) -> Splits:
    """1797 images scaled to [0, 1], split by a seeded permutation into train/val/test."""
    pixels, labels = _digits()
    x = torch.as_tensor(pixels, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.as_tensor(labels, dtype=torch.int64)
    train, val, test = split_indices(
        len(y), (options["val_fraction"], options["test_fraction"]), options["split_seed"]
    )
    return Splits(x[train], y[train], x[val], y[val], x[test], y[test], num_classes=10)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """The pixels (0 to 16) and labels, as ``sklearn.datasets.load_digits`` gives them."""
    spec = importlib.util.find_spec("sklearn")  # finds the package, runs none of it
    if spec is not None and spec.submodule_search_locations:
        path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            table = np.loadtxt(path, delimiter=",")
            return table[:, :-1], table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data, bunch.target


class TutorialCNN(nn.Module):
    """conv, pool, conv, pool, fc l1, fc l2, fc classes: the Ray Tune tutorial's network
    with 3x3 kernels (padding 1) so that two poolings fit an 8x8 image."""

    def __init__(self, conv1: int, conv2: int, l1: int, l2: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, conv1, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(conv1, conv2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(conv2 * 2 * 2, l1),
            nn.ReLU(),
            nn.Linear(l1, l2),
            nn.ReLU(),
            nn.Linear(l2, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_model(hp: Mapping[str, Any], splits: Splits) -> nn.Module:
    """The tutorial CNN sized by ``conv1``, ``conv2``, ``l1`` and ``l2``."""
    return TutorialCNN(hp["conv1"], hp["conv2"], hp["l1"], hp["l2"], splits.num_classes)


def digits() -> Task:
    """The ``digits`` task."""
    return Task(
        name="digits",
        load=load,
        build_model=build_model,
        hyperparameters={"conv1": 6, "conv2": 16, "l1": 64, "l2": 32},
        options={"val_fraction": 0.2, "test_fraction": 0.2, "split_seed": 0},
        training_defaults={"lr": 0.01, "batch_size": 32},
        pack_widths=lambda hp: ("conv1", "conv2", "l1", "l2"),
    )
