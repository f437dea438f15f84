"""A LightningModule and a Hugging Face model as a user's package would name them from
a study file: tiny, on synthetic data, fast on one CPU core; with the misbehaviour the
tests need (a failure after some epoch, a pause per epoch so a worker can be killed)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def _line(seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 1, generator=g)
    return TensorDataset(x, 3 * x - 1 + 0.1 * torch.randn(256, 1, generator=g))


class LineModule(pl.LightningModule):
    """Fits y = 3x - 1; ``fail_after``: raise after that epoch on a first attempt;
    ``sleep``: seconds per epoch; ``ctrl_c_at``: a KeyboardInterrupt in that epoch."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)
        self.net = nn.Linear(1, 1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
        x, y = batch
        if self.config.get("ctrl_c_at") == self.current_epoch + 1:
            raise KeyboardInterrupt  # as Python's SIGINT handler raises it
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> None:
        x, y = batch
        self.log("mse", nn.functional.mse_loss(self.net(x), y))
        self.log("pid", float(os.getpid()))

    def on_train_epoch_end(self) -> None:
        epoch = self.current_epoch + 1
        if self.config.get("fail_after") == epoch and not self.config.get("_resumed"):
            raise RuntimeError(f"lost the GPU after epoch {epoch}")
        time.sleep(self.config.get("sleep", 0.0))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.config["_resumed"] = True

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.config["lr"])

    def train_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        return DataLoader(_line(0), batch_size=64, shuffle=True)

    def val_dataloader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        return DataLoader(_line(1), batch_size=256)


def line_module(config: Mapping[str, Any]) -> LineModule:
    return LineModule(config)


# --- Hugging Face: a BERT of two tiny layers, built from its config (nothing downloaded)


class Tokens(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Sequences of 12 tokens; the label says whether token 3 occurs more often than 7."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 10, (n, 12), generator=g)
        self.labels = ((self.ids == 3).sum(1) > (self.ids == 7).sum(1)).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def tiny_bert(config: Mapping[str, Any]) -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    bert = BertConfig(
        vocab_size=16,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
    )
    bert.num_labels = 2
    return BertForSequenceClassification(bert)


def token_trainer(config: Mapping[str, Any], model: nn.Module, args: Any) -> Any:
    from transformers import Trainer, TrainerCallback

    class Misbehave(TrainerCallback):
        """A pause per epoch; a failure as epoch fail_after + 1 begins, on a first attempt."""

        resumed = False

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.resumed = state.global_step > 0

        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if config.get("fail_after") == round(state.epoch or 0) and not self.resumed:
                raise RuntimeError(f"lost the GPU after epoch {round(state.epoch)}")

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            time.sleep(config.get("sleep", 0.0))

    def accuracy(prediction: Any) -> dict[str, float]:
        return {
            "accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())
        }

    return Trainer(
        model=model,
        args=args,
        train_dataset=Tokens(256, 0),
        eval_dataset=Tokens(128, 1),
        compute_metrics=accuracy,
        callbacks=[Misbehave()],
    )


def train_line(config: Mapping[str, Any], session: Any) -> None:
    """A trainable of one's own with a Trainer of one's own: the callback form."""
    from pipeline.integrations.lightning import SessionCallback, restored_checkpoint

    trainer = pl.Trainer(
        max_epochs=session.max_epochs,
        callbacks=[SessionCallback(session)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    with restored_checkpoint(session) as ckpt_path:
        trainer.fit(LineModule(config), ckpt_path=ckpt_path)
