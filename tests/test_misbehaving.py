"""User code that exits, raises, hangs or kills its worker: the trial fails with a
reason naming what happened and the epoch, and the study goes on (issue 28)."""

from __future__ import annotations

import multiprocessing as mp
import re
import signal
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import tiny_trainables
import yaml
from conftest import cli, minimal_study, run_cli
from optuna.trial import TrialState

from pipeline.artifacts import open_location
from pipeline.exceptions import ConfigError
from pipeline.runner._watch import Supervisor
from pipeline.runner._worker import run_worker
from pipeline.study._file import parse_study
from pipeline.trial import Attr


def _study(
    tmp_path: Path, trainable: str = "misbehaves", how: str = "exit3", **overrides: Any
) -> dict[str, Any]:
    study = minimal_study(
        trainable=f"tiny_trainables:{trainable}",
        metric="mse",
        direction="minimize",
        max_epochs=2,
        n_trials=3,
        storage=f"sqlite:///{tmp_path}/optuna.db",
        keep_checkpoints=0,
        search_space={"how": how, "lr": {"type": "float", "low": 0.1, "high": 0.2}},
    )
    del study["task"]
    study.update(overrides)
    return study


def _trials(study: dict[str, Any]) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study["study_name"], storage=study["storage"]).trials


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("exit3", "the training function exited with code 3 during epoch 2"),
        ("exit0", "the training function exited with code 0 during epoch 2"),
        ("systemexit", "the training function exited with code 0 during epoch 2"),
        ("keyboard", "the training function raised KeyboardInterrupt during epoch 2"),
    ],
)
def test_user_code_that_exits_or_raises_keyboardinterrupt_fails_only_its_trial(
    tmp_path: Path, how: str, reason: str
) -> None:
    study = _study(tmp_path, how=how)
    # As in a worker process, SIGINT does not raise: a KeyboardInterrupt is the code's own.
    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        ran = run_worker(parse_study(study))
    finally:
        signal.signal(signal.SIGINT, previous)
    trials = _trials(study)
    assert ran == 4  # the failed trial and the three that met the budget
    assert trials[0].state == TrialState.FAIL
    assert trials[0].user_attrs[Attr.FAIL_REASON] == reason
    assert trials[0].user_attrs[Attr.OUTCOME] == "failed"
    assert [t.state for t in trials[1:]] == [TrialState.COMPLETE] * 3


def test_a_trial_past_trial_timeout_fails_keeps_its_checkpoint_and_the_worker_goes_on(
    tmp_path: Path,
) -> None:
    study = _study(tmp_path, trial_timeout="0.5s", how="sleep", keep_checkpoints=1)
    config = parse_study(study)
    run_worker(config)
    trials = _trials(study)
    assert trials[0].user_attrs[Attr.FAIL_REASON] == "exceeded trial_timeout (0.5s) during epoch 2"
    assert trials[0].user_attrs[Attr.OUTCOME] == "timed_out"
    store = open_location(config.storage, config.artifacts)
    with store.open_reader(trials[0].user_attrs[Attr.RESUME]["artifact"]) as kept:
        assert kept.read()  # the last checkpoint, epoch 1's
    assert [t.state for t in trials[1:]] == [TrialState.COMPLETE] * 3


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("os_exit", "the training function exited with code 3 during epoch 2"),
        (
            "sigkill",
            "the worker running the training function was killed by SIGKILL during epoch 2",
        ),
    ],
)
@pytest.mark.slow
def test_a_worker_killed_by_user_code_is_replaced_and_tune_exits_0(
    tmp_path: Path, how: str, reason: str
) -> None:
    study = _study(tmp_path, n_trials=2, how=how)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    result = run_cli("tune", str(path), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"trial 0 failed: {reason}" in result.stdout
    assert "a replacement worker starts" in result.stdout
    trials = _trials(study)
    assert trials[0].user_attrs[Attr.FAIL_REASON] == reason
    assert [t.state for t in trials[1:]] == [TrialState.COMPLETE] * 2


@pytest.mark.slow
def test_a_hanging_an_exiting_and_a_raising_trainable_do_not_stop_two_workers(
    tmp_path: Path,
) -> None:
    """The issue's "done when": the three failures named, the budget met, exit 0."""
    study = _study(tmp_path, "three_ways", n_trials=3, workers=2, trial_timeout="2s")
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    result = run_cli("tune", str(path), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    reasons = {t.number: str(t.user_attrs.get(Attr.FAIL_REASON)) for t in _trials(study)}
    assert re.fullmatch(r"exceeded trial_timeout \(2s\) during epoch 2; .*killed", reasons[0])
    assert reasons[1] == "the training function exited with code 3 during epoch 2"
    assert reasons[2].startswith("ValueError: bad batch")
    for number in (0, 1, 2):
        assert f"trial {number} failed: {reasons[number]}" in result.stdout + result.stderr
    assert "3 complete, 0 pruned, 3 failed" in result.stdout


def test_after_a_stop_signal_a_worker_that_ignores_it_is_killed_within_the_grace() -> None:
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=tiny_trainables.deaf_to_sigterm, args=(ready,))
    proc.start()
    assert ready.wait(timeout=60)
    proc.terminate()  # SIGTERM: ignored
    storage = optuna.storages.InMemoryStorage()
    lines: list[str] = []
    supervisor = Supervisor(
        optuna.create_study(storage=storage),
        storage,
        [proc],
        lambda i: proc,
        trial_timeout=None,
        max_retries=0,
        say=lines.append,
    )
    started = time.monotonic()
    supervisor.join(grace=1.0)
    assert not proc.is_alive()
    assert time.monotonic() - started < 5
    assert lines == ["1 worker(s) did not stop within 1 s and were killed"]


@pytest.mark.parametrize(
    ("value", "seconds"), [(90, 90.0), ("20s", 20.0), ("30m", 1800.0), ("2h", 7200.0)]
)
def test_trial_timeout_is_seconds_or_a_duration_with_a_unit(
    tmp_path: Path, value: Any, seconds: float
) -> None:
    assert parse_study(_study(tmp_path, trial_timeout=value)).trial_timeout == seconds


@pytest.mark.parametrize("value", ["5x", 0, -3, "m"])
def test_a_wrong_trial_timeout_is_refused_naming_the_key(tmp_path: Path, value: Any) -> None:
    with pytest.raises(ConfigError, match="trial_timeout: expected a positive duration"):
        parse_study(_study(tmp_path, trial_timeout=value))


def test_the_trial_timeout_flag_overrides_the_study_file(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(_study(tmp_path)))
    result = cli("tune", str(path), "--trial-timeout", "soon")
    assert result.returncode == 2
    assert "trial_timeout: expected a positive duration" in result.stderr


def test_in_a_process_that_keeps_python_s_sigint_handler_keyboardinterrupt_still_stops(
    tmp_path: Path,
) -> None:
    """Trials run in-process (a notebook): Ctrl-C may be a KeyboardInterrupt; it must
    stop the run, not fail one trial."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_worker(parse_study(_study(tmp_path, how="keyboard")))
    finally:
        signal.signal(signal.SIGINT, previous)
