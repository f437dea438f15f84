"""The metrics of each task kind, computed over a whole split.

Every batch adds to running sums kept on the device; the split's metrics are read back
in one transfer at the end, so scoring never waits on the GPU batch by batch. Macro-F1
comes from a confusion matrix built with ``bincount``; R² is 1 - SSE/SST of the split.
"""

from __future__ import annotations

import math

import torch

# The metrics each kind reports, without the split's prefix (callers add val_ / test_).
KIND_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("loss", "accuracy", "macro_f1"),
    "regression": ("loss", "rmse", "mae", "r2"),
}


def align(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Regression outputs in the targets' shape: a model's (N, 1) output against labels of
    shape (N,) would otherwise broadcast to (N, N) and give a wrong loss without error."""
    if outputs.shape == targets.shape:
        return outputs
    if outputs.numel() != targets.numel():
        raise ValueError(
            f"the model outputs shape {tuple(outputs.shape)} for targets of shape "
            f"{tuple(targets.shape)}; its output width must match the target columns"
        )
    return outputs.reshape(targets.shape)


def _sum_dtype(device: torch.device) -> torch.dtype:
    # float64 keeps SST exact enough over large splits; MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


class ClassificationMeter:
    """Loss, accuracy and macro-F1 over a split. Macro-F1 averages the classes that occur
    in the labels or the predictions, as scikit-learn's ``f1_score(average="macro")``."""

    def __init__(self, device: torch.device) -> None:
        self.loss_sum = torch.zeros((), device=device, dtype=_sum_dtype(device))
        self.confusion: torch.Tensor | None = None
        self.count = 0

    def update(self, logits: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor) -> None:
        """Add one batch: its logits (N, classes), labels (N,) and mean loss."""
        classes = logits.shape[-1]
        cells = targets * classes + logits.argmax(dim=-1)
        counts = torch.bincount(cells, minlength=classes * classes).reshape(classes, classes)
        self.confusion = counts if self.confusion is None else self.confusion + counts
        self.loss_sum += loss.detach() * len(targets)
        self.count += len(targets)

    def result(self) -> dict[str, float]:
        """``loss``, ``accuracy`` and ``macro_f1``; NaN for an empty split."""
        if self.confusion is None or self.count == 0:
            return dict.fromkeys(KIND_METRICS["classification"], math.nan)
        confusion = self.confusion.to(self.loss_sum.dtype)
        tp = confusion.diagonal()
        fp_fn = confusion.sum(0) + confusion.sum(1) - 2 * tp
        present = (tp + fp_fn) > 0
        f1 = (2 * tp / (2 * tp + fp_fn).clamp(min=1))[present].mean()
        loss, correct, macro = torch.stack([self.loss_sum, tp.sum(), f1]).tolist()
        return {"loss": loss / self.count, "accuracy": correct / self.count, "macro_f1": macro}


class RegressionMeter:
    """MSE, RMSE, MAE and R² over a split. With several target columns MSE and MAE are
    means over every value, RMSE is the square root of that MSE, and R² is the mean of
    the columns' R² (scikit-learn's ``multioutput="uniform_average"``)."""

    def __init__(self, device: torch.device) -> None:
        self.dtype = _sum_dtype(device)
        self.loss_sum = torch.zeros((), device=device, dtype=self.dtype)
        self.sums: torch.Tensor | None = None  # rows: SSE, SAE, sum of y, sum of y², per column
        self.count = 0

    def update(self, outputs: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor) -> None:
        """Add one batch: its outputs, targets (N,) or (N, k) and mean loss."""
        y = targets.to(self.dtype).reshape(len(targets), -1)
        error = align(outputs, targets).to(self.dtype).reshape(len(targets), -1) - y
        sums = torch.stack([error.square().sum(0), error.abs().sum(0), y.sum(0), y.square().sum(0)])
        self.sums = sums if self.sums is None else self.sums + sums
        self.loss_sum += loss.detach() * len(targets)
        self.count += len(targets)

    def result(self) -> dict[str, float]:
        """``loss``, ``rmse``, ``mae`` and ``r2``; NaN for an empty split."""
        if self.sums is None or self.count == 0:
            return dict.fromkeys(KIND_METRICS["regression"], math.nan)
        n, (sse, sae, total, squares) = self.count, self.sums
        sst = squares - total.square() / n
        # scikit-learn's convention for a constant column: 1 if predicted exactly, else 0.
        r2 = torch.where(sst > 0, 1 - sse / sst.clamp(min=1e-300), (sse == 0).to(self.dtype))
        values = torch.stack([self.loss_sum, sse.mean(), sae.mean(), r2.mean()]).tolist()
        loss, mse, mae, mean_r2 = values
        return {"loss": loss / n, "rmse": math.sqrt(mse / n), "mae": mae / n, "r2": mean_r2}


Meter = ClassificationMeter | RegressionMeter


def meter_for(kind: str, device: torch.device) -> Meter:
    """A fresh meter for a task of ``kind``."""
    return ClassificationMeter(device) if kind == "classification" else RegressionMeter(device)


__all__ = ["KIND_METRICS", "ClassificationMeter", "Meter", "RegressionMeter", "align", "meter_for"]
