"""A Lightning callback that reports every validation epoch to the session and saves
Lightning's own checkpoint through it, so that a retried trial resumes where it was."""

from __future__ import annotations

import contextlib
import numbers
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from pipeline.training import Session


class SessionCallback(pl.Callback):
    """Report ``trainer.callback_metrics`` to ``session.report`` after each epoch that
    validated and save the Trainer's checkpoint with ``session.checkpoint``.

    The report is made when the training epoch ends, after its validation, so that the
    epoch's training metrics (``self.log(..., on_epoch=True)``) and its validation
    metrics are reported together. Lightning counts epochs from 0, the session from 1:
    Lightning's epoch 0 is reported as epoch 1. The sanity check is not reported, nor an
    epoch that did not validate (``check_val_every_n_epoch``), unless the module has no
    validation at all. ``session.report`` raises ``optuna.TrialPruned`` when the pruner
    stops the trial; Lightning tears the Trainer down and lets the exception out of
    ``trainer.fit``, so the trial ends as pruned.

    The checkpoint is ``{"state_dict": the module's weights, "lightning": the bytes of
    trainer.save_checkpoint}``: ``pipeline.load_best`` reads the first, a retried trial
    gives the second back to ``trainer.fit(ckpt_path=...)`` (:func:`restored_checkpoint`).

    Args:
        session: The trial's session.
        checkpoint: Save a checkpoint after every reported epoch.
    """

    def __init__(self, session: Session, checkpoint: bool = True) -> None:
        self.session = session
        self.checkpoint = checkpoint
        self._validated: int | None = None  # Lightning's epoch of the last validation

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated = trainer.current_epoch

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        validates = sum(trainer.num_val_batches) > 0
        if validates and self._validated != trainer.current_epoch:
            return
        epoch = trainer.current_epoch + 1
        last = self.session.last
        if last is not None and epoch <= last["epoch"]:
            return  # a resumed fit may end its checkpoint's epoch again
        self.session.report(epoch, **scalars(trainer.callback_metrics))
        if self.checkpoint:
            self.session.checkpoint(
                {"state_dict": pl_module.state_dict(), "lightning": _saved(trainer)}
            )


def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The metrics that are one number (Lightning keeps them as tensors)."""
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            out[name] = float(value.item())
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            out[name] = float(value)
    out.pop("epoch", None)  # the session's own name; Lightning's count is off by one
    return out


def _saved(trainer: pl.Trainer) -> bytes:
    """What ``trainer.save_checkpoint`` writes, as bytes (a checkpoint the session keeps
    must load with ``torch.load(weights_only=True)``; bytes always do)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trial.ckpt"
        trainer.save_checkpoint(path)
        return path.read_bytes()


@contextlib.contextmanager
def restored_checkpoint(session: Session) -> Iterator[str | None]:
    """The path of the checkpoint a retried trial resumes from, for
    ``trainer.fit(..., ckpt_path=...)``, valid inside the ``with``; None on a first
    attempt. The epochs up to it are carried over by the session."""
    saved = session.restore()
    if saved is None:
        yield None
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "restored.ckpt"
        path.write_bytes(saved["lightning"])
        yield str(path)


__all__ = ["SessionCallback", "restored_checkpoint", "scalars"]
