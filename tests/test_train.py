"""Tiny real training runs: the loop learns, reports every epoch, and handles NaN."""

from __future__ import annotations

import optuna
import pytest
import torch
from conftest import minimal_study
from optuna.trial import TrialState

from pipeline.study._file import parse_study
from pipeline.tasks import resolve_task
from pipeline.training import Objective, TaskTrainable, TrialPlan, evaluate, fit


def _objective(**overrides: object) -> Objective:
    config = parse_study(minimal_study(**overrides))
    assert config.task is not None
    task = resolve_task(config.task)
    splits = task.load(task.resolve_options(config.task.options))
    trainable = TaskTrainable(task, splits, task.resolve_options(config.task.options))
    return Objective(TrialPlan.of(config), trainable, torch.device("cpu"))


def test_fit_learns_digits() -> None:
    objective = _objective()
    assert isinstance(objective.trainable, TaskTrainable)
    s, task = objective.trainable.splits, objective.trainable.task
    assert s.sizes() == (1079, 359, 359)
    torch.manual_seed(0)
    hp = {
        "optimizer": "adam",
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "batch_size": 32,
        **task.hyperparameters,
    }
    model = task.build_model(hp, s)
    before = evaluate(model, task, s.val)["accuracy"]
    results = fit(model, task, s.train, s.val, hp, 5, torch.Generator().manual_seed(0))
    assert [r.epoch for r in results] == [1, 2, 3, 4, 5]
    assert set(results[-1].metrics) == set(task.metric_names())
    assert results[-1].metrics["val_accuracy"] > 0.8 > before
    assert results[-1].metrics["val_loss"] < results[0].metrics["val_loss"]


def test_a_trial_reports_every_epoch_and_stores_its_metrics() -> None:
    objective = _objective(max_epochs=3)
    study = optuna.create_study()
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE
    assert sorted(trial.intermediate_values) == [1, 2, 3]
    assert trial.value == pytest.approx(trial.intermediate_values[3])
    attrs = trial.user_attrs
    assert attrs["val_loss"] == pytest.approx(trial.value)
    assert attrs["epochs"] == 3
    assert 0.0 <= attrs["val_accuracy"] <= 1.0 and 0.0 <= attrs["test_accuracy"] <= 1.0
    assert 0.0 <= attrs["val_macro_f1"] <= 1.0 and 0.0 <= attrs["test_macro_f1"] <= 1.0
    assert attrs["compute_seconds"] > 0


def test_trials_are_seeded() -> None:
    values = []
    for _ in range(2):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        study.optimize(_objective(max_epochs=2), n_trials=2)
        values.append([t.value for t in study.trials])
    assert values[0] == values[1]


def test_nan_loss_prunes_the_trial_with_a_reason_and_the_study_goes_on() -> None:
    objective = _objective(
        task={"name": "tiny_task:tiny"},
        search_space={
            "diverge": {"type": "categorical", "choices": [True, False]},
            "lr": {"type": "float", "low": 0.01, "high": 0.1},
        },
    )
    study = optuna.create_study()
    study.enqueue_trial({"diverge": True})
    study.enqueue_trial({"diverge": False})
    study.optimize(objective, n_trials=2)
    diverged, healthy = study.trials
    assert diverged.state == TrialState.PRUNED
    assert "non-finite train_loss at epoch 1" in diverged.user_attrs["pruned_reason"]
    assert healthy.state == TrialState.COMPLETE


def test_a_model_too_large_for_memory_fails_its_trial_with_a_reason() -> None:
    # A width of 10^9 would need about a terabyte: the trial fails before allocating it.
    # A range stops at 65536; a larger size is listed explicitly.
    objective = _objective(
        max_epochs=1,
        search_space={
            "lr": {"type": "float", "low": 0.01, "high": 0.1},
            "l1": {"type": "categorical", "choices": [4, 10**9]},
        },
    )
    study = optuna.create_study()
    study.enqueue_trial({"lr": 0.05, "l1": 10**9})
    study.optimize(objective, n_trials=1, catch=(Exception,))
    trial = study.trials[0]
    assert trial.state == TrialState.FAIL
    assert "narrow the search space" in trial.user_attrs["fail_reason"]


def test_digits_are_read_as_scikit_learn_gives_them_without_importing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    from pipeline.tasks import _digits

    bunch = load_digits()
    pixels, labels = _digits._digits()
    assert (pixels == bunch.data).all() and (labels == bunch.target).all()
    # A worker that loads them does not pay scikit-learn's import.
    code = "import sys; from pipeline.tasks import _digits; _digits._digits(); print('sklearn' in sys.modules)"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "False"
    # Where scikit-learn's file is not where it was, load_digits reads it.
    monkeypatch.setattr(_digits.importlib.util, "find_spec", lambda name: None)
    pixels, labels = _digits._digits()
    assert (pixels == bunch.data).all() and (labels == bunch.target).all()
