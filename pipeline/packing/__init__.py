"""Trial packing: many trials of one model family trained as one vmapped model on a GPU,
each still its own Optuna trial.
"""

from __future__ import annotations

from pipeline.packing._pack import Pack, family
from pipeline.packing._worker import Packer, check_device, packer_for

__all__ = [
    "Pack",
    "Packer",
    "check_device",
    "family",
    "packer_for",
]
