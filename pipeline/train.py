"""The one training loop every study uses.

Data arrives as tensors already on the device. Each epoch shuffles indices on the device
and slices mini-batches out of the tensors: no DataLoader, no per-sample work, no copies
between host and device. The loss is accumulated on the device and read back once per
epoch, so the loop never waits on the GPU inside an epoch.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.params import TRAINING_DEFAULTS

EVAL_BATCH = 4096


@dataclass(frozen=True)
class EpochResult:
    """What one epoch produced; ``compute_seconds`` covers training and evaluation only."""

    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    compute_seconds: float

    @property
    def finite(self) -> bool:
        """False once the loss has diverged to NaN or infinity."""
        return math.isfinite(self.train_loss) and math.isfinite(self.val_loss)


def make_optimizer(
    name: str, params: Iterable[nn.Parameter], hp: Mapping[str, Any]
) -> torch.optim.Optimizer:
    """sgd (with momentum), adam or adamw, from the hyperparameters."""
    lr, wd = float(hp["lr"]), float(hp["weight_decay"])
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(hp["momentum"]), weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    raise ValueError(f"unknown optimizer {name!r}; expected sgd, adam or adamw")


def warm_up() -> None:
    """Pay one-time costs at worker start rather than inside the first trial: the first
    optimizer a process builds imports torch's compiler stack (over a second on a CPU)."""
    param = nn.Parameter(torch.zeros(1))
    for name in ("sgd", "adam", "adamw"):
        make_optimizer(name, [param], TRAINING_DEFAULTS)


def _autocast(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[Any]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.inference_mode()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, autocast: torch.dtype | None = None
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)``."""
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    for start in range(0, len(y), EVAL_BATCH):
        xb, yb = x[start : start + EVAL_BATCH], y[start : start + EVAL_BATCH]
        with _autocast(x.device, autocast):
            logits = model(xb).float()
        loss_sum += F.cross_entropy(logits, yb, reduction="sum")
        correct += (logits.argmax(dim=1) == yb).sum()
    n = max(len(y), 1)
    return loss_sum.item() / n, correct.item() / n


def fit(
    model: nn.Module,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    hp: Mapping[str, Any],
    epochs: int,
    generator: torch.Generator,
    on_epoch: Callable[[EpochResult], None] | None = None,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    autocast: torch.dtype | None = None,
) -> list[EpochResult]:
    """Train ``model`` for up to ``epochs`` epochs, evaluating after each.

    Args:
        hp: Reads optimizer, lr, momentum, weight_decay and batch_size.
        generator: Seeds the shuffling (and augmentation), on the data's device.
        on_epoch: Called after every epoch; it may raise (e.g. ``optuna.TrialPruned``)
            to stop training. It is not counted in ``compute_seconds``.
        augment: Applied to each training batch on the device.
        autocast: Mixed precision (``torch.bfloat16``) for forward passes, or None.
    """
    optimizer = make_optimizer(hp["optimizer"], model.parameters(), hp)
    batch_size = int(hp["batch_size"])
    n = len(train_y)
    results = []
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), device=train_x.device)
        perm = torch.randperm(n, device=train_x.device, generator=generator)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            xb = train_x[idx] if augment is None else augment(train_x[idx], generator)
            with _autocast(train_x.device, autocast):
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(idx)
        train_loss = loss_sum.item() / n
        if math.isfinite(train_loss):
            val_loss, val_acc = evaluate(model, val_x, val_y, autocast)
        else:
            val_loss, val_acc = math.nan, 0.0
        result = EpochResult(epoch, train_loss, val_loss, val_acc, time.perf_counter() - started)
        results.append(result)
        if on_epoch is not None:
            on_epoch(result)
        if not result.finite:
            break
    return results


__all__ = ["TRAINING_DEFAULTS", "EpochResult", "evaluate", "fit", "make_optimizer", "warm_up"]
