"""Final evaluation: the best trial's checkpoint on the held-out test split, and
optionally the best configuration retrained on train + validation with several seeds."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, TextIO

import optuna
import torch
from torch.utils.data import ConcatDataset, Subset, TensorDataset

from pipeline.artifacts import live_checkpoint, load_checkpoint
from pipeline.config import TaskConfig
from pipeline.exceptions import ConfigError, NoResult, UsageError
from pipeline.results._best import FINAL_EVALUATION
from pipeline.results._winner import rebuild_trainable, test_trainable
from pipeline.tasks import Split, Splits, Task, check_labels, resolve_task
from pipeline.training import evaluate, fit
from pipeline.trial import Attr, best_trial, is_multi_objective, study_front

# The test metric that retraining with several seeds summarizes, per task kind.
RETRAIN_SCORE = {"classification": "accuracy", "regression": "r2"}


def best_with_checkpoint(study: optuna.Study, store: Any) -> optuna.trial.FrozenTrial:
    """The best complete trial that still has its checkpoint.

    Raises:
        NoResult: no complete trial has one.
    """
    best = best_trial(study, lambda t: live_checkpoint(t, store) is not None)
    if best is None:
        _check_directory(study, store)
        top = best_trial(study)
        error = top.user_attrs.get(Attr.CHECKPOINT_ERROR) if top is not None else None
        why = f" (the best trial's was not saved: {error})" if error else ""
        raise NoResult(
            f"study {study.study_name!r} has no complete trial with a checkpoint{why}; "
            "run `pipeline tune` first (with keep_checkpoints above 0)"
        )
    return best


def _check_directory(study: optuna.Study, store: Any) -> None:
    """Trials recorded checkpoints but the directory that held them is gone: say so,
    rather than "no checkpoint"."""
    folder = getattr(store, "path", None)
    recorded = [t.number for t in study.trials if Attr.CHECKPOINT in t.user_attrs]
    if folder is not None and recorded and not Path(folder).is_dir():
        raise UsageError(
            f"--artifacts: the checkpoint directory {folder} is missing; trials "
            f"{', '.join(map(str, recorded[:5]))}{'...' if len(recorded) > 5 else ''} saved "
            "checkpoints there (pass --artifacts DIR where they are now)"
        )


def evaluate_best(
    study: optuna.Study, store: Any, retrain_seeds: int = 0, device: torch.device | None = None
) -> dict[str, Any]:
    """Evaluate the best checkpoint on the test split (and retrain with seeds); store the
    results as study user attributes and return them. Of a study of several objectives,
    every Pareto-front member's checkpoint: ``{"front": [result, ...]}``."""
    device = device or torch.device("cpu")
    if is_multi_objective(study):
        return _run_front(study, store, retrain_seeds, device)
    best = best_with_checkpoint(study, store)
    result = _score(study, best, store, retrain_seeds, device)
    study.set_user_attr(FINAL_EVALUATION, result)
    return result


def _run_front(
    study: optuna.Study, store: Any, retrain_seeds: int, device: torch.device
) -> dict[str, Any]:
    members = study_front(study)
    kept = [t for t in members if live_checkpoint(t, store) is not None]
    if not kept:
        _check_directory(study, store)
        raise NoResult(
            f"study {study.study_name!r} has no Pareto-front trial with a checkpoint; "
            "run `pipeline tune` first (with keep_checkpoints above 0)"
        )
    result = {
        "front": [_score(study, t, store, retrain_seeds, device) for t in kept],
        "without_checkpoint": [t.number for t in members if t not in kept],
    }
    study.set_user_attr(FINAL_EVALUATION, result)
    return result


def _score(
    study: optuna.Study,
    best: optuna.trial.FrozenTrial,
    store: Any,
    retrain_seeds: int,
    device: torch.device,
) -> dict[str, Any]:
    """One trial's checkpoint on the validation and test splits (and retrained)."""
    artifact_id = live_checkpoint(best, store)
    assert artifact_id is not None
    ckpt = load_checkpoint(store, artifact_id)
    if not (isinstance(ckpt, dict) and "task" in ckpt):  # a trainable's own checkpoint
        return _run_trainable(study, best, artifact_id, ckpt, retrain_seeds, device)
    try:
        task = resolve_task(TaskConfig(ckpt["task"], ckpt["task_options"]))
    except ConfigError as exc:
        raise NoResult(f"cannot rebuild the task of trial {best.number}: {exc}") from None
    splits = task.load(ckpt["task_options"]).to(device)
    check_labels(task, splits)
    hp = ckpt["hyperparameters"]
    model = task.build_model(hp, splits).to(device)
    model.load_state_dict(ckpt["state_dict"])
    result: dict[str, Any] = {"trial": best.number, "checkpoint": artifact_id}
    for name, split in (("val", splits.val), ("test", splits.test)):
        metrics = evaluate(model, task, split, loader_workers=int(hp.get("loader_workers", 0)))
        result.update({f"{name}_{metric}": value for metric, value in metrics.items()})
    if retrain_seeds:
        epochs = int(best.user_attrs.get("epochs") or len(best.intermediate_values) or 1)
        score = RETRAIN_SCORE[task.kind]
        scores = [
            _retrain(task, splits, hp, epochs, seed, device)[score] for seed in range(retrain_seeds)
        ]
        result["retrained"] = {
            "seeds": retrain_seeds,
            "epochs": epochs,
            f"test_{score}_mean": statistics.fmean(scores),
            f"test_{score}_std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
            f"test_{score}_values": scores,
        }
        if score == "accuracy":  # the name reports and scripts have read since the start
            result["retrained"]["test_accuracies"] = scores
    return result


def test_scores(result: dict[str, Any]) -> str:
    """A result's test scores in words: ``test accuracy 0.9100, test loss 0.3000``."""
    scores = ", ".join(
        f"{name.replace('_', ' ')} {value:.4f}"
        for name, value in result.items()
        if name.startswith("test_")
    )
    return scores or "no test: function in the study file to score it"


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
    model, config = rebuild_trainable(study, best, saved)
    result = {"trial": best.number, "checkpoint": artifact_id}
    result |= test_trainable(study, model, config, device)
    return result


def _retrain(
    task: Task, splits: Splits, hp: dict[str, Any], epochs: int, seed: int, device: torch.device
) -> dict[str, float]:
    """Train a fresh model on train + validation; its test metrics."""
    torch.manual_seed(seed)
    model = task.build_model(hp, splits).to(device)
    train = _joined(splits.train, splits.val)
    generator = torch.Generator(device=device).manual_seed(seed)
    # Validation data is now training data and the test split is only scored at the end:
    # the loop's per-epoch validation gets the cheapest split there is, one train example.
    fit(model, task, train, _first(train), hp, epochs, generator)
    return evaluate(model, task, splits.test, loader_workers=int(hp.get("loader_workers", 0)))


def _joined(first: Split, second: Split) -> Split:
    if first.x is not None and first.y is not None and second.x is not None:
        x2, y2 = second.tensors()
        return Split(torch.cat([first.x, x2]), torch.cat([first.y, y2]))
    datasets = [
        s.dataset if s.dataset is not None else TensorDataset(*s.tensors()) for s in (first, second)
    ]
    return Split(dataset=ConcatDataset(datasets))


def _first(split: Split) -> Split:
    if split.x is not None and split.y is not None:
        return Split(split.x[:1], split.y[:1])
    return Split(dataset=Subset(split.dataset, [0]))  # type: ignore[arg-type]


def print_final_evaluation(
    study: optuna.Study, store: Any, where: str, device: torch.device, out: TextIO
) -> None:
    """Reload the best trial's checkpoint (every Pareto-front member's, for several
    objectives) from ``store`` (``where`` names it) and score it on the test split, on
    the study's device, and print the scores: proof that the stored model is the one
    that was selected. The result is stored as the study's ``final_evaluation``."""
    try:
        result = evaluate_best(study, store, device=device)
    except NoResult as exc:
        print(f"(no final evaluation: {exc})", file=out)
        return
    if "front" in result:  # several objectives: every front member's checkpoint
        scores = "; ".join(f"#{r['trial']} {test_scores(r)}" for r in result["front"])
        print(
            f"Checkpoints of the {len(result['front'])} Pareto-front trials reloaded from "
            f"{where} on {device}: {scores} (stored as the study's final_evaluation)",
            file=out,
            flush=True,
        )
        return
    print(
        f"Checkpoint of trial #{result['trial']} reloaded from {where} on {device}: "
        f"{test_scores(result)} (stored as the study's final_evaluation)",
        file=out,
        flush=True,
    )


__all__ = [
    "RETRAIN_SCORE",
    "best_with_checkpoint",
    "evaluate_best",
    "print_final_evaluation",
    "test_scores",
]
