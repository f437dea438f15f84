"""The study-file schema of ``tracking:``: where trials are mirrored besides the Optuna
storage (docs/tracking.md).

Part of the schema: it imports nothing from the package, nor torch or optuna.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrackingConfig:
    """Where trials are mirrored besides the Optuna storage; each backend is off when
    null. See docs/tracking.md."""

    mlflow: str | None = None  # an MLflow tracking URI: http(s)://host:port, file:, sqlite:
    tensorboard: str | None = None  # a directory; one event directory per trial under it

    @property
    def enabled(self) -> bool:
        """Whether any backend is on."""
        return bool(self.mlflow or self.tensorboard)


__all__ = ["TrackingConfig"]
