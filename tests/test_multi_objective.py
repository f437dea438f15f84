"""Several objectives and constraints: the study file, every sampler on SQLite and
PostgreSQL, feasibility, pruning on the first objective, the front after a resume, the
front's evaluation and the one-line refusals of what cannot work together."""

from __future__ import annotations

import itertools
import json
import math
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml
from conftest import _storage_url, cli, minimal_study, run_cli
from optuna.trial import TrialState

import pipeline
from pipeline.cli import main
from pipeline.compare import write_report
from pipeline.compare._pareto import common_scale, scaled_hypervolume
from pipeline.config import MEASURED_DIRECTIONS
from pipeline.runner import run_worker
from pipeline.search import suggest
from pipeline.study import prepare_study, storage_for
from pipeline.study._file import parse_study
from pipeline.training import PeakMemory, Session, count_params, latency_ms, load_user_function
from pipeline.trial import (
    Attr,
    Limits,
    Outcome,
    best_trial,
    front,
    hypervolume,
    is_feasible,
    minimized,
    outcome_of,
    study_front,
)
from pipeline.visualization import DASHBOARD_PLOT
from pipeline.visualization import write_report as write_study_report
from pipeline.visualization._front_plot import pareto_figure

PARETO = {
    "objectives": [
        {"metric": "val_accuracy", "direction": "maximize"},
        {"metric": "params", "direction": "minimize"},
    ]
}


def pareto_study(**overrides: Any) -> dict[str, Any]:
    """A small valid study of two objectives on the bundled digits."""
    data = minimal_study(**{**PARETO, **overrides})
    del data["metric"], data["direction"]
    return data


# --- the study file ----------------------------------------------------------------------


def test_the_short_form_is_one_objective_and_reads_as_before() -> None:
    config = parse_study(minimal_study())
    assert [(o.metric, o.direction) for o in config.objectives] == [("val_loss", "minimize")]
    assert not config.multi_objective and config.directions == ["minimize"]
    assert "objectives" not in config.to_dict() and "constraints" not in config.to_dict()


def test_objectives_set_the_first_as_the_metric_and_directions_default() -> None:
    data = pareto_study(constraints={"latency_ms": {"max": 2}})
    data["objectives"][1] = {"metric": "params"}  # measured: minimize, known
    config = parse_study(data)
    assert config.metric == "val_accuracy" and config.direction == "maximize"
    assert config.directions == ["maximize", "minimize"]
    assert config.to_dict()["constraints"] == {"latency_ms": {"max": 2.0}}
    assert config.to_dict()["inference_batch_size"] == 1


def _study(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "study.yaml"
    data = {**data, "storage": f"sqlite:///{tmp_path}/optuna.db"}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def _keep_signal_handlers() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


REFUSALS: list[tuple[str, dict[str, Any], str]] = [
    (
        "objectives and metric together",
        {**pareto_study(), "metric": "val_loss"},
        "objectives: replaces metric and direction",
    ),
    ("cmaes with two objectives", pareto_study(sampler={"name": "cmaes"}), "cmaes optimizes one"),
    ("asha with two objectives", pareto_study(pruner={"name": "asha"}), "asha cannot prune"),
    (
        "hyperband with two objectives",
        pareto_study(pruner={"name": "hyperband"}),
        "hyperband cannot prune",
    ),
    (
        "a pruner on a measured first objective",
        pareto_study(
            objectives=[{"metric": "params"}, {"metric": "val_accuracy"}],
            pruner={"name": "median"},
        ),
        "params, which no epoch reports",
    ),
    (
        "a constraint without bounds",
        pareto_study(constraints={"latency_ms": {}}),
        "constraints.latency_ms: set max:, min: or both",
    ),
    (
        "a constraint whose min is above its max",
        pareto_study(constraints={"params": {"min": 10, "max": 5}}),
        "min 10 is above max 5",
    ),
    (
        "a constraint on a metric nobody reports",
        pareto_study(constraints={"val_bleu": {"max": 1}}),
        "constraints.val_bleu: task digits reports",
    ),
    (
        "an objective the task does not report",
        pareto_study(objectives=[{"metric": "val_r2"}, {"metric": "params"}]),
        "objectives[0].metric: task digits reports",
    ),
    (
        "an objective listed twice",
        pareto_study(objectives=[{"metric": "params"}, {"metric": "params"}]),
        "params is already an objective",
    ),
    (
        "an unknown metric without a direction",
        pareto_study(objectives=[{"metric": "val_accuracy"}, {"metric": "size"}]),
        "objectives[1].direction: is required",
    ),
    (
        "a known metric in the wrong direction",
        pareto_study(
            objectives=[{"metric": "params", "direction": "maximize"}, {"metric": "val_loss"}]
        ),
        "params is minimized; use objectives[0].direction: minimize",
    ),
    (
        "an objective that is not a mapping",
        pareto_study(objectives=[{"metric": "params"}, "val_loss"]),
        "objectives[1]: expected a mapping",
    ),
    (
        "an unknown key in an objective",
        pareto_study(objectives=[{"metric": "params", "goal": "min"}, {"metric": "val_loss"}]),
        "objectives[0].goal: unknown key",
    ),
    ("an inference batch of 0", pareto_study(inference_batch_size=0), "must be at least 1"),
]


@pytest.mark.usefixtures("_keep_signal_handlers")
@pytest.mark.parametrize(
    ("data", "fragment"), [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS]
)
def test_impossible_combinations_are_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: dict[str, Any], fragment: str
) -> None:
    code = main(["validate", str(_study(tmp_path, data))])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err


@pytest.mark.usefixtures("_keep_signal_handlers")
def test_compare_refuses_a_one_objective_sampler_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _study(tmp_path, pareto_study())
    code = main(["compare", str(path), "--samplers", "tpe,cmaes", "--pruners", "none"])
    err = capsys.readouterr().err
    assert code == 2 and "--samplers: cmaes optimizes one objective" in err, err
    assert len(err.strip().splitlines()) == 1


# --- dominance, fronts and hypervolume ---------------------------------------------------


@pytest.mark.parametrize(
    ("points", "reference", "volume"),
    [
        ([[1.0, 1.0]], [2.0, 2.0], 1.0),
        ([[0.0, 1.0], [1.0, 0.0]], [2.0, 2.0], 3.0),
        ([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]], [2.0, 2.0], 3.25),
        ([[1.0, 1.0], [0.5, 1.5]], [2.0, 2.0], 1.25),  # neither dominates
        ([[1.0, 1.0], [1.5, 1.5]], [2.0, 2.0], 1.0),  # a dominated point adds nothing
        ([[3.0, 0.0]], [2.0, 2.0], 0.0),  # beyond the reference
        ([[0.0, 0.0, 0.0]], [1.0, 2.0, 3.0], 6.0),
        ([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]], [2.0, 2.0, 2.0], 4.0),
    ],
)
def test_hypervolume_of_small_fronts(
    points: list[list[float]], reference: list[float], volume: float
) -> None:
    assert hypervolume(points, reference) == pytest.approx(volume)
    assert hypervolume(points, reference) == pytest.approx(
        _grid_volume(points, reference), rel=0.02
    )


def _grid_volume(points: list[list[float]], reference: list[float], n: int = 40) -> float:
    """The dominated volume counted on a grid of cell centres: an independent check."""
    lows = [min([p[i] for p in points] + [reference[i]]) for i in range(len(reference))]
    steps = [(r - lo) / n for r, lo in zip(reference, lows, strict=True)]
    count = 0
    for cell in itertools.product(range(n), repeat=len(reference)):
        centre = [lo + (c + 0.5) * s for lo, c, s in zip(lows, cell, steps, strict=True)]
        count += any(all(p[i] <= centre[i] for i in range(len(p))) for p in points)
    return count * math.prod(steps)


def _tell(
    study: optuna.Study, values: list[float], limits: Limits | None, **metrics: float
) -> None:
    trial = study.ask()
    for name, value in metrics.items():
        trial.set_user_attr(name, value)
    if limits is not None:
        for name, violation in limits.violations(metrics).items():
            trial.set_constraint(name, violation)
    study.tell(trial, values)


def test_no_infeasible_trial_is_ever_called_best() -> None:
    limits = Limits.of(
        parse_study(pareto_study(constraints={"latency_ms": {"max": 2}})).constraints
    )
    study = optuna.create_study(directions=["maximize", "minimize"])
    _tell(study, [0.99, 100.0], limits, latency_ms=5.0)  # best in both, but too slow
    _tell(study, [0.90, 500.0], limits, latency_ms=1.0)
    _tell(study, [0.80, 200.0], limits, latency_ms=1.5)
    _tell(study, [0.70, 800.0], limits, latency_ms=0.5)  # dominated
    assert [t.number for t in study_front(study)] == [1, 2]
    best = best_trial(study)
    assert best is not None and best.number == 1
    everything = front(study.trials, study.directions, feasible_only=False)
    assert [t.number for t in everything] == [0]
    one = optuna.create_study(direction="maximize")
    _tell(one, [0.99], limits, latency_ms=5.0)
    _tell(one, [0.50], limits, latency_ms=1.0)
    best = best_trial(one)
    assert best is not None and best.number == 1


def test_compare_scores_a_dominating_front_higher() -> None:
    better = optuna.create_study(directions=["maximize", "minimize"])
    worse = optuna.create_study(directions=["maximize", "minimize"])
    for study, shift in ((better, 0.0), (worse, 0.1)):
        for accuracy, size in ((0.9, 100.0), (0.8, 50.0), (0.7, 10.0)):
            _tell(study, [accuracy - shift, size * (1 + shift)], None)
    scale = common_scale([better, worse])
    assert scale[0] == pytest.approx([-0.9, 10.0]) and scale[1] == pytest.approx([-0.6, 110.0])
    high = scaled_hypervolume(better.trials, better.directions, scale)
    low = scaled_hypervolume(worse.trials, worse.directions, scale)
    assert 0 < low < high <= 1.1**2


def test_compare_report_ranks_runs_by_hypervolume(tmp_path: Path) -> None:
    from pipeline.compare import CompareBudget, Run

    studies = {}
    for sampler, shift in (("nsga2", 0.0), ("random", 0.1)):
        study = optuna.create_study(directions=["maximize", "minimize"])
        study.set_metric_names(["val_accuracy", "params"])
        for accuracy, size in ((0.9, 100.0), (0.8, 50.0), (0.7, 10.0)):
            _tell(study, [accuracy - shift, size * (1 + shift)], None, epochs=1)
        studies[sampler] = study
    scale = common_scale(list(studies.values()))
    runs = [Run(name, "none", 0, study, scale) for name, study in studies.items()]
    assert runs[0].summary(None)["best"] > runs[1].summary(None)["best"] > 0
    write_report(runs, tmp_path, CompareBudget.parse("trials:3"), None)
    summary = (tmp_path / "summary.md").read_text()
    assert "best hypervolume" in summary and "nsga2 with pruner none" in summary


# --- every sampler, two objectives, SQLite and PostgreSQL ---------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    for found in _storage_url(request.param, tmp_path):
        assert found is not None
        yield found


SAMPLERS = ["tpe", "gp", "random", "grid", "qmc", "nsga2", "nsga3"]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_runs_two_objectives_with_a_constraint(url: str, sampler: str) -> None:
    """The pipeline's study (directions, metric names, the sampler with its
    constraints_func) driven through ask/tell: the objectives are a function of the
    parameters, and the front holds feasible trials only."""
    options = {"n_startup_trials": 3} if sampler in ("tpe", "gp") else {}
    if sampler.startswith("nsga"):
        options = {"population_size": 4}
    data = pareto_study(
        study_name=f"mo-{sampler}-{uuid.uuid4().hex[:8]}",
        storage=url,
        n_trials=8,
        sampler={"name": sampler, "seed": 0, "options": options},
        constraints={"params": {"max": 5000}},
        search_space={
            "l1": {"type": "pow2", "low": 8, "high": 256},
            "lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True, "grid": [0.01, 0.1]},
        },
    )
    config = parse_study(data)
    study = prepare_study(config, optuna.storages.get_storage(url))  # the pipeline's sampler
    assert study.metric_names == ["val_accuracy", "params"]
    limits = Limits.of(config.constraints)
    for _ in range(8):
        trial = study.ask()
        values = suggest(trial, config.search_space)
        l1, lr = values["l1"], values["lr"]
        params = 64 * l1 + 10 * l1
        accuracy = 1 - 1 / l1 - abs(math.log10(lr) + 1.5) / 10
        trial.set_user_attr("params", params)
        trial.set_constraint("params", limits.violations({"params": params})["params"])
        study.tell(trial, [accuracy, params])
    loaded = optuna.load_study(study_name=config.study_name, storage=url)
    complete = loaded.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 8
    members = study_front(loaded)
    assert members and all(is_feasible(t) and t.values[1] <= 5000 for t in members)
    for t in members:  # nothing feasible dominates a member
        mine = minimized(t, loaded.directions)
        for other in complete:
            theirs = minimized(other, loaded.directions)
            assert not (
                is_feasible(other)
                and theirs != mine
                and all(a <= b for a, b in zip(theirs, mine, strict=True))
            )
    # Optuna's own view of the front agrees (it reads the same stored constraints).
    assert {t.number for t in loaded.best_trials} == {t.number for t in members}


# --- pruning on the first objective ------------------------------------------------------


def _history(values: list[float]) -> list[dict[str, float]]:
    return [{"epoch": e, "val_accuracy": v} for e, v in enumerate(values, start=1)]


@pytest.mark.parametrize(("accuracy", "pruned"), [(0.2, True), (0.95, False)])
def test_a_multi_objective_trial_is_pruned_on_its_first_objective(
    accuracy: float, pruned: bool
) -> None:
    study = optuna.create_study(
        directions=["maximize", "minimize"],
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
    )
    for curve in ([0.5, 0.7, 0.8], [0.6, 0.8, 0.9], [0.4, 0.6, 0.7]):
        study.add_trial(
            optuna.trial.create_trial(
                values=[curve[-1], 1000.0],
                user_attrs={Attr.HISTORY: _history(curve)},
            )
        )
    trial = study.ask()
    session = _session(trial)
    if pruned:
        with pytest.raises(optuna.TrialPruned):
            session.report(1, val_accuracy=accuracy)
        assert "pruner stopped it after epoch 1" in trial.user_attrs[Attr.PRUNED_REASON]
    else:
        session.report(1, val_accuracy=accuracy)
        session.report(2, val_accuracy=accuracy)
    assert trial.study.trials[-1].intermediate_values == {}  # Optuna keeps none here


def _session(trial: optuna.Trial, limits: Any = None) -> Session:
    """A session of 3 epochs on val_accuracy against params, as the objective opens it."""
    return Session(
        trial,
        "val_accuracy",
        3,
        device=torch.device("cpu"),
        seed=0,
        objectives=["val_accuracy", "params"],
        limits=limits,
    )


def test_a_constraint_known_before_training_rejects_the_trial() -> None:
    limits = Limits.of(parse_study(pareto_study(constraints={"params": {"max": 100}})).constraints)
    study = optuna.create_study(directions=["maximize", "minimize"])
    trial = study.ask()
    session = _session(trial, limits)
    with pytest.raises(optuna.TrialPruned):
        session.measured(params=1000, latency_ms=0.1)
    assert trial.user_attrs[Attr.PRUNED_REASON] == (
        "rejected before training: params 1000 above max 100"
    )
    assert session.history == []
    assert trial.user_attrs[Attr.OUTCOME] == Outcome.REJECTED.value


# --- what is measured --------------------------------------------------------------------


def test_measured_metrics_are_real_numbers() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    assert count_params(model) == 64 * 32 + 32 + 32 * 10 + 10
    assert 0 < latency_ms(model, torch.randn(8, 64), torch.device("cpu")) < 1000
    assert model.training  # restored
    with PeakMemory(torch.device("cpu")) as peak:
        block = torch.ones(64, 1024, 1024)  # 256 MiB, touched
        block += 1
    del block
    assert peak.mb is not None and peak.mb >= 200
    assert set(MEASURED_DIRECTIONS) == {"params", "latency_ms", "peak_memory_mb", "compute_seconds"}


# --- tiny real runs ----------------------------------------------------------------------


def _tune(path: Path, *more: str) -> str:
    result = run_cli("tune", str(path), "--quiet", *more)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _best(path: Path) -> dict[str, Any]:
    result = cli("best", "--study-file", str(path), "--json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["nsga2", "tpe"])
def test_a_real_study_ends_with_its_front_and_keeps_it_after_a_resume(
    tmp_path: Path, sampler: str
) -> None:
    data = pareto_study(
        storage=f"sqlite:///{tmp_path}/optuna.db",
        n_trials=4,
        max_epochs=1,
        sampler={
            "name": sampler,
            "seed": 0,
            "options": {"population_size": 2} if sampler == "nsga2" else {},
        },
        constraints={"params": {"max": 9000}, "latency_ms": {"max": 1000}},
        search_space={"l1": {"type": "categorical", "choices": [8, 128]}, "lr": 0.05},
        enqueue=[{"l1": 128}, {"l1": 8}],  # one of each, whatever the sampler draws
    )
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    config = parse_study(data, str(path))
    prepare_study(config, storage_for(config))
    run_worker(config)  # the first four trials, in this process
    out = _tune(path, "--n-trials", "6")  # a resume by tune: two more trials
    assert "Pareto front of study" in out and "feasible" in out
    study = optuna.load_study(study_name=data["study_name"], storage=data["storage"])
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 6
    best = _best(path)
    assert [o["metric"] for o in best["objectives"]] == ["val_accuracy", "params"]
    feasible = [r for r in best["front"] if r["feasible"]]
    assert [r["trial"] for r in feasible] == [t.number for t in study_front(study)]
    # l1=128 makes the network larger than 9000 parameters: rejected before its first epoch.
    big = [t for t in study.trials if t.params.get("l1") == 128]
    assert big and all(outcome_of(t) == Outcome.REJECTED for t in big)
    for t in big:
        assert t.state == TrialState.PRUNED and t.user_attrs.get(Attr.EPOCHS) is None
        reason = f"rejected before training: params {t.user_attrs['params']} above max 9000"
        assert t.user_attrs[Attr.PRUNED_REASON] == reason
        assert t.constraints["params"] == t.user_attrs["params"] - 9000
    for record in best["front"]:
        assert record["metrics"]["params"] <= 9000 and record["metrics"]["latency_ms"] > 0
        assert record["metrics"]["peak_memory_mb"] >= 0 and record["checkpoint"]


@pytest.mark.slow
def test_evaluate_export_and_report_of_a_front(tmp_path: Path) -> None:
    data = pareto_study(
        storage=f"sqlite:///{tmp_path}/optuna.db",
        n_trials=4,
        max_epochs=1,
        sampler={"name": "random", "seed": 1},
        search_space={"l1": {"type": "categorical", "choices": [8, 16, 32, 64]}, "lr": 0.05},
        keep_checkpoints=1,  # the whole front is kept however many that is
    )
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    _tune(path)
    study = optuna.load_study(study_name=data["study_name"], storage=data["storage"])
    members = [t.number for t in study_front(study)]
    result = cli("evaluate", "--study-file", str(path))
    assert result.returncode == 0, result.stderr
    evaluation = json.loads(result.stdout)
    assert [r["trial"] for r in evaluation["front"]] == members
    assert all(0 <= r["test_accuracy"] <= 1 for r in evaluation["front"])
    for member in study_front(study):  # any member rebuilds, not only the first's best
        model = pipeline.load_best(data["study_name"], data["storage"], trial=member.number)
        assert sum(p.numel() for p in model.parameters()) == member.user_attrs["params"]
    table = tmp_path / "trials.csv"
    assert cli("export", "--study-file", str(path), "--out", str(table)).returncode == 0
    header = table.read_text().splitlines()[0].split(",")
    assert header[header.index("val_accuracy") + 1] == "params"  # one column per objective
    report = tmp_path / "report"
    assert cli("report", "--study-file", str(path), "--out", str(report)).returncode == 0
    assert (report / "pareto.png").is_file() and (report / "hypervolume.png").is_file()
    html = (report / "index.html").read_text()
    assert "Pareto front: val_accuracy against params" in html
    assert "## Pareto front" in (report / "summary.md").read_text()


def test_a_resume_that_changes_the_objectives_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    config = parse_study(pareto_study(storage=url))
    prepare_study(config, optuna.storages.get_storage(url))
    swapped = dict(pareto_study(storage=url, study_name=config.study_name))
    swapped["objectives"] = list(reversed(swapped["objectives"]))
    with pytest.raises(Exception, match="changes what the trials"):
        prepare_study(parse_study(swapped), optuna.storages.get_storage(url))


# --- a trainable --------------------------------------------------------------------------


def test_a_trainable_gets_measured_objectives_and_reports_its_own() -> None:
    from pipeline.training import Objective, TrialPlan

    data = minimal_study(
        trainable="tiny_trainables:fit_line_timed",
        model="tiny_trainables:line_model",
        objectives=[
            {"metric": "mse", "direction": "minimize"},
            {"metric": "params"},
            {"metric": "latency_ms"},
        ],
        constraints={"peak_memory_mb": {"max": 100_000}, "compute_seconds": {"max": 600}},
        max_epochs=2,
        search_space={"lr": {"type": "float", "low": 0.05, "high": 0.2}},
    )
    for key in ("task", "metric", "direction"):
        del data[key]
    config = parse_study(data)
    function = load_user_function(config, "trainable")
    assert function is not None
    plan = TrialPlan.of(config, load_user_function(config, "model"))
    study = optuna.create_study(directions=config.directions)
    study.optimize(Objective(plan, function, torch.device("cpu")), n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE, trial.user_attrs
    assert trial.values[1:] == [2.0, 0.25]  # counted from model:, recorded by the trainable
    assert trial.values[0] == trial.user_attrs["mse"]
    assert trial.user_attrs["peak_memory_mb"] >= 0
    assert set(trial.constraints) == {"peak_memory_mb", "compute_seconds"}
    assert is_feasible(trial)


def test_the_report_draws_front_dominated_and_infeasible_trials_apart(tmp_path: Path) -> None:
    limits = Limits.of(
        parse_study(pareto_study(constraints={"latency_ms": {"max": 2}})).constraints
    )
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    study.set_metric_names(["val_accuracy", "params"])
    _tell(study, [0.91, 900.0], limits, latency_ms=1.0)  # trial 0: on the front
    _tell(study, [0.99, 100.0], limits, latency_ms=5.0)  # too slow: infeasible
    _tell(study, [0.80, 200.0], limits, latency_ms=1.5)  # on the front
    _tell(study, [0.70, 800.0], limits, latency_ms=0.5)  # dominated
    figure = pareto_figure(study)
    drawn = {trace.name: [int(t.split("#")[1]) for t in trace.text] for trace in figure.data}
    assert drawn == {"Pareto front": [0, 2], "feasible, dominated": [3], "infeasible": [1]}
    assert len({trace.marker.color for trace in figure.data}) == 3  # not a trial-number scale
    assert figure.layout.xaxis.title.text == "val_accuracy (maximize)"
    assert figure.layout.yaxis.title.text == "params (minimize)"
    html = write_study_report(study, tmp_path / "report").read_text()
    assert "front members, other feasible trials and infeasible trials" in html
    assert "in grey" not in html  # the old caption, which the colours did not keep
    # optuna-dashboard shows the same drawing on the study's page, as the study's own plot.
    shown = _dashboard_json(
        storage, f"/api/studies/{storage.get_study_id_from_name(study.study_name)}"
    )
    plots = {p["id"]: json.loads(p["graph_object"]) for p in shown["plotly_graph_objects"]}
    drawn_there = plots[DASHBOARD_PLOT]
    assert [trace["name"] for trace in drawn_there["data"]] == [t.name for t in figure.data]
    assert drawn_there["layout"]["xaxis"]["title"]["text"] == "val_accuracy (maximize)"


def _dashboard_json(storage: optuna.storages.BaseStorage, path: str) -> Any:
    """What optuna-dashboard's own API serves at ``path``, through its WSGI app."""
    import io
    import wsgiref.util

    import optuna_dashboard

    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    wsgiref.util.setup_testing_defaults(environ)
    environ["wsgi.input"] = io.BytesIO()
    status: list[str] = []
    body = b"".join(
        optuna_dashboard.wsgi(storage)(environ, lambda s, h, *exc_info: status.append(s))
    )
    assert status[0].startswith("200"), status
    return json.loads(body)
