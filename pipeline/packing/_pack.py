"""Trial packing: many small trials of one model family trained as one vmapped model.

On a GPU a small network's trial is bound by kernel launches, not arithmetic; K members
trained as one model launch each kernel once for all of them. A :class:`Pack` builds
each member's model as its solo run would (its own seed, then ``build_model``), pads the
widths a task names (the tutorial's ``l1``/``l2``, say) to the pack's largest, stacks the
padded copies with ``torch.func.stack_module_state`` and trains them with
``vmap(grad_and_value(...))`` over ``functional_call``.

Why a member equals its solo run: its weights sit in the leading slice of each padded
tensor and the padding is zero, so padded units output zero, feed zero-weight columns
and get zero gradients (the masks keep them at zero whatever the arithmetic does); each
member draws its own batch order from its own generator, seeded as the solo loop seeds
it; and :class:`pipeline.packing._optim.PackedOptimizer` applies torch.optim's update with
the member's own settings. Members never mix: a member that diverges or is pruned is
dropped and the others go on unchanged. :meth:`Pack.state_dict` unpacks a member back
to the ``state_dict`` of its solo model.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from pipeline.packing._optim import (
    PACKABLE_OPTIMIZERS,
    PER_MEMBER_SETTINGS,
    PackedOptimizer,
    clip_members,
)
from pipeline.tasks import KIND_METRICS, Splits, Task, meter_for
from pipeline.training import EVAL_BATCH, EpochResult, autocast_context, loss_function

Tensors = dict[str, torch.Tensor]


def family(task: Task, hp: Mapping[str, Any]) -> Hashable | None:
    """What members of one pack share, or None when this configuration cannot be packed
    (the task names no widths for it, a hook replaces part of the built-in recipe, the
    optimizer is not sgd, adam or adamw, or batches are augmented)."""
    if task.pack_widths is None or any(
        hook is not None for hook in (task.loss, task.metrics, task.optimizer, task.outputs)
    ):
        return None
    widths = task.pack_widths(hp)
    if widths is None or hp["optimizer"] not in PACKABLE_OPTIMIZERS or hp.get("augment"):
        return None
    shared = sorted((k, repr(v)) for k, v in hp.items() if k not in PER_MEMBER_SETTINGS)
    return tuple((k, v) for k, v in shared if k not in widths)


def _leading(shape: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(0, size) for size in shape)


def _padded(solo: nn.Module, template: nn.Module, device: torch.device) -> nn.Module:
    """A copy of ``template`` (the widest member's shape) holding ``solo``'s tensors in
    the leading slice of each of its own, zeros elsewhere."""
    wide = copy.deepcopy(template).to_empty(device=device)
    own = solo.state_dict()
    with torch.no_grad():
        for name, tensor in wide.state_dict().items():
            tensor.zero_()
            tensor[_leading(own[name].shape)] = own[name].to(device)
    return wide


class Pack:
    """K members of one :func:`family`, trained together.

    Args:
        task: The task whose ``build_model`` makes each member's solo model.
        splits: The task's data, tensors on ``device``.
        hps: Each member's resolved hyperparameters (see
            :func:`pipeline.training.hyperparameters`), all of one family.
        seeds: Each member's seed: it seeds the model's initialisation and its shuffling.
        epochs: The study's ``max_epochs`` (the span of the members' schedules).
        autocast: ``torch.bfloat16`` for mixed-precision forward passes, or None.
    """

    def __init__(
        self,
        task: Task,
        splits: Splits,
        hps: Sequence[Mapping[str, Any]],
        seeds: Sequence[int],
        epochs: int,
        device: torch.device,
        autocast: torch.dtype | None = None,
    ) -> None:
        assert task.pack_widths is not None and splits.train.x is not None
        if len({family(task, hp) for hp in hps}) != 1 or family(task, hps[0]) is None:
            raise ValueError("the members of a pack must share one packable family")
        self.task, self.splits, self.device, self.autocast = task, splits, device, autocast
        self.hps = [dict(hp) for hp in hps]
        self.members = list(range(len(hps)))  # the caller's indices of the live members
        widths = task.pack_widths(hps[0]) or ()
        widest = {**hps[0], **{w: max(hp[w] for hp in hps) for w in widths}}
        with torch.device("meta"):
            template = task.build_model(widest, splits)
        solos = []
        for hp, seed in zip(hps, seeds, strict=True):
            torch.manual_seed(seed)  # what the solo run does before building its model
            solos.append(task.build_model(hp, splits))
        self.shapes = [{k: v.shape for k, v in solo.state_dict().items()} for solo in solos]
        params, buffers = stack_module_state([_padded(s, template, device) for s in solos])
        self.params: Tensors = {k: v.detach() for k, v in params.items()}
        self.buffers: Tensors = {k: v.detach() for k, v in buffers.items()}
        self.masks = self._masks()
        self.base = template  # on the meta device: functional_call supplies every tensor
        self.batch_size = int(hps[0]["batch_size"])
        steps = max(math.ceil(len(splits.train) / self.batch_size), 1)
        self.optimizer = PackedOptimizer(str(hps[0]["optimizer"]), hps, steps, epochs, device)
        clips = [float(hp["grad_clip"]) for hp in hps]
        self.clips = torch.tensor(clips, device=device) if any(c > 0 for c in clips) else None
        self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        self.loss_fn = loss_function(task, float(hps[0]["label_smoothing"]))
        self.eval_loss = loss_function(task)
        self.epoch = 0

    def _masks(self) -> Tensors:
        """1 over each member's own slice of a padded parameter, 0 over the padding; only
        for the parameters that some member does not fill."""
        masks = {}
        for name, stacked in self.params.items():
            if all(shapes[name] == stacked.shape[1:] for shapes in self.shapes):
                continue
            mask = torch.zeros_like(stacked)
            for k, shapes in enumerate(self.shapes):
                mask[k][_leading(shapes[name])] = 1
            masks[name] = mask
        return masks

    def _forward(self, params: Tensors, buffers: Tensors, x: torch.Tensor) -> torch.Tensor:
        with autocast_context(self.device, self.autocast):
            out = functional_call(self.base, (params, buffers), (x,))
        return out.float()

    def _loss(self, params: Tensors, buffers: Tensors, x: torch.Tensor, y: torch.Tensor) -> Any:
        return self.loss_fn(self._forward(params, buffers, x), y)

    def gradients(self, x: torch.Tensor, y: torch.Tensor) -> tuple[Tensors, torch.Tensor]:
        """Each member's gradients and loss on its own batch: ``x`` is (K, batch, ...),
        ``y`` (K, batch). The gradients are masked to the members' own slices."""
        self.base.train()
        grads, loss = vmap(grad_and_value(self._loss))(self.params, self.buffers, x, y)
        for name, mask in self.masks.items():
            grads[name].mul_(mask)
        return grads, loss

    def train_epoch(self) -> list[EpochResult]:
        """One epoch for every live member: its own shuffled batches, its own updates,
        then its validation scores. Returns one result per live member, in order."""
        started = time.perf_counter()
        self.epoch += 1
        x, y = self.splits.train.x, self.splits.train.y
        assert x is not None and y is not None
        perms = torch.stack(
            [torch.randperm(len(y), device=x.device, generator=g) for g in self.generators]
        )
        self.optimizer.begin_epoch(math.ceil(len(y) / self.batch_size))
        loss_sum = torch.zeros(len(self.members), device=x.device)
        for start in range(0, len(y), self.batch_size):
            index = perms[:, start : start + self.batch_size]
            grads, loss = self.gradients(x[index], y[index])
            if self.clips is not None:
                clip_members(grads, self.clips)
            self.optimizer.step(self.params, grads)
            loss_sum += loss.detach() * index.shape[1]
        train_losses = (loss_sum / max(len(y), 1)).tolist()
        results = []
        scores = self.scores(self.splits.val)
        names = KIND_METRICS[self.task.kind]
        seconds = (time.perf_counter() - started) / len(self.members)
        for loss, score in zip(train_losses, scores, strict=True):
            if not math.isfinite(loss):
                score = dict.fromkeys(names, math.nan)
            metrics = {"train_loss": loss, **{f"val_{k}": v for k, v in score.items()}}
            results.append(EpochResult(self.epoch, metrics, seconds))
        return results

    @torch.no_grad()
    def scores(self, split: Any) -> list[dict[str, float]]:
        """Every live member's metrics over ``split``, as :func:`pipeline.training.evaluate`
        gives for one model (the same batches of ``EVAL_BATCH`` rows)."""
        self.base.eval()
        forward = vmap(self._forward, in_dims=(0, 0, None))
        meters = [meter_for(self.task.kind, split.x.device) for _ in self.members]
        for start in range(0, len(split.y), EVAL_BATCH):
            xb, yb = split.x[start : start + EVAL_BATCH], split.y[start : start + EVAL_BATCH]
            out = forward(self.params, self.buffers, xb)
            for k, meter in enumerate(meters):
                meter.update(out[k], yb, self.eval_loss(out[k], yb))
        return [meter.result() for meter in meters]

    def drop(self, members: Sequence[int]) -> None:
        """Remove ``members`` (the caller's indices) from the pack; the others go on
        exactly as they would have."""
        gone = set(members)
        keep = [i for i, member in enumerate(self.members) if member not in gone]
        if len(keep) == len(self.members):
            return
        at = torch.tensor(keep, device=self.device, dtype=torch.long)
        for tensors in (self.params, self.buffers, self.masks):
            for name, stacked in tensors.items():
                tensors[name] = stacked.index_select(0, at)
        self.optimizer.keep(keep)
        if self.clips is not None:
            self.clips = self.clips.index_select(0, at)
        for attr in ("members", "hps", "shapes", "generators"):
            setattr(self, attr, [getattr(self, attr)[i] for i in keep])

    def state_dict(self, member: int) -> dict[str, torch.Tensor]:
        """The ``state_dict`` of ``member``'s solo model (on the CPU): its slices of the
        padded tensors."""
        k = self.members.index(member)
        stacked = {**self.params, **self.buffers}
        return {
            name: stacked[name][k][_leading(shape)].detach().cpu().clone()
            for name, shape in self.shapes[k].items()
        }

    def model(self, member: int) -> nn.Module:
        """``member``'s solo model holding its trained weights, on the pack's device."""
        k = self.members.index(member)
        solo = self.task.build_model(self.hps[k], self.splits).to(self.device)
        solo.load_state_dict(self.state_dict(member))
        return solo


__all__ = ["Pack", "family"]
