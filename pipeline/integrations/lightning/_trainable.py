"""The trainable of the study-file form ``lightning:``: the user's LightningModule (and
LightningDataModule) trained by a Trainer the pipeline builds, with no loop written."""

from __future__ import annotations

import contextlib
import inspect
import logging
import signal
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import lightning.pytorch as pl
import torch

from pipeline.config import LightningConfig, check_arity, import_function
from pipeline.exceptions import ConfigError
from pipeline.integrations.lightning._callback import SessionCallback, restored_checkpoint
from pipeline.training import Session

# The Trainer options the pipeline sets, and where the study file says them instead.
PIPELINE_SETS = {
    "max_epochs": "set max_epochs at the top level of the study file",
    "min_epochs": "the study's max_epochs and its pruner decide how long a trial trains",
    "max_steps": "the study's max_epochs and its pruner decide how long a trial trains",
    "accelerator": "set device: (and gpus_per_trial) at the top level of the study file",
    "devices": "set device: (and gpus_per_trial) at the top level of the study file",
    "callbacks": "the pipeline adds its own; write a trainable to add more",
    "enable_checkpointing": "the pipeline checkpoints through the session",
    "default_root_dir": "the Trainer works in a temporary directory; checkpoints go to artifacts:",
}
# Lightning's chatter in every trial: which accelerator was found, the process group.
_QUIET = ("lightning.pytorch", "lightning.fabric")


class LightningTrainable:
    """``lightning: {module, datamodule, trainer}`` as a ``function(config, session)``.

    Each trial builds the module (and data module) from its ``config``, a Trainer with
    the study's ``max_epochs``, the session's device, no progress bar, logger, model
    summary or checkpoint callback of its own, and :class:`SessionCallback`; a retried
    trial resumes from its Lightning checkpoint.

    Raises:
        ConfigError: a function cannot be imported or has the wrong arguments, or a
            Trainer option is unknown or one the pipeline sets (naming the key).
    """

    def __init__(self, config: LightningConfig, checkpoint: bool = True) -> None:
        self.make_module = _factory(config.module, "lightning.module", "LightningModule")
        self.make_data = (
            None
            if config.datamodule is None
            else _factory(config.datamodule, "lightning.datamodule", "LightningDataModule")
        )
        check_trainer_options(config.trainer)
        self.options = dict(config.trainer)
        self.checkpoint = checkpoint

    def __call__(self, config: dict[str, Any], session: Session) -> None:
        for name in _QUIET:
            logging.getLogger(name).setLevel(logging.WARNING)
        # Lightning takes a 32-bit seed (numpy's); a larger one it replaces at random.
        pl.seed_everything(session.seed % 2**32, workers=True, verbose=False)
        module = self.make_module(config)
        data = self.make_data(config) if self.make_data is not None else None
        with tempfile.TemporaryDirectory() as root, warnings.catch_warnings():
            # Data kept as tensors needs no loader processes; the hint is noise here.
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            # Lightning's own use of torch's pytree, for the Lightning developers to fix.
            warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")
            # The workers are the pipeline's, not srun's, even on a machine that has srun.
            warnings.filterwarnings("ignore", message=".*`srun` command is available.*")
            options: dict[str, Any] = {
                "enable_progress_bar": False,
                "enable_model_summary": False,
                "logger": False,
                **self.options,  # the study's may turn those on again
                "max_epochs": session.max_epochs,
                **device_options(session.device),
                "enable_checkpointing": False,
                "default_root_dir": root,
                "callbacks": [SessionCallback(session, self.checkpoint)],
            }
            trainer = pl.Trainer(**options)
            with restored_checkpoint(session) as ckpt_path, _ctrl_c_kept():
                trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)


@contextlib.contextmanager
def _ctrl_c_kept() -> Iterator[None]:
    """Ctrl-C during ``fit`` stays a KeyboardInterrupt (the trial is re-queued): Lightning
    turns it into ``sys.exit(1)`` and ignores SIGINT from then on. (A worker's stop
    signals never raise; this is for trials run in the caller's own process.)"""
    handler = signal.getsignal(signal.SIGINT)
    try:
        yield
    except SystemExit as exc:
        if not isinstance(exc.__context__, KeyboardInterrupt):
            raise
        if handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, handler)
        raise exc.__context__ from None


def device_options(device: torch.device) -> dict[str, Any]:
    """Trainer(accelerator=..., devices=...) for the session's device."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return {"accelerator": "gpu", "devices": [index]}
    return {"accelerator": device.type, "devices": 1}


def check_trainer_options(options: dict[str, Any]) -> None:
    """Refuse a ``lightning.trainer`` option the Trainer does not take, or one the
    pipeline sets.

    Raises:
        ConfigError: naming ``lightning.trainer.<option>``.
    """
    known = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self"}
    for name in options:
        if name in PIPELINE_SETS:
            raise ConfigError(
                f"lightning.trainer.{name}", f"is set by the pipeline; {PIPELINE_SETS[name]}"
            )
        if name not in known:
            raise ConfigError(
                f"lightning.trainer.{name}",
                f"is not an argument of lightning.pytorch.Trainer {pl.__version__}",
            )


def _factory(target: str, key: str, returns: str) -> Callable[[dict[str, Any]], Any]:
    expected = f"package.module:function taking (config) and returning a {returns}"
    function = import_function(target, key, expected)
    check_arity(function, target, key, ["config"])
    return function


__all__ = ["PIPELINE_SETS", "LightningTrainable", "check_trainer_options", "device_options"]
