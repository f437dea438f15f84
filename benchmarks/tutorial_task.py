"""The benchmark task, written the way a user of a bare tuner would write it.

The Ray Tune tutorial's network with 1-D convolutions on MNIST-1D (the project's
``mnist1d`` task, ``arch: tutorial``), the tutorial's search space, SGD with momentum
0.9, at most 10 epochs, successive halving with grace period 1 and reduction factor 2,
20 trials, 2 at a time. The bare Optuna script and the Ray Tune script import this
module; the project runs the same task from a study file (:func:`study_config`).

Every tool gets the same 20 configurations in the same order for a given seed
(:func:`draw_configs`, from the tutorial's distributions), so that the tools differ in
how they run trials, not in which trials they happen to draw (:func:`trial_seed` makes
the weights and batch order of trial i the same too). The project gets them as
its study file's ``enqueue``, the bare script through ``enqueue_trial`` and Ray Tune as
``points_to_evaluate``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.tasks import Splits
from pipeline.tasks._mnist1d import TutorialNet1d, mnist1d

N_TRIALS = 20
MAX_EPOCHS = 10
GRACE_PERIOD = 1
REDUCTION_FACTOR = 2
CONCURRENT = 2
MOMENTUM = 0.9
BATCH_SIZES = [2, 4, 8, 16]
# The project's mnist1d defaults: 3600 train, 400 validation, 1000 test signals.
DATA_OPTIONS = {"val_fraction": 0.1, "split_seed": 0, "data_seed": 42}


def draw_configs(seed: int, n: int = N_TRIALS) -> list[dict[str, Any]]:
    """``n`` configurations from the tutorial's distributions: l1, l2 = 2**randint(2, 9),
    lr loguniform(1e-4, 1e-1), batch_size from [2, 4, 8, 16]."""
    rng = np.random.default_rng(seed)
    return [
        {
            "l1": int(2 ** rng.integers(2, 9)),
            "l2": int(2 ** rng.integers(2, 9)),
            "lr": float(math.exp(rng.uniform(math.log(1e-4), math.log(1e-1)))),
            "batch_size": int(rng.choice(BATCH_SIZES)),
        }
        for _ in range(n)
    ]


def trial_seed(study_seed: int, index: int) -> int:
    """The seed the project gives trial ``index`` of a study with ``seed: study_seed``
    (pipeline.training.TrialPlan.seed_of). The bare and Ray Tune scripts seed their trials the
    same way, so trial i starts from the same weights and batch order in every tool and
    the tools differ only in how they run and stop trials."""
    return (study_seed * 1_000_003 + index) % (2**63)


def load_data() -> Splits:
    """MNIST-1D generated offline (or read from the task's cache), split as the
    project's ``mnist1d`` task splits it."""
    task = mnist1d()
    return task.load(task.resolve_options(DATA_OPTIONS))


def build_model(config: dict[str, Any], splits: Splits) -> nn.Module:
    return TutorialNet1d(splits.train_x.shape[-1], config["l1"], config["l2"], splits.num_classes)


def make_optimizer(config: dict[str, Any], model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=MOMENTUM)


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
) -> None:
    """One epoch of a bare loop: shuffle indices, slice, forward, loss, backward, step."""
    model.train()
    perm = torch.randperm(len(y), generator=generator)
    for i in range(0, len(y), batch_size):
        idx = perm[i : i + batch_size]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@torch.no_grad()
def validate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy; NaN loss stays NaN."""
    model.eval()
    logits = model(x)
    loss = float(F.cross_entropy(logits, y))
    return loss, float((logits.argmax(1) == y).float().mean())


def timed_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    splits: Splits,
    batch_size: int,
    generator: torch.Generator,
) -> tuple[float, float, float]:
    """Train one epoch and validate: (val_loss, val_accuracy, seconds spent)."""
    started = time.perf_counter()
    train_epoch(model, optimizer, splits.train_x, splits.train_y, batch_size, generator)
    loss, acc = validate(model, splits.val_x, splits.val_y)
    return loss, acc, time.perf_counter() - started


def study_config(seed: int, pruner: str = "asha", workers: int = CONCURRENT) -> dict[str, Any]:
    """The project's study file for the same task, as data: random sampling (the
    harness adds the same configurations every tool gets as ``enqueue``)."""
    pruner_options: dict[str, dict[str, Any]] = {
        "asha": {"min_resource": GRACE_PERIOD, "reduction_factor": REDUCTION_FACTOR},
        "median": {},  # Optuna's defaults: 5 startup trials, no warm-up
        "none": {},
    }
    return {
        "study_name": f"bench-tutorial-{pruner}-{workers}w-{seed}",
        "task": {"name": "mnist1d", "options": DATA_OPTIONS},
        "metric": "val_loss",
        "direction": "minimize",
        "max_epochs": MAX_EPOCHS,
        "n_trials": N_TRIALS,
        "sampler": {"name": "random", "seed": seed},
        "pruner": {"name": pruner, "options": pruner_options[pruner]},
        "search_space": {
            "arch": "tutorial",
            "l1": {"type": "pow2", "low": 4, "high": 256},
            "l2": {"type": "pow2", "low": 4, "high": 256},
            "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
            "batch_size": {"type": "categorical", "choices": BATCH_SIZES},
            "optimizer": "sgd",
            "momentum": MOMENTUM,
        },
        "workers": workers,
        "device": "cpu",
        "seed": seed,
        "enqueue": draw_configs(seed),
    }


def retrain_test_accuracy(config: dict[str, Any], splits: Splits, seed: int = 0) -> float:
    """Retrain ``config`` from scratch for MAX_EPOCHS on the training split and score it
    on the test split: the same procedure for the best configuration of every tool."""
    torch.manual_seed(seed)
    model = build_model(config, splits)
    optimizer = make_optimizer(config, model)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(MAX_EPOCHS):
        train_epoch(
            model, optimizer, splits.train_x, splits.train_y, config["batch_size"], generator
        )
    return validate(model, splits.test_x, splits.test_y)[1]
