"""The study-file forms ``lightning:`` and ``transformers:`` as trainables.

The framework is imported when a study names it, never before: a study of a task or of
a plain trainable runs without Lightning or transformers installed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from pipeline.config import LightningConfig, TransformersConfig
from pipeline.exceptions import ConfigError
from pipeline.training import Session

# The module each form needs, the package that brings it and the extra that installs it.
_NEEDS = {
    "lightning": ("lightning.pytorch", "lightning"),
    "transformers": ("transformers", "transformers"),
}


def _framework(form: str) -> Any:
    """``pipeline.integrations.<form>``, once its framework imports.

    Raises:
        ConfigError: the framework is not installed; the message says how to install it.
    """
    module, extra = _NEEDS[form]
    try:
        importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            form,
            f"needs the {extra} package, which is not installed: "
            f"pip install 'optuna-pipeline[{extra}]'",
        ) from None
    return importlib.import_module(f"pipeline.integrations.{form}")


def check_framework(
    lightning: LightningConfig | None, transformers: TransformersConfig | None
) -> None:
    """Import the functions a ``lightning:`` or ``transformers:`` section names and check
    its options against the framework's own; nothing without one.

    Raises:
        ConfigError: naming the key, in one line.
    """
    if lightning is not None:
        _framework("lightning").LightningTrainable(lightning)
    if transformers is not None:
        _framework("transformers").TransformersTrainable(transformers)


def framework_trainable(
    lightning: LightningConfig | None,
    transformers: TransformersConfig | None,
    checkpoint: bool = True,
) -> Callable[[dict[str, Any], Session], None] | None:
    """The trainable of a ``lightning:`` or ``transformers:`` section; None without one.

    Args:
        checkpoint: Save the framework's checkpoint after every epoch (off when the study
            keeps none).

    Raises:
        ConfigError: naming the key, in one line.
    """
    if lightning is not None:
        trainable: Callable[[dict[str, Any], Session], None] = _framework(
            "lightning"
        ).LightningTrainable(lightning, checkpoint)
        return trainable
    if transformers is not None:
        trainable = _framework("transformers").TransformersTrainable(transformers, checkpoint)
        return trainable
    return None


__all__ = ["check_framework", "framework_trainable"]
