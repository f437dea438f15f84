"""The command line end to end, as a user runs it."""

from __future__ import annotations

import io
import json
import shlex
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, free_port, run_cli


@pytest.mark.slow
def test_tune_shows_progress_and_the_best_trial_then_best_reads_it_back(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_study(n_trials=3, max_epochs=2)
    name = yaml.safe_load(path.read_text())["study_name"]
    result = run_cli("tune", str(path))
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
        "pipeline dashboard --storage",
    ):
        assert line in out

    # The next steps it prints run as printed, with the study's real name and storage.
    steps = out[out.index("Next: ") :].splitlines()
    export = shlex.split(steps[1].split("  (")[0])
    assert export[:2] == ["pipeline", "export"] and name in export
    done = run_cli(*export[1:], cwd=tmp_path)
    assert done.returncode == 0 and (tmp_path / f"reports/{name}.csv").is_file(), done.stderr

    url = f"sqlite:///{tmp_path}/optuna.db"
    best = run_cli("best", "--storage", url, "--study", name, "--json")
    assert best.returncode == 0, best.stderr
    record = json.loads(best.stdout)
    assert set(record["params"]) == {"lr", "batch_size"}
    assert 0 <= record["test_accuracy"] <= 1 and record["epochs"] == 2

    missing = run_cli("best", "--storage", url, "--study", "nope")
    assert missing.returncode == 2 and f"studies there: {name}" in missing.stderr


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


def test_module_and_console_script_share_the_parser() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    for command in ("tune", "validate", "best", "dashboard"):
        assert command in result.stdout
