"""PyTorch Lightning and the Hugging Face Trainer, tuned from a study file with no loop
written: the schema of ``lightning:`` and ``transformers:``, reports and pruning,
retries from the framework's own checkpoint (after a failure and after a SIGKILLed
worker), and the winner rebuilt by ``load_best``.

The frameworks take seconds to import on this machine, so every test that trains is
marked slow; the schema's tests import neither.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml
from conftest import REPO, minimal_study, with_tests_path
from optuna.trial import TrialState

from pipeline import load_best
from pipeline.artifacts._checkpoints import open_store
from pipeline.config import convert
from pipeline.exceptions import ConfigError
from pipeline.integrations import framework_trainable
from pipeline.runner._worker import FailurePolicy
from pipeline.study._file import parse_study
from pipeline.training import Objective, TrialPlan, load_user_function

# An option the pipeline also sets by default (logger) is the study's to change.
LIGHTNING = {"module": "tiny_frameworks:line_module", "trainer": {"logger": False}}
TRANSFORMERS = {
    "model_init": "tiny_frameworks:tiny_bert",
    "trainer": "tiny_frameworks:token_trainer",
    "args": {"per_device_eval_batch_size": 128},
}
# Each framework's study: what it trains, the metric its reports name, the search space.
FORMS: dict[str, dict[str, Any]] = {
    "lightning": {
        "lightning": LIGHTNING,
        "metric": "mse",
        "search_space": {"lr": {"type": "float", "low": 0.05, "high": 0.2}},
    },
    "transformers": {
        "transformers": TRANSFORMERS,
        "metric": "eval_loss",
        "search_space": {
            "learning_rate": {"type": "float", "low": 0.002, "high": 0.01},
            "per_device_train_batch_size": 32,
        },
    },
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing here may need the Hugging Face Hub


def _study(form: str, **overrides: Any) -> dict[str, Any]:
    study = minimal_study(direction="minimize", max_epochs=4, **FORMS[form])
    del study["task"]
    study["search_space"] = {**study["search_space"], **overrides.pop("space", {})}
    study.update(overrides)
    return study


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        ({"task": {"name": "digits"}}, "task", "not both task and lightning"),
        ({"transformers": TRANSFORMERS}, "lightning", "not both lightning and transformers"),
        ({"lightning": {"modul": "a:b"}}, "lightning.modul", "did you mean 'module'?"),
        ({"lightning": {"datamodule": "a:b"}}, "lightning.module", "required key is missing"),
        ({"lightning": {**LIGHTNING, "trainer": 3}}, "lightning.trainer", "expected a mapping"),
        ({"model": "tiny_frameworks:tiny_bert"}, "model", "is for trainables"),
    ],
)
def test_a_wrong_framework_section_is_one_line_naming_the_key(
    change: dict[str, Any], key: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        convert({**_study("lightning"), **change})
    assert caught.value.key == key and words in str(caught.value), str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("form", "module"), [("lightning", "lightning.pytorch"), ("transformers", "transformers")]
)
def test_a_framework_that_is_not_installed_is_one_line_saying_how_to_install_it(
    form: str, module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # what `import` meets where it is missing
    with pytest.raises(ConfigError) as caught:
        parse_study(_study(form), "study.yaml")
    assert caught.value.key == form
    assert f"pip install 'optuna-pipeline[{form}]'" in str(caught.value)


def test_an_unset_framework_section_leaves_the_stored_study_as_before() -> None:
    assert not {"lightning", "transformers"} & set(convert(minimal_study()).to_dict())
    assert convert(_study("lightning")).to_dict()["lightning"]["module"] == LIGHTNING["module"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("form", "section", "key", "words"),
    [
        ("lightning", {"trainer": {"max_epochs": 3}}, "lightning.trainer.max_epochs", "max_epochs"),
        ("lightning", {"trainer": {"devices": 2}}, "lightning.trainer.devices", "set device:"),
        (
            "lightning",
            {"trainer": {"gradient_clip": 1}},
            "lightning.trainer.gradient_clip",
            "not an argument",
        ),
        ("lightning", {"module": "tiny_frameworks:nope"}, "lightning.module", "no function 'nope'"),
        (
            "lightning",
            {"module": "tiny_frameworks:Tokens"},
            "lightning.module",
            "not a Python function",
        ),
        (
            "transformers",
            {"args": {"num_train_epochs": 3}},
            "transformers.args.num_train_epochs",
            "max_epochs",
        ),
        ("transformers", {"args": {"lr": 0.1}}, "transformers.args.lr", "not a field"),
        (
            "transformers",
            {"trainer": "tiny_frameworks:tiny_bert"},
            "transformers.trainer",
            "(config, model, args)",
        ),
    ],
)
def test_a_framework_option_is_checked_against_the_framework_when_the_file_loads(
    form: str, section: dict[str, Any], key: str, words: str
) -> None:
    raw = _study(form)
    raw[form] = {**raw[form], **section}
    with pytest.raises(ConfigError) as caught:
        parse_study(raw, "study.yaml")
    message = str(caught.value)
    assert caught.value.key == key and words in message and "\n" not in message, message


def _run(tmp_path: Path, study: dict[str, Any], n_trials: int, **kwargs: Any) -> optuna.Study:
    """``n_trials`` of ``study`` in this process, one retry of a failed trial allowed."""
    config = parse_study(study)
    trainable = framework_trainable(config.lightning, config.transformers)
    assert trainable is not None
    store = open_store(tmp_path / "artifacts")
    objective = Objective(TrialPlan.of(config), trainable, torch.device("cpu"), store=store)
    result = optuna.create_study(storage=f"sqlite:///{tmp_path}/o.db", **kwargs)
    policy = FailurePolicy(0, 1, 3, store, open(os.devnull, "w"))
    result.optimize(objective, n_trials=n_trials, catch=(Exception,), callbacks=[policy])
    return result


@pytest.mark.slow
@pytest.mark.parametrize("form", FORMS)
def test_a_framework_trial_reports_every_epoch_and_is_pruned(form: str, tmp_path: Path) -> None:
    # A threshold no loss is under prunes every trial at its first report; the next one
    # trains in a Trainer of its own, after the pruned one's was torn down.
    pruner = optuna.pruners.ThresholdPruner(upper=1e-9)
    study = _run(tmp_path, _study(form), 2, pruner=pruner)
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 2
    for trial in study.trials:
        assert sorted(trial.intermediate_values) == [1]
        assert trial.user_attrs["pruned_reason"] == "pruner stopped it after epoch 1"
        assert "train_loss" in trial.user_attrs["history"][0]
    unpruned = _run(tmp_path / "b", _study(form), 1)
    (trial,) = unpruned.trials
    assert trial.state == TrialState.COMPLETE and sorted(trial.intermediate_values) == [1, 2, 3, 4]
    metric = FORMS[form]["metric"]
    assert [row["epoch"] for row in trial.user_attrs["history"]] == [1, 2, 3, 4]
    assert trial.value == trial.user_attrs["history"][-1][metric]


@pytest.mark.slow
@pytest.mark.parametrize("form", FORMS)
def test_a_failed_framework_trial_is_retried_from_the_framework_s_checkpoint(
    form: str, tmp_path: Path
) -> None:
    study = _run(tmp_path, _study(form, space={"fail_after": 2}), 2)
    first, retry = study.trials
    assert (
        first.state == TrialState.FAIL
        and "lost the GPU after epoch 2" in first.user_attrs["fail_reason"]
    )
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["resumed_from"] == {
        "trial": 0,
        "epoch": 2,
    }
    assert sorted(retry.intermediate_values) == [1, 2, 3, 4]
    # Epochs 1-2 were carried over, 3-4 trained by the retry from where the first stopped.
    assert [row["trial"] for row in retry.user_attrs["history"]] == [0, 0, 1, 1]


@pytest.mark.slow
def test_the_lightning_callback_in_a_trainable_of_one_s_own_reports_and_resumes(
    tmp_path: Path,
) -> None:
    study = _study("lightning", trainable="tiny_frameworks:train_line", space={"fail_after": 2})
    del study["lightning"]
    config = parse_study(study)
    store = open_store(tmp_path / "artifacts")
    function = load_user_function(config, "trainable")
    assert function is not None
    objective = Objective(TrialPlan.of(config), function, torch.device("cpu"), store=store)
    result = optuna.create_study(storage=f"sqlite:///{tmp_path}/o.db")
    policy = FailurePolicy(0, 1, 3, store, open(os.devnull, "w"))
    result.optimize(objective, n_trials=2, catch=(Exception,), callbacks=[policy])
    first, retry = result.trials
    assert first.state == TrialState.FAIL and retry.state == TrialState.COMPLETE
    assert retry.user_attrs["resumed_from"] == {"trial": 0, "epoch": 2}
    assert [row["trial"] for row in retry.user_attrs["history"]] == [0, 0, 1, 1]


def _trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


@pytest.mark.slow
@pytest.mark.parametrize("form", FORMS)
def test_a_sigkilled_worker_s_framework_trial_resumes_and_load_best_rebuilds_it(
    form: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = _study(form, storage=url, n_trials=1, max_epochs=5, max_retries=1, space={"sleep": 0.3})
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": with_tests_path()}
    command = [sys.executable, "-m", "pipeline", "worker", str(path), "--threads", "1"]
    victim = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        time.sleep(0.2)
        try:
            (trial,) = _trials(url, study["study_name"])
        except (KeyError, ValueError):
            continue
        if trial.user_attrs.get("resume", {}).get("epoch", 0) >= 2:
            victim.send_signal(signal.SIGKILL)
            break
    else:
        victim.kill()
        pytest.fail("the trial did not reach epoch 2 in time: " + victim.communicate()[1][-2000:])
    victim.communicate()
    killed_at = _trials(url, study["study_name"])[0].user_attrs["resume"]["epoch"]
    rescuer = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert rescuer.returncode == 0, rescuer.stderr
    first, retry = _trials(url, study["study_name"])
    assert first.state == TrialState.FAIL and retry.state == TrialState.COMPLETE
    assert retry.user_attrs["resumed_from"] == {"trial": 0, "epoch": killed_at}
    assert [row["epoch"] for row in retry.user_attrs["history"]] == [1, 2, 3, 4, 5]
    assert [row["trial"] for row in retry.user_attrs["history"]].count(0) == killed_at
    model = load_best(study["study_name"], url)
    assert (
        type(model).__name__
        == {"lightning": "LineModule", "transformers": "BertForSequenceClassification"}[form]
    )
    assert not model.training


@pytest.mark.slow
def test_ctrl_c_in_a_lightning_trial_run_in_this_process_stays_a_keyboard_interrupt(
    tmp_path: Path,
) -> None:
    # Lightning turns Ctrl-C into sys.exit(1) and ignores SIGINT afterwards; the trial
    # would fail as "exited with code 1" and a second Ctrl-C would do nothing.
    config = parse_study(_study("lightning", space={"ctrl_c_at": 2}))
    trainable = framework_trainable(config.lightning, None)
    assert trainable is not None
    objective = Objective(TrialPlan.of(config), trainable, torch.device("cpu"))
    study = optuna.create_study()
    with pytest.raises(KeyboardInterrupt):
        study.optimize(objective, n_trials=1)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert sorted(study.trials[0].intermediate_values) == [1]
