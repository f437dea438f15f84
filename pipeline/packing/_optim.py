"""SGD, Adam and AdamW over stacked parameters, each member with its own settings.

A packed model keeps every parameter as one tensor whose first dimension is the member.
:class:`PackedOptimizer` updates those tensors with the arithmetic of ``torch.optim``'s
single-tensor implementations (the same operations in the same order), but with the
learning rate, momentum, betas and weight decay of each member broadcast along that first
dimension, so that a member's weights follow the same path as in its solo run.

Each member's schedule is torch's own: a stand-in optimizer over one dummy parameter
carries the member's hyperparameters through the :func:`pipeline.training.make_scheduler`
schedule it would have had alone, and the update reads that member's current lr (and
momentum or beta1, which one-cycle varies) from it before every step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.training import make_optimizer, make_scheduler

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


def _column(row: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (K,) row of per-member values shaped (K, 1, 1, ...) to broadcast over ``like``."""
    return row.view(-1, *([1] * (like.dim() - 1)))


class PackedOptimizer:
    """One optimizer kind over stacked parameters, each member's own hyperparameters.

    The per-member values of every step of an epoch (learning rates, momenta, Adam's bias
    corrections) are worked out in float64 on the host when the epoch begins, as torch.optim
    works them out in Python floats, and sent to the device in one copy: a step itself
    copies nothing from the host, so it never waits for the GPU.

    Args:
        kind: sgd, adam or adamw (the pack's shared optimizer).
        hps: Each member's resolved hyperparameters, in member order.
        steps_per_epoch: Batches per epoch, for the schedules.
        epochs: The epochs the schedules span (the study's ``max_epochs``).
        device: Where the parameters are.
    """

    def __init__(
        self,
        kind: str,
        hps: Sequence[Mapping[str, Any]],
        steps_per_epoch: int,
        epochs: int,
        device: torch.device,
    ) -> None:
        if kind not in PACKABLE_OPTIMIZERS:
            raise ValueError(f"cannot pack optimizer {kind!r}; expected one of sgd, adam, adamw")
        self.kind, self.device = kind, device
        self.stand_ins = [make_optimizer(kind, [nn.Parameter(torch.zeros(1))], hp) for hp in hps]
        self.schedules = [
            make_scheduler(opt, hp, steps_per_epoch, epochs)
            for opt, hp in zip(self.stand_ins, hps, strict=True)
        ]
        for stand_in in self.stand_ins:
            stand_in.step()  # no gradient, so no change; torch then sees step before schedule
        self.nesterov = torch.tensor([bool(hp["nesterov"]) for hp in hps], device=device)
        self.state: dict[str, list[torch.Tensor]] = {}
        self.steps = 0  # taken so far, as torch.optim counts them for Adam's corrections
        self.table = torch.empty(0)  # (steps of this epoch, fields, members)
        self.row = 0

    def _settings(self) -> np.ndarray:
        """The members' settings for the next step, (4, K): lr, weight decay, and momentum
        or Adam's betas; then every schedule moves on by one step."""
        groups = [opt.param_groups[0] for opt in self.stand_ins]
        if self.kind == "sgd":
            pairs = [(g["momentum"], 0.0) for g in groups]
        else:
            pairs = [tuple(g["betas"]) for g in groups]
        values = np.array(
            [[g["lr"], g["weight_decay"], a, b] for g, (a, b) in zip(groups, pairs, strict=True)],
            dtype=np.float64,
        ).T
        for schedule in self.schedules:
            if schedule is not None:
                schedule.step()
        return values

    def begin_epoch(self, steps: int) -> None:
        """Work out every step of the coming epoch and send the table to the device."""
        constant = all(schedule is None for schedule in self.schedules)
        first = self._settings()
        settings = (
            [first] * steps if constant else [first] + [self._settings() for _ in range(steps - 1)]
        )
        lr, wd, a, b = np.stack(settings, axis=1)  # each (steps, K)
        if self.kind == "sgd":
            fields = [lr, wd, a]
        else:
            t = self.steps + 1 + np.arange(steps)[:, None]
            eps = np.array([opt.param_groups[0]["eps"] for opt in self.stand_ins])
            fields = [
                lr / (1 - a**t),  # step size
                wd,
                1 - a,  # the weight of lerp towards the gradient
                b,
                1 - b,
                np.sqrt(1 - b**t),  # bias correction of the second moment
                np.broadcast_to(eps, lr.shape),
                1 - lr * wd,  # AdamW's decay factor
            ]
        table = np.stack(fields, axis=1)  # (steps, fields, K)
        self.table = torch.from_numpy(table).to(self.device, torch.float32)
        self.row = 0

    @torch.no_grad()
    def step(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor]) -> None:
        """Update ``params`` in place from ``grads`` (both stacked, same keys) with the
        next row of the epoch's table."""
        row = self.table[self.row]
        self.row += 1
        self.steps += 1
        for name, param in params.items():
            state = self.state.setdefault(name, [torch.zeros_like(param) for _ in range(2)])
            if self.kind == "sgd":
                self._sgd(param, grads[name], state[0], row)
            else:
                self._adam(param, grads[name], state, row)

    def _sgd(
        self, param: torch.Tensor, grad: torch.Tensor, buf: torch.Tensor, row: torch.Tensor
    ) -> None:
        # torch.optim.SGD without dampening: the first buffer is d_p itself, which is what
        # momentum x 0 + d_p gives, so one formula serves every member and every step.
        lr, wd, momentum = (_column(r, param) for r in row)
        d_p = grad + wd * param
        buf.mul_(momentum).add_(d_p)
        d_p = torch.where(_column(self.nesterov, param), d_p + momentum * buf, buf)
        param.sub_(lr * d_p)

    def _adam(
        self, param: torch.Tensor, grad: torch.Tensor, state: list[torch.Tensor], row: torch.Tensor
    ) -> None:
        exp_avg, exp_avg_sq = state
        step_size, wd, lerp, beta2, rest2, correction, eps, decay = (_column(r, param) for r in row)
        if self.kind == "adamw":
            param.mul_(decay)
        else:
            grad = grad + wd * param
        exp_avg.lerp_(grad, lerp)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad * rest2)
        denom = (exp_avg_sq.sqrt() / correction).add_(eps)
        param.sub_(step_size * exp_avg / denom)

    def keep(self, members: Sequence[int]) -> None:
        """Keep only ``members`` (indices into the current pack), in that order."""
        index = list(members)
        self.stand_ins = [self.stand_ins[i] for i in index]
        self.schedules = [self.schedules[i] for i in index]
        at = torch.tensor(index, device=self.device, dtype=torch.long)
        self.nesterov = self.nesterov.index_select(0, at)
        if self.table.numel():
            self.table = self.table.index_select(2, at)
        for name, tensors in self.state.items():
            self.state[name] = [t.index_select(0, at) for t in tensors]


def clip_members(grads: dict[str, torch.Tensor], clips: torch.Tensor) -> None:
    """Scale each member's gradients to norm ``clips[k]`` at most (0: leave them), as
    ``nn.utils.clip_grad_norm_`` does for one model: the norm of all its gradients
    together, and the factor ``clip / (norm + 1e-6)`` capped at 1."""
    # The norm of the per-tensor norms, the order in which clip_grad_norm_ sums.
    norms = [torch.linalg.vector_norm(g.reshape(len(g), -1), dim=1) for g in grads.values()]
    norm = torch.linalg.vector_norm(torch.stack(norms), dim=0)
    factor = torch.where(clips > 0, (clips / (norm + 1e-6)).clamp(max=1.0), torch.ones_like(norm))
    for grad in grads.values():
        grad.mul_(_column(factor, grad))


__all__ = ["PACKABLE_OPTIMIZERS", "PER_MEMBER_SETTINGS", "PackedOptimizer", "clip_members"]
