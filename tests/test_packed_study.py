"""Packed studies: a study file with ``packing`` stores what the same study unpacked does.

Real workers on SQLite, real training on the bundled digits (CPU, ``packing.on_cpu``):
each member is its own trial with its own reports, pruning, attributes and checkpoint.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml
from conftest import minimal_study, run_cli
from optuna.trial import TrialState

import pipeline
from pipeline.artifacts import load_checkpoint
from pipeline.artifacts._checkpoints import open_store
from pipeline.exceptions import ConfigError
from pipeline.packing import Packer
from pipeline.packing._worker import Heartbeat, Member
from pipeline.runner import run_worker
from pipeline.study import prepare_study, storage_for
from pipeline.study._file import parse_study
from pipeline.tasks import resolve_task
from pipeline.training import Objective, Session, TaskTrainable, TrialPlan, hyperparameters
from pipeline.training._measure import available_memory
from pipeline.trial import Attr

SPACE = {
    "lr": {"type": "float", "low": 0.001, "high": 1e10, "log": True},
    "momentum": {"type": "float", "low": 0.0, "high": 0.95},
    "l1": {"type": "int", "low": 4, "high": 128},
    "l2": {"type": "int", "low": 4, "high": 64},
    "batch_size": 32,
}
CONFIGS = [
    {"lr": 0.05, "momentum": 0.9, "l1": 16, "l2": 8},
    {"lr": 0.02, "momentum": 0.5, "l1": 120, "l2": 60},
    {"lr": 1e9, "momentum": 0.0, "l1": 32, "l2": 32},  # diverges: pruned alone
    {"lr": 0.1, "momentum": 0.0, "l1": 4, "l2": 40},
]


def _run(tmp_path: Path, name: str, **changes: Any) -> optuna.Study:
    raw = minimal_study(
        study_name=name,
        storage=f"sqlite:///{tmp_path}/optuna.db",
        artifacts=str(tmp_path / "artifacts"),
        max_epochs=3,
        n_trials=len(CONFIGS),
        search_space=SPACE,
        enqueue=CONFIGS,
        keep_checkpoints=len(CONFIGS),
    )
    config = parse_study({**raw, **changes})
    prepare_study(config, storage_for(config))
    run_worker(config)
    return optuna.load_study(study_name=name, storage=config.storage)


PACKED = {"packing": {"max_members": 4, "on_cpu": True}}
Pair = tuple[optuna.Study, optuna.Study, Path]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    """The same enqueued study run unpacked, then packed, in one storage."""
    tmp_path = tmp_path_factory.mktemp("pair")
    return _run(tmp_path, "alone"), _run(tmp_path, "packed", **PACKED), tmp_path


@pytest.mark.slow
def test_a_packed_study_stores_what_the_unpacked_study_stores(pair: Pair) -> None:
    alone, packed, _ = pair
    assert [t.params for t in packed.trials] == [t.params for t in alone.trials]
    assert [t.state for t in packed.trials] == [t.state for t in alone.trials]
    assert packed.trials[2].state == TrialState.PRUNED  # the diverged member, alone
    assert "non-finite" in packed.trials[2].user_attrs[Attr.PRUNED_REASON]
    for mine, theirs in zip(packed.trials, alone.trials, strict=True):
        assert mine.intermediate_values.keys() == theirs.intermediate_values.keys()
        for step, value in theirs.intermediate_values.items():
            assert mine.intermediate_values[step] == pytest.approx(value, rel=1e-4)
        # Members share one pack's memory: peak_memory_mb is a solo trial's alone.
        assert mine.user_attrs.keys() == theirs.user_attrs.keys() - {"peak_memory_mb"}
        for name in ("params", "latency_ms"):
            assert name in mine.user_attrs
        if mine.state == TrialState.COMPLETE:
            assert mine.value == pytest.approx(theirs.value, rel=1e-4)
            for name in ("val_accuracy", "test_loss", "test_accuracy", "epochs", "params"):
                assert mine.user_attrs[name] == pytest.approx(theirs.user_attrs[name], rel=1e-4)
            assert len(mine.user_attrs[Attr.HISTORY]) == 3


@pytest.mark.slow
def test_a_packed_trial_checkpoint_reads_back_as_an_unpacked_one(pair: Pair) -> None:
    alone, packed, tmp_path = pair
    store = open_store(tmp_path / "artifacts", create=False)
    for mine, theirs in zip(packed.trials, alone.trials, strict=True):
        if mine.state != TrialState.COMPLETE:
            continue
        saved = load_checkpoint(store, mine.user_attrs[Attr.CHECKPOINT])
        reference = load_checkpoint(store, theirs.user_attrs[Attr.CHECKPOINT])
        assert saved.keys() == reference.keys()
        assert saved["hyperparameters"] == reference["hyperparameters"]
        for key, tensor in reference["state_dict"].items():
            torch.testing.assert_close(saved["state_dict"][key], tensor, rtol=1e-3, atol=1e-3)
    model = pipeline.load_best(
        "packed", f"sqlite:///{tmp_path}/optuna.db", str(tmp_path / "artifacts")
    )
    assert isinstance(model.head, torch.nn.Sequential)
    fc1 = model.head[1]
    assert isinstance(fc1, torch.nn.Linear)
    assert fc1.out_features == packed.best_trial.params["l1"]


@pytest.mark.slow
def test_a_pruned_member_leaves_the_pack_and_its_neighbours_finish(tmp_path: Path) -> None:
    pruner = {"name": "median", "options": {"n_startup_trials": 2, "n_warmup_steps": 0}}
    more = [*CONFIGS[:2], CONFIGS[3], CONFIGS[1], {**CONFIGS[0], "lr": 0.002}, CONFIGS[3]]
    alone = _run(tmp_path, "alone", enqueue=more, n_trials=len(more), pruner=pruner)
    packed = _run(tmp_path, "packed", enqueue=more, n_trials=len(more), pruner=pruner, **PACKED)
    pruned = [t for t in packed.trials if t.state == TrialState.PRUNED]
    assert pruned, "the median pruner stopped no member of the second pack"
    for trial in pruned:
        assert len(trial.intermediate_values) < 3
        assert "pruner stopped it" in trial.user_attrs[Attr.PRUNED_REASON]
    # A member's values depend on nothing but its own run, pruned neighbours or not.
    for mine, theirs in zip(packed.trials, alone.trials, strict=True):
        for step in mine.intermediate_values.keys() & theirs.intermediate_values.keys():
            assert mine.intermediate_values[step] == pytest.approx(
                theirs.intermediate_values[step], rel=1e-4
            )
    complete = [t for t in packed.trials if t.state == TrialState.COMPLETE]
    assert all(len(t.intermediate_values) == 3 for t in complete)
    assert all(math.isfinite(t.user_attrs["test_loss"]) for t in complete)


@pytest.mark.slow
def test_a_trial_that_fits_no_pack_trains_alone_beside_the_pack(tmp_path: Path) -> None:
    space = {**SPACE, "optimizer": {"type": "categorical", "choices": ["sgd", "rmsprop"]}}
    configs = [
        {**CONFIGS[0], "optimizer": "sgd"},
        {**CONFIGS[1], "optimizer": "rmsprop", "lr": 0.001},  # no packed rmsprop update
        {**CONFIGS[3], "optimizer": "sgd"},
    ]
    same = {"search_space": space, "enqueue": configs, "n_trials": 3}
    alone = _run(tmp_path, "alone", **same)
    packed = _run(tmp_path, "packed", **same, **PACKED)
    assert [t.state for t in packed.trials] == [TrialState.COMPLETE] * 3
    for mine, theirs in zip(packed.trials, alone.trials, strict=True):
        assert mine.params == theirs.params
        for step, value in theirs.intermediate_values.items():
            assert mine.intermediate_values[step] == pytest.approx(value, rel=1e-4)


def test_a_group_too_large_for_memory_is_cut_into_packs_that_fit() -> None:
    config = parse_study({**minimal_study(), **PACKED})
    assert config.task is not None
    task = resolve_task(config.task)
    trainable = TaskTrainable(task, task.load(task.resolve_options({})), {})
    objective = Objective(TrialPlan.of(config), trainable, torch.device("cpu"))
    storage = optuna.storages.InMemoryStorage()
    assert config.packing is not None
    packer = Packer(config.packing, trainable, objective, lambda study, trial: None, storage)
    free = available_memory(torch.device("cpu"))
    assert free is not None
    # digits' fc layers hold about 97 x l1 weights; 4 copies each (weights, gradients,
    # optimizer state) of 4 bytes. One such member takes 60% of the free memory.
    wide = int(0.6 * free / (97 * 4 * 4))

    study = optuna.create_study()

    def group(l1: int) -> list[Member]:
        hp = hyperparameters(task, {"l1": l1})
        trials = [study.ask() for _ in range(4)]
        cpu = torch.device("cpu")
        return [Member(t, Session(t, "val_loss", 1, device=cpu, seed=0), hp) for t in trials]

    assert [len(part) for part in packer.packs(group(16))] == [4]
    assert [len(part) for part in packer.packs(group(wide))] == [1, 1, 1, 1]


BAD = [
    ({"packing": {"max_members": 0, "on_cpu": True}}, "packing.max_members: must be from 1"),
    ({"packing": {"max_members": 4}}, "packing: packing is measured slower"),
    ({"packing": {"max_members": 4, "spread": 2}}, "packing.spread"),
    (
        {"packing": {"on_cpu": True}, "task": {"name": "tiny_task:tiny"}},
        "names no packable model family",
    ),
    (
        {
            "packing": {"on_cpu": True},
            "objectives": [
                {"metric": "val_accuracy", "direction": "maximize"},
                {"metric": "params", "direction": "minimize"},
            ],
        },
        "packed trials have one objective and no constraints",
    ),
    (
        {"packing": {"on_cpu": True}, "constraints": {"params": {"max": 1000}}},
        "packed trials have one objective and no constraints",
    ),
    (
        {"packing": {"on_cpu": True}, "tracking": {"tensorboard": "runs/tb"}},
        "packed trials are not mirrored to tracking yet",
    ),
]


@pytest.mark.parametrize(("changes", "message"), BAD)
def test_packing_mistakes_are_refused_in_one_line(changes: dict[str, Any], message: str) -> None:
    raw = {**minimal_study(), **changes}
    if "objectives" in changes:  # they replace metric and direction
        del raw["metric"], raw["direction"]
    with pytest.raises(ConfigError) as caught:
        parse_study(raw, "s.yaml")
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="device: auto finds a GPU here")
@pytest.mark.parametrize("device", ["cpu", "auto"])  # refused when read / when resolved
def test_packing_on_the_cpu_is_refused_with_its_reason_and_exit_code_2(
    tmp_path: Path, device: str
) -> None:
    path = tmp_path / "s.yaml"
    raw = minimal_study(
        storage=f"sqlite:///{tmp_path}/optuna.db", packing={"max_members": 8}, device=device
    )
    path.write_text(yaml.safe_dump(raw))
    result = run_cli("tune", str(path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {path}: packing: packing is measured slower than unpacked trials on the CPU "
        "(0.56-0.93x); use device: cuda (or auto on a GPU machine), or set packing.on_cpu: "
        "true to run it anyway"
    ]
    assert not (tmp_path / "optuna.db").exists()  # refused before the study is made


@pytest.mark.slow
def test_ctrl_c_interrupts_every_member_and_requeues_each(tmp_path: Path) -> None:
    raw = minimal_study(
        study_name="stopped",
        storage=f"sqlite:///{tmp_path}/optuna.db",
        max_epochs=3,
        n_trials=len(CONFIGS),
        search_space=SPACE,
        enqueue=CONFIGS,
        **PACKED,
    )
    config = parse_study(raw)
    study = prepare_study(config, storage_for(config))

    def stop() -> bool:  # Ctrl-C once the first member has reported its first epoch
        return any(t.intermediate_values for t in study.get_trials(deepcopy=False))

    run_worker(config, should_stop=stop)
    trials = study.get_trials(deepcopy=False)
    stopped = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.user_attrs[Attr.OUTCOME] for t in stopped] == ["interrupted"] * 3
    assert trials[2].state == TrialState.PRUNED  # it diverged in the epoch before the stop
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert sorted(t.params["l1"] for t in waiting) == sorted(t.params["l1"] for t in stopped)


@pytest.mark.slow
def test_the_heartbeat_keeps_running_members_alive_and_stops_with_them(tmp_path: Path) -> None:
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        storage = optuna.storages.RDBStorage(
            f"sqlite:///{tmp_path}/beat.db", heartbeat_interval=1, grace_period=2
        )
    study = optuna.create_study(storage=storage)
    with pytest.warns(UserWarning, match="Heartbeat"):
        alive, ended = study.ask(), study.ask()
    beat = Heartbeat(storage, study)
    with beat.running():
        beat.add(alive.number)
        beat.add(ended.number)
        beat.done(ended.number)  # it ended: no more beats
        time.sleep(3.5)
        with pytest.warns(optuna.exceptions.ExperimentalWarning):
            optuna.storages.fail_stale_trials(study)
    states = {t.number: t.state for t in study.get_trials()}
    assert states == {alive.number: TrialState.RUNNING, ended.number: TrialState.FAIL}


ROOM = [
    # (n_trials, max_total_epochs, finished trials of 2 epochs, running trials, room)
    (10, None, 3, 2, 5),
    (10, None, 10, 0, 0),
    (None, None, 0, 0, 10**6),
    (None, 20, 3, 2, 5),  # 6 epochs trained, 2 running reserve 4: 10 left, 5 trials of 2
    (4, 20, 0, 0, 4),
]


@pytest.mark.parametrize(("n_trials", "epochs", "finished", "running", "room"), ROOM)
def test_a_packing_worker_asks_for_no_more_trials_than_the_budget_has_room_for(
    n_trials: int | None, epochs: int | None, finished: int, running: int, room: int
) -> None:
    from pipeline.study import Budget

    study = optuna.create_study()
    for _ in range(finished):
        study.add_trial(optuna.trial.create_trial(value=1.0, intermediate_values={1: 1.0, 2: 1.0}))
    for _ in range(running):
        study.ask()
    budget = Budget(n_trials, max_total_epochs=epochs, max_epochs=2)
    assert min(budget.room(study), 10**6) == room
