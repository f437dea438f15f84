"""The TensorBoard backend: ``<dir>/<study name>/trial-N`` per trial, with every metric
as a scalar per epoch and the trial's hyperparameters for the HParams plugin.

Each trial's directory holds a session start (its hyperparameters) and, when it ends, a
session end (its status) in the HParams plugin's format, and no experiment summary: the
plugin then builds the study's table from all the trials' sessions and takes the metrics
from their scalars, so ``tensorboard --logdir <dir>/<study name>`` shows every trial
side by side in its HParams tab.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from pipeline.trial import Outcome, outcome_of, reason_of


class TensorBoardTracker:
    """Event files of a study's trials under ``directory``.

    Args:
        directory: The ``tracking.tensorboard`` directory.
        study_name: Its subdirectory (characters a path cannot hold become ``_``).
    """

    def __init__(self, directory: str, study_name: str) -> None:
        self.name = f"TensorBoard in {directory}"
        self.root = Path(directory).expanduser() / safe_name(study_name)
        self.writers: dict[int, Any] = {}  # trial number -> SummaryWriter

    def start_study(self, study: optuna.Study) -> None:
        """Make the study's directory now, so a wrong path is said before any trial."""
        self.root.mkdir(parents=True, exist_ok=True)

    def end_study(self, study: optuna.Study) -> None:
        """Nothing to close: each trial's writer closes at its end."""

    def start_trial(self, number: int, params: Mapping[str, Any]) -> None:
        """Open ``trial-N`` and write the session start with the hyperparameters."""
        from google.protobuf import struct_pb2
        from tensorboard.plugins.hparams import metadata, plugin_data_pb2
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(self.root / f"trial-{number}"))
        self.writers[number] = writer
        start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
        for key, value in params.items():
            start.hparams[key].CopyFrom(_value(value, struct_pb2))
        data = plugin_data_pb2.HParamsPluginData(session_start_info=start)
        assert writer.file_writer is not None  # made by the constructor
        writer.file_writer.add_summary(_summary(metadata.SESSION_START_INFO_TAG, data))
        writer.flush()

    def log_epoch(self, number: int, epoch: int, metrics: Mapping[str, float]) -> None:
        """One scalar per metric at step = epoch, flushed so TensorBoard shows it now."""
        writer = self.writers[number]
        for key, value in metrics.items():
            writer.add_scalar(key, value, epoch)
        writer.flush()

    def log_checkpoint(self, number: int, path: Path) -> None:
        """Checkpoints stay in the artifact store; TensorBoard shows curves only."""

    def end_trial(self, trial: FrozenTrial) -> None:
        """The session end (success for a complete or pruned trial, else failure) and
        the state with its reason as text."""
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

        writer = self.writers.pop(trial.number)
        outcome = outcome_of(trial) or Outcome.FAILED
        ok = outcome in (Outcome.COMPLETE, Outcome.PRUNED)
        status = api_pb2.Status.Value("STATUS_SUCCESS" if ok else "STATUS_FAILURE")
        end = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
        data = plugin_data_pb2.HParamsPluginData(session_end_info=end)
        writer.file_writer.add_summary(_summary(metadata.SESSION_END_INFO_TAG, data))
        reason = reason_of(trial)
        writer.add_text("state", outcome.label + (f": {reason}" if reason else ""))
        writer.close()


def safe_name(name: str) -> str:
    """A study name as one directory name."""
    cleaned = re.sub(r"[^\w.=+-]", "_", name).strip(".")
    return cleaned or "_"


def _value(value: Any, struct_pb2: Any) -> Any:
    """An hparam value as the plugin stores it: a bool, a number or a string."""
    if isinstance(value, bool):
        return struct_pb2.Value(bool_value=value)
    if isinstance(value, (int, float)):
        return struct_pb2.Value(number_value=float(value))
    return struct_pb2.Value(string_value=str(value))


def _summary(tag: str, data: Any) -> Any:
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import metadata

    meta = metadata.create_summary_metadata(data)
    return Summary(value=[Summary.Value(tag=tag, metadata=meta)])


__all__ = ["TensorBoardTracker", "safe_name"]
