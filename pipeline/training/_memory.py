"""Whether a trial's model fits its device, told before it is built for real.

A model is built on the meta device (which allocates nothing) and its weights, gradients
and optimizer state are weighed against the memory free on the device, so that a width
of 10^9 fails one trial with a reason instead of getting its worker killed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# Weights, their gradients and up to two optimizer states (Adam) per parameter.
_COPIES_PER_PARAMETER = 4


def available_memory(device: torch.device) -> int | None:
    """Bytes free for a new model on ``device``; None where it cannot be told."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def too_large(build: Callable[[], torch.nn.Module], device: torch.device) -> str | None:
    """Why a model would not fit on ``device`` (built first on the meta device, which
    allocates nothing), or None: a width of 10^9 fails one trial with a reason instead of
    getting its worker killed by the kernel."""
    try:
        with torch.device("meta"):
            model = build()
    except Exception:  # a model that cannot be built on meta: let the real build decide
        return None
    needed = sum(p.numel() * p.element_size() for p in model.parameters())
    needed *= _COPIES_PER_PARAMETER
    free = available_memory(device)
    if free is None or needed <= free:
        return None
    return (
        f"the model needs about {needed / 2**30:.1f} GiB for its weights, gradients and "
        f"optimizer state, and {device} has {free / 2**30:.1f} GiB free; narrow the search space"
    )


__all__ = ["available_memory", "too_large"]
