"""A Hugging Face model and ``Trainer`` on MNIST-1D, tuned from a study file with no
loop written.

``studies/transformers_mnist1d.yaml`` names the two functions below. The pipeline sets
the ``TrainingArguments`` a study decides (``num_train_epochs`` from ``max_epochs``,
evaluation and saving every epoch, no reporting to other services, no progress bars,
the device, the seed) and copies every search-space value that is a TrainingArguments
field (``learning_rate``, ``per_device_train_batch_size``, ``weight_decay``) into them,
as transformers' own ``hyperparameter_search`` does. ``make_trainer`` adds the data and
the metrics, as any Trainer script does; the pipeline reports each evaluation, prunes,
checkpoints and resumes.

The model is a small BERT built from its configuration (nothing is downloaded) that
reads each MNIST-1D signal as a sequence of 40 tokens: its values cut into 16 levels.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    EvalPrediction,
    Trainer,
    TrainingArguments,
)

from pipeline.config import TaskConfig
from pipeline.tasks import resolve_task

LEVELS = 16  # token ids 1..16; 0 is left for padding


class Signals(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Signals as token sequences, with their digit as the label."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, low: float, high: float) -> None:
        scaled = (x.squeeze(1) - low) / (high - low)
        self.ids = 1 + (scaled.clamp(0, 1) * (LEVELS - 1)).round().long()
        self.labels = y

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


@functools.cache
def signals() -> tuple[Signals, Signals, Signals]:
    """MNIST-1D's training, validation and test splits as token sequences, made once
    per process (the ``mnist1d`` task caches the generated data on disk)."""
    task = resolve_task(TaskConfig("mnist1d"))
    splits = task.load(task.resolve_options({}))
    train, val, test = splits.train, splits.val, splits.test
    assert train.x is not None and train.y is not None and val.x is not None and val.y is not None
    assert test.x is not None and test.y is not None
    low, high = float(train.x.min()), float(train.x.max())  # the training split's range
    return (
        Signals(train.x, train.y, low, high),
        Signals(val.x, val.y, low, high),
        Signals(test.x, test.y, low, high),
    )


def model_init(config: Mapping[str, Any]) -> BertForSequenceClassification:
    """``transformers.model_init``: the trial's model (also what ``load_best`` rebuilds)."""
    bert = BertConfig(
        vocab_size=LEVELS + 1,
        hidden_size=config["hidden_size"],
        num_hidden_layers=config["layers"],
        num_attention_heads=4,
        intermediate_size=2 * config["hidden_size"],
        max_position_embeddings=64,
        hidden_dropout_prob=config["dropout"],
        attention_probs_dropout_prob=config["dropout"],
    )
    bert.num_labels = 10
    return BertForSequenceClassification(bert)


def accuracy(prediction: EvalPrediction) -> dict[str, float]:
    """``compute_metrics``: reported as ``eval_accuracy``."""
    labels = np.asarray(prediction.label_ids)
    return {"accuracy": float((np.asarray(prediction.predictions).argmax(-1) == labels).mean())}


def make_trainer(
    config: Mapping[str, Any], model: BertForSequenceClassification, args: TrainingArguments
) -> Trainer:
    """``transformers.trainer``: the Trainer on the trial's model and arguments."""
    train, val, _ = signals()
    return Trainer(
        model=model, args=args, train_dataset=train, eval_dataset=val, compute_metrics=accuracy
    )


def test(
    model: BertForSequenceClassification, config: Mapping[str, Any], device: torch.device
) -> dict[str, float]:
    """``test:``: the rebuilt winner's accuracy on MNIST-1D's 1000 test signals."""
    held_out = signals()[2]
    with torch.no_grad():
        logits = model(input_ids=held_out.ids.to(device)).logits
    return {"test_accuracy": float((logits.argmax(-1).cpu() == held_out.labels).float().mean())}


__all__ = ["Signals", "accuracy", "make_trainer", "model_init", "signals", "test"]
