"""The shipped regression example, end to end through the CLI: the tuned MLP family
(which contains linear regression) is at least as good on the test split as
scikit-learn's LinearRegression fitted on the same split and preprocessing."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from conftest import REPO, run_cli
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score

from pipeline.examples.diabetes import diabetes
from pipeline.study import load_study_file

STUDY = REPO / "studies" / "diabetes.yaml"


def linear_regression_test_r2() -> float:
    """LinearRegression's test R² on the task's own standardised splits."""
    config = load_study_file(STUDY, [])
    assert config.task is not None
    task = diabetes()
    splits = task.load(task.resolve_options(config.task.options))
    model = LinearRegression().fit(splits.train_x.numpy(), splits.train_y.numpy())
    return float(r2_score(splits.test_y.numpy(), model.predict(splits.test_x.numpy())))


@pytest.mark.slow
def test_tuned_diabetes_mlp_matches_linear_regression_on_test(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/diabetes.db"
    result = run_cli("tune", str(STUDY), "--storage", url, "--n-trials", "12", "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test r2:" in result.stdout
    study = optuna.load_study(study_name="diabetes-tpe-median", storage=url)
    best = study.best_trial
    assert set(best.user_attrs) >= {"val_r2", "val_rmse", "test_r2", "test_rmse", "test_mae"}
    baseline = linear_regression_test_r2()
    print(
        f"best trial #{best.number}: test R2 {best.user_attrs['test_r2']:.4f}, "
        f"LinearRegression test R2 {baseline:.4f}"
    )
    assert best.user_attrs["test_r2"] >= baseline
    final = study.user_attrs["final_evaluation"]
    assert final["test_r2"] == pytest.approx(best.user_attrs["test_r2"], rel=1e-5)
