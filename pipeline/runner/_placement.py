"""Resources per trial, as the tutorial's ``resources_per_trial``: worker placement on
CPU threads and GPUs, and the device a worker trains on.

Every worker runs one trial at a time, so resources per trial are resources per worker:
``cpus_per_trial`` torch threads and ``gpus_per_trial`` GPUs. A fraction shares a GPU
(0.5: two concurrent trials per GPU); workers go to GPUs round-robin and are pinned by
``CUDA_VISIBLE_DEVICES``, so inside a worker its GPU is ``cuda``.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from pipeline.config import StudyConfig
from pipeline.exceptions import ConfigError
from pipeline.storages import scheme_of


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


def start_method(device: str, storage: str, fresh_process: bool = False) -> str:
    """How worker processes start: forked from a fresh process on the CPU, else spawned.

    A forked worker inherits the imported modules (torch, optuna, the task) and starts
    its first trial about 3 s sooner on a 2-core machine. But a child forked after its
    parent ran a parallel torch operation hangs in its first one (libgomp's thread team
    does not survive fork), so only a caller that knows this process has not computed
    yet (``pipeline tune``) passes ``fresh_process``; ``compare``, which runs studies
    one after another in one process, and library callers get spawn. CUDA cannot be used
    in a forked child either, gRPC channels do not survive a fork, and macOS system
    libraries are not fork-safe: those are spawned too.
    """
    if (
        fresh_process
        and device == "cpu"
        and scheme_of(storage) != "grpc"
        and sys.platform == "linux"
    ):
        return "fork"
    return "spawn"


@contextlib.contextmanager
def visible_gpus(gpus: str | None) -> Iterator[None]:
    """``CUDA_VISIBLE_DEVICES`` set to ``gpus`` inside the block (None: unchanged)."""
    if gpus is None:
        yield
        return
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    try:
        yield
    finally:
        if inherited is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = inherited


def worker_slots(config: StudyConfig, remaining: int) -> list[Slot]:
    """Where this machine's workers run: threads each and, on CUDA, which GPU(s)."""
    gpu_ids: list[str] = []
    pinned = None
    gpus_per_trial = config.gpus_per_trial
    if config.device.startswith("cuda") or (config.device == "auto" and torch.cuda.is_available()):
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpu_ids = (
            [v.strip() for v in visible.split(",") if v.strip()]
            if visible is not None
            else [str(i) for i in range(torch.cuda.device_count())]
        )
        if ":" in config.device:
            pinned = gpu_ids[int(config.device.split(":")[1])]
        gpus_per_trial = gpus_per_trial or 1.0
    placement = {
        "cores": os.cpu_count() or 1,
        "cpus_per_trial": config.cpus_per_trial,
        "gpu_ids": gpu_ids,
        "gpus_per_trial": gpus_per_trial,
        "pinned_gpu": pinned,
    }
    try:
        capacity = len(plan(workers=config.workers, **placement))  # type: ignore[arg-type]
        # No more workers than trials left to run: a worker without a trial would only
        # race the others for one and record it as skipped.
        return plan(workers=min(capacity, max(1, remaining)), **placement)  # type: ignore[arg-type]
    except (ValueError, IndexError) as exc:
        raise ConfigError("gpus_per_trial", f"cannot place workers: {exc}") from None


__all__ = [
    "Slot",
    "gpu_capacity",
    "plan",
    "resolve_device",
    "start_method",
    "visible_gpus",
    "worker_slots",
]
