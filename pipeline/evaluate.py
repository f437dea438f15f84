"""Final evaluation: the best trial's checkpoint on the held-out test split, and
optionally the best configuration retrained on train + validation with several seeds."""

from __future__ import annotations

import statistics
from typing import Any

import optuna
import torch

from pipeline import checkpoints, winner
from pipeline.config import ConfigError, TaskConfig
from pipeline.errors import NoResult, UsageError
from pipeline.tasks import Splits, resolve_task
from pipeline.train import evaluate, fit
from pipeline.trials import Attr, best_trial


def best_with_checkpoint(study: optuna.Study, store: Any) -> optuna.trial.FrozenTrial:
    """The best complete trial that still has its checkpoint.

    Raises:
        NoResult: no complete trial has one.
    """
    best = best_trial(study, lambda t: checkpoints.live_checkpoint(t, store) is not None)
    if best is None:
        top = best_trial(study)
        error = top.user_attrs.get(Attr.CHECKPOINT_ERROR) if top is not None else None
        why = f" (the best trial's was not saved: {error})" if error else ""
        raise NoResult(
            f"study {study.study_name!r} has no complete trial with a checkpoint{why}; "
            "run `pipeline tune` first (with keep_checkpoints above 0)"
        )
    return best


def run(
    study: optuna.Study, store: Any, retrain_seeds: int = 0, device: torch.device | None = None
) -> dict[str, Any]:
    """Evaluate the best checkpoint on the test split (and retrain with seeds); store the
    results as study user attributes and return them."""
    device = device or torch.device("cpu")
    best = best_with_checkpoint(study, store)
    artifact_id = checkpoints.live_checkpoint(best, store)
    assert artifact_id is not None
    ckpt = checkpoints.load(store, artifact_id)
    if not (isinstance(ckpt, dict) and "task" in ckpt):  # a trainable's own checkpoint
        return _run_trainable(study, best, artifact_id, ckpt, retrain_seeds, device)
    try:
        task = resolve_task(TaskConfig(ckpt["task"], ckpt["task_options"]))
    except ConfigError as exc:
        raise NoResult(f"cannot rebuild the task of trial {best.number}: {exc}") from None
    splits = task.load(ckpt["task_options"]).to(device)
    hp = ckpt["hyperparameters"]
    model = task.build_model(hp, splits).to(device)
    model.load_state_dict(ckpt["state_dict"])
    val_loss, val_acc = evaluate(model, splits.val_x, splits.val_y)
    test_loss, test_acc = evaluate(model, splits.test_x, splits.test_y)
    result: dict[str, Any] = {
        "trial": best.number,
        "checkpoint": artifact_id,
        "val_accuracy": val_acc,
        "val_loss": val_loss,
        "test_accuracy": test_acc,
        "test_loss": test_loss,
    }
    if retrain_seeds:
        epochs = int(best.user_attrs.get("epochs") or len(best.intermediate_values) or 1)
        scores = [_retrain(task, splits, hp, epochs, seed, device) for seed in range(retrain_seeds)]
        result["retrained"] = {
            "seeds": retrain_seeds,
            "epochs": epochs,
            "test_accuracy_mean": statistics.fmean(scores),
            "test_accuracy_std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
            "test_accuracies": scores,
        }
    study.set_user_attr("final_evaluation", result)
    return result


def _run_trainable(
    study: optuna.Study,
    best: optuna.trial.FrozenTrial,
    artifact_id: str,
    saved: Any,
    retrain_seeds: int,
    device: torch.device,
) -> dict[str, Any]:
    if retrain_seeds:
        raise UsageError("--retrain-seeds retrains a task's model; a trainable retrains itself")
    model, config = winner.rebuild_trainable(study, best, saved)
    result = {"trial": best.number, "checkpoint": artifact_id}
    result |= winner.test_trainable(study, model, config, device)
    study.set_user_attr("final_evaluation", result)
    return result


def _retrain(
    task: Any, splits: Splits, hp: dict[str, Any], epochs: int, seed: int, device: torch.device
) -> float:
    torch.manual_seed(seed)
    model = task.build_model(hp, splits).to(device)
    x = torch.cat([splits.train_x, splits.val_x])
    y = torch.cat([splits.train_y, splits.val_y])
    generator = torch.Generator(device=device).manual_seed(seed)
    # Validation data is now training data; test data is only scored at the end.
    fit(model, x, y, splits.test_x[:1], splits.test_y[:1], hp, epochs, generator)
    return evaluate(model, splits.test_x, splits.test_y)[1]


__all__ = ["best_with_checkpoint", "run"]
