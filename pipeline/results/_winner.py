"""The winner of a study, rebuilt in Python: :func:`load_best`, and the score of a
trainable's checkpoint for ``pipeline evaluate``.

A task's checkpoint holds what rebuilds its model (task, options, hyperparameters,
weights). A trainable's holds whatever it gave ``session.checkpoint``; the study file's
``model:`` function rebuilds the network and its weights are the checkpoint's entry
whose keys are the network's (``net_state_dict`` in the tutorial), or the checkpoint
itself when it is a state dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
import torch
from torch import nn

from pipeline.artifacts import live_checkpoint, load_checkpoint, open_location
from pipeline.config import TaskConfig
from pipeline.exceptions import ConfigError, NoResult
from pipeline.training import import_user_function
from pipeline.trial import best_trial


def trial_config(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """What the trainable's ``config`` held in ``trial``: the study file's fixed values
    (as of its latest run), the trial's sampled ones, then the ``trainable_args``."""
    stored = _stored_config(study)
    fixed = {
        name: spec.get("value")
        for name, spec in stored.get("search_space", {}).items()
        if spec.get("type") == "fixed"
    }
    return {**fixed, **trial.params, **(stored.get("trainable_args") or {})}


def _stored_config(study: optuna.Study) -> dict[str, Any]:
    runs = study.user_attrs.get("runs") or []
    return dict(runs[-1]["config"] if runs else study.user_attrs.get("config") or {})


def state_dict_in(saved: Any, model: nn.Module) -> Mapping[str, Any]:
    """The state dict in a trainable's checkpoint that fits ``model``.

    Raises:
        NoResult: nothing in the checkpoint has the model's keys.
    """
    wanted = set(model.state_dict())
    candidates = [saved, *(saved.values() if isinstance(saved, Mapping) else [])]
    for candidate in candidates:
        if isinstance(candidate, Mapping) and set(candidate) == wanted:
            return candidate
    raise NoResult(
        "the checkpoint holds no state dict with the keys of the network model: builds; "
        "checkpoint net.state_dict() (alone or as an entry of a dict)"
    )


def rebuild_trainable(
    study: optuna.Study, trial: optuna.trial.FrozenTrial, saved: Any
) -> tuple[nn.Module, dict[str, Any]]:
    """The network of a trainable's trial with its checkpointed weights, and its config.

    Raises:
        NoResult: the study file names no ``model:`` function, or it cannot be loaded.
    """
    stored = _stored_config(study)
    # A LightningModule or a Hugging Face model is rebuilt by the function that built it.
    framework = stored.get("lightning") or stored.get("transformers") or {}
    target = stored.get("model") or framework.get("module") or framework.get("model_init")
    if not target:
        raise NoResult(
            f"study {study.study_name!r} runs a trainable without model: in its study file; "
            "name a function(config) -> nn.Module there to rebuild the winner"
        )
    config = trial_config(study, trial)
    try:
        model = import_user_function(str(target), "model")(config)
    except ConfigError as exc:
        raise NoResult(str(exc)) from None
    model.load_state_dict(state_dict_in(saved, model))
    return model.eval(), config


def test_trainable(
    study: optuna.Study, model: nn.Module, config: dict[str, Any], device: torch.device
) -> dict[str, float]:
    """The study file's ``test:`` function on the rebuilt winner; {} without one."""
    target = _stored_config(study).get("test")
    if not target:
        return {}
    try:
        scores = import_user_function(str(target), "test")(model.to(device), config, device)
    except ConfigError as exc:
        raise NoResult(str(exc)) from None
    return {str(k): float(v) for k, v in dict(scores).items()}


def load_best(
    study_name: str,
    storage: str,
    artifacts: str | None = None,
    device: str = "cpu",
    trial: int | None = None,
) -> nn.Module:
    """The best trial's model of a study (or trial number ``trial``'s: any member of a
    Pareto front, say), with its checkpointed weights, in eval mode.

    Args:
        storage: The study's storage URL, as in the study file.
        artifacts: Where its checkpoints are (a directory or ``s3://bucket/prefix``), if
            not the default for the storage.
        trial: A trial number; by default the best trial (of several objectives: the
            feasible one best in the first).

    Raises:
        NoResult: no complete trial has a checkpoint (or trial ``trial`` has none), or it
            cannot be rebuilt.
    """
    from pipeline.study import open_existing
    from pipeline.tasks import resolve_task

    study = open_existing(storage, study_name)
    store = open_location(storage, artifacts, create=False)
    if trial is None:
        best = best_trial(study, lambda t: live_checkpoint(t, store) is not None)
        if best is None:
            raise NoResult(f"study {study_name!r} has no complete trial with a checkpoint")
    else:
        best = next((t for t in study.get_trials(deepcopy=False) if t.number == trial), None)
        if best is None or live_checkpoint(best, store) is None:
            raise NoResult(f"study {study_name!r} has no trial #{trial} with a checkpoint")
    artifact_id = live_checkpoint(best, store)
    assert artifact_id is not None
    saved = load_checkpoint(store, artifact_id)
    if not (isinstance(saved, dict) and "task" in saved and "state_dict" in saved):
        return rebuild_trainable(study, best, saved)[0].to(device)
    task = resolve_task(TaskConfig(saved["task"], saved["task_options"]))
    splits = task.load(saved["task_options"])  # the model's shapes come from the data
    model = task.build_model(saved["hyperparameters"], splits)
    model.load_state_dict(saved["state_dict"])
    return model.eval().to(device)


__all__ = ["load_best", "rebuild_trainable", "state_dict_in", "test_trainable", "trial_config"]
