"""MNIST-1D, generated offline by the ``mnist1d`` package, with a 1-D CNN family.

``make_dataset`` with its default arguments gives 4000 training and 1000 test signals of
length 40; a seeded slice of the training set becomes the validation set. Generating
takes seconds, so the arrays are cached on disk (``cache_dir``) for later processes. The model
family varies width, depth and kernel size; the paper's reference CNN reaches 94% test
accuracy and a human expert 96%.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.tasks._base import Task, split_indices
from pipeline.tasks._data import Splits

CACHE_VERSION = 1  # bump when the generated data would change


def default_cache_dir() -> str:
    """``$XDG_CACHE_HOME/optuna-pipeline`` (``~/.cache/optuna-pipeline``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "optuna-pipeline")


def generate(data_seed: int) -> dict[str, torch.Tensor]:
    """Run the mnist1d generator (about 4 s of scipy per call on one core)."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = data_seed
    data = make_dataset(args)
    return {
        "x": torch.as_tensor(data["x"], dtype=torch.float32).unsqueeze(1),
        "y": torch.as_tensor(data["y"], dtype=torch.int64),
        "x_test": torch.as_tensor(data["x_test"], dtype=torch.float32).unsqueeze(1),
        "y_test": torch.as_tensor(data["y_test"], dtype=torch.int64),
    }


def cached(data_seed: int, cache_dir: str | None) -> dict[str, torch.Tensor]:
    """The generated data set, from ``cache_dir`` when an earlier process generated it.

    Every worker of every study would otherwise regenerate the same arrays; the file is
    written atomically, so workers that start together never read a partial one.
    """
    if cache_dir is None:
        return generate(data_seed)
    path = Path(cache_dir).expanduser() / f"mnist1d-seed{data_seed}-v{CACHE_VERSION}.pt"
    try:
        data = dict(torch.load(path, weights_only=True))
        if set(data) == {"x", "y", "x_test", "y_test"}:
            return data
    except Exception:  # missing, damaged or foreign: regenerate and replace it
        pass
    data = generate(data_seed)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
            torch.save(data, tmp)
        os.replace(tmp.name, path)
    except OSError:  # a read-only home only costs the regeneration next time
        pass
    return data


def load(options: Mapping[str, Any]) -> Splits:
    """Generate the data set (or read it from the cache) and split off validation data."""
    data = cached(options["data_seed"], options["cache_dir"])
    x, y = data["x"], data["y"]
    train, val, _ = split_indices(len(y), (options["val_fraction"], 0.0), options["split_seed"])
    return Splits(
        x[train], y[train], x[val], y[val], data["x_test"], data["y_test"], num_classes=10
    )


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


def pack_widths(hp: Mapping[str, Any]) -> tuple[str, ...] | None:
    """``arch: tutorial`` packs with l1/l2 padded; ``arch: cnn`` with its width padded,
    unless dropout is on (a packed member cannot draw its solo run's dropout masks)."""
    if hp["arch"] == "tutorial":
        return ("l1", "l2")
    return ("width",) if hp["dropout"] == 0 else None


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
        options={
            "val_fraction": 0.1,
            "split_seed": 0,
            "data_seed": 42,
            "cache_dir": default_cache_dir(),  # null: regenerate in every process
        },
        training_defaults={"lr": 0.01, "batch_size": 64, "optimizer": "adamw"},
        pack_widths=pack_widths,
    )
