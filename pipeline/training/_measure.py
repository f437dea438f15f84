"""What the pipeline measures of every trial without user code: the model's size, its
inference latency and the peak memory of its training.

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


__all__ = ["LATENCY_RUNS", "LATENCY_WARMUP", "PeakMemory", "count_params", "latency_ms"]
