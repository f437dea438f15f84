"""SGD, Adam and AdamW over stacked parameters, each member with its own settings.

A packed model keeps every parameter as one tensor whose first dimension is the member.
:class:`PackedOptimizer` updates those tensors with the arithmetic of ``torch.optim``'s
single-tensor implementations (the same operations in the same order), but with the
learning rate, momentum, betas and weight decay of each member broadcast along that first
dimension, so that a member's weights follow the same path as in its solo run.

Each member's schedule is torch's own: a stand-in optimizer over one dummy parameter
carries the member's hyperparameters through the :func:`pipeline.optim.make_scheduler`
schedule it would have had alone, and the update reads that member's current lr (and
momentum or beta1, which one-cycle varies) from it before every step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from pipeline.optim import make_optimizer, make_scheduler

PACKABLE_OPTIMIZERS = ("sgd", "adam", "adamw")

# The settings a member may hold on its own; every other one is shared by the pack.
PER_MEMBER_SETTINGS = frozenset(
    {
        "lr",
        "momentum",
        "nesterov",
        "weight_decay",
        "scheduler",
        "gamma",
        "step_size",
        "warmup_epochs",
        "grad_clip",
        "loader_workers",  # unused by tensor splits, which every packed task has
    }
)


def _column(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """Per-member values shaped (K, 1, 1, ...) to broadcast over a stacked ``like``."""
    column = torch.tensor(values, dtype=like.dtype, device=like.device)
    return column.view(-1, *([1] * (like.dim() - 1)))


class PackedOptimizer:
    """One optimizer kind over stacked parameters, each member's own hyperparameters.

    Args:
        kind: sgd, adam or adamw (the pack's shared optimizer).
        hps: Each member's resolved hyperparameters, in member order.
        steps_per_epoch: Batches per epoch, for the schedules.
        epochs: The epochs the schedules span (the study's ``max_epochs``).
    """

    def __init__(
        self, kind: str, hps: Sequence[Mapping[str, Any]], steps_per_epoch: int, epochs: int
    ) -> None:
        if kind not in PACKABLE_OPTIMIZERS:
            raise ValueError(f"cannot pack optimizer {kind!r}; expected one of sgd, adam, adamw")
        self.kind = kind
        self.stand_ins = [make_optimizer(kind, [nn.Parameter(torch.zeros(1))], hp) for hp in hps]
        self.schedules = [
            make_scheduler(opt, hp, steps_per_epoch, epochs)
            for opt, hp in zip(self.stand_ins, hps, strict=True)
        ]
        for stand_in in self.stand_ins:
            stand_in.step()  # no gradient, so no change; torch then sees step before schedule
        self.nesterov = [bool(hp.get("nesterov", False)) for hp in hps]
        self.state: dict[str, list[torch.Tensor]] = {}
        self.steps = 0

    def _group(self, key: str) -> list[float]:
        return [float(opt.param_groups[0][key]) for opt in self.stand_ins]

    def _betas(self, index: int) -> list[float]:
        return [float(opt.param_groups[0]["betas"][index]) for opt in self.stand_ins]

    @torch.no_grad()
    def step(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor]) -> None:
        """Update ``params`` in place from ``grads`` (both stacked, same keys), then
        advance every member's schedule by one batch."""
        self.steps += 1
        lr, wd = self._group("lr"), self._group("weight_decay")
        for name, param in params.items():
            state = self.state.setdefault(name, [torch.zeros_like(param) for _ in range(2)])
            if self.kind == "sgd":
                self._sgd(param, grads[name], state[0], lr, wd)
            else:
                self._adam(param, grads[name], state, lr, wd)
        for schedule in self.schedules:
            if schedule is not None:
                schedule.step()

    def _sgd(
        self,
        param: torch.Tensor,
        grad: torch.Tensor,
        buf: torch.Tensor,
        lr: list[float],
        wd: list[float],
    ) -> None:
        # torch.optim.SGD without dampening: the first buffer is d_p itself, which is what
        # momentum x 0 + d_p gives, so one formula serves every member and every step.
        momentum = _column(self._group("momentum"), param)
        d_p = grad + _column(wd, param) * param
        buf.mul_(momentum).add_(d_p)
        nesterov = _column([float(n) for n in self.nesterov], param)
        d_p = torch.where(nesterov > 0, d_p + momentum * buf, buf)
        param.sub_(_column(lr, param) * d_p)

    def _adam(
        self,
        param: torch.Tensor,
        grad: torch.Tensor,
        state: list[torch.Tensor],
        lr: list[float],
        wd: list[float],
    ) -> None:
        exp_avg, exp_avg_sq = state
        beta1, beta2 = self._betas(0), self._betas(1)
        eps = [float(opt.param_groups[0]["eps"]) for opt in self.stand_ins]
        # Scalars are combined in Python floats, as torch.optim does, before they become
        # float32 columns: 1 - 0.999 rounded after the subtraction, not before.
        if self.kind == "adamw":
            param.mul_(_column([1 - r * w for r, w in zip(lr, wd, strict=True)], param))
        else:
            grad = grad + _column(wd, param) * param
        exp_avg.lerp_(grad, _column([1 - b for b in beta1], param))
        exp_avg_sq.mul_(_column(beta2, param)).addcmul_(
            grad, grad * _column([1 - b for b in beta2], param)
        )
        t = self.steps
        step_size = [rate / (1 - b1**t) for rate, b1 in zip(lr, beta1, strict=True)]
        correction = [(1 - b2**t) ** 0.5 for b2 in beta2]
        denom = (exp_avg_sq.sqrt() / _column(correction, param)).add_(_column(eps, param))
        param.sub_(_column(step_size, param) * exp_avg / denom)

    def keep(self, members: Sequence[int]) -> None:
        """Keep only ``members`` (indices into the current pack), in that order."""
        index = list(members)
        self.stand_ins = [self.stand_ins[i] for i in index]
        self.schedules = [self.schedules[i] for i in index]
        self.nesterov = [self.nesterov[i] for i in index]
        for name, tensors in self.state.items():
            at = torch.tensor(index, device=tensors[0].device, dtype=torch.long)
            self.state[name] = [t.index_select(0, at) for t in tensors]


def clip_members(grads: dict[str, torch.Tensor], clips: Sequence[float]) -> None:
    """Scale each member's gradients to norm ``clips[k]`` at most (0: leave them), as
    ``nn.utils.clip_grad_norm_`` does for one model: the norm of all its gradients
    together, and the factor ``clip / (norm + 1e-6)`` capped at 1."""
    if not any(c > 0 for c in clips):
        return
    first = next(iter(grads.values()))
    # The norm of the per-tensor norms, the order in which clip_grad_norm_ sums.
    norms = [torch.linalg.vector_norm(g.reshape(len(g), -1), dim=1) for g in grads.values()]
    norm = torch.linalg.vector_norm(torch.stack(norms), dim=0)
    limit = torch.tensor(clips, dtype=first.dtype, device=first.device)
    factor = torch.where(limit > 0, (limit / (norm + 1e-6)).clamp(max=1.0), torch.ones_like(norm))
    for grad in grads.values():
        grad.mul_(factor.view(-1, *([1] * (grad.dim() - 1))))


__all__ = ["PACKABLE_OPTIMIZERS", "PER_MEMBER_SETTINGS", "PackedOptimizer", "clip_members"]
