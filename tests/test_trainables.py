"""The user's own training function: the Session API, its mistakes, resuming from a
checkpoint after a failure or a killed worker, and the Ray Tune tutorial's train_cifar."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml
from conftest import REPO, cli, minimal_study, run_cli, with_tests_path
from optuna.trial import TrialState
from vision_data import write_cifar10

from pipeline import load_best
from pipeline.artifacts import load_checkpoint
from pipeline.artifacts._checkpoints import open_store
from pipeline.exceptions import ConfigError
from pipeline.runner._worker import FailurePolicy
from pipeline.study._file import parse_study
from pipeline.training import Objective, TrialPlan, load_user_function
from pipeline.trial import reason_of


def _trainable_study(**overrides: Any) -> dict[str, Any]:
    study = minimal_study(
        trainable="tiny_trainables:fit_line",
        metric="mse",
        direction="minimize",
        max_epochs=6,
        search_space={"lr": {"type": "float", "low": 0.05, "high": 0.2}},
    )
    del study["task"]
    study.update(overrides)
    return study


def _objective(tmp_path: Path, **overrides: Any) -> Objective:

    config = parse_study(_trainable_study(**overrides))
    function = load_user_function(config, "trainable")
    assert function is not None
    store = open_store(tmp_path / "artifacts")
    return Objective(TrialPlan.of(config), function, torch.device("cpu"), store=store)


@pytest.mark.parametrize(
    ("overrides", "key", "words"),
    [
        ({"trainable": "tiny_trainables:nope"}, "trainable", "has no function 'nope'"),
        ({"trainable": "no_such_module:f"}, "trainable", "cannot import 'no_such_module'"),
        ({"trainable": "tiny_trainables:one_argument"}, "trainable", "(config, session)"),
        ({"task": {"name": "digits"}}, "task", "not both"),
        ({"trainable": None}, "task", "is missing"),
        ({"metric": "f1", "direction": None}, "direction", "is required"),
        ({"metric": "val_loss", "direction": "maximize"}, "direction", "use direction: minimize"),
        ({"model": "tiny_trainables:raises"}, "model", "(config)"),
        ({"trainable_args": {"lr": 0.1}}, "trainable_args.lr", "is in search_space too"),
        (
            {"task": {"name": "digits"}, "trainable": None, "trainable_args": {"data_dir": "d"}},
            "trainable_args",
            "is for trainables",
        ),
        (
            {"trainable": "tiny_trainables:needs_data_dir"},
            "trainable",
            "must be def needs_data_dir(config, session)",
        ),
    ],
)
def test_a_wrong_trainable_study_is_one_line_naming_the_key(
    overrides: dict[str, Any], key: str, words: str
) -> None:
    raw = {k: v for k, v in _trainable_study(**overrides).items() if v is not None}
    with pytest.raises(ConfigError) as caught:
        parse_study(raw, "study.yaml")
    message = str(caught.value)
    assert caught.value.key == key and words in message, message
    assert "\n" not in message


def test_every_metric_of_every_epoch_is_kept_and_the_study_metric_reported(
    tmp_path: Path,
) -> None:
    study = optuna.create_study()
    study.optimize(_objective(tmp_path), n_trials=2)
    for trial in study.trials:
        assert trial.state == TrialState.COMPLETE
        history = trial.user_attrs["history"]
        assert [row["epoch"] for row in history] == [1, 2, 3, 4, 5, 6]
        assert {"mse", "train_loss", "pid"} <= set(history[0])
        assert trial.intermediate_values == {row["epoch"]: row["mse"] for row in history}
        assert trial.value == history[-1]["mse"] == trial.user_attrs["mse"]
        assert trial.user_attrs["epochs"] == 6
        # The last checkpoint is kept as an artifact linked to the trial.
        saved = load_checkpoint(open_store(tmp_path / "artifacts"), trial.user_attrs["checkpoint"])
        assert saved["epoch"] == 6 and set(saved["model"]) == {"weight", "bias"}


@pytest.mark.parametrize(
    ("trainable", "metric", "reason"),
    [
        ("never_reports", "mse", r"TrainableError: reported no metric: call session.report"),
        ("wrong_metric", "mse", r"reported loss, accuracy but not 'mse', the study's metric"),
        ("raises", "mse", r"KeyError: 'missing' \(at tiny_trainables.py:\d+ in raises\)"),
    ],
)
def test_a_trainable_mistake_fails_its_trial_with_a_reason_and_the_study_goes_on(
    tmp_path: Path, trainable: str, metric: str, reason: str
) -> None:
    study = optuna.create_study()
    objective = _objective(tmp_path, trainable=f"tiny_trainables:{trainable}", metric=metric)
    study.optimize(objective, n_trials=2, catch=(Exception,))
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 2
    assert re.search(reason, study.trials[0].user_attrs["fail_reason"]), study.trials[0].user_attrs


def test_a_retried_trial_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    objective = _objective(
        tmp_path,
        search_space={"lr": 0.1, "fail_after": 3, "x": {"type": "int", "low": 0, "high": 1}},
    )
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/o.db")
    policy = FailurePolicy(0, 1, 3, objective.store, open(os.devnull, "w"))
    study.optimize(objective, n_trials=2, catch=(Exception,), callbacks=[policy])
    first, retry = study.trials
    assert (
        first.state == TrialState.FAIL
        and "lost the GPU after epoch 3" in first.user_attrs["fail_reason"]
    )
    assert retry.state == TrialState.COMPLETE and retry.params == first.params
    assert retry.user_attrs["resumed_from"] == {"trial": 0, "epoch": 3}
    # Epochs 1-3 are carried over from the first attempt, not trained again.
    assert sorted(retry.intermediate_values) == [1, 2, 3, 4, 5, 6]
    for epoch in (1, 2, 3):
        assert retry.intermediate_values[epoch] == first.intermediate_values[epoch]
    assert [row["trial"] for row in retry.user_attrs["history"]] == [0, 0, 0, 1, 1, 1]
    # Only the kept checkpoint is left: the working copies of both attempts are gone.
    left = sorted(p.name for p in (tmp_path / "artifacts").iterdir())
    assert left == [retry.user_attrs["checkpoint"]]


def test_restore_is_none_on_a_first_attempt(tmp_path: Path) -> None:
    seen = []

    def trainable(config: dict[str, Any], session: Any) -> None:
        seen.append(session.restore())
        session.report(1, mse=1.0)

    config = parse_study(_trainable_study(max_epochs=1))
    study = optuna.create_study()
    study.optimize(Objective(TrialPlan.of(config), trainable, torch.device("cpu")), n_trials=1)
    assert seen == [None] and study.trials[0].state == TrialState.COMPLETE


def _write(tmp_path: Path, study: dict[str, Any]) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def _trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


@pytest.mark.slow
def test_a_sigkilled_worker_s_trial_resumes_from_its_last_checkpointed_epoch(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = _trainable_study(
        storage=url,
        n_trials=1,
        max_epochs=8,
        max_retries=1,
        search_space={"lr": {"type": "float", "low": 0.05, "high": 0.2}, "sleep": 0.2},
    )
    path = _write(tmp_path, study)
    env = {**os.environ, "PYTHONPATH": with_tests_path()}
    command = [sys.executable, "-m", "pipeline", "worker", str(path), "--threads", "1"]
    victim = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.2)
        try:
            (trial,) = _trials(url, study["study_name"])
        except (KeyError, ValueError):
            continue
        if trial.user_attrs.get("resume", {}).get("epoch", 0) >= 3:
            victim.send_signal(signal.SIGKILL)
            break
    else:
        victim.kill()
        pytest.fail("the trial did not reach epoch 3 in time")
    victim.communicate()
    killed_at = _trials(url, study["study_name"])[0].user_attrs["resume"]["epoch"]
    rescuer = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240
    )
    assert rescuer.returncode == 0, rescuer.stderr
    first, retry = _trials(url, study["study_name"])
    assert first.state == TrialState.FAIL
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["retry_of"] == 0
    assert retry.user_attrs["resumed_from"] == {"trial": 0, "epoch": killed_at}
    assert sorted(retry.intermediate_values) == list(range(1, 9))
    for epoch in range(1, killed_at + 1):
        assert retry.intermediate_values[epoch] == first.intermediate_values[epoch]
    history = retry.user_attrs["history"]
    # Epochs up to the checkpoint were trained by the killed process, the rest by the new one.
    assert {row["pid"] for row in history[:killed_at]} == {victim.pid}
    assert victim.pid not in {row["pid"] for row in history[killed_at:]}
    assert [row["epoch"] for row in history] == list(range(1, 9))


@pytest.mark.slow
def test_the_ray_tutorial_runs_with_two_workers_asha_and_checkpoints(tmp_path: Path) -> None:
    data = write_cifar10(tmp_path / "data", per_batch=40, test=40)
    url = f"sqlite:///{tmp_path}/optuna.db"
    result = run_cli(
        "tune",
        str(REPO / "studies" / "ray_tutorial.yaml"),
        "--storage",
        url,
        "--n-trials",
        "8",
        "--set",
        f"trainable_args.data_dir={data}",
        "--set",
        "trainable_args.verify_checksums=false",
        "--set",
        "trainable_args.num_workers=0",
        "--set",
        "max_epochs=3",  # below the loop's range(start_epoch, 10): ASHA's max_t=3
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 worker(s)" in result.stdout
    header = next(line for line in result.stdout.splitlines() if line.startswith("trial"))
    assert header.split()[-4:] == ["loss", "accuracy", "epochs", "seconds"]
    trials = _trials(url, "ray-tutorial")
    states = [t.state for t in trials]
    assert states.count(TrialState.PRUNED) >= 1 and states.count(TrialState.COMPLETE) >= 1
    note = "stopped at max_epochs (3): the trainable went on to epoch 4"
    for trial in trials:
        if trial.state == TrialState.COMPLETE:
            assert trial.user_attrs["note"] == note and trial.user_attrs["epochs"] == 3
            assert set(trial.params) == {"l1", "l2", "lr", "batch_size"}  # no data_dir
    assert f"({note})" in result.stdout  # the live table's row of a complete trial
    assert "test accuracy" in result.stdout  # the study's test: function scored the winner
    best = cli("best", "--storage", url, "--study", "ray-tutorial", "--json")
    record = json.loads(best.stdout)
    assert Path(record["checkpoint_path"]).is_file()
    assert record["metric"] == "loss" and 0 <= record["accuracy"] <= 1
    net = load_best("ray-tutorial", url)
    assert type(net).__name__ == "Net" and not net.training
    # The rebuilt winner scores what the test function scored at the end of tune.
    final = optuna.load_study(study_name="ray-tutorial", storage=url).user_attrs
    assert 0 <= final["final_evaluation"]["test_accuracy"] <= 1


@pytest.mark.slow
def test_the_ray_tutorial_s_loop_survives_a_sigkill_and_completes_at_max_epochs(
    tmp_path: Path,
) -> None:
    """The tutorial's own loop (range(start_epoch, 10), a restart at the saved epoch) with
    max_epochs 3: the worker is SIGKILLed mid-trial; the retry restores, reports the
    checkpoint's epoch again and completes at max_epochs."""
    data = write_cifar10(tmp_path / "data", per_batch=40, test=20)
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = yaml.safe_load((REPO / "studies" / "ray_tutorial.yaml").read_text())
    study.update(
        storage=url,
        n_trials=1,
        max_epochs=3,
        max_retries=1,
        workers=1,
        device="cpu",
        pruner={"name": "none"},
        heartbeat_interval=None,
    )
    study["search_space"]["batch_size"] = 2  # 80 steps an epoch: time to kill mid-trial
    study["trainable_args"].update(data_dir=str(data), verify_checksums=False, num_workers=0)
    path = _write(tmp_path, study)
    env = {**os.environ, "PYTHONPATH": with_tests_path()}
    command = [sys.executable, "-m", "pipeline", "worker", str(path), "--threads", "1"]
    victim = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.05)
        try:
            (trial,) = _trials(url, "ray-tutorial")
        except (KeyError, ValueError):
            continue
        if trial.user_attrs.get("resume", {}).get("epoch", 0) >= 1:
            victim.send_signal(signal.SIGKILL)
            break
    else:
        victim.kill()
        pytest.fail("the trial did not checkpoint an epoch in time")
    victim.communicate()
    first = _trials(url, "ray-tutorial")[0]
    killed_at = first.user_attrs["resume"]["epoch"]
    assert first.state == TrialState.RUNNING, "killed too late"
    rescuer = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240
    )
    assert rescuer.returncode == 0, rescuer.stderr
    first, retry = _trials(url, "ray-tutorial")
    assert first.state == TrialState.FAIL
    assert retry.state == TrialState.COMPLETE, retry.user_attrs.get("fail_reason")
    assert retry.user_attrs["note"] == "stopped at max_epochs (3): the trainable went on to epoch 4"
    assert retry.user_attrs["resumed_from"] == {"trial": 0, "epoch": killed_at}
    history = retry.user_attrs["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]
    # The epochs before the checkpoint's are the killed attempt's; the checkpoint's epoch
    # was trained again by the retry (the tutorial restarts at it) and replaced.
    owners = [row["trial"] for row in history]
    assert owners == [0] * (killed_at - 1) + [retry.number] * (4 - killed_at)
    assert retry.intermediate_values == {row["epoch"]: row["loss"] for row in history}
    for epoch in range(1, killed_at):
        assert retry.intermediate_values[epoch] == first.intermediate_values[epoch]
    assert "already reported" not in rescuer.stderr


def test_provenance_records_the_user_code_s_git_revision_beside_the_pipeline_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.study._provenance import collect, git_revision

    # The user's own package, in a repository of its own.
    package = tmp_path / "user_repo" / "user_code"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "train.py").write_text(
        "def train(config, session):\n    session.report(val_loss=1.0)\n"
    )
    git = ["git", "-c", "user.name=u", "-c", "user.email=u@example.org"]
    subprocess.run(["git", "init", "-q"], cwd=package.parent, check=True)
    subprocess.run(["git", "add", "."], cwd=package.parent, check=True)
    subprocess.run([*git, "commit", "-qm", "user code"], cwd=package.parent, check=True)
    monkeypatch.syspath_prepend(str(package.parent))
    own = parse_study(minimal_study(task=None, trainable="user_code.train:train"))
    record = collect(own)
    assert record["code_git_revision"] == git_revision(package)
    assert record["code_git_revision"] not in (None, record["git_revision"])
    assert collect(parse_study(minimal_study()))["code_git_revision"] is None  # built-in task


# --- Ray-style loops: past max_epochs, a restart at the saved epoch, fixed arguments ---


def _ray_style(tmp_path: Path, **overrides: Any) -> Objective:
    """The tests' Ray-tutorial-shaped loop (range(start_epoch, 10)) with max_epochs 3."""
    return _objective(
        tmp_path, **{"trainable": "tiny_trainables:ray_style", "max_epochs": 3, **overrides}
    )


def test_a_loop_past_max_epochs_completes_there_with_a_note(tmp_path: Path) -> None:
    study = optuna.create_study()
    study.optimize(_ray_style(tmp_path), n_trials=2)
    for trial in study.trials:
        assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("fail_reason")
        note = "stopped at max_epochs (3): the trainable went on to epoch 4"
        assert trial.user_attrs["note"] == note and reason_of(trial) == note
        history = trial.user_attrs["history"]
        assert [row["epoch"] for row in history] == [1, 2, 3] and trial.user_attrs["epochs"] == 3
        assert trial.value == history[-1]["mse"]
        assert trial.intermediate_values == {row["epoch"]: row["mse"] for row in history}
        # The checkpoint kept is the one of epoch 3 (the tutorial's dict counts from 0).
        saved = load_checkpoint(open_store(tmp_path / "artifacts"), trial.user_attrs["checkpoint"])
        assert saved["epoch"] == 2


def test_a_first_report_past_max_epochs_fails_naming_the_budget(tmp_path: Path) -> None:
    def trainable(config: dict[str, Any], session: Any) -> None:
        session.report(5, mse=1.0)

    config = parse_study(_trainable_study(max_epochs=3))
    study = optuna.create_study()
    objective = Objective(TrialPlan.of(config), trainable, torch.device("cpu"))
    study.optimize(objective, n_trials=1, catch=(Exception,))
    (trial,) = study.trials
    assert trial.state == TrialState.FAIL
    assert "session.report(epoch=5) is beyond max_epochs (3)" in trial.user_attrs["fail_reason"]


def test_a_retry_that_reports_the_restored_epoch_again_replaces_its_value(tmp_path: Path) -> None:
    objective = _ray_style(
        tmp_path,
        max_epochs=5,
        search_space={"lr": 0.1, "fail_after": 3, "x": {"type": "int", "low": 0, "high": 1}},
    )
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/o.db")
    policy = FailurePolicy(0, 1, 3, objective.store, open(os.devnull, "w"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        study.optimize(objective, n_trials=2, catch=(Exception,), callbacks=[policy])
    first, retry = study.trials
    assert first.state == TrialState.FAIL and sorted(first.intermediate_values) == [1, 2, 3]
    assert retry.state == TrialState.COMPLETE, retry.user_attrs.get("fail_reason")
    assert retry.user_attrs["resumed_from"] == {"trial": 0, "epoch": 3}
    history = retry.user_attrs["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3, 4, 5]
    # Epoch 3 was trained again by the retry: its new value replaced the first attempt's,
    # in the history and in Optuna's intermediate values alike.
    assert [row["trial"] for row in history] == [0, 0, 1, 1, 1]
    assert retry.intermediate_values == {row["epoch"]: row["mse"] for row in history}
    assert retry.intermediate_values[3] != first.intermediate_values[3]
    assert [retry.intermediate_values[e] for e in (1, 2)] == [
        first.intermediate_values[e] for e in (1, 2)
    ]
    assert not [w for w in caught if "already reported" in str(w.message)]
    assert retry.user_attrs["note"] == "stopped at max_epochs (5): the trainable went on to epoch 6"


def test_trainable_args_reach_config_and_keywords_but_are_no_hyperparameters(
    tmp_path: Path,
) -> None:
    from pipeline.study._provenance import note

    args = {"data_dir": "/data/cifar", "loader_workers": 2}
    config = parse_study(_trainable_study(max_epochs=3, trainable_args=args))
    study = optuna.create_study()
    study.optimize(_ray_style(tmp_path, trainable_args=args), n_trials=2)
    for trial in study.trials:
        assert trial.state == TrialState.COMPLETE
        assert trial.user_attrs["data_dir_keyword"] == "/data/cifar"
        assert trial.user_attrs["config_keys"] == ["data_dir", "loader_workers", "lr"]
        assert set(trial.params) == {"lr"}  # what the sampler, dashboard and export see
    shown = note(config)  # the dashboard's note: its parameter table
    assert "`lr`" in shown and "data_dir" not in shown and "loader_workers" not in shown
    assert config.to_dict()["trainable_args"] == args  # the study's record keeps them
    assert "trainable_args" not in parse_study(_trainable_study()).to_dict()
    # A required keyword that trainable_args gives is accepted.
    needs = _trainable_study(trainable="tiny_trainables:needs_data_dir", trainable_args=args)
    assert load_user_function(parse_study(needs), "trainable") is not None
