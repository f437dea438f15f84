"""``warm_start:``: a study that starts from an earlier one's best configurations, or
from its finished trials as history (issue 28)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from conftest import minimal_study
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from pipeline.exceptions import ConfigError
from pipeline.runner._worker import open_with_retry, run_worker
from pipeline.study._file import parse_study

EARLIER = {0.1: 0.9, 0.12: 0.3, 0.15: 0.5, 0.18: 0.7}  # lr -> mse


def _earlier(storage: str, extra: dict[str, Any] | None = None) -> None:
    study = optuna.create_study(study_name="earlier", storage=storage)
    for lr, mse in EARLIER.items():
        params: dict[str, Any] = {"lr": lr}
        dists: dict[str, BaseDistribution] = {"lr": FloatDistribution(0.05, 0.2)}
        if extra:
            params, dists = {**params, **extra}, {**dists, "momentum": FloatDistribution(0, 1)}
        study.add_trial(create_trial(value=mse, params=params, distributions=dists))


def _config(tmp_path: Path, warm_start: dict[str, Any], n_trials: int = 2) -> Any:
    study = minimal_study(
        study_name="later",
        trainable="tiny_trainables:fit_line",
        metric="mse",
        direction="minimize",
        max_epochs=1,
        n_trials=n_trials,
        storage=f"sqlite:///{tmp_path}/optuna.db",
        keep_checkpoints=0,
        search_space={"lr": {"type": "float", "low": 0.05, "high": 0.2}},
        warm_start=warm_start,
    )
    del study["task"]
    return parse_study(study)


def test_a_warm_started_study_runs_the_earlier_study_s_best_configurations_first(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, {"from": "earlier", "top_k": 2})
    _earlier(config.storage)
    open_with_retry(config, joining=False)
    run_worker(config)
    trials = optuna.load_study(study_name="later", storage=config.storage).trials
    assert [t.params["lr"] for t in trials] == [0.12, 0.15]  # the two best, best first
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert [t.user_attrs["warm_start"] for t in trials] == [
        {"study": "earlier", "trial": 1},
        {"study": "earlier", "trial": 2},
    ]


def test_warm_start_as_history_adds_the_earlier_trials_as_finished(tmp_path: Path) -> None:
    config = _config(tmp_path, {"from": "earlier", "as": "history"})
    _earlier(config.storage)
    study, _ = open_with_retry(config, joining=False)
    assert [(t.params["lr"], t.value) for t in study.trials] == list(EARLIER.items())
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}
    assert study.trials[3].user_attrs["warm_start"] == {"study": "earlier", "trial": 3}


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"momentum": 0.9}, "warm_start: parameter 'momentum' of study 'earlier' is not searched"),
        (None, "warm_start.from: there is no study 'nope'"),
    ],
)
def test_an_incompatible_warm_start_is_refused_in_one_line_naming_the_parameter(
    tmp_path: Path, extra: dict[str, Any] | None, words: str
) -> None:
    source = "earlier" if extra else "nope"
    config = _config(tmp_path, {"from": source, "as": "history"})
    _earlier(config.storage, extra)
    with pytest.raises(ConfigError, match=words):
        open_with_retry(config, joining=False)
    names = [s.study_name for s in optuna.get_all_study_summaries(config.storage)]
    assert names == ["earlier"]  # no half-made study left to resume
