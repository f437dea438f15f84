"""The trainable of the study-file form ``transformers:``: the user's model and Trainer
factory, around TrainingArguments the pipeline sets, with no loop written."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from typing import Any

import torch
from transformers import PrinterCallback, Trainer, TrainingArguments
from transformers.utils import logging as hf_logging

from pipeline.config import TransformersConfig, check_arity, import_function
from pipeline.exceptions import ConfigError
from pipeline.integrations.transformers._callback import SessionCallback, restored_checkpoint
from pipeline.training import Session, TrainableError

# The TrainingArguments the pipeline sets, and where the study file says them instead.
PIPELINE_SETS = {
    "output_dir": "the Trainer works in a temporary directory; checkpoints go to artifacts:",
    "num_train_epochs": "set max_epochs at the top level of the study file",
    "max_steps": "the study's max_epochs and its pruner decide how long a trial trains",
    "eval_strategy": "the pipeline evaluates once per epoch (the session counts epochs)",
    "save_strategy": "the pipeline saves once per epoch (the session counts epochs)",
    "use_cpu": "set device: at the top level of the study file",
    "seed": "set seed: at the top level of the study file (each trial gets its own)",
    "report_to": "set tracking: in the study file",
    "disable_tqdm": "the pipeline shows its own progress",
    "load_best_model_at_end": "the pipeline keeps each trial's last epoch; pipeline.load_best",
}


class TransformersTrainable:
    """``transformers: {model_init, trainer, args}`` as a ``function(config, session)``.

    Each trial builds ``TrainingArguments`` (``num_train_epochs`` = the study's
    ``max_epochs``, evaluation and saving every epoch, ``report_to="none"``, no tqdm, a
    temporary ``output_dir``, ``use_cpu`` on a CPU, the trial's seed), then the study's
    ``args``, then every search-space value whose name is a TrainingArguments field
    (``learning_rate``, ``per_device_train_batch_size``... as in transformers' own
    ``hyperparameter_search``). The user's ``trainer(config, model, args)`` returns the
    Trainer (datasets, collator, ``compute_metrics``) built on ``model_init(config)``;
    :class:`SessionCallback` is added to it and a retried trial resumes from its folder.

    Raises:
        ConfigError: a function cannot be imported or has the wrong arguments, or an
            ``args`` field is unknown or one the pipeline sets (naming the key).
    """

    def __init__(self, config: TransformersConfig, checkpoint: bool = True) -> None:
        self.model_init = _function(config.model_init, "transformers.model_init", ["config"])
        self.make_trainer = _function(
            config.trainer, "transformers.trainer", ["config", "model", "args"]
        )
        check_arguments(config.args)
        self.args = dict(config.args)
        self.checkpoint = checkpoint

    def __call__(self, config: dict[str, Any], session: Session) -> None:
        hf_logging.disable_progress_bar()  # a bar per checkpoint written, in every trial
        if session.device.type == "cuda" and session.device.index is not None:
            torch.cuda.set_device(session.device)  # the Trainer trains on the current GPU
        with tempfile.TemporaryDirectory() as output_dir:
            args = TrainingArguments(**self.arguments(config, session, output_dir))
            model = self.model_init(config)
            trainer = self.make_trainer(config, model, args)
            if not isinstance(trainer, Trainer) or trainer.args is not args:
                raise TrainableError(
                    "transformers.trainer must return a transformers.Trainer built with the "
                    "args it is given: Trainer(model=model, args=args, ...)"
                )
            trainer.remove_callback(PrinterCallback)  # no tqdm means a print per log
            trainer.add_callback(SessionCallback(session, self.checkpoint))
            with restored_checkpoint(session, output_dir) as folder:
                trainer.train(resume_from_checkpoint=folder)

    def arguments(
        self, config: dict[str, Any], session: Session, output_dir: str
    ) -> dict[str, Any]:
        """The TrainingArguments of one trial: the pipeline's, the study's, the trial's."""
        fields = _fields()
        return {
            "output_dir": output_dir,
            "num_train_epochs": session.max_epochs,
            "eval_strategy": "epoch",
            "save_strategy": "epoch" if self.checkpoint else "no",  # keep_checkpoints: 0
            "logging_strategy": "epoch",
            "save_total_limit": 1,
            "report_to": "none",
            "disable_tqdm": True,
            "use_cpu": session.device.type == "cpu",
            "seed": session.seed % 2**32,
            **self.args,
            **{name: value for name, value in config.items() if name in fields},
        }


def check_arguments(args: dict[str, Any]) -> None:
    """Refuse a ``transformers.args`` field TrainingArguments does not have, or one the
    pipeline sets.

    Raises:
        ConfigError: naming ``transformers.args.<field>``.
    """
    fields = _fields()
    for name in args:
        if name in PIPELINE_SETS:
            raise ConfigError(
                f"transformers.args.{name}", f"is set by the pipeline; {PIPELINE_SETS[name]}"
            )
        if name not in fields:
            raise ConfigError(
                f"transformers.args.{name}", "is not a field of transformers.TrainingArguments"
            )


def _fields() -> set[str]:
    return {f.name for f in dataclasses.fields(TrainingArguments) if f.init} - set(PIPELINE_SETS)


def _function(target: str, key: str, names: list[str]) -> Callable[..., Any]:
    expected = f"package.module:function taking ({', '.join(names)})"
    function = import_function(target, key, expected)
    check_arity(function, target, key, names)
    return function


__all__ = ["PIPELINE_SETS", "TransformersTrainable", "check_arguments"]
