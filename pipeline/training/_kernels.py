"""Which convolution kernels a trial trains with on a CPU, chosen by timing both.

PyTorch runs CPU convolutions with oneDNN when it is built in. oneDNN pays a fixed cost
per call that small inputs never earn back: on the Ray Tune tutorial's network over
MNIST-1D a training step at batch 2 to 8 takes about 0.6x as long with PyTorch's native
kernels, while at batch 256 native takes 2.9x as long (2 cores of an AMD EPYC; see
benchmarks/RESULTS.md). No batch size separates the two on every network and machine,
so the loop times a forward and backward pass of the trial's own model on its first
batch with each and keeps the faster, as ``torch.backends.cudnn.benchmark`` does for
cuDNN's algorithms.

The timing leaves the model as it was: it runs in eval mode (no batch-norm statistics
move, no dropout draws a number) and the gradients it makes are dropped. The choice is
remembered for the rest of the process by the model's convolutions and the batch's
shape, so a worker times each shape once: two passes of each kind when one is plainly
faster (a large model on a CPU pays seconds a pass), four when it is close. oneDNN stays
unless the native kernels are clearly faster (``NATIVE_MARGIN``), so that timing noise
rarely flips a choice; a choice changes the last bits of a trial's numbers, not its
course.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

NATIVE_MARGIN = 0.85  # native kernels must take at most this share of oneDNN's time
TIMED_PASSES = 3  # per kind at most, alternating, after one untimed pass each; fastest counts
CLEAR = (0.6, 1.4)  # a first timed ratio (native / oneDNN) outside this settles it at once

_chosen: dict[tuple[object, ...], bool] = {}  # (convolutions, batch shape...) -> use oneDNN


def _signature(model: nn.Module) -> tuple[object, ...]:
    return tuple(
        (
            type(m).__name__,
            m.in_channels,
            m.out_channels,
            m.kernel_size,
            m.stride,
            m.padding,
            m.dilation,
            m.groups,
        )
        for m in model.modules()
        if isinstance(m, _ConvNd)
    )


def choose_onednn(
    model: nn.Module,
    batch: torch.Tensor,
    loss: Callable[[nn.Module, torch.Tensor], torch.Tensor],
) -> bool | None:
    """Whether ``model`` should train with oneDNN's convolutions on batches shaped like
    ``batch``; None where there is no choice to make (not a CPU, no convolution, a
    PyTorch without oneDNN). ``loss(model, batch)`` is one forward pass to a scalar."""
    if batch.device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return None
    convolutions = _signature(model)
    if not convolutions:
        return None
    key = (convolutions, tuple(batch.shape), batch.dtype, torch.get_num_threads())
    if key not in _chosen:
        _chosen[key] = _time_both(model, batch, loss)
    return _chosen[key]


def _time_both(
    model: nn.Module, batch: torch.Tensor, loss: Callable[[nn.Module, torch.Tensor], torch.Tensor]
) -> bool:
    was_training = model.training
    model.eval()
    best = {True: float("inf"), False: float("inf")}
    try:
        for rep in range(TIMED_PASSES + 1):
            for onednn in (True, False):
                with onednn_convolutions(onednn):
                    started = time.perf_counter()
                    loss(model, batch).backward()
                    if rep:  # the first pass of each pays one-time set-up
                        best[onednn] = min(best[onednn], time.perf_counter() - started)
            # A large model pays seconds a pass: stop once the answer is plain.
            if rep == 1 and not CLEAR[0] <= best[False] / best[True] <= CLEAR[1]:
                break
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    return not best[False] < NATIVE_MARGIN * best[True]


@contextlib.contextmanager
def onednn_convolutions(enabled: bool | None) -> Iterator[None]:
    """CPU convolutions with oneDNN (True) or PyTorch's native kernels (False) inside the
    block; None leaves the setting as it is."""
    if enabled is None:
        yield
        return
    mkldnn = torch.backends.mkldnn
    before = mkldnn.enabled
    mkldnn.enabled = enabled  # type: ignore[assignment]  # a module property, set as torch documents
    try:
        yield
    finally:
        mkldnn.enabled = before


__all__ = ["choose_onednn", "onednn_convolutions"]
