"""What the pipeline measures of every trial without user code: the model's size, its
inference latency and the peak memory of its training, and, before it is built for
real, whether it fits its device at all (built on the meta device, which allocates
nothing, its weights, gradients and optimizer state are weighed against the memory
free, so that a width of 10^9 fails one trial with a reason instead of getting its
worker killed).

``params`` and ``latency_ms`` are known as soon as the model is built, so a constraint on
them rejects a trial before its first epoch; ``peak_memory_mb`` and ``compute_seconds``
are known when it ends. See docs/multi-objective.md for what each number means.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import torch
from torch import nn

LATENCY_WARMUP = 3  # forward passes before timing: lazy initialization, caches, allocator
LATENCY_RUNS = 15  # timed forward passes; their median is the latency
_MB = 1024 * 1024


def count_params(model: nn.Module) -> int:
    """The trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def latency_ms(model: nn.Module, batch: Any, device: torch.device) -> float:
    """The median time of one forward pass over ``batch`` on ``device``, in milliseconds,
    in eval mode without gradients, after :data:`LATENCY_WARMUP` untimed passes. The
    model's training mode is restored."""
    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.no_grad():
            for i in range(LATENCY_WARMUP + LATENCY_RUNS):
                _sync(device)
                started = time.perf_counter()
                model(batch)
                _sync(device)
                if i >= LATENCY_WARMUP:
                    times.append((time.perf_counter() - started) * 1000.0)
    finally:
        model.train(was_training)
    return statistics.median(times)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_bytes() -> int | None:
    """The process's resident memory now (Linux); None where it cannot be read."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.mb``: the peak CUDA memory
    allocated inside the block on a CUDA device; on the CPU the peak growth of the
    process's resident memory over what it held when the block began, sampled every
    :attr:`every` seconds by a thread (where /proc is missing, the growth of the
    process's lifetime peak RSS, which shows only what exceeds earlier peaks)."""

    every = 0.005

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mb: float | None = None
        self._start = 0
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        now = _rss_bytes()
        if now is None:
            self._start = _lifetime_peak()
            return self
        self._start = self._peak = now
        self._thread = threading.Thread(target=self._sample, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            now = _rss_bytes()
            if now is not None and now > self._peak:
                self._peak = now

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
            self.mb = round(peak / _MB, 3)
            return
        if self._thread is None:
            self.mb = round(max(0, _lifetime_peak() - self._start) / _MB, 3)
            return
        self._stop.set()
        self._thread.join()
        now = _rss_bytes()
        self._peak = max(self._peak, now or 0)
        self.mb = round((self._peak - self._start) / _MB, 3)


def _lifetime_peak() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


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


__all__ = [
    "LATENCY_RUNS",
    "LATENCY_WARMUP",
    "PeakMemory",
    "available_memory",
    "count_params",
    "latency_ms",
    "too_large",
]
