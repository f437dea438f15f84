"""A quiet console (issue 30): what trials print goes to one log file per trial, the
console keeps the pipeline's own lines, and a worker that gave up shows its last words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from conftest import minimal_study, run_cli
from optuna.trial import TrialState

from pipeline.runner._worker import run_worker
from pipeline.study._file import parse_study
from pipeline.trial import Attr, last_lines, trial_log


def _study(tmp_path: Path, fail: bool = False, **overrides: Any) -> dict[str, Any]:
    study = minimal_study(
        trainable="tiny_trainables:chatty",
        metric="mse",
        direction="minimize",
        max_epochs=1,
        n_trials=2,
        storage=f"sqlite:///{tmp_path}/optuna.db",
        keep_checkpoints=0,
        trial_logs=str(tmp_path / "logs"),
        search_space={"x": {"type": "float", "low": 0.0, "high": 1.0}, "fail": fail},
    )
    del study["task"]
    study.update(overrides)
    return study


def _trials(study: dict[str, Any]) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study["study_name"], storage=study["storage"]).trials


def test_what_a_trial_prints_goes_to_its_own_log_not_the_console(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    study = _study(tmp_path)
    assert run_worker(parse_study(study)) == 2
    console = capfd.readouterr()
    assert "chatter" not in console.out + console.err
    assert "complaint" not in console.err and "raw fd 2" not in console.err
    for trial in _trials(study):
        path = Path(trial.user_attrs[Attr.LOG])
        assert path == trial_log(tmp_path / "logs", study["study_name"], trial.number)
        text = path.read_text()
        n = trial.number
        # pytest takes warnings and logging in-process; the slow test sees them filed
        assert f"chatter from trial {n}" in text
        assert f"raw fd 2 from trial {n}" in text
        assert f"trial {1 - n}" not in text  # each trial's output in its own file only


def test_a_failed_trial_s_line_on_the_console_names_its_log(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    study = _study(tmp_path, fail=True, n_trials=1)
    run_worker(parse_study(study))
    err = capfd.readouterr().err
    log = _trials(study)[0].user_attrs[Attr.LOG]
    line = next(line for line in err.splitlines() if "trial 0 failed:" in line)
    assert line.startswith("worker 0: trial 0 failed: ValueError: trial 0 gives up (at tiny_")
    assert line.endswith(f"; its output: {log}")
    assert "ValueError: trial 0 gives up" in Path(log).read_text()  # the traceback


def test_trial_logs_null_leaves_the_output_on_the_console(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    study = _study(tmp_path, trial_logs=None, n_trials=1)
    run_worker(parse_study(study))
    console = capfd.readouterr()
    assert "chatter from trial 0" in console.out
    assert "raw fd 2 from trial 0" in console.err
    assert Attr.LOG not in _trials(study)[0].user_attrs
    assert not (tmp_path / "logs").exists()


def test_last_lines_reads_the_end_of_a_large_log(tmp_path: Path) -> None:
    path = tmp_path / "trial-0.log"
    path.write_text("".join(f"line {i}\n" for i in range(200_000)))
    assert last_lines(path, 3) == ["line 199997", "line 199998", "line 199999"]
    assert last_lines(tmp_path / "missing.log") == []


@pytest.mark.slow
def test_a_worker_that_gives_up_prints_its_last_trial_s_log_where_see_above_points(
    tmp_path: Path,
) -> None:
    study = _study(tmp_path, fail=True, n_trials=8)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    result = run_cli("tune", str(path), timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    trials = _trials(study)
    assert [t.state for t in trials] == [TrialState.FAIL] * 5  # MAX_CONSECUTIVE_FAILURES
    assert "chatter" not in result.stdout + result.stderr.split("(see above)")[0]
    err = result.stderr
    assert "error: worker-0 exited with an error (see above)" in err
    after = err.split("(see above)")[1]
    assert "worker-0 ran trial #4 last; the last" in after
    assert "  | raw fd 2 from trial 4" in after
    text = Path(trials[4].user_attrs[Attr.LOG]).read_text()
    for line in (
        "chatter from trial 4",
        "UserWarning: a library's complaint in trial 4",
        "a logged line from trial 4",
        "ValueError: trial 4 gives up",  # the whole traceback
    ):
        assert line in text
