"""Weights & Biases tracking, for real: studies run by ``tune`` with ``tracking.wandb`` in
offline mode, their runs read back from the files wandb wrote (tests/wandb_runs.py), and
a W&B server that does not answer (online mode, nothing listening) costing a warning,
never a trial. Nothing leaves the machine: every wandb directory is under tmp_path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from conftest import cli, free_port, minimal_study, run_cli
from optuna.trial import TrialState
from wandb_runs import offline_runs

from pipeline.trial import Attr

ARGS = {"data_dir": "/data/never-a-hyperparameter"}


@pytest.fixture(autouse=True)
def wandb_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """wandb's own directories under tmp_path, quiet, no code or git capture, no system
    metrics (the tests' workers inherit the environment)."""
    for name in ("CACHE", "CONFIG", "DATA", "ARTIFACT"):
        monkeypatch.setenv(f"WANDB_{name}_DIR", str(tmp_path / f"wandb-{name.lower()}"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-default"))
    for name in ("WANDB_SILENT", "WANDB_DISABLE_CODE", "WANDB_DISABLE_GIT", "WANDB__DISABLE_STATS"):
        monkeypatch.setenv(name, "true")
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_PROJECT"):
        monkeypatch.delenv(name, raising=False)


def _study(tmp_path: Path, wandb: dict[str, Any], **overrides: Any) -> Path:
    """The tests' Ray-style trainable (its loop runs past max_epochs) with W&B tracking."""
    data = minimal_study(
        storage=f"sqlite:///{tmp_path}/optuna.db",
        trainable="tiny_trainables:ray_style",
        metric="mse",
        direction="minimize",
        max_epochs=3,
        n_trials=2,
        search_space={"lr": {"type": "float", "low": 0.05, "high": 0.2}, "batch": 8},
        trainable_args=ARGS,
        tracking={"wandb": {"project": "pipeline-tests", **wandb}},
    )
    del data["task"]
    data.update(overrides)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("wandb", "key", "words"),
    [
        ({"mode": "disabled"}, "tracking.wandb.mode", "one of 'offline', 'online'"),
        ({"project": " "}, "tracking.wandb.project", "expected a W&B project name"),
        ({"team": "x"}, "tracking.wandb.team", "unknown key"),
    ],
)
def test_a_wrong_wandb_section_is_one_line_naming_the_key(
    tmp_path: Path, wandb: dict[str, Any], key: str, words: str
) -> None:
    result = cli("validate", str(_study(tmp_path, wandb)))
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert f"{key}:" in line and words in line, line


def test_wandb_not_installed_names_its_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "wandb", None)
    result = cli("validate", str(_study(tmp_path, {})))
    assert result.returncode == 2
    assert result.stderr.strip().endswith(
        "tracking.wandb: needs the wandb package, which is not installed: "
        "pip install 'optuna-pipeline[wandb]'"
    )


@pytest.mark.slow
def test_offline_runs_hold_every_trial_s_metrics_state_and_checkpoint(tmp_path: Path) -> None:
    """One run per trial grouped by study, config = the hyperparameters (never the
    trainable_args), every epoch at step = epoch, state and reason in the summary, the
    checkpoint as an artifact; a failed attempt and its retry each have their run, the
    retry's with the epochs it carried over, in order."""
    runs_dir = tmp_path / "runs-wandb"
    wandb = {"mode": "offline", "dir": str(runs_dir), "log_checkpoints": True}
    search_space = {"lr": {"type": "float", "low": 0.05, "high": 0.2}, "fail_after": 2}
    path = _study(tmp_path, wandb, max_retries=1, search_space=search_space, n_trials=2)
    result = run_cli("tune", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" not in result.stderr, result.stderr
    name = yaml.safe_load(path.read_text())["study_name"]
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/optuna.db")
    trials = [t for t in study.trials if t.state != TrialState.WAITING]
    runs = offline_runs(runs_dir)
    assert sorted(runs) == sorted(f"trial-{t.number}" for t in trials)
    states = {"COMPLETE": 0, "FAILED": 0}
    for trial in trials:
        run = runs[f"trial-{trial.number}"]
        assert (run.project, run.group) == ("pipeline-tests", name)
        assert run.config == {**trial.params, "fail_after": 2}  # no data_dir
        steps = [row["_step"] for row in run.history]
        history = trial.user_attrs["history"]
        assert steps == [row["epoch"] for row in history]
        assert [row["mse"] for row in run.history] == [row["mse"] for row in history]
        states[run.summary["state"]] += 1
        if trial.state == TrialState.COMPLETE:
            assert run.summary["reason"] == trial.user_attrs["note"]
            assert run.summary["value"] == trial.value and run.exit_code == 0
            assert run.summary["retry_of"] == trial.user_attrs[Attr.RETRY_OF]
            assert steps == [1, 2, 3]  # epoch 1 carried over, 2 trained again, then 3
            (artifact,) = run.artifacts
            assert artifact.type == "model" and artifact.name == f"{name}-trial-{trial.number}"
            assert [c.path for c in artifact.manifest.contents] == [f"trial-{trial.number}.pt"]
        else:
            assert run.summary["reason"] == trial.user_attrs["fail_reason"]
            assert "lost the GPU after epoch 2" in run.summary["reason"]
            assert run.exit_code == 1 and not run.artifacts and steps == [1, 2]
    assert states == {"COMPLETE": 2, "FAILED": 2}


@pytest.mark.slow
def test_a_wandb_server_that_does_not_answer_costs_a_warning_never_a_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "2")
    path = _study(tmp_path, {"mode": "online"}, n_trials=3)
    result = run_cli("tune", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    name = yaml.safe_load(path.read_text())["study_name"]
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/optuna.db")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    warnings = [line for line in result.stderr.splitlines() if "W&B" in line]
    assert len(warnings) == 1, result.stderr
    assert warnings[0].startswith("warning: worker 0: W&B (online) project pipeline-tests: ")
    assert "trials go on without it" in warnings[0]
