"""A LightningModule on MNIST-1D, tuned from a study file with no loop written.

``studies/lightning_mnist1d.yaml`` names the two functions below: the pipeline builds
each trial's module and data module from its ``config``, a Trainer with the study's
``max_epochs`` and device, and reports what the module logs (``val_loss``,
``val_accuracy``) after every validation epoch; pruning, retries from Lightning's own
checkpoint and ``pipeline.load_best`` come with it. The data is MNIST-1D as the
``mnist1d`` task generates it (offline), loaded once per worker process.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pipeline.config import TaskConfig
from pipeline.tasks import resolve_task


class SignalClassifier(pl.LightningModule):
    """A 1-D CNN: ``channels`` filters in two convolutions, a linear head."""

    def __init__(self, channels: int, lr: float, weight_decay: float) -> None:
        super().__init__()
        self.lr, self.weight_decay = lr, weight_decay
        self.net = nn.Sequential(
            nn.Conv1d(1, channels, 5, padding=2),
            nn.ReLU(),
            nn.Conv1d(channels, channels, 5, padding=2, stride=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool1d(4),
            nn.Flatten(),
            nn.Linear(4 * channels, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y))
        self.log("val_accuracy", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


class SignalData(pl.LightningDataModule):
    """MNIST-1D's training and validation splits as tensors, batched."""

    def __init__(self, batch_size: int) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.train, self.val = signals()

    def train_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        return DataLoader(self.val, batch_size=512)


@functools.cache
def signals() -> tuple[TensorDataset, TensorDataset]:
    """MNIST-1D's training and validation splits, generated once per process (and
    cached on disk by the ``mnist1d`` task)."""
    task = resolve_task(TaskConfig("mnist1d"))
    splits = task.load(task.resolve_options({}))
    train, val = splits.train, splits.val
    assert train.x is not None and train.y is not None and val.x is not None and val.y is not None
    return TensorDataset(train.x, train.y), TensorDataset(val.x, val.y)


def make_module(config: Mapping[str, Any]) -> SignalClassifier:
    """``lightning.module``: the trial's model (also what ``load_best`` rebuilds)."""
    return SignalClassifier(config["channels"], config["lr"], config["weight_decay"])


def make_data(config: Mapping[str, Any]) -> SignalData:
    """``lightning.datamodule``: the data, batched as the trial asks."""
    return SignalData(config["batch_size"])


def test(
    model: SignalClassifier, config: Mapping[str, Any], device: torch.device
) -> dict[str, float]:
    """``test:``: the rebuilt winner's accuracy on MNIST-1D's 1000 test signals."""
    task = resolve_task(TaskConfig("mnist1d"))
    held_out = task.load(task.resolve_options({})).test
    assert held_out.x is not None and held_out.y is not None
    with torch.no_grad():
        predicted = model(held_out.x.to(device)).argmax(1).cpu()
    return {"test_accuracy": float((predicted == held_out.y).float().mean())}


__all__ = ["SignalClassifier", "SignalData", "make_data", "make_module", "signals", "test"]
