"""A study file that changes between runs: refused when it changes what trials mean,
branched on request, logged when it only changes how the study runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from conftest import cli, run_cli
from optuna.trial import TrialState

from pipeline.runner import run_worker
from pipeline.study import prepare_study, storage_for
from pipeline.study._file import parse_study


def _run(path: Path, **changes: Any) -> optuna.Study:
    """Run the study file with top-level ``changes`` in this process."""
    raw = {**yaml.safe_load(path.read_text()), **changes}
    config = parse_study(raw, str(path))
    prepare_study(config, storage_for(config))
    run_worker(config)
    return optuna.load_study(study_name=config.study_name, storage=config.storage)


def _set(path: Path, **changes: Any) -> None:
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **changes}))


@pytest.mark.parametrize(
    ("changes", "shown"),
    [
        (
            {"metric": "val_accuracy", "direction": "maximize"},
            "direction: 'minimize' -> 'maximize'; metric: 'val_loss' -> 'val_accuracy'",
        ),
        (
            {"search_space": {"lr": {"type": "float", "low": 0.01, "high": 0.5, "log": True}}},
            "search_space.batch_size: removed",
        ),
        ({"max_epochs": 2}, "max_epochs: 1 -> 2"),
    ],
    ids=["direction", "space", "epochs"],
)
def test_a_resume_that_changes_what_trials_mean_is_refused_with_the_diff(
    write_study: Callable[..., Path], changes: dict[str, Any], shown: str
) -> None:
    path = write_study(n_trials=2, max_epochs=1)
    _run(path)
    _set(path, **changes)
    result = cli("tune", str(path))
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}: ") and shown in line and "--branch" in line
    assert len(_trials(path)) == 2  # nothing ran, nothing was stored


def _trials(path: Path) -> list[optuna.trial.FrozenTrial]:
    config = yaml.safe_load(path.read_text())
    return optuna.load_study(study_name=config["study_name"], storage=config["storage"]).trials


@pytest.mark.slow
def test_branch_imports_the_trials_that_still_fit(write_study: Callable[..., Path]) -> None:
    path = write_study(n_trials=4, max_epochs=1)
    parent = _run(path)
    _set(path, metric="val_accuracy", direction="maximize", n_trials=6)
    result = run_cli("tune", str(path), "--branch", "branch-of-it")
    assert result.returncode == 0, result.stderr
    assert "imported 4 finished trial(s)" in result.stdout
    storage = yaml.safe_load(path.read_text())["storage"]
    branch = optuna.load_study(study_name="branch-of-it", storage=storage)
    assert branch.user_attrs["branched_from"]["study"] == parent.study_name
    imported = [t for t in branch.trials if "imported_from" in t.user_attrs]
    assert len(imported) == 4
    for trial in imported:  # the new metric's value, read from what the trial stored
        assert trial.value == trial.user_attrs["val_accuracy"]
    assert sum(t.state == TrialState.COMPLETE for t in branch.trials) == 6
    assert branch.best_trial.value == max(t.user_attrs["val_accuracy"] for t in branch.trials)


@pytest.mark.slow
def test_changes_that_keep_the_meaning_are_allowed_logged_and_kept_in_the_history(
    write_study: Callable[..., Path],
) -> None:
    path = write_study(n_trials=2, max_epochs=1)
    _run(path)  # the first run, in this process: it records the run as tune does
    _set(path, n_trials=3, sampler={"name": "tpe", "seed": 1})
    again = run_cli("tune", str(path))
    assert again.returncode == 0, again.stderr
    assert (
        "Changed since the last run: n_trials: 2 -> 3; sampler.name: 'random' -> 'tpe'; "
        "sampler.seed: 0 -> 1"
    ) in again.stdout
    config = yaml.safe_load(path.read_text())
    study = optuna.load_study(study_name=config["study_name"], storage=config["storage"])
    runs = study.user_attrs["runs"]
    assert len(runs) == 2 and runs[0]["changes"] == []
    assert "n_trials: 2 -> 3" in runs[1]["changes"]
    assert study.user_attrs["config"]["n_trials"] == 2  # the first run's record stays


def test_grid_values_added_later_queue_only_the_new_points(
    write_study: Callable[..., Path],
) -> None:
    space: dict[str, dict[str, Any]] = {
        "lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True, "grid": [0.01, 0.1]},
        "batch_size": {"type": "categorical", "choices": [32, 64]},
    }
    path = write_study(sampler={"name": "grid"}, n_trials=None, max_epochs=1, search_space=space)
    assert len(_run(path).trials) == 4
    space["lr"]["grid"] = [0.01, 0.03, 0.1]
    _run(path, search_space=space)
    done = [t for t in _trials(path) if t.state == TrialState.COMPLETE]
    assert len(done) == 6
    assert sorted({t.params["lr"] for t in done}) == [0.01, 0.03, 0.1]
    assert len({tuple(sorted(t.params.items())) for t in done}) == 6
