"""What a study leaves behind: checkpoints as artifacts, final evaluation, tables, report."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import torch
import yaml
from browser import page_width, render
from conftest import REPO, cli, run_cli
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from pipeline.artifacts import live_checkpoint, load_checkpoint
from pipeline.artifacts._checkpoints import open_store
from pipeline.config import ParamSpec, TaskConfig
from pipeline.exceptions import NoResult
from pipeline.tasks import resolve_task
from pipeline.training import Objective, Session, TrialPlan, evaluate
from pipeline.visualization import write_report
from pipeline.visualization._report import contour_params


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Path]:
    """A small real study with pruning and two kept checkpoints: (url, name, dir)."""
    tmp = tmp_path_factory.mktemp("study")
    study: dict[str, Any] = {
        "study_name": "results-test",
        "task": {"name": "digits"},
        "max_epochs": 4,
        "n_trials": 6,
        "sampler": {"name": "random", "seed": 1},
        "pruner": {"name": "median", "options": {"n_startup_trials": 2, "n_warmup_steps": 1}},
        "search_space": {
            "lr": {"type": "float", "low": 0.0005, "high": 0.3, "log": True},
            "l1": {"type": "pow2", "low": 8, "high": 64},
            "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
        },
        "storage": f"sqlite:///{tmp}/optuna.db",
        "workers": 2,
        "keep_checkpoints": 2,
        # Two good configurations, then two that learn far too slowly: the median pruner
        # has something to prune whatever the random draws.
        "enqueue": [
            {"lr": 0.01, "l1": 64, "optimizer": "adam"},
            {"lr": 0.005, "l1": 32, "optimizer": "adam"},
            {"lr": 0.0005, "l1": 8, "optimizer": "sgd"},
            {"lr": 0.0006, "l1": 8, "optimizer": "sgd"},
        ],
    }
    (tmp / "s.yaml").write_text(yaml.safe_dump(study))
    result = run_cli("tune", str(tmp / "s.yaml"))
    assert result.returncode == 0, result.stderr
    assert "Checkpoint of trial #" in result.stdout
    return study["storage"], study["study_name"], tmp


def _study(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


@pytest.mark.slow
def test_checkpoints_are_artifacts_of_the_top_k_trials_and_reload(
    finished_study: tuple[str, str, Path],
) -> None:
    url, name, tmp = finished_study
    study = _study(url, name)
    complete = sorted(
        study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: (t.value, t.number)
    )
    store = open_store(tmp / "artifacts")
    live = [t for t in complete if live_checkpoint(t, store)]
    assert [t.number for t in live] == [t.number for t in complete[:2]]
    files = sorted(p.name for p in (tmp / "artifacts").iterdir())
    assert files == sorted(t.user_attrs["checkpoint"] for t in live)  # the others' files are gone
    # Optuna's own listing (what the dashboard shows) links each to its trial.
    for t in live:
        metas = optuna.artifacts.get_all_artifact_meta(t, storage=study._storage)
        assert [m.artifact_id for m in metas] == [t.user_attrs["checkpoint"]]
    best = live[0]
    ckpt = load_checkpoint(store, best.user_attrs["checkpoint"])
    task = resolve_task(TaskConfig(ckpt["task"], ckpt["task_options"]))
    splits = task.load(ckpt["task_options"])
    model = task.build_model(ckpt["hyperparameters"], splits)
    model.load_state_dict(ckpt["state_dict"])
    scores = evaluate(model, task, splits.val)
    assert scores["accuracy"] == pytest.approx(best.user_attrs["val_accuracy"])
    assert scores["loss"] == pytest.approx(best.value, rel=1e-5)
    final = study.user_attrs["final_evaluation"]
    assert final["trial"] == best.number
    assert final["test_accuracy"] == pytest.approx(best.user_attrs["test_accuracy"])


@pytest.mark.slow
def test_best_json_and_evaluate_with_retraining(finished_study: tuple[str, str, Path]) -> None:
    url, name, _ = finished_study
    best = json.loads(cli("best", "--storage", url, "--study", name, "--json").stdout)
    assert best["checkpoint"] and Path(best["checkpoint_path"]).is_file()
    result = cli("evaluate", "--storage", url, "--study", name, "--retrain-seeds", "2")
    assert result.returncode == 0, result.stderr
    evaluation = json.loads(result.stdout)
    assert evaluation["checkpoint"] == best["checkpoint"]
    retrained = evaluation["retrained"]
    assert retrained["seeds"] == 2 and len(retrained["test_accuracies"]) == 2
    assert 0 < retrained["test_accuracy_mean"] <= 1 and retrained["test_accuracy_std"] >= 0


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_round_trips_through_pandas(
    finished_study: tuple[str, str, Path], tmp_path: Path, suffix: str
) -> None:
    url, name, _ = finished_study
    out = tmp_path / f"results{suffix}"
    result = cli("export", "--storage", url, "--study", name, "--out", str(out), "--curves")
    assert result.returncode == 0, result.stderr
    read = pd.read_csv if suffix == ".csv" else pd.read_parquet
    table = read(out)
    study = _study(url, name)
    assert list(table["number"]) == [t.number for t in study.trials]
    # Columns named for people: no Optuna internals (system_attrs, artifacts' JSON).
    assert list(table.columns) == [
        "number",
        "state",
        "l1",
        "lr",
        "optimizer",
        "val_loss",  # the study's metric, by name, first among the metrics
        "train_loss",
        "val_accuracy",
        "val_macro_f1",
        "test_accuracy",
        "test_loss",
        "test_macro_f1",
        "epochs",
        "seconds",
        "worker",
        "retry_of",
        "reason",
        "checkpoint",
    ]
    assert list(table["epochs"]) == [len(t.intermediate_values) for t in study.trials]
    # A trial skipped in the race for the budget's last slot (2 workers) has no value.
    values = [math.nan if t.value is None else t.value for t in study.trials]
    assert list(table["val_loss"]) == pytest.approx(values, nan_ok=True)
    assert {"complete", "pruned"} <= set(table["state"]) <= {"complete", "pruned", "skipped"}
    # A checkpoint is listed only where its file is still there: the 2 kept ones.
    kept = table["checkpoint"].dropna()
    assert len(kept) == 2 and all(Path(p).is_file() for p in kept)
    assert table.loc[table["state"] == "pruned", "reason"].str.contains("pruner").all()
    curves = read(tmp_path / f"results_curves{suffix}")
    assert len(curves) == sum(len(t.intermediate_values) for t in study.trials)
    first = study.trials[0]
    mine = curves[curves["number"] == 0].sort_values("epoch")
    assert list(mine["val_loss"]) == pytest.approx(
        [first.intermediate_values[e] for e in sorted(first.intermediate_values)]
    )
    # Every metric of every epoch is kept, not only the study's.
    assert mine["train_loss"].notna().all() and mine["val_accuracy"].between(0, 1).all()


def _report(finished_study: tuple[str, str, Path], out: Path) -> Path:
    url, name, _ = finished_study
    result = cli("report", "--storage", url, "--study", name, "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out / "index.html"


@pytest.mark.slow
def test_report_has_every_plot_and_only_links_files_that_exist(
    finished_study: tuple[str, str, Path], tmp_path: Path
) -> None:
    index = _report(finished_study, tmp_path / "report")
    page = index.read_text()
    for plot in ("history", "curves", "importances", "parallel", "slice", "contour"):
        assert (tmp_path / "report" / f"{plot}.png").stat().st_size > 5000
        assert f'id="{plot}"' in page
    markup = re.sub(r"<script.*?</script>", "", page, flags=re.S)  # plotly.js is inlined
    assert "<script src=" not in page  # nothing loaded from elsewhere
    links = re.findall(r'(?:href|src)="([^"#]+)"', markup)
    assert links and all(
        (tmp_path / "report" / link).is_file() for link in links if "://" not in link
    )
    assert not [link for link in links if "://" in link]  # nothing fetched from a network
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert (
        "## Best trial: #" in summary and "test_accuracy" in summary and "## Provenance" in summary
    )
    assert re.search(r"Pruning stopped \d+ trials early, saving \d+ of \d+ epochs", summary)


def test_a_study_without_finished_trials_gets_a_message(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/e.db"
    study = optuna.create_study(study_name="empty", storage=url)
    study.ask()  # one running trial, none finished
    with pytest.raises(NoResult, match="no finished trial"):
        write_report(study, tmp_path / "out")
    result = cli("report", "--storage", url, "--study", "empty", "--out", str(tmp_path / "out"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "has no finished trial to report on" in result.stderr
    result = cli("evaluate", "--storage", url, "--study", "empty")
    assert result.returncode == 1 and "no complete trial with a checkpoint" in result.stderr


@pytest.mark.slow
def test_report_renders_in_headless_chromium(
    finished_study: tuple[str, str, Path], tmp_path: Path
) -> None:
    from PIL import Image

    # The console check sees a script error when there is one ...
    broken = tmp_path / "broken.html"
    broken.write_text(
        "<html><body><h1>x</h1><script>throw new Error('boom')</script></body></html>"
    )
    assert render(broken, tmp_path / "broken.png", tmp_path / "p1")
    # ... and the report has none.
    index = _report(finished_study, tmp_path / "report")
    shot = tmp_path / "shot.png"
    assert render(index, shot, tmp_path / "p2") == []
    import numpy as np

    pixels = np.asarray(Image.open(shot).convert("L"))
    dark = float((pixels < 200).mean())
    assert len(np.unique(pixels)) > 50 and dark > 0.02  # text and plots, not a blank page


def _wide_study(numeric: int = 6) -> optuna.Study:
    """A study with no training: ``numeric`` numeric parameters (the slice plot gets a
    panel for each), an optimizer chosen by name and a momentum only SGD sets."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["val_loss"])  # as `tune` names it
    study.set_user_attr("config", {"metric": "val_loss", "max_epochs": 3})
    for _ in range(16):
        trial = study.ask()
        x = [trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(numeric)]
        optimizer = trial.suggest_categorical("optimizer", ["sgd", "adam"])
        if optimizer == "sgd":
            trial.suggest_float("momentum", 0.5, 0.99)
        loss = sum((v - 0.3) ** 2 * 10**i for i, v in enumerate(x)) + (optimizer == "sgd")
        for epoch in (1, 2, 3):
            trial.report(loss + 1 / epoch, epoch)
        study.tell(trial, loss)
    return study


def test_contour_is_drawn_only_over_numeric_parameters_every_trial_set(tmp_path: Path) -> None:
    study = _wide_study()
    # Optimizer names have no order to interpolate along; momentum is missing without SGD.
    top = contour_params(study)
    assert len(top) == 3 and set(top) <= {f"x{i}" for i in range(6)}
    assert top[0] == "x5"  # the steepest term of the loss matters most
    write_report(study, tmp_path / "r")
    page = (tmp_path / "r" / "index.html").read_text()
    assert f"({', '.join(top)})" in page and (tmp_path / "r" / "contour.png").is_file()
    # One numeric parameter is not enough for a contour: none is drawn.
    narrow = _wide_study(numeric=1)
    assert contour_params(narrow) == []
    write_report(narrow, tmp_path / "n")
    assert 'id="contour"' not in (tmp_path / "n" / "index.html").read_text()
    assert not (tmp_path / "n" / "contour.png").exists()


def test_the_report_reads_as_html_named_by_the_metric(tmp_path: Path) -> None:
    index = write_report(_wide_study(), tmp_path / "r")
    page = index.read_text()
    assert "<table>" in page and "<th>parameter</th>" in page and "<h2>Best trial: #" in page
    assert "<pre" not in page and "|---|" not in page  # no Markdown left raw
    assert "Objective Value" not in page  # every axis says val_loss
    assert ">val_loss<" in page or '"val_loss"' in page
    assert '"None"' not in page and "not set" in page  # momentum's axis when SGD was not used


@pytest.mark.slow
def test_every_plot_fits_a_1400_px_page(tmp_path: Path) -> None:
    # Six numeric parameters: Optuna sizes the slice plot 300 px a panel, 2100 px here.
    index = write_report(_wide_study(), tmp_path / "r")
    scroll, viewport = page_width(index, tmp_path / "profile")
    assert viewport == 1400 and scroll <= viewport


@pytest.mark.slow
def test_a_checkpoint_that_cannot_be_saved_costs_the_checkpoint_not_the_trial(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    blocked = tmp_path / "artifacts"
    path = write_study(n_trials=4, max_epochs=5, artifacts=str(blocked))
    config = yaml.safe_load(path.read_text())
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "tune", str(path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while proc.poll() is None:  # once the study exists, before its first trial, block it
        try:
            _study(config["storage"], config["study_name"])
        except (KeyError, Exception):
            time.sleep(0.02)
            continue
        shutil.rmtree(blocked, ignore_errors=True)
        blocked.write_text("a file where the checkpoint directory should be")
        break
    out, err = proc.communicate(timeout=240)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "cannot be saved" in line]
    assert len(warnings) == 1 and "Traceback" not in result.stderr
    config = yaml.safe_load(path.read_text())
    study = _study(config["storage"], config["study_name"])
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert all("checkpoint_error" in t.user_attrs for t in study.trials)
    best = cli("best", "--storage", config["storage"], "--study", config["study_name"])
    assert best.returncode == 0 and "checkpoint:          none (not saved:" in best.stdout
    evaluate = cli(
        "evaluate",
        "--storage",
        config["storage"],
        "--study",
        config["study_name"],
        "--artifacts",
        str(blocked),
    )
    assert evaluate.returncode == 1 and "was not saved" in evaluate.stderr


def test_a_checkpoint_directory_deleted_mid_study_is_made_again(tmp_path: Path) -> None:
    store = open_store(tmp_path / "artifacts")

    def trainable(config: dict[str, Any], session: Session) -> None:
        shutil.rmtree(tmp_path / "artifacts", ignore_errors=True)
        session.report(1, val_loss=config["x"])
        session.checkpoint({"weights": torch.full((2,), config["x"])})

    plan = TrialPlan({"x": ParamSpec(type="float", low=0.0, high=1.0)}, "val_loss", 1)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/o.db")
    study.optimize(Objective(plan, trainable, torch.device("cpu"), store=store), n_trials=2)
    last = study.trials[-1]
    assert last.state == TrialState.COMPLETE
    saved = load_checkpoint(store, last.user_attrs["checkpoint"])
    assert torch.equal(saved["weights"], torch.full((2,), last.params["x"]))
    # Only the kept checkpoint is left: the working copy it came from is gone.
    assert [p.name for p in (tmp_path / "artifacts").iterdir()] == [last.user_attrs["checkpoint"]]


def test_results_show_the_test_score_a_trainable_s_test_function_gave(tmp_path: Path) -> None:
    # A trainable's trials record no test split; tune's final evaluation scores the best
    # checkpoint with the study file's test: function and stores it with the study.
    url = f"sqlite:///{tmp_path}/own.db"
    study = optuna.create_study(study_name="own", storage=url)
    study.set_metric_names(["val_loss"])
    width, lr = IntDistribution(8, 256), FloatDistribution(1e-3, 0.1, log=True)
    study.add_trial(
        create_trial(
            value=0.5,
            params={"width": 128, "lr": 0.01},
            distributions={"width": width, "lr": lr},
        )
    )
    study.add_trial(create_trial(value=0.3, params={"lr": 0.02}, distributions={"lr": lr}))
    evaluation = {"trial": 1, "checkpoint": "x", "test_mae_in_long_units": 4.5}
    study.set_user_attr("final_evaluation", evaluation)

    record = json.loads(cli("best", "--storage", url, "--study", "own", "--json").stdout)
    assert record["test"] == {"test_mae_in_long_units": 4.5}
    text = cli("best", "--storage", url, "--study", "own").stdout
    assert "  test mae in long units: 4.5000" in text  # the label keeps its space
    rows = text.splitlines()[3:]  # the metrics, epochs and checkpoint
    columns = {len(line) - len(line.split(":", 1)[1].lstrip()) for line in rows}
    assert len(rows) == 4 and len(columns) == 1, text  # every value in one column

    out = tmp_path / "own.csv"
    assert cli("export", "--storage", url, "--study", "own", "--out", str(out)).returncode == 0
    frame = pd.read_csv(out)
    assert frame["test_mae_in_long_units"].isna().tolist() == [True, False]
    assert frame["test_mae_in_long_units"][1] == 4.5
    assert ",128," in out.read_text().splitlines()[1] and "128.0" not in out.read_text()


def test_results_commands_need_no_user_package_and_the_import_error_says_how(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/own.db"
    study = optuna.create_study(study_name="own", storage=url)
    lr = FloatDistribution(1e-3, 0.1, log=True)
    study.add_trial(create_trial(value=0.3, params={"lr": 0.02}, distributions={"lr": lr}))
    path = tmp_path / "own.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "study_name": "own",
                "trainable": "not_installed_pkg.train:train",  # nowhere on this sys.path
                "metric": "val_loss",
                "direction": "minimize",
                "search_space": {"lr": {"type": "float", "low": 0.001, "high": 0.1}},
                "storage": url,
            }
        )
    )
    best = cli("best", "--study-file", str(path), "--json")
    assert best.returncode == 0 and json.loads(best.stdout)["trial"] == 0, best.stderr
    out = tmp_path / "own.csv"
    assert cli("export", "--study-file", str(path), "--out", str(out)).returncode == 0
    assert cli("report", "--study-file", str(path), "--out", str(tmp_path / "r")).returncode == 0
    refused = cli("validate", str(path))
    assert refused.returncode == 2
    assert "no module named 'not_installed_pkg'" in refused.stderr
    assert "PYTHONPATH" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
