"""Samplers and pruners built from study files, driven through ask/tell (no training)."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from pipeline.config import ParamSpec, PrunerConfig, SamplerConfig
from pipeline.search import PRUNERS, SAMPLERS, make_pruner, make_sampler, suggest

SPACE = {
    "lr": ParamSpec("float", 1e-4, 1e-1, log=True, grid=[1e-3, 1e-2]),
    "l1": ParamSpec("int", 4, 64, grid=[8, 32]),
    "optimizer": ParamSpec("categorical", choices=["sgd", "adam"]),
}


def _objective(params: dict[str, Any]) -> float:
    return abs(float(params["lr"]) - 0.01) + abs(int(params["l1"]) - 32) / 100


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_runs_an_ask_tell_loop(name: str) -> None:
    study = optuna.create_study(sampler=make_sampler(SamplerConfig(name, seed=0), SPACE))
    # 7 < the grid's 8 points: GridSampler stops the study itself after the last one.
    for _ in range(7):
        trial = study.ask()
        study.tell(trial, _objective(suggest(trial, SPACE)))
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 7
    assert study.best_value < 1.0


@pytest.mark.parametrize("name", ["random", "tpe", "qmc"])
def test_seeded_samplers_repeat(name: str) -> None:
    def run() -> list[dict[str, Any]]:
        study = optuna.create_study(sampler=make_sampler(SamplerConfig(name, seed=3), SPACE))
        out: list[dict[str, Any]] = []
        for _ in range(6):
            trial = study.ask()
            out.append(suggest(trial, SPACE))
            study.tell(trial, _objective(out[-1]))
        return out

    assert run() == run()


def test_workers_get_different_seeds_except_qmc() -> None:
    random0 = make_sampler(SamplerConfig("random", seed=5), SPACE, worker=0)
    random1 = make_sampler(SamplerConfig("random", seed=5), SPACE, worker=1)
    s0, s1 = optuna.create_study(sampler=random0), optuna.create_study(sampler=random1)
    assert suggest(s0.ask(), SPACE) != suggest(s1.ask(), SPACE)


def test_sampler_options_are_passed_through() -> None:
    # TPE draws at random for its first n_startup_trials (10 by default): with 3 it starts
    # modelling at the 4th trial, where the default one still draws at random.
    def draws(options: dict[str, Any]) -> list[dict[str, Any]]:
        sampler = make_sampler(SamplerConfig("tpe", seed=0, options=options), SPACE)
        study = optuna.create_study(sampler=sampler)
        out = []
        for i in range(5):
            trial = study.ask()
            out.append(suggest(trial, SPACE))
            study.tell(trial, float(i))
        return out

    three, default = draws({"n_startup_trials": 3}), draws({})
    assert three[:3] == default[:3]
    assert three[3:] != default[3:]


def _report_curves(pruner: optuna.pruners.BasePruner, good: int, steps: int) -> optuna.Study:
    """Finish `good` trials whose loss falls to 0.1, then start a trial stuck at 1.0."""
    study = optuna.create_study(pruner=pruner, sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(good):
        trial = study.ask()
        for step in range(1, steps + 1):
            trial.report(1.0 / step, step)
            trial.should_prune()  # as the training loop does; ASHA records its rungs here
        study.tell(trial, 1.0 / steps)
    return study


@pytest.mark.parametrize("name", ["median", "percentile", "asha", "hyperband"])
def test_pruners_stop_a_clearly_worse_trial(name: str) -> None:
    by_name: dict[str, dict[str, Any]] = {
        "percentile": {"percentile": 50.0},
        "asha": {"min_resource": 1, "reduction_factor": 2},  # the tutorial's ASHA settings
    }
    options = by_name.get(name, {})
    pruner = make_pruner(PrunerConfig(name, options=options), max_epochs=8)
    study = _report_curves(pruner, good=6, steps=8)
    pruned_at = None
    for _ in range(6):  # hyperband puts trials in brackets; look for any pruned bad trial
        trial = study.ask()
        for step in range(1, 9):
            trial.report(5.0, step)
            if trial.should_prune():
                pruned_at = step
                break
        study.tell(trial, state=TrialState.PRUNED) if pruned_at else study.tell(trial, 5.0)
        if pruned_at:
            break
    assert pruned_at is not None and pruned_at < 8


def test_none_pruner_never_prunes() -> None:
    study = _report_curves(make_pruner(PrunerConfig("none"), 8), good=6, steps=8)
    trial = study.ask()
    for step in range(1, 9):
        trial.report(100.0, step)
        assert not trial.should_prune()


def test_patience_wraps_the_pruner() -> None:
    pruner = make_pruner(PrunerConfig("median", patience=3), max_epochs=8)
    assert isinstance(pruner, optuna.pruners.PatientPruner)
    study = _report_curves(pruner, good=6, steps=8)
    trial = study.ask()
    # Worse than the median but still improving: patience keeps it alive.
    for step, value in enumerate([5.0, 4.0, 3.0, 2.9], start=1):
        trial.report(value, step)
        assert not trial.should_prune()
    # Three epochs without improvement: now it goes.
    verdicts = []
    for step in range(5, 9):
        trial.report(3.0, step)
        verdicts.append(trial.should_prune())
    assert verdicts[-1]


def test_hyperband_uses_max_epochs_as_max_resource() -> None:
    pruner = make_pruner(PrunerConfig("hyperband"), max_epochs=27)
    assert isinstance(pruner, optuna.pruners.HyperbandPruner)
    assert pruner._max_resource == 27
    assert set(PRUNERS) == {"none", "median", "percentile", "asha", "hyperband"}
