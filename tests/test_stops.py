"""Study-level stops: a target reached, a plateau, a metric the trainable never reports
(issue 28). Judged on histories made with ``add_trial``; one real run each proves a
worker obeys them."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import optuna
import pytest
from conftest import cli, minimal_study
from optuna.trial import TrialState, create_trial

from pipeline.config import PlateauConfig, StopConfig
from pipeline.runner._live import LiveReporter
from pipeline.runner._worker import run_worker
from pipeline.study import Budget, stop_reason
from pipeline.study._file import parse_study


def _history(values: list[float | None], direction: Any = "minimize") -> optuna.Study:
    """A study whose trials finished with ``values`` in order (None: pruned)."""
    study = optuna.create_study(direction=direction)
    for value in values:
        if value is None:
            study.add_trial(create_trial(state=TrialState.PRUNED, intermediate_values={1: 9.0}))
        else:
            study.add_trial(create_trial(value=value))
    return study


@pytest.mark.parametrize(
    ("values", "direction", "stop", "line"),
    [
        ([0.9, 0.4], "minimize", StopConfig(target=0.5), "trial #1 reached the target 0.5 (0.4"),
        ([0.9, 0.6], "minimize", StopConfig(target=0.5), None),
        ([0.6, 0.96], "maximize", StopConfig(target=0.95), "trial #1 reached the target 0.95"),
        (
            [1.0, 0.8, 0.9, None, 0.85],
            "minimize",
            StopConfig(plateau=PlateauConfig(trials=3)),
            "the best value (0.8, trial #1) did not improve by more than 0 in the last 3 finished",
        ),
        ([1.0, 0.8, 0.9, 0.7], "minimize", StopConfig(plateau=PlateauConfig(trials=3)), None),
        (
            [1.0, 0.8, 0.79, 0.795],  # 0.79 improves by less than min_delta
            "minimize",
            StopConfig(plateau=PlateauConfig(trials=2, min_delta=0.05)),
            "(0.8, trial #1) did not improve by more than 0.05 in the last 2 finished",
        ),
        ([None, None, None], "minimize", StopConfig(plateau=PlateauConfig(trials=2)), None),
    ],
)
def test_a_stop_is_one_line_saying_why_and_the_budget_admits_no_more_trials(
    values: list[float | None], direction: Any, stop: StopConfig, line: str | None
) -> None:
    study = _history(values, direction)
    reason = stop_reason(study, stop)
    budget = Budget(n_trials=100, stop=stop)
    if line is None:
        assert reason is None
        assert budget.admit(study) == "run"
    else:
        assert reason is not None and line in reason and "\n" not in reason
        assert budget.admit(study) == "stop"


def _study(tmp_path: Path, trainable: str, **overrides: Any) -> dict[str, Any]:
    study = minimal_study(
        trainable=f"tiny_trainables:{trainable}",
        metric="mse",
        direction="minimize",
        max_epochs=2,
        n_trials=6,
        storage=f"sqlite:///{tmp_path}/optuna.db",
        keep_checkpoints=0,
        search_space={"lr": {"type": "float", "low": 0.05, "high": 0.2}},
    )
    del study["task"]
    study.update(overrides)
    return study


def _summary(config: Any) -> tuple[optuna.Study, str]:
    study = optuna.load_study(study_name=config.study_name, storage=config.storage)
    out = io.StringIO()
    LiveReporter.for_study(study, config, config.n_trials, quiet=True, out=out).summary()
    return study, out.getvalue()


def test_a_worker_stops_scheduling_once_the_target_is_reached(tmp_path: Path) -> None:
    config = parse_study(_study(tmp_path, "fit_line", stop={"target": 100.0}))
    assert run_worker(config) == 1
    study, summary = _summary(config)
    assert len(study.trials) == 1
    assert "Stopped: trial #0 reached the target 100 (" in summary


@pytest.mark.parametrize(
    ("trainable", "reported"), [("wrong_metric", "loss, accuracy"), ("never_reports", "nothing")]
)
def test_a_metric_that_never_comes_stops_the_study_after_its_first_trial(
    tmp_path: Path, trainable: str, reported: str
) -> None:
    config = parse_study(_study(tmp_path, trainable))
    run_worker(config)
    study, summary = _summary(config)
    assert [t.state for t in study.trials] == [TrialState.FAIL]  # not five, not one per worker
    assert f"Stopped: trial 0 reported {reported} but never 'mse', the study's metric" in summary


def test_when_every_trial_was_pruned_best_names_the_best_at_the_deepest_epoch(
    tmp_path: Path,
) -> None:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="all-pruned", storage=storage)
    curves = {0: {1: 0.9, 2: 0.5}, 1: {1: 0.8}, 2: {1: 0.7, 2: 0.6}}  # epoch 2 is the deepest
    for curve in curves.values():
        study.add_trial(
            create_trial(
                state=TrialState.PRUNED,
                params={"lr": 0.1},
                distributions={"lr": optuna.distributions.FloatDistribution(0.01, 1.0)},
                intermediate_values=curve,
            )
        )
    result = cli("best", "--storage", storage, "--study-name", "all-pruned")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        "Best trial #0 of study 'all-pruned' at epoch 2, the deepest any trial reached "
        "(no trial completed: every one was pruned):"
    )
    assert "0.5000" in result.stdout
    out = io.StringIO()
    code = LiveReporter(study, metric="value", params=["lr"], total=3, out=out).summary()
    assert code == 0
    assert "Best trial #0 of study 'all-pruned' at epoch 2" in out.getvalue()
