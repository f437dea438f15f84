"""The command line end to end, as a user runs it."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from conftest import REPO, cli, free_port, run_cli
from optuna.distributions import BaseDistribution, FloatDistribution

from pipeline.runner import LiveReporter
from pipeline.trial import Attr


def _serves_verbatim(command: str, cwd: Path, env: dict[str, str]) -> None:
    """Run a printed dashboard command as printed; it serves on the port it announced."""
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 8080)) == 0:
            return  # something else holds the dashboard's port on this machine
    server = subprocess.Popen(
        ["bash", "-c", f"exec {command}"], cwd=cwd, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen("http://127.0.0.1:8080/api/meta", timeout=5):
                    return
            except OSError:
                assert server.poll() is None, (command, server.communicate()[1])
                assert time.monotonic() < deadline, f"{command} never served"
                time.sleep(0.3)
    finally:
        server.terminate()
        server.wait(timeout=60)


@pytest.mark.slow
def test_tune_shows_progress_and_the_best_trial_then_best_reads_it_back(
    write_study: Callable[..., Path],
    tmp_path: Path,
    make: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    path = write_study(n_trials=3, max_epochs=2)
    name = yaml.safe_load(path.read_text())["study_name"]
    result = run_cli("tune", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"Study '{name}': task digits, sampler random, pruner none" in out
    assert "trial  state" in out and "val_loss" in out
    assert out.count("COMPLETE") == 3
    assert "[3/3 done" in out
    for line in (
        "Best trial #",
        "validation loss:",
        "validation accuracy:",
        "test accuracy:",
        " dashboard --storage ",
    ):
        assert line in out

    # Every command it prints runs verbatim in a fresh shell where tune ran: no PATH to
    # the virtual environment, no PYTHONPATH.
    steps = out[out.index("Next: ") :].splitlines()
    fresh = {"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/local/bin:/usr/bin:/bin"}
    for step, made in ((steps[0], f"reports/{name}/index.html"), (steps[1], f"reports/{name}.csv")):
        line = step.removeprefix("Next:").split("  (")[0].strip()
        done = subprocess.run(
            ["bash", "-c", line], cwd=tmp_path, env=fresh, capture_output=True, text=True
        )
        assert done.returncode == 0 and (tmp_path / made).is_file(), (line, done.stderr)
    dashboard = out.split("Browse every trial: ")[1].split("  (")[0]
    _serves_verbatim(dashboard, tmp_path, fresh)

    url = f"sqlite:///{tmp_path}/optuna.db"
    # The dashboard's note (written once the workers run) describes the study.
    import optuna_dashboard

    shown = optuna_dashboard.get_note(optuna.load_study(study_name=name, storage=url))
    assert shown.startswith(f"**{name}**: task `digits`") and "| `lr` | float |" in shown
    best = cli("best", "--storage", url, "--study", name, "--json")
    assert best.returncode == 0, best.stderr
    record = json.loads(best.stdout)
    assert set(record["params"]) == {"lr", "batch_size"}
    assert 0 <= record["test_accuracy"] <= 1 and record["epochs"] == 2

    missing = cli("best", "--storage", url, "--study", "nope")
    assert missing.returncode == 2 and f"studies there: {name}" in missing.stderr

    # The study file is enough: its name and storage (not runs/optuna.db); --storage wins.
    by_file = cli("best", "--study-file", str(path), "--json")
    assert by_file.returncode == 0 and json.loads(by_file.stdout) == record, by_file.stderr
    other = cli("best", "--study-file", str(path), "--storage", f"sqlite:///{tmp_path}/o.db")
    assert other.returncode == 2 and f"there is no {tmp_path}/o.db" in other.stderr
    for variables in ([f"STUDY={path}"], [f"NAME={name}", f"STORAGE={url}"]):
        shown = make("best", *variables)
        assert shown.returncode == 0 and f"Best trial #{record['trial']}" in shown.stdout, (
            shown.stderr
        )


@pytest.mark.slow
def test_quiet_prints_only_the_summary(write_study: Callable[..., Path]) -> None:
    result = run_cli("tune", str(write_study(n_trials=2, max_epochs=1)), "--quiet")
    assert result.returncode == 0
    assert "trial  state" not in result.stdout and "Best trial #" in result.stdout


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as r:
        return bytes(r.read())


@pytest.mark.slow
def test_dashboard_shows_the_study_with_curves_metrics_and_checkpoints(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_study(n_trials=2, max_epochs=3)
    assert run_cli("tune", str(path)).returncode == 0
    port = free_port()
    log = open(tmp_path / "dashboard.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline",
            "dashboard",
            "--storage",
            f"sqlite:///{tmp_path}/optuna.db",
            "--port",
            str(port),
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        detail = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/studies/1", timeout=5
                ) as r:
                    detail = json.load(r)
                break
            except OSError:
                time.sleep(0.2)
        assert detail is not None, (tmp_path / "dashboard.log").read_text()
        meta = json.loads(_get(f"http://127.0.0.1:{port}/api/meta"))
        assert meta["artifact_is_available"] is True
        # The best trial's checkpoint is listed and downloads as the weights tune saved.
        listed = [(t["trial_id"], a) for t in detail["trials"] for a in t["artifacts"]]
        assert listed, "no checkpoint listed in the dashboard"
        trial_id, artifact = listed[0]
        payload = _get(f"http://127.0.0.1:{port}/artifacts/1/{trial_id}/{artifact['artifact_id']}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
    trial = detail["trials"][0]
    assert [v["step"] for v in trial["intermediate_values"]] == [1, 2, 3]
    attrs = {a["key"] for a in trial["user_attrs"]}
    assert {"val_loss", "val_accuracy", "test_accuracy"} <= attrs
    assert {p["name"] for p in trial["params"]} == {"lr", "batch_size"}
    study_attrs = {a["key"] for a in detail["user_attrs"]}
    assert {"config", "versions", "git_revision", "host"} <= study_attrs
    # The dashboard names the metric (not "Objective 0") and describes the study.
    assert detail["objective_names"] == ["val_loss"]
    assert "task `digits`, val_loss (minimize)" in detail["note"]["body"]
    assert "| `lr` | float |" in detail["note"]["body"]
    ckpt = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    assert ckpt["task"] == "digits" and ckpt["state_dict"]
    # Served on loopback only.
    assert "127.0.0.1" in (tmp_path / "dashboard.log").read_text()


@pytest.mark.slow
def test_module_and_console_script_share_the_parser() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    for command in ("tune", "validate", "best", "dashboard"):
        assert command in result.stdout


class _Terminal(io.StringIO):
    """What the live table writes to when the user watches it in a terminal."""

    def isatty(self) -> bool:
        return True


def _study_with_trials(tmp_path: Path) -> tuple[optuna.Study, optuna.Trial]:
    """Two finished trials and two running ones, as the workers leave them in a storage;
    and the first running trial, to report more epochs."""
    study = optuna.create_study(study_name="live", storage=f"sqlite:///{tmp_path}/db")
    lr: dict[str, BaseDistribution] = {"lr": FloatDistribution(1e-5, 1.0, log=True)}
    for value, rate in ((0.5, 0.01), (0.01234, 0.25)):
        study.enqueue_trial({"lr": rate})
        trial = study.ask(lr)
        trial.set_user_attr(Attr.HISTORY, [{"epoch": 1, "val_loss": value, "val_acc": 1.0}])
        study.tell(trial, value)
    running = study.ask()
    for epoch, value in ((1, 0.9), (2, 0.4321), (3, 0.6)):  # its best so far: epoch 2
        running.report(value, epoch)
    study.ask().report(12.5, 1)
    return study, running


def _reporter(study: optuna.Study, out: io.StringIO) -> LiveReporter:
    return LiveReporter(study, metric="val_loss", params=["lr"], total=10, out=out, max_epochs=12)


def test_running_trials_show_their_epoch_and_best_value_in_place_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    out = _Terminal()
    reporter = _reporter(_study_with_trials(tmp_path)[0], out)
    reporter.poll()
    reporter.poll()
    status = out.getvalue().split("\n")[-1]  # the rows above it end in newlines; it does not
    assert status.count("\r\033[K") == 2
    line = status.split("\r\033[K")[-1]
    assert "2 running" in line
    assert "running (epoch, best val_loss so far): #2  3/12    0.4321 | #3  1/12   12.5000" in line


def test_a_narrow_terminal_gets_a_status_line_that_does_not_wrap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    out = _Terminal()
    _reporter(_study_with_trials(tmp_path)[0], out).poll()
    assert len(out.getvalue().split("\r\033[K")[-1]) < 60


def test_in_a_log_running_trials_are_a_plain_line_printed_when_they_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study, running_trial = _study_with_trials(tmp_path)
    out = io.StringIO()
    reporter = _reporter(study, out)
    reporter.poll()
    reporter.poll()  # nothing changed: nothing more
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and "\033" not in out.getvalue()
    running = [line for line in lines if line.startswith("running")]
    assert running == [
        "running (epoch, best val_loss so far): #2  3/12    0.4321 | #3  1/12   12.5000"
    ]
    running_trial.report(0.25, 4)  # a running trial reports another epoch
    reporter.poll()  # changed, but within RUNNING_EVERY seconds of the last line
    assert sum(line.startswith("running") for line in out.getvalue().splitlines()) == 1
    monkeypatch.setattr("pipeline.runner._live.RUNNING_EVERY", 0.0)
    reporter.poll()
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("running (epoch, best val_loss so far): #2  4/12    0.2500")


def test_the_table_s_numbers_line_up_on_their_decimal_point(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="rows", storage=f"sqlite:///{tmp_path}/rows.db")
    out = io.StringIO()
    reporter = _reporter(study, out)
    reporter.poll()  # the rows are those of trials that finish while it watches
    lr: dict[str, BaseDistribution] = {"lr": FloatDistribution(1e-5, 1.0, log=True)}
    for value, rate in ((0.5, 0.01), (0.01234, 0.25), (3.0, 0.003)):
        study.enqueue_trial({"lr": rate})
        trial = study.ask(lr)
        trial.set_user_attr(Attr.HISTORY, [{"epoch": 1, "val_loss": value}])
        study.tell(trial, value)
    reporter.poll()
    lines = out.getvalue().splitlines()
    header, *rows = [line for line in lines if "COMPLETE" in line or line.startswith("trial")]
    assert [row.split()[2:4] for row in rows] == [
        ["0.0100", "0.5000"],
        ["0.2500", "0.0123"],
        ["0.0030", "3.0000"],
    ]
    for name in ("lr", "val_loss"):
        end = header.index(name) + len(name)  # numbers are right-aligned under their name
        assert {row[end - 5] for row in rows} == {"."}, (header, rows)


@pytest.fixture
def make(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``make TARGET VARS`` in the repository, its venv a shim that runs this checkout's
    ``python -m pipeline`` (so nothing is installed)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    shim = venv / "bin" / "pipeline"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m pipeline "$@"\n')
    shim.chmod(0o755)
    (venv / ".installed").touch()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "-s", "-C", str(REPO), f"VENV={venv}", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


@pytest.mark.slow
def test_make_dashboard_of_a_study_without_a_storage_refuses_and_creates_nothing(
    make: Callable[..., subprocess.CompletedProcess[str]],
    write_study: Callable[..., Path],
    tmp_path: Path,
) -> None:
    path = write_study()
    result = make("dashboard", f"STUDY={path}", "PORT=0")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: --storage: there is no {tmp_path}/optuna.db; `make tune STUDY={path}` creates one"
    ]
    assert "Traceback" not in result.stderr and not (tmp_path / "optuna.db").exists()


def test_make_help_names_the_variables_and_every_result_target(
    make: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    out = make("help").stdout
    for target in ("tune", "worker", "best", "evaluate", "report", "export", "dashboard"):
        assert f"\n  {target} " in out
    assert "STUDY=" in out and "NAME=" in out


@pytest.mark.parametrize("flag", ["--cpus-per-trial", "--threads"])
def test_worker_takes_cpus_per_trial_as_the_study_file_says_it(flag: str) -> None:
    from pipeline.cli._arguments import parse_args

    assert parse_args(["worker", "studies/default.yaml", flag, "3"]).threads == 3
    assert "--cpus-per-trial N" in cli("worker", "--help").stdout
