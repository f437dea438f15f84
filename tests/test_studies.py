"""Every shipped study file is valid and runs, with a shrunken budget."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from conftest import REPO, run_cli
from optuna.trial import TrialState

from pipeline.config import StudyConfig
from pipeline.study import load_study_file

STUDIES = sorted((REPO / "studies").glob("*.yaml"))
# The CIFAR-10 ones need the data set: tests/test_vision.py and tests/test_trainables.py
# run them on files they write in its format.
OFFLINE = [p for p in STUDIES if "cifar10" not in p.stem and p.stem != "ray_tutorial"]


def _load(path: Path) -> StudyConfig:
    # The CIFAR-10 files need the data set; validating them here must not. Lightning and
    # transformers take seconds to import: tests/test_integrations.py checks their code.
    needs_data = "cifar10" in path.stem
    framework = path.stem.startswith(("lightning", "transformers"))
    overrides = ["task.options.download=true"] if needs_data else []
    return load_study_file(path, overrides, code=not framework)


def test_there_are_study_files_for_every_sampler_and_pruner() -> None:
    configs = [_load(path) for path in STUDIES]
    assert {c.sampler.name for c in configs} >= {"grid", "random", "tpe", "gp", "cmaes", "qmc"}
    assert any(c.multi_objective and c.constraints for c in configs)
    assert {c.pruner.name for c in configs} >= {"none", "median", "percentile", "asha", "hyperband"}
    assert any(c.pruner.patience for c in configs)
    assert any(c.scheduler is not None for c in configs)  # population-based training
    assert len({c.study_name for c in configs}) == len(configs)


@pytest.mark.slow
@pytest.mark.parametrize("path", OFFLINE, ids=[p.stem for p in OFFLINE])
def test_study_file_smoke_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a Hugging Face study must not need the Hub
    url = f"sqlite:///{tmp_path}/smoke.db"
    # A population's budget is its members' segments: two members, one epoch each.
    pbt = _load(path).scheduler is not None
    shrink = ["scheduler.options.population=2", "scheduler.options.interval=1"] if pbt else []
    result = run_cli(
        "tune",
        str(path),
        "--storage",
        url,
        "--n-trials",
        "2",
        "--workers",
        "1",
        "--set",
        "max_epochs=1",
        *[arg for item in shrink for arg in ("--set", item)],
        "--quiet",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    name = _load(path).study_name
    trials = optuna.load_study(study_name=name, storage=url).trials
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 2
    several = len(_load(path).objectives) > 1
    assert ("Pareto front of study" if several else "Best trial #") in result.stdout
