"""The search-space grammar, driven through Optuna's ask/tell with no training."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from pipeline.config import ParamSpec
from pipeline.search import grid_points, suggest, to_distribution

CASES = [
    (ParamSpec("float", 1e-4, 1e-1, log=True), FloatDistribution(1e-4, 1e-1, log=True)),
    (ParamSpec("float", 0.0, 1.0, step=0.25), FloatDistribution(0.0, 1.0, step=0.25)),
    (ParamSpec("int", 1, 9, step=2), IntDistribution(1, 9, step=2)),
    (ParamSpec("int", 8, 512, log=True), IntDistribution(8, 512, log=True)),
    (ParamSpec("categorical", choices=["sgd", "adam"]), CategoricalDistribution(["sgd", "adam"])),
    # The tutorial's 2 ** np.random.randint(2, 9): seven values, 4 to 256.
    (ParamSpec("pow2", 4, 256), CategoricalDistribution([4, 8, 16, 32, 64, 128, 256])),
    (ParamSpec("fixed", value=0.9), None),
]


@pytest.mark.parametrize(("spec", "expected"), CASES)
def test_to_distribution(spec: ParamSpec, expected: object) -> None:
    assert to_distribution(spec) == expected


def test_pow2_samples_only_powers_of_two_from_4_to_256() -> None:
    space = {"l1": ParamSpec("pow2", 4, 256)}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(200):
        trial = study.ask()
        seen.add(suggest(trial, space)["l1"])
        study.tell(trial, 0.0)
    assert seen == {4, 8, 16, 32, 64, 128, 256}


def test_conditional_parameter_only_when_parent_matches() -> None:
    space = {
        "optimizer": ParamSpec("categorical", choices=["sgd", "adam"]),
        "momentum": ParamSpec("float", 0.5, 0.99, when={"optimizer": "sgd"}),
        "weight_decay": ParamSpec("fixed", value=0.0),
    }
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(30):
        trial = study.ask()
        values = suggest(trial, space)
        assert ("momentum" in values) == (values["optimizer"] == "sgd")
        assert ("momentum" in trial.params) == (values["optimizer"] == "sgd")
        assert values["weight_decay"] == 0.0 and "weight_decay" not in trial.params
        study.tell(trial, 0.0)


def test_log_float_stays_in_range_and_spreads_over_decades() -> None:
    space = {"lr": ParamSpec("float", 1e-4, 1e-1, log=True)}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    values = []
    for _ in range(300):
        trial = study.ask()
        values.append(suggest(trial, space)["lr"])
        study.tell(trial, 0.0)
    assert all(1e-4 <= v <= 1e-1 for v in values)
    decades = {math.floor(math.log10(v)) for v in values}
    assert decades == {-4, -3, -2}


def test_grid_points_respect_conditions_and_skip_fixed_values() -> None:
    space = {
        "optimizer": ParamSpec("categorical", choices=["sgd", "adam"]),
        "momentum": ParamSpec("float", 0.5, 0.99, grid=[0.5, 0.9], when={"optimizer": "sgd"}),
        "lr": ParamSpec("float", 1e-3, 1e-1, log=True, grid=[1e-3, 1e-2]),
        "l2": ParamSpec("fixed", value=32),
    }
    points = grid_points(space)
    # sgd: 2 momenta x 2 lr; adam: 2 lr.
    assert len(points) == 6
    assert {"optimizer": "adam", "lr": 1e-3} in points
    assert {"optimizer": "sgd", "momentum": 0.9, "lr": 1e-2} in points
    assert all("l2" not in p for p in points)


def test_grid_refuses_a_continuous_range_without_values() -> None:
    with pytest.raises(ValueError, match="needs an explicit `grid"):
        grid_points({"lr": ParamSpec("float", 1e-3, 1e-1)})
