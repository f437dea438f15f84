"""The one training loop every study uses.

Tensor splits take the fast path: they are already on the device, each epoch shuffles
indices there and slices mini-batches out of the tensors, with no DataLoader, no
per-sample work and no copies between host and device. Dataset splits are streamed
through a DataLoader (seeded shuffling, ``loader_workers`` processes, pinned memory and
non-blocking copies on CUDA). Either way the loss and the metrics accumulate on the
device and are read back once per epoch, so the loop never waits on the GPU inside one.

The task's kind sets the loss and the metrics (see :mod:`pipeline.tasks._metrics`); the
optimizer and the per-batch schedule come from :mod:`pipeline.training._optim`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader

from pipeline.search import OPTIMIZERS, TRAINING_DEFAULTS
from pipeline.tasks import KIND_METRICS, Split, Task, align, meter_for
from pipeline.training._kernels import choose_onednn, onednn_convolutions
from pipeline.training._optim import make_optimizer, restored_optimizer, schedule_from

EVAL_BATCH = 4096  # rows per forward pass when scoring tensors
DATASET_EVAL_BATCH = 256  # items per batch when scoring a Dataset (decoded images, say)

Batches = Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]


@dataclass(frozen=True)
class EpochResult:
    """What one epoch produced: ``train_loss`` and ``val_<name>`` for every metric of the
    task (see :meth:`Task.metric_names`). ``compute_seconds`` covers training and
    evaluation only."""

    epoch: int
    metrics: dict[str, float]
    compute_seconds: float

    @property
    def finite(self) -> bool:
        """False once the loss has diverged to NaN or infinity."""
        return math.isfinite(self.metrics["train_loss"]) and math.isfinite(self.metrics["val_loss"])


def warm_up() -> None:
    """Pay one-time costs at worker start rather than inside the first trial: the first
    optimizer a process builds imports torch's compiler stack (over a second on a CPU)."""
    param = nn.Parameter(torch.zeros(1))
    for name in OPTIMIZERS:
        make_optimizer(name, [param], TRAINING_DEFAULTS)


def model_outputs(task: Task, output: Any) -> torch.Tensor:
    """The tensor the loss and metrics read from what the model returned: the task's
    ``outputs`` hook when it has one, else a tensor as it is, ``.logits`` of a structured
    output (Hugging Face) or the first element of a tuple or list (GoogLeNet's logits
    before its aux logits)."""
    if task.outputs is not None:
        return task.outputs(output)
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, (tuple, list)):
        return output[0]
    raise TypeError(f"the model returned {type(output).__name__}; give the task an outputs hook")


def loss_function(
    task: Task, label_smoothing: float = 0.0
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The task's ``loss`` hook, else cross-entropy (classification, with label
    smoothing) or mean squared error (regression)."""
    if task.loss is not None:
        return task.loss
    if task.kind == "regression":
        return _mse
    return partial(F.cross_entropy, label_smoothing=label_smoothing)


def _mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(align(outputs, targets), targets.to(outputs.dtype))


def autocast_context(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[Any]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _device_of(model: nn.Module, split: Split) -> torch.device:
    if split.x is not None:
        return split.x.device
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _batches(
    split: Split,
    batch_size: int,
    device: torch.device,
    shuffle: torch.Generator | None = None,
    workers: int = 0,
) -> Batches:
    """A function that yields one pass of ``(x, y)`` batches on ``device``, shuffled
    with ``shuffle`` when given. For tensors the permutation is drawn on their device;
    a Dataset gets one DataLoader, kept for every pass."""
    if split.x is not None and split.y is not None:
        x, y = split.x, split.y

        def tensor_pass() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            if shuffle is None:
                for start in range(0, len(y), batch_size):
                    yield x[start : start + batch_size], y[start : start + batch_size]
                return
            perm = torch.randperm(len(y), device=x.device, generator=shuffle)
            for start in range(0, len(y), batch_size):
                idx = perm[start : start + batch_size]
                yield x[idx], y[idx]

        return tensor_pass
    loader_seed = None
    if shuffle is not None:  # DataLoader shuffles on the CPU: seed a CPU generator from ours
        draw = torch.randint(2**62, (1,), device=shuffle.device, generator=shuffle)
        loader_seed = torch.Generator().manual_seed(int(draw))
    loader = DataLoader(
        split.dataset,  # type: ignore[arg-type]
        batch_size=batch_size,
        shuffle=shuffle is not None,
        generator=loader_seed,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )

    def loader_pass() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for xb, yb in loader:
            yield xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)

    return loader_pass


def _steps(split: Split, batch_size: int) -> int:
    return max(math.ceil(len(split) / batch_size), 1)


@torch.inference_mode()
def _score(
    model: nn.Module, task: Task, batches: Batches, device: torch.device, autocast: Any
) -> dict[str, float]:
    model.eval()
    meter = meter_for(task.kind, device)
    loss_fn = loss_function(task)
    kept: list[tuple[torch.Tensor, torch.Tensor]] = []
    for xb, yb in batches():
        with autocast_context(device, autocast):
            out = model_outputs(task, model(xb)).float()
        meter.update(out, yb, loss_fn(out, yb))
        if task.metrics:
            kept.append((out, yb))
    scores = meter.result()
    if task.metrics:
        predictions = torch.cat([out for out, _ in kept]) if kept else torch.empty(0)
        targets = torch.cat([yb for _, yb in kept]) if kept else torch.empty(0)
        for name, metric in task.metrics.items():
            scores[name] = float(metric(predictions, targets))
    return scores


def evaluate(
    model: nn.Module,
    task: Task,
    split: Split,
    autocast: torch.dtype | None = None,
    *,
    loader_workers: int = 0,
) -> dict[str, float]:
    """Every metric of the task's kind, and its custom ones, over the whole ``split``,
    unprefixed (``loss``, ``accuracy``, ``macro_f1`` or ``loss``, ``rmse``, ``mae``,
    ``r2``). The loss is the task's loss without label smoothing.

    Args:
        autocast: Mixed precision (``torch.bfloat16``) for forward passes, or None.
        loader_workers: DataLoader processes for a Dataset split.
    """
    device = _device_of(model, split)
    size = EVAL_BATCH if split.x is not None else DATASET_EVAL_BATCH
    batches = _batches(split, size, device, workers=loader_workers)
    return _score(model, task, batches, device, autocast)


def _step(
    model: nn.Module,
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler | None,
    clip: float,
) -> None:
    """One optimizer step on ``loss``: gradients (clipped to norm ``clip`` when it is
    above 0), the update, then the schedule's per-batch step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()


def fit(
    model: nn.Module,
    task: Task,
    train: Split,
    val: Split,
    hp: Mapping[str, Any],
    epochs: int,
    generator: torch.Generator,
    on_epoch: Callable[[EpochResult], None] | None = None,
    *,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    autocast: torch.dtype | None = None,
    carry: dict[str, Any] | None = None,
) -> list[EpochResult]:
    """Train ``model`` for up to ``epochs`` epochs, evaluating on ``val`` after each.

    Args:
        hp: The loop's hyperparameters (see ``TRAINING_DEFAULTS``; missing ones take
            their defaults): optimizer and its settings, batch_size, the schedule,
            label_smoothing, grad_clip, loader_workers.
        generator: Seeds the shuffling (and augmentation), on the data's device.
        on_epoch: Called after every epoch; it may raise (e.g. ``optuna.TrialPruned``)
            to stop training. It is not counted in ``compute_seconds``.
        augment: Applied to each training batch on the device.
        autocast: Mixed precision (``torch.bfloat16``) for forward passes, or None.
        carry: Going on from a checkpoint: ``epoch`` (the last one trained) and
            ``optimizer`` (its state); the optimizer's state at the end is put in it.
    """
    hp = {**TRAINING_DEFAULTS, **hp}
    batch_size, workers = int(hp["batch_size"]), int(hp["loader_workers"])
    device = _device_of(model, train)
    batches = _batches(train, batch_size, device, generator, workers)
    val_size = EVAL_BATCH if val.x is not None else DATASET_EVAL_BATCH
    val_batches = _batches(val, val_size, device, workers=workers)
    carry = {} if carry is None else carry
    optimizer = restored_optimizer(task, model, hp, carry.get("optimizer"))
    start = int(carry.get("epoch") or 0) + 1
    scheduler = schedule_from(optimizer, hp, _steps(train, batch_size), epochs, start)
    loss_fn = loss_function(task, float(hp["label_smoothing"]))
    clip = float(hp["grad_clip"])
    names = (*KIND_METRICS[task.kind], *(task.metrics or {}))
    onednn = _convolutions_for(model, task, train, batch_size, autocast)
    n, results = len(train), []
    for epoch in range(start, epochs + 1):
        started = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), device=device)
        with onednn_convolutions(onednn):
            for xb, yb in batches():
                if augment is not None:
                    xb = augment(xb, generator)
                loss = _batch_loss(model, task, loss_fn, xb, yb, autocast)
                _step(model, loss, optimizer, scheduler, clip)
                loss_sum.add_(loss.detach(), alpha=len(yb))
        metrics = {"train_loss": loss_sum.item() / max(n, 1)}
        if math.isfinite(metrics["train_loss"]):
            scores = _score(model, task, val_batches, device, autocast)
        else:
            scores = dict.fromkeys(names, math.nan)
        metrics.update({f"val_{name}": value for name, value in scores.items()})
        result = EpochResult(epoch, metrics, time.perf_counter() - started)
        results.append(result)
        if on_epoch is not None:
            on_epoch(result)
        if not result.finite:
            break
    carry["optimizer"] = optimizer.state_dict()
    return results


def _convolutions_for(
    model: nn.Module, task: Task, train: Split, batch_size: int, autocast: torch.dtype | None
) -> bool | None:
    """oneDNN's convolutions or the native ones for training on ``train``'s tensors
    (see :mod:`pipeline.training._kernels`); None for a Dataset split: the setting stays."""
    if train.x is None or train.y is None or len(train) == 0:
        return None
    xb, yb = train.x[:batch_size], train.y[:batch_size]
    loss_fn = loss_function(task)
    return choose_onednn(model, xb, lambda net, b: _batch_loss(net, task, loss_fn, b, yb, autocast))


def _batch_loss(
    model: nn.Module,
    task: Task,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    xb: torch.Tensor,
    yb: torch.Tensor,
    autocast: torch.dtype | None,
) -> torch.Tensor:
    """The loss of one training batch: the forward pass (in mixed precision when asked),
    the task's outputs, the loss in float32."""
    with autocast_context(xb.device, autocast):
        out = model_outputs(task, model(xb))
    return loss_fn(out.float(), yb)


__all__ = [
    "TRAINING_DEFAULTS",
    "EpochResult",
    "evaluate",
    "fit",
    "loss_function",
    "make_optimizer",
    "model_outputs",
    "warm_up",
]
