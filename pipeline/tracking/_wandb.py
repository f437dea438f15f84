"""The Weights & Biases backend: one run per trial, grouped by study (``group`` = the
study's name), with its hyperparameters as the run's config, every metric per epoch at
step = epoch, its state and reason in the run's summary, and its checkpoint as a model
artifact when ``log_checkpoints`` asks.

Each trial's run is a run object of its own (``wandb.init(reinit="create_new")``), never
wandb's process-global ``wandb.run``, so a process may hold several. In ``offline`` mode
(the default) runs are written under ``dir`` and nothing leaves the machine until
``wandb sync``; in ``online`` mode a server that does not answer fails ``wandb.init``
within ``WANDB_INIT_TIMEOUT`` seconds, which the guard in :class:`Tracking` turns into one
warning.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from pipeline.config import WandbConfig
from pipeline.trial import Attr, Outcome, outcome_of, reason_of

# wandb.init waits 90 s for a server that does not answer; a trial should not. The
# variable, when set, still wins.
BOUNDED_INIT = {"WANDB_INIT_TIMEOUT": "10"}
FINE = (Outcome.COMPLETE, Outcome.PRUNED)  # exit code 0; anything else ends the run failed


class WandbTracker:
    """A study's runs in one W&B project.

    Args:
        config: The ``tracking.wandb`` section.
        study_name: The runs' group.
    """

    def __init__(self, config: WandbConfig, study_name: str) -> None:
        for name, value in BOUNDED_INIT.items():
            os.environ.setdefault(name, value)
        where = f"{config.entity}/{config.project}" if config.entity else config.project
        self.name = f"W&B ({config.mode}) project {where}"
        self.config = config
        self.study_name = study_name
        self.runs: dict[int, Any] = {}  # trial number -> wandb Run

    def start_study(self, study: optuna.Study) -> None:
        """Make the runs' directory now, so a wrong path is said before any trial."""
        if self.config.dir:
            Path(self.config.dir).expanduser().mkdir(parents=True, exist_ok=True)

    def end_study(self, study: optuna.Study) -> None:
        """Nothing to close: each trial's run finishes at its end."""

    def start_trial(self, number: int, params: Mapping[str, Any]) -> None:
        """A run named ``trial-N`` in the study's group, its config the hyperparameters."""
        import wandb

        directory = Path(self.config.dir).expanduser() if self.config.dir else None
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
        self.runs[number] = wandb.init(
            project=self.config.project,
            entity=self.config.entity,
            group=self.study_name,
            job_type="trial",
            name=f"trial-{number}",
            config=dict(params),
            dir=str(directory) if directory is not None else None,
            reinit="create_new",
            # The worker's own output stays its own: wandb neither captures nor prints.
            settings=wandb.Settings(mode=self.config.mode, console="off", silent=True),
        )

    def log_epoch(self, number: int, epoch: int, metrics: Mapping[str, float]) -> None:
        """Every metric of the epoch, at step = epoch."""
        self.runs[number].log(dict(metrics), step=epoch)

    def log_checkpoint(self, number: int, path: Path) -> None:
        """The checkpoint file as the model artifact ``<study>-trial-N``, when asked."""
        if not self.config.log_checkpoints:
            return
        import wandb

        artifact = wandb.Artifact(
            artifact_name(self.study_name, number),
            type="model",
            metadata={"study": self.study_name, "trial": number},
        )
        artifact.add_file(str(path), name=path.name)  # copied now: the file is temporary
        self.runs[number].log_artifact(artifact)

    def end_trial(self, trial: FrozenTrial) -> None:
        """The trial's state, reason and value in the run's summary; the run finishes
        with exit code 0 (complete or pruned) or 1."""
        run = self.runs.pop(trial.number)
        outcome = outcome_of(trial) or Outcome.FAILED
        summary = {
            "state": outcome.label,
            "reason": reason_of(trial),
            "value": trial.value,
            "retry_of": trial.user_attrs.get(Attr.RETRY_OF),
        }
        run.summary.update({key: value for key, value in summary.items() if value is not None})
        run.finish(exit_code=0 if outcome in FINE else 1)


def artifact_name(study_name: str, number: int) -> str:
    """``<study>-trial-N`` in the characters W&B takes in an artifact's name."""
    return re.sub(r"[^\w.-]", "_", f"{study_name}-trial-{number}")


__all__ = ["BOUNDED_INIT", "WandbTracker", "artifact_name"]
