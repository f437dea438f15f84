"""The built-in loop as a trainable: a task's model, trained on the task's splits.

A study that names a task runs this trainable; a study that names the user's own
function runs that one instead. Both go through the same :class:`pipeline.training.Session`,
so pruning, checkpoints, retries and the stored metrics behave alike.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any

import torch
from torch.utils.data import default_collate

from pipeline.exceptions import ModelTooLarge
from pipeline.search import TRAINING_DEFAULTS
from pipeline.tasks import Split, Splits, Task
from pipeline.training._loop import EpochResult, evaluate, fit
from pipeline.training._measure import count_params, latency_ms, too_large
from pipeline.training._session import Session


def hyperparameters(task: Task, values: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults of the training loop, then of the task, then the trial's values."""
    return {**TRAINING_DEFAULTS, **task.training_defaults, **task.hyperparameters, **values}


class TaskTrainable:
    """``(config, session) -> None`` for a task: build the model, train it with the one
    training loop, score the test split and checkpoint the final weights.

    Args:
        splits: The task's data, already on the session's device.
        task_options: The resolved options, stored in checkpoints to rebuild the task.
        checkpoint: Whether to checkpoint the final weights (``keep_checkpoints`` > 0).
        target: The study file's ``task.name``, stored in checkpoints.
        inference_batch: The examples of the batch whose forward time is ``latency_ms``.
        segments: Trials are PBT segments: checkpoints keep the optimizer's state.
    """

    def __init__(
        self,
        task: Task,
        splits: Splits,
        task_options: Mapping[str, Any],
        *,
        precision: str = "fp32",
        channels_last: bool = False,
        checkpoint: bool = True,
        target: str | None = None,
        inference_batch: int = 1,
        segments: bool = False,
    ) -> None:
        self.task = task
        self.segments = segments  # PBT: checkpoints carry the optimizer's state too
        self.inference_batch = inference_batch
        # What rebuilds the task from a checkpoint: the study file's task.name (a
        # registry name or package.module:function), not the name the task gives itself.
        self.target = target or task.name
        self.splits = splits
        self.task_options = dict(task_options)
        self.autocast = torch.bfloat16 if precision == "bf16" else None
        self.channels_last = channels_last
        self.save = checkpoint

    def __call__(self, config: Mapping[str, Any], session: Session) -> None:
        s, device = self.splits, session.device
        hp = hyperparameters(self.task, config)
        torch.manual_seed(session.seed)
        problem = too_large(lambda: self.task.build_model(hp, s), device)
        if problem is not None:
            raise ModelTooLarge(problem)
        model = self.task.build_model(hp, s).to(device)
        saved = session.restore()  # a retry's or a PBT parent's checkpoint
        if isinstance(saved, dict) and "state_dict" in saved:
            model.load_state_dict(saved["state_dict"])
        else:
            saved = None
        carry = {"epoch": (session.last or {}).get("epoch", 0)}
        carry["optimizer"] = (saved or {}).get("optimizer")
        if self.channels_last and s.train.x is not None and s.train.x.dim() == 4:
            model = model.to(memory_format=torch.channels_last)
        self.measure(model, session)
        augment = self.task.augment if hp.get("augment") else None
        generator = torch.Generator(device=device).manual_seed(session.seed)
        session.compute_seconds = 0.0

        def on_epoch(result: EpochResult) -> None:
            session.compute_seconds = (session.compute_seconds or 0.0) + result.compute_seconds
            session.report(result.epoch, **result.metrics)

        fit(
            model,
            self.task,
            s.train,
            s.val,
            hp,
            session.max_epochs,
            generator,
            on_epoch,
            augment=augment,
            autocast=self.autocast,
            carry=carry,
        )
        self.finish(model, hp, session, carry.get("optimizer") if self.segments else None)

    def finish(
        self,
        model: torch.nn.Module,
        hp: Mapping[str, Any],
        session: Session,
        optimizer: Mapping[str, Any] | None = None,
    ) -> None:
        """After training: score the test split and checkpoint the final weights, with
        the optimizer's state when given (the next PBT segment goes on with it; a
        packed trial's model, unpacked, comes here too)."""
        started = time.perf_counter()
        workers = int(hp["loader_workers"])
        scores = evaluate(model, self.task, self.splits.test, self.autocast, loader_workers=workers)
        test = {f"test_{name}": value for name, value in scores.items()}
        session.compute_seconds = (session.compute_seconds or 0.0) + time.perf_counter() - started
        session.record(**test)
        if self.save:
            last = session.last or {}
            metrics = {k: v for k, v in last.items() if k not in ("epoch", "trial")}
            session.checkpoint(
                {
                    "task": self.target,
                    "task_options": self.task_options,
                    "hyperparameters": dict(hp),
                    "metrics": {**metrics, **test},
                    "trial": session.trial_number,
                    "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                    **({"optimizer": optimizer} if optimizer is not None else {}),
                }
            )

    def measure(self, model: torch.nn.Module, session: Session) -> None:
        """Size and latency, known before training: a constraint on them rejects the
        trial before its first epoch."""
        batch = _first_inputs(self.splits.val, self.inference_batch, session.device)
        if self.channels_last and isinstance(batch, torch.Tensor) and batch.dim() == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with (
            torch.autocast(session.device.type, dtype=self.autocast)
            if self.autocast
            else contextlib.nullcontext()
        ):
            latency = latency_ms(model, batch, session.device)
        session.measured(params=count_params(model), latency_ms=round(latency, 4))


def _first_inputs(split: Split, n: int, device: torch.device) -> Any:
    """The inputs of the split's first ``n`` examples, as the model takes a batch."""
    if split.x is not None:
        return split.x[:n].to(device)
    assert split.dataset is not None
    items = default_collate([split.dataset[i][0] for i in range(min(n, len(split)))])
    return items.to(device) if isinstance(items, torch.Tensor) else items


__all__ = ["TaskTrainable", "hyperparameters"]
