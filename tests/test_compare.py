"""`pipeline compare`: equal budgets, repeatable seeds, resume, and a full report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from browser import page_width
from conftest import minimal_study, run_cli
from optuna.trial import TrialState

from pipeline.compare import CompareBudget, Run, write_report
from pipeline.compare._run import grid_space, variants
from pipeline.config import ParamSpec
from pipeline.exceptions import UsageError
from pipeline.search import grid_size
from pipeline.study._file import parse_study

# The seconds budget of a compare run: long enough for trials to start after the
# workers do, short enough not to dominate the test.
SECONDS = 6

SPACE = {
    "lr": {"type": "float", "low": 0.01, "high": 0.5, "log": True},
    "hidden": {"type": "int", "low": 2, "high": 32},
    "batch_size": {"type": "categorical", "choices": [16, 64]},
}


def _study(tmp_path: Path, **overrides: object) -> Path:
    study = minimal_study(
        study_name="cmp",
        task={"name": "tiny_task:tiny"},
        max_epochs=3,
        n_trials=4,
        workers=1,
        search_space=SPACE,
        storage=f"sqlite:///{tmp_path}/c.db",
        keep_checkpoints=1,
    )
    study.update(overrides)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def _trials(tmp_path: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/c.db").trials


@pytest.mark.parametrize(
    ("text", "budget"),
    [
        ("trials:20", CompareBudget("trials", 20)),
        ("epochs:200", CompareBudget("epochs", 200)),
        ("seconds:60", CompareBudget("seconds", 60)),
    ],
)
def test_budget_parsing(text: str, budget: CompareBudget) -> None:
    assert CompareBudget.parse(text) == budget


@pytest.mark.parametrize("text", ["20", "trials:", "minutes:3", "trials:0", "trials:-1"])
def test_bad_budgets_are_refused(text: str) -> None:
    with pytest.raises(UsageError, match="expected trials:N, epochs:N or seconds:N"):
        CompareBudget.parse(text)


@pytest.mark.parametrize("target", [8, 12, 18, 32])
def test_grid_has_about_the_budget_in_points(target: int) -> None:
    space = {
        "lr": ParamSpec("float", 1e-4, 1e-1, log=True),
        "width": ParamSpec("int", 8, 64, log=True),
        "kernel": ParamSpec("categorical", choices=[3, 5]),
    }
    grid = grid_space(space, target)
    assert (
        grid["lr"].grid
        and grid["lr"].grid[0] == pytest.approx(1e-4)
        and grid["lr"].grid[-1] == pytest.approx(0.1)
    )
    assert 0.5 * target <= grid_size(grid) <= 2 * target


def test_variants_share_the_budget_and_differ_in_sampler_pruner_seed(tmp_path: Path) -> None:
    config = parse_study(yaml.safe_load(_study(tmp_path).read_text()))
    out = variants(config, ["grid", "random"], ["none", "asha"], 2, CompareBudget("epochs", 30))
    assert [(s, p, k) for s, p, k, _ in out] == [
        (s, p, k) for s in ("grid", "random") for p in ("none", "asha") for k in (0, 1)
    ]
    names = {c.study_name for *_, c in out}
    assert len(names) == 8 and all(n.startswith("cmp--") for n in names)
    assert {c.max_total_epochs for *_, c in out} == {30} and {c.n_trials for *_, c in out} == {None}
    assert {c.sampler.seed for *_, c in out} == {0, 1}
    assert all(
        c.pruner.options == {"min_resource": 1, "reduction_factor": 2}
        for s, p, k, c in out
        if p == "asha"
    )


def _compare(folder: Path, samplers: str, pruners: str = "none", *more: str) -> None:
    """`pipeline compare` of the study in ``folder`` (``_study``), 4 trials a run, one seed."""
    result = run_cli(
        "compare",
        str(_study(folder)),
        "--samplers",
        samplers,
        "--pruners",
        pruners,
        "--seeds",
        "1",
        "--budget",
        "trials:4",
        "--out",
        str(folder / "report"),
        *more,
    )
    assert result.returncode == 0, result.stderr


SEQUENTIAL = [f"cmp--{s}-{p}-seed0" for s in ("random", "tpe") for p in ("none", "asha")]


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[Any]]]:
    """One compare of random and TPE, without pruning and with ASHA, and the parameters
    each run's trials took, in order: what the resume and repeat tests start from."""
    folder = tmp_path_factory.mktemp("compared")
    _compare(folder, "random,tpe", "none,asha", "--target", "0.5")
    return folder, {n: [t.params for t in _trials(folder, n)] for n in SEQUENTIAL}


@pytest.mark.slow
def test_compare_runs_resumes_and_reports(compared: tuple[Path, dict[str, list[Any]]]) -> None:
    folder, params = compared
    assert all(len(p) == 4 for p in params.values()), params
    # A rerun with one sampler more runs only what is missing (as after an interruption).
    _compare(folder, "grid,random,tpe", "none,asha", "--target", "0.5")
    assert {n: [t.params for t in _trials(folder, n)] for n in SEQUENTIAL} == params
    for sampler in ("grid", "random", "tpe"):
        for pruner in ("none", "asha"):
            trials = _trials(folder, f"cmp--{sampler}-{pruner}-seed0")
            assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 4
    summary = (folder / "report" / "summary.md").read_text()
    for sampler in ("grid", "random", "tpe"):
        for pruner in ("none", "asha"):
            assert f"| {sampler} | {pruner} | 1 |" in summary, summary
    assert "## Verdict" in summary and "Best minimum reached" in summary  # one seed: no mean
    assert "Random beat grid" in summary or "Random did not beat grid" in summary
    assert "fewer epochs than no pruning" in summary and "hold for this problem" in summary
    for axis in ("trials", "epochs", "seconds"):
        assert (folder / "report" / f"best_vs_{axis}.png").stat().st_size > 5000
    assert (folder / "report" / "index.html").is_file()


@pytest.mark.slow
def test_epoch_and_second_budgets_are_honoured(tmp_path: Path) -> None:
    path = _study(tmp_path, max_epochs=3)
    result = run_cli(
        "compare",
        str(path),
        "--samplers",
        "random",
        "--seeds",
        "1",
        "--budget",
        "epochs:10",
        "--out",
        str(tmp_path / "r1"),
    )
    assert result.returncode == 0, result.stderr
    trials = _trials(tmp_path, "cmp--random-none-seed0")
    epochs = sum(len(t.intermediate_values) for t in trials)
    assert 10 - 3 < epochs <= 10  # never over; short by less than one trial
    result = run_cli(
        "compare",
        str(path),
        "--samplers",
        "tpe",
        "--seeds",
        "1",
        "--budget",
        f"seconds:{SECONDS}",
        "--out",
        str(tmp_path / "r2"),
    )
    assert result.returncode == 0, result.stderr
    # No trial starts after the budget's seconds, and every one that started ran to its
    # end (on a loaded machine the workers may start so late that none does).
    spans = []
    for t in _trials(tmp_path, "cmp--tpe-none-seed0"):
        assert t.datetime_start is not None and t.datetime_complete is not None
        spans.append((t.datetime_start, t.datetime_complete))
    if spans:
        start = min(begin for begin, _ in spans)
        last_start = max(begin for begin, _ in spans)
        longest = max((end - begin).total_seconds() for begin, end in spans)
        assert (last_start - start).total_seconds() <= SECONDS + longest


@pytest.mark.slow
def test_seeded_sequential_samplers_repeat(
    compared: tuple[Path, dict[str, list[Any]]], tmp_path: Path
) -> None:
    # The same study file compared again in another storage draws the same parameters.
    _compare(tmp_path, "random,tpe")
    again = [
        [t.params for t in _trials(tmp_path, f"cmp--{s}-none-seed0")] for s in ("random", "tpe")
    ]
    assert again == [compared[1][f"cmp--{s}-none-seed0"] for s in ("random", "tpe")]


def _runs(seeds: int, metric: str = "val_loss", test: str = "test_accuracy") -> list[Run]:
    """Compare runs made with ask/tell, no training: random and TPE, ``seeds`` each."""
    runs = []
    for sampler in ("random", "tpe"):
        for seed in range(seeds):
            study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
            study.set_metric_names([metric])
            study.set_user_attr("config", {"metric": metric})
            for _ in range(5):
                trial = study.ask()
                lr = trial.suggest_float("lr", 0.01, 0.5, log=True)
                for epoch in (1, 2):
                    trial.report(lr + 1 / epoch, epoch)
                trial.set_user_attr(test, 1 - lr)
                trial.set_user_attr("test_loss", lr)
                study.tell(trial, lr)
            runs.append(Run(sampler, "none", seed, study))
    return runs


@pytest.mark.parametrize("seeds", [1, 2])
def test_the_compare_report_claims_a_spread_only_with_seeds(tmp_path: Path, seeds: int) -> None:
    index = write_report(_runs(seeds), tmp_path, CompareBudget("trials", 5), None)
    page, summary = index.read_text(), (tmp_path / "summary.md").read_text()
    assert "<table>" in page and "<th>sampler</th>" in page and "<h2>Verdict</h2>" in page
    assert "<pre" not in page and "|---|" not in page  # no Markdown left raw
    # Headings say what is plotted, not which file holds it.
    assert "<h2>Best val_loss so far against trials finished" in page and "<h2>best_vs" not in page
    if seeds == 1:
        assert "±" not in summary and "median" not in page and "quartile" not in page
        assert "Best minimum reached" in summary and "mean" not in summary
    else:
        assert "(mean ± std)" in summary and "inter-quartile band</h2>" in page
        assert "Best mean minimum reached" in summary


def test_the_compare_report_shows_the_test_score_a_regression_study_has(tmp_path: Path) -> None:
    runs = _runs(1, metric="val_rmse", test="test_rmse")
    write_report(runs, tmp_path, CompareBudget("trials", 5), None)
    header, _, first = (tmp_path / "summary.md").read_text().splitlines()[2:5]
    assert "| test_rmse of best |" in header
    best = runs[0].study.best_trial
    assert f"| {best.user_attrs['test_rmse']:.4f} |" in first and "nan" not in first


@pytest.mark.slow
def test_the_compare_report_fits_a_1400_px_page(tmp_path: Path) -> None:
    index = write_report(_runs(2), tmp_path / "r", CompareBudget("trials", 5), None)
    scroll, viewport = page_width(index, tmp_path / "profile")
    assert viewport == 1400 and scroll <= viewport
