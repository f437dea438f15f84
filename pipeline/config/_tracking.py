"""The study-file schema of ``tracking:``: where trials are mirrored besides the Optuna
storage (docs/tracking.md).

Part of the schema: it imports nothing from the package, nor torch or optuna.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class WandbConfig:
    """Weights & Biases: one run per trial in ``project``, grouped by study."""

    project: str
    mode: Literal["offline", "online"] = "offline"  # offline: written under dir, `wandb sync`
    entity: str | None = None  # the team or user; None: the API key's default
    dir: str | None = None  # where runs are written (wandb's WANDB_DIR, else ./wandb)
    log_checkpoints: bool = False  # each trial's kept checkpoint as a model artifact


@dataclass(frozen=True)
class TrackingConfig:
    """Where trials are mirrored besides the Optuna storage; each backend is off when
    null. See docs/tracking.md."""

    mlflow: str | None = None  # an MLflow tracking URI: http(s)://host:port, file:, sqlite:
    tensorboard: str | None = None  # a directory; one event directory per trial under it
    wandb: WandbConfig | None = None

    @property
    def enabled(self) -> bool:
        """Whether any backend is on."""
        return bool(self.mlflow or self.tensorboard or self.wandb)


__all__ = ["TrackingConfig", "WandbConfig"]
