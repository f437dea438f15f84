"""Resources per trial, as the tutorial's ``resources_per_trial``: worker placement on
CPU threads and GPUs.

Every worker runs one trial at a time, so resources per trial are resources per worker:
``cpus_per_trial`` torch threads and ``gpus_per_trial`` GPUs. A fraction shares a GPU
(0.5: two concurrent trials per GPU); workers go to GPUs round-robin and are pinned by
``CUDA_VISIBLE_DEVICES``, so inside a worker its GPU is ``cuda``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from pipeline.config import ConfigError


@dataclass(frozen=True)
class Slot:
    """One worker's share: its torch threads and the GPUs it may see (None: leave
    ``CUDA_VISIBLE_DEVICES`` as it is)."""

    index: int
    threads: int
    visible_gpus: str | None


def gpu_capacity(n_gpus: int, gpus_per_trial: float) -> int:
    """How many trials fit on ``n_gpus`` GPUs at once."""
    if gpus_per_trial <= 0 or n_gpus == 0:
        return 0
    if gpus_per_trial <= 1:
        return n_gpus * int(1 // gpus_per_trial + 1e-9)
    return n_gpus // math.ceil(gpus_per_trial)


def plan(
    *,
    workers: int | None,
    cores: int,
    cpus_per_trial: int | None = None,
    gpu_ids: list[str] | None = None,
    gpus_per_trial: float = 0.0,
    pinned_gpu: str | None = None,
) -> list[Slot]:
    """Place workers.

    Args:
        workers: Requested worker count; None picks as many as the resources allow.
        cores: CPU cores of this machine.
        gpu_ids: The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` names them.
        pinned_gpu: ``device: cuda:N``: every worker on that one GPU.
    """
    gpu_ids = gpu_ids or []
    if pinned_gpu is not None:
        count = workers or max(1, gpu_capacity(1, gpus_per_trial) or 1)
        groups: list[str | None] = [pinned_gpu] * count
    elif gpu_ids and gpus_per_trial > 0:
        capacity = gpu_capacity(len(gpu_ids), gpus_per_trial)
        if capacity == 0:
            raise ValueError(
                f"gpus_per_trial {gpus_per_trial:g} needs more GPUs than the {len(gpu_ids)} visible"
            )
        count = workers or capacity
        if gpus_per_trial <= 1:
            groups = [gpu_ids[i % len(gpu_ids)] for i in range(count)]
        else:
            k = math.ceil(gpus_per_trial)
            sets = [",".join(gpu_ids[j * k : (j + 1) * k]) for j in range(len(gpu_ids) // k)]
            groups = [sets[i % len(sets)] for i in range(count)]
    else:
        count = workers or max(1, cores // (cpus_per_trial or 1))
        groups = [None] * count
    threads = cpus_per_trial or max(1, cores // count)
    return [Slot(i, threads, group) for i, group in enumerate(groups)]


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; anything else is taken as written.

    Raises:
        ConfigError: CUDA was asked for on a machine without it.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device", f"{name!r} was asked for but CUDA is not available; use auto or cpu"
        )
    return device


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


__all__ = ["Slot", "available_memory", "gpu_capacity", "plan", "resolve_device", "too_large"]
