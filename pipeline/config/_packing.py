"""The study-file schema of ``packing:``: many trials of one model family trained as one
vmapped model on a GPU (docs/packing.md), and the rules a packed study must keep.

Part of the schema: it imports nothing from the package but the exceptions, nor torch or
optuna.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.exceptions import ConfigError


@dataclass(frozen=True)
class PackingConfig:
    """Trial packing (docs/packing.md): a worker trains up to ``max_members`` trials of
    one model family as one vmapped model on its GPU."""

    max_members: int = 64
    on_cpu: bool = False  # packing measured slower on the CPU; true runs it there anyway


MAX_PACK_MEMBERS = 4096
CPU_PACKING = (
    "packing is measured slower than unpacked trials on the CPU (0.56-0.93x); "
    "use device: cuda (or auto on a GPU machine), or set packing.on_cpu: true to run it anyway"
)


def check_packing(
    packing: PackingConfig | None,
    device: str,
    trainable: bool,
    one_objective: bool,
    tracking: bool,
) -> None:
    """``packing`` needs a task (the built-in loop builds the packed model), at least one
    member, one objective without constraints, no tracking, and a GPU unless ``on_cpu``
    says otherwise."""
    if packing is None:
        return
    if not 1 <= packing.max_members <= MAX_PACK_MEMBERS:
        raise ConfigError(
            "packing.max_members",
            f"must be from 1 to {MAX_PACK_MEMBERS}, got {packing.max_members}",
        )
    if trainable:
        raise ConfigError(
            "packing", "packs the models of a task; a trainable trains its own, remove packing"
        )
    if device == "cpu" and not packing.on_cpu:
        raise ConfigError("packing", CPU_PACKING)
    if not one_objective:
        raise ConfigError(
            "packing", "packed trials have one objective and no constraints; remove packing"
        )
    if tracking:
        raise ConfigError(
            "packing", "packed trials are not mirrored to tracking yet; remove one of the two"
        )


__all__ = ["CPU_PACKING", "MAX_PACK_MEMBERS", "PackingConfig", "check_packing"]
