"""A Hugging Face ``TrainerCallback`` that reports each epoch's evaluation to the session
and saves the Trainer's checkpoint folder through it, so a retried trial resumes."""

from __future__ import annotations

import contextlib
import numbers
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from transformers import (
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from pipeline.training import Session


class SessionCallback(TrainerCallback):
    """``on_evaluate``: report the evaluation metrics (``eval_loss``, ``eval_<name>`` of
    ``compute_metrics``, and ``train_loss``: the last logged training loss; not the
    timings) as the epoch ``state.epoch``; ``on_save``: checkpoint the folder the Trainer
    just wrote.

    The Trainer must evaluate and save once per epoch (``eval_strategy="epoch"``,
    ``save_strategy="epoch"``): the session counts epochs.

    Pruning: ``session.report`` raises ``optuna.TrialPruned`` inside ``on_evaluate``, and
    it is let through ``trainer.train()``, as transformers' own Optuna search does. The
    alternative, ``control.should_training_stop``, would still save the pruned epoch's
    checkpoint and end the trial as complete. A stop asked by the user (``session
    .should_stop()``) likewise ends the trial at the epoch's report, as in every trainable.

    The checkpoint is ``{"state_dict": the model's weights, "files": {name: bytes} of the
    checkpoint folder}``: ``pipeline.load_best`` reads the first, a retried trial writes
    the second back for ``trainer.train(resume_from_checkpoint=...)``.

    Args:
        session: The trial's session.
        checkpoint: Save a checkpoint after every reported epoch.
    """

    def __init__(self, session: Session, checkpoint: bool = True) -> None:
        self.session = session
        self.checkpoint = checkpoint

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        epoch = round(state.epoch or 0)
        last = self.session.last
        if epoch < 1 or (last is not None and epoch <= last["epoch"]):
            return  # an evaluation before training, or a second one of the same epoch
        values = scalars(metrics or {})
        losses = [row["loss"] for row in state.log_history if "loss" in row]
        if losses and "train_loss" not in values:
            values["train_loss"] = float(losses[-1])
        self.session.report(epoch, **values)

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not self.checkpoint or self.session.last is None:
            return
        folder = Path(args.output_dir or ".") / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if not folder.is_dir():
            return  # saved elsewhere (a custom _save_checkpoint): nothing to resume from
        files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
        model = kwargs.get("model")
        weights = {} if model is None else model.state_dict()
        self.session.checkpoint({"state_dict": weights, "files": files})


# How fast the evaluation ran, not how good the model is: left out of the trial's metrics.
_TIMINGS = ("_runtime", "_samples_per_second", "_steps_per_second")


def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The metrics that are one number, less the evaluation's timings; ``epoch`` is the
    session's own name."""
    return {
        name: float(value)
        for name, value in metrics.items()
        if name != "epoch"
        and not name.endswith(_TIMINGS)
        and isinstance(value, numbers.Real)
        and not isinstance(value, bool)
    }


@contextlib.contextmanager
def restored_checkpoint(session: Session, output_dir: str | Path) -> Iterator[str | None]:
    """The checkpoint folder a retried trial resumes from, written under ``output_dir``,
    for ``trainer.train(resume_from_checkpoint=...)``; None on a first attempt. The
    epochs up to it are carried over by the session. The folder is removed after it."""
    saved = session.restore()
    if saved is None:
        yield None
        return
    folder = Path(output_dir) / f"{PREFIX_CHECKPOINT_DIR}-restored"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        for name, data in saved["files"].items():
            (folder / name).write_bytes(data)
        yield str(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


__all__ = ["SessionCallback", "restored_checkpoint", "scalars"]
