"""Population-based training (``scheduler: pbt``) and Ray's ASHA rule (``asha`` with
``rule: ray``): decisions driven through Optuna's storage without training, then tiny
real populations."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

import optuna
import pytest
import yaml
from conftest import REPO, cli, minimal_study, with_tests_path
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from pipeline.config import PrunerConfig
from pipeline.exceptions import ConfigError
from pipeline.results import best_record, export, format_best
from pipeline.runner import run_worker
from pipeline.schedulers import Population, lineage, population_of, schedule, schedule_lines
from pipeline.search import check_pruner, make_pruner
from pipeline.study import prepare_study, storage_for
from pipeline.study._file import parse_study

# --- Ray's ASHA rule --------------------------------------------------------------------


def ray_percentile(values: list[float], q: float) -> float:
    """np.nanpercentile's default (linear) interpolation, written out: NaN dropped, the
    values sorted, the rank q/100 * (n - 1) interpolated between its neighbours."""
    kept = sorted(v for v in values if v == v)
    rank = q / 100 * (len(kept) - 1)
    low = int(rank)
    high = min(low + 1, len(kept) - 1)
    return kept[low] + (rank - low) * (kept[high] - kept[low])


def ray_stops(value: float, recorded: list[float], eta: float) -> bool:
    """Ray's ``_Bracket.on_result`` at a rung: stop below the (1 - 1/eta) percentile of
    what is recorded there; continue when nothing is recorded (or only NaN)."""
    if not [v for v in recorded if v == v]:
        return False
    return value < ray_percentile(recorded, (1 - 1 / eta) * 100)


# Values arriving at rung 1 (epoch 1), one trial after another; eta = 4.
SEQUENCE = [0.50, 0.40, 0.60, 0.55, 0.52, float("nan"), 0.58, 0.30, 0.61, 0.59]


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_rule_ray_decides_as_rays_formula_on_a_recorded_sequence(
    direction: Literal["minimize", "maximize"],
) -> None:
    pruner = make_pruner(PrunerConfig("asha", {"rule": "ray", "reduction_factor": 4}), 16)
    study = optuna.create_study(direction=direction, pruner=pruner)
    sign = 1.0 if direction == "maximize" else -1.0
    decisions, expected = [], []
    for index, value in enumerate(SEQUENCE):
        stored = value * sign  # a minimized metric: lower is better, Ray negates it
        trial = study.ask()
        trial.report(stored, 1)
        decisions.append(trial.should_prune())
        expected.append(ray_stops(value, SEQUENCE[:index], 4))
        if decisions[-1]:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, stored)
    assert decisions == expected
    # The rows written out: the 2nd continues above the 1st; the 3rd's cutoff is
    # 0.40 + 0.75 * (0.50 - 0.40) = 0.475, so 0.60 goes on; the 4th equals its cutoff
    # (0.55) and goes on; NaN stops nothing and is left out of later cutoffs (the last:
    # 0.58 + 0.25 * (0.60 - 0.58) = 0.585 over the eight numbers, so 0.59 goes on).
    assert expected == [False, True, False, False, True, False, False, True, False, False]


def test_rule_ray_judges_only_at_its_rungs() -> None:
    pruner = make_pruner(PrunerConfig("asha", {"rule": "ray", "reduction_factor": 3}), 27)
    assert pruner.rungs(27) == [1, 3, 9, 27]  # type: ignore[attr-defined]
    study = optuna.create_study(direction="maximize", pruner=pruner)
    study.add_trial(create_trial(value=1.0, intermediate_values={1: 1.0, 2: 1.0, 3: 1.0}))
    trial = study.ask()
    trial.report(0.0, 1)
    assert trial.should_prune()  # rung 1: below the only value recorded
    trial.report(0.0, 2)
    assert not trial.should_prune()  # epoch 2 is no rung


def test_rule_ray_survives_more_early_arrivals_than_optunas() -> None:
    """The issue's simulation: with eta 4 the 2nd..7th trials to reach a rung survive
    about 0.50, 0.41, 0.38, 0.35, 0.34, 0.33 of the time under Ray's rule."""
    rng = random.Random(0)
    runs = 20000
    survived = [0] * 7
    for _ in range(runs):
        values = [rng.random() for _ in range(7)]
        for k in range(1, 7):
            survived[k] += not ray_stops(values[k], values[:k], 4)
    rates = [s / runs for s in survived[1:]]
    for rate, expected in zip(rates, [0.50, 0.41, 0.38, 0.35, 0.34, 0.33], strict=True):
        assert rate == pytest.approx(expected, abs=0.02)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rule": "ray", "bootstrap_count": 2}, "bootstrap_count"),
        ({"rule": "fast"}, "expected optuna or ray"),
        ({"rule": "ray", "reduction_factor": 1}, "reduction_factor must be above 1"),
    ],
)
def test_bad_asha_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_pruner(PrunerConfig("asha", options))


def test_rule_optuna_stays_successive_halving() -> None:
    pruner = make_pruner(PrunerConfig("asha", {}), 10)
    assert isinstance(pruner, optuna.pruners.SuccessiveHalvingPruner)


# --- PBT decisions, through the storage ---------------------------------------------------


def pbt_study(**options: Any) -> dict[str, Any]:
    return minimal_study(
        task={"name": "tiny_task:tiny"},
        metric="val_accuracy",
        direction=None,
        max_epochs=4,
        scheduler={"name": "pbt", "options": {"population": 4, "interval": 2, **options}},
        search_space={"lr": {"type": "float", "low": 0.01, "high": 0.5, "log": True}},
    )


def _segment(study: optuna.Study, member: int, generation: int, value: float, **kw: Any) -> None:
    study.add_trial(
        create_trial(
            value=value,
            params={"lr": kw.get("lr", 0.1)},
            distributions={"lr": FloatDistribution(0.01, 0.5, log=True)},
            user_attrs={"member": member, "generation": generation, "parent": kw.get("parent")},
        )
    )


def test_the_bottom_quantile_copies_a_top_member_and_perturbs_its_values() -> None:
    population = population_of(parse_study(pbt_study()))
    assert population is not None
    study = optuna.create_study(direction="maximize")
    for member, value in enumerate([0.9, 0.5, 0.7, 0.2]):
        _segment(study, member, 0, value, lr=0.1)
    assert population.advance(study) == 4
    queued = {t.user_attrs["member"]: t for t in study.trials if t.state == TrialState.WAITING}
    assert queued[3].user_attrs["parent"] == 0  # the worst copies the best
    lr = queued[3].system_attrs["fixed_params"]["lr"]
    assert lr != 0.1 and 0.01 <= lr <= 0.5  # perturbed or drawn anew
    for member in (0, 1, 2):  # the others go on from their own segment, values unchanged
        assert queued[member].user_attrs["parent"] == member
        assert queued[member].system_attrs["fixed_params"] == {"lr": 0.1}
    assert {t.user_attrs["generation"] for t in queued.values()} == {1}
    assert population.advance(study) == 0  # nothing new until a segment completes


def test_explore_perturbs_by_a_factor_or_resamples_within_the_range() -> None:
    population = population_of(parse_study(pbt_study(resample_probability=0.0)))
    assert population is not None
    rng = random.Random(1)
    values = {round(population.explore({"lr": 0.1}, rng)["lr"], 6) for _ in range(50)}
    assert values == {0.08, 0.12}
    always = population_of(parse_study(pbt_study(resample_probability=1.0)))
    assert always is not None
    drawn = [always.explore({"lr": 0.1}, rng)["lr"] for _ in range(50)]
    assert all(0.01 <= v <= 0.5 for v in drawn) and len(set(drawn)) > 10
    clipped = population.explore({"lr": 0.5}, random.Random(3))["lr"]
    assert clipped <= 0.5


def test_synchronous_waits_for_the_whole_generation() -> None:
    population = population_of(parse_study(pbt_study(synchronous=True)))
    assert population is not None
    study = optuna.create_study(direction="maximize")
    for member, value in enumerate([0.9, 0.5, 0.7]):
        _segment(study, member, 0, value)
    study.enqueue_trial({}, user_attrs={"member": 3, "generation": 0, "parent": None})
    assert population.advance(study) == 0  # member 3 still has generation 0 to train


def test_a_segment_queued_twice_runs_once() -> None:
    study = optuna.create_study()
    for _ in range(2):  # two workers queued the same next segment in the same instant
        study.enqueue_trial({}, user_attrs={"member": 1, "generation": 2, "parent": 5})
    first, second = study.trials
    assert not Population.is_duplicate(study.trials, first)
    assert Population.is_duplicate(study.trials, second)


@pytest.mark.parametrize(
    ("options", "key", "message"),
    [
        ({"population": 1}, "scheduler.options.population", "at least 2"),
        ({"interval": 9}, "scheduler.options.interval", "between 1 and max_epochs"),
        ({"quantile": 0.7}, "scheduler.options.quantile", "at most 0.5"),
        ({"mutate": ["momentum"]}, "scheduler.options.mutate", "not a searched"),
        ({"perturbation_factors": []}, "scheduler.options.perturbation_factors", "positive"),
        ({"size": 3}, "scheduler.options.size", "unknown"),
    ],
)
def test_bad_scheduler_options_are_refused(options: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_study(pbt_study(**options))
    assert caught.value.key == key and message in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"keep_checkpoints": 0}, "keep_checkpoints"),
        ({"enqueue": [{"lr": 0.1}]}, "enqueue"),
        ({"objectives": [{"metric": "val_accuracy"}, {"metric": "params"}]}, "objectives"),
    ],
)
def test_pbt_without_what_it_needs_is_refused(overrides: dict[str, Any], key: str) -> None:
    raw = {**pbt_study(), **overrides}
    if "objectives" in overrides:  # they replace metric and direction
        raw.pop("metric"), raw.pop("direction")
    with pytest.raises(ConfigError) as caught:
        parse_study(raw)
    assert caught.value.key == key and "scheduler pbt" in str(caught.value)


def test_pbt_beside_a_pruner_is_refused() -> None:
    with pytest.raises(ConfigError, match="set pruner"):
        parse_study({**pbt_study(), "pruner": {"name": "median"}})


# --- a real population -----------------------------------------------------------------


@pytest.mark.slow
def test_a_population_trains_in_segments_with_continuous_curves(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    config = parse_study({**pbt_study(quantile=0.5, synchronous=True), "storage": url})
    prepare_study(config, storage_for(config))
    with open(tmp_path / "log", "w") as log:
        run_worker(config, log=log)
    study = optuna.load_study(study_name=config.study_name, storage=url)
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 8  # 4 members x 2 segments
    second = [t for t in trials if t.user_attrs["generation"] == 1]
    assert sorted(t.user_attrs["member"] for t in second) == [0, 1, 2, 3]
    for trial in second:  # epochs 3-4 trained on top of the parent's 1-2
        assert sorted(trial.intermediate_values) == [1, 2, 3, 4]
        parent = trials[trial.user_attrs["parent"]]
        assert trial.intermediate_values[2] == parent.intermediate_values[2]
    exploits = [
        t
        for t in second
        if trials[t.user_attrs["parent"]].user_attrs["member"] != t.user_attrs["member"]
    ]
    assert len(exploits) == 2  # quantile 0.5 of 4: the bottom two copy the top two
    chain = lineage(trials, exploits[0])
    stretches = schedule(chain)
    assert [(s.first, s.last) for s in stretches] == [(1, 2), (3, 4)] and stretches[1].exploit
    assert "(exploited)" in schedule_lines(stretches)[1]
    # What a user reads: the report's population, and the winner retrained from scratch.
    source = ("--storage", url, "--study-name", config.study_name)
    report = cli("report", *source, "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "report" / "population.png").exists()
    assert "The population" in (tmp_path / "report" / "index.html").read_text()
    replayed = cli("replay", *source)
    assert replayed.returncode == 0, replayed.stderr
    assert "from scratch" in replayed.stdout and "test_accuracy: " in replayed.stdout


def _history(study: optuna.Study) -> None:
    """Two members, two segments each; member 1 copied member 0 at epoch 2."""
    lr = FloatDistribution(0.01, 0.5, log=True)
    rows = [  # member, generation, parent, lr, value
        (0, 0, None, 0.1, 0.8),
        (1, 0, None, 0.02, 0.5),
        (0, 1, 0, 0.1, 0.85),
        (1, 1, 0, 0.12, 0.9),
    ]
    for member, generation, parent, value_lr, value in rows:
        epochs = 2 * (generation + 1)
        study.add_trial(
            create_trial(
                value=value,
                params={"lr": value_lr},
                distributions={"lr": lr},
                intermediate_values={e: value for e in range(1, epochs + 1)},
                user_attrs={
                    "member": member,
                    "generation": generation,
                    "parent": parent,
                    "epochs": epochs,
                },
            )
        )


def test_best_prints_the_winners_schedule_and_whom_it_descends_from() -> None:
    study = optuna.create_study(direction="maximize")
    _history(study)
    record = best_record(study)
    assert record is not None and record["trial"] == 3
    text = format_best(record)
    assert "epochs 1-2: lr=0.1  member 0, trials 0" in text
    assert "epochs 3-4: lr=0.12  member 1 (exploited), trials 3" in text


def test_the_best_segment_is_one_that_trained_deepest() -> None:
    study = optuna.create_study(direction="maximize")
    _history(study)
    study.add_trial(  # a better value, but after two epochs only: not the winner
        create_trial(value=0.99, user_attrs={"member": 2, "generation": 0, "epochs": 2})
    )
    record = best_record(study)
    assert record is not None and record["trial"] == 3


def test_export_has_member_generation_and_parent_columns(tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize")
    _history(study)
    (path,) = export(study, tmp_path / "trials.csv")
    header, *rows = Path(path).read_text().splitlines()
    assert header.startswith("number,state,member,generation,parent,")
    assert [row.split(",")[2:5] for row in rows] == [
        ["0", "0", ""],
        ["1", "0", ""],
        ["0", "1", "0"],
        ["1", "1", "0"],
    ]


def _worker(path: Path, index: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "worker", str(path), "--worker-index", str(index)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": with_tests_path()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_a_worker_killed_mid_segment_loses_nothing(tmp_path: Path) -> None:
    """Two workers on SQLite share a population; one is SIGKILLed inside a segment. The
    segment is re-run from its last checkpoint by the other, and every member ends with
    all its epochs, each curve continuous."""
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = minimal_study(
        storage=url,
        trainable="tiny_trainables:fit_line",  # checkpoints every epoch, sleeps in between
        metric="mse",
        direction="minimize",
        max_epochs=6,
        max_retries=1,
        heartbeat_interval=1,
        grace_period=3,
        scheduler={"name": "pbt", "options": {"population": 2, "interval": 3}},
        search_space={"lr": {"type": "float", "low": 0.01, "high": 0.2}, "sleep": 0.4},
        task=None,
    )
    study.pop("task")
    path = tmp_path / "pbt.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    victim, survivor = _worker(path, 0), _worker(path, 1)
    killed: list[int] = []
    deadline = time.time() + 120
    try:
        while not killed and time.time() < deadline:
            time.sleep(0.2)
            try:
                trials = optuna.load_study(study_name=study["study_name"], storage=url).trials
            except KeyError:
                continue  # not created yet
            for t in trials:
                pid = (t.user_attrs.get("worker_process") or {}).get("pid")
                if t.state == TrialState.RUNNING and pid == victim.pid and t.intermediate_values:
                    victim.send_signal(signal.SIGKILL)
                    killed.append(t.number)
                    break
        assert killed, "the victim never trained a segment"
        _, err = survivor.communicate(timeout=240)
        assert survivor.returncode == 0, err
    finally:
        for proc in (victim, survivor):
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
    trials = optuna.load_study(study_name=study["study_name"], storage=url).trials
    dead = trials[killed[0]]
    assert dead.state == TrialState.FAIL
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == dead.number]
    assert retry.state == TrialState.COMPLETE
    for key in ("member", "generation", "parent"):
        assert retry.user_attrs.get(key) == dead.user_attrs.get(key)
    assert retry.user_attrs["resumed_from"]["trial"] == dead.number  # its last checkpoint
    finals = [
        t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs["generation"] == 1
    ]
    assert sorted(t.user_attrs["member"] for t in finals) == [0, 1]
    for final in finals:  # every epoch of every member is there
        assert sorted(final.intermediate_values) == [1, 2, 3, 4, 5, 6]


def test_a_second_machine_with_local_checkpoints_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    path = tmp_path / "pbt.yaml"
    raw = {**pbt_study(), "storage": url}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    config = parse_study(raw)
    study = prepare_study(config, storage_for(config))
    study.add_trial(  # a segment another machine trained
        create_trial(
            value=0.5,
            user_attrs={"member": 0, "generation": 0, "worker_process": {"boot_id": "elsewhere"}},
        )
    )
    result = cli("worker", str(path), "--storage", url)
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    assert "ran on another machine" in line and "artifacts: s3://" in line


def test_the_built_in_loop_keeps_the_optimizer_state_and_takes_the_new_values() -> None:
    """After an exploit the momentum buffers go on, while lr and momentum are the new
    segment's: fit() loads the checkpoint's optimizer state, then sets the values."""
    import torch
    from tiny_task import tiny

    from pipeline.training import fit

    task = tiny()
    splits = task.load(task.resolve_options({}))
    hp = {"hidden": 8, "diverge": False, "fail": False, "optimizer": "sgd"}
    model = task.build_model(hp, splits)
    first: dict[str, Any] = {}
    fit(
        model,
        task,
        splits.train,
        splits.val,
        {**hp, "lr": 0.5, "momentum": 0.9},
        1,
        torch.Generator().manual_seed(0),
        carry=first,
    )
    saved = first["optimizer"]
    carry = {"epoch": 1, "optimizer": saved}
    results = fit(
        model,
        task,
        splits.train,
        splits.val,
        {**hp, "lr": 0.01, "momentum": 0.5},
        1,
        torch.Generator().manual_seed(0),
        carry=carry,
    )
    assert results == []  # epoch 1 was trained already: nothing left to train
    group = carry["optimizer"]["param_groups"][0]
    assert (group["lr"], group["momentum"]) == (0.01, 0.5)
    before, after = (
        saved["state"][0]["momentum_buffer"],
        carry["optimizer"]["state"][0]["momentum_buffer"],
    )
    assert torch.equal(before, after)
