"""Tracking and shared checkpoints against real servers on 127.0.0.1: an MLflow tracking
server (SQLite backend) queried through MlflowClient, TensorBoard's event files read
back with its EventAccumulator, and moto's S3-compatible server reached through boto3
from another working directory, as another machine would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from conftest import POSTGRES_URL, REPO, free_port, minimal_study, with_tests_path

from pipeline.cli import main
from pipeline.results import load_best
from pipeline.trial import Attr, outcome_of

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
# This checkout's pipeline and the tests' plug-ins, from any working directory.
PATHS = {"PYTHONPATH": with_tests_path(REPO)}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m pipeline ARGS`` run from ``cwd``, as a user on another machine would."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **PATHS},
        timeout=300,
    )


def _serve(argv: list[str], url: str, log: Path, wait: float, **env: str) -> subprocess.Popen[Any]:
    """Start a server in its own process group; return once ``url`` answers."""
    proc = subprocess.Popen(
        argv,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **env},
        cwd=log.parent,
    )
    _wait(proc, url, log, wait)
    return proc


def _wait(proc: subprocess.Popen[Any], url: str, log: Path, wait: float) -> None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args!r} exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    _stop(proc)
    pytest.fail(f"no answer at {url} within {wait:.0f} s: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[Any]) -> None:
    """End the server and every process it started (its process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module", autouse=True)
def mlflow_boot(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, subprocess.Popen[Any], Path]]:
    """``mlflow server`` with a SQLite backend and the artifacts it serves itself,
    started when the module starts: it takes a minute to boot on a busy 2-core machine,
    the tests that need no MLflow run meanwhile."""
    where = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    argv = [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{where}/mlflow.db"]
    argv += ["--artifacts-destination", str(where / "artifacts"), "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--workers", "1"]
    proc = subprocess.Popen(
        argv,
        stdout=(where / "server.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # Its job runner (for GenAI evaluations) is a pool of processes no test uses.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        cwd=where,
    )
    yield f"http://127.0.0.1:{port}", proc, where / "server.log"
    _stop(proc)


@pytest.fixture(scope="module")
def mlflow_server(
    mlflow_boot: tuple[str, subprocess.Popen[Any], Path],
) -> tuple[str, subprocess.Popen[Any]]:
    """The MLflow server, once it answers."""
    url, proc, log = mlflow_boot
    _wait(proc, f"{url}/health", log, 240)
    return url, proc


def _fit_line_study(tmp: Path, **overrides: Any) -> Path:
    """A study of the tests' tiny trainable: quick trials that sleep between epochs."""
    data = minimal_study(
        storage=f"sqlite:///{tmp}/optuna.db",
        task=None,
        trainable="tiny_trainables:fit_line",
        metric="mse",
        direction="minimize",
        max_epochs=3,
        search_space={"lr": {"type": "float", "low": 0.01, "high": 0.1}, "sleep": 0.3},
    )
    del data["task"]
    data.update(overrides)
    path = tmp / "study.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (
            "tracking.mlflow=http://127.0.0.1:5000",
            "tracking.mlflow: needs the mlflow package, which is not installed: "
            "pip install 'optuna-pipeline[tracking]'",
        ),
        (
            "tracking.tensorboard=runs/tb",
            "tracking.tensorboard: needs the tensorboard package, which is not installed: "
            "pip install 'optuna-pipeline[tracking]'",
        ),
        (
            "artifacts=s3://bucket/prefix",
            "artifacts: s3:// needs boto3, which is not installed: pip install 'optuna-pipeline[s3]'",
        ),
    ],
    ids=["mlflow", "tensorboard", "s3"],
)
def test_a_missing_tracking_package_is_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    item: str,
    message: str,
) -> None:
    # What a machine without the extras sees: the packages cannot be imported.
    for package in ("mlflow", "tensorboard", "boto3"):
        monkeypatch.setitem(sys.modules, package, None)
    study = _fit_line_study(tmp_path)
    code, _, err = _cli_here(capsys, "tune", str(study), "--set", item)
    assert code == 2
    assert err.splitlines() == [f"error: {study}: {message}"]
    assert not (tmp_path / "optuna.db").exists()


def test_a_dead_tracking_server_is_one_warning_and_then_left_alone() -> None:
    from pipeline.tracking import Tracking
    from pipeline.tracking._mlflow import MLflowTracker

    said: list[str] = []
    tracking = Tracking(
        [MLflowTracker(f"http://127.0.0.1:{free_port()}", "s", "loss")], said.append
    )
    study = optuna.create_study()
    started = time.monotonic()
    for _ in range(3):
        trial = study.ask()
        tracking.start_trial(trial.number, {"lr": 0.1})
        tracking.log_epoch(trial.number, 1, {"loss": 0.5})
        study.tell(trial, 0.5)
        tracking(study, study.trials[-1])
    assert time.monotonic() - started < 15  # one refused call, retried once; then paused
    assert len(said) == 1 and said[0].startswith("MLflow at http://127.0.0.1:")
    assert "trials go on without it" in said[0]


# --- S3 ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3-compatible server, the kind of endpoint MinIO or Ceph give."""
    where = tmp_path_factory.mktemp("moto")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        f"{url}/",
        where / "moto.log",
        60,
    )
    yield url
    _stop(proc)


@pytest.fixture
def aws_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The standard AWS variables pointing boto3 at the local server; a fresh bucket."""
    import boto3

    for key, value in {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    bucket = f"ckpt-{time.time_ns() % 10**12}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return bucket


def test_s3_checkpoints_are_read_from_another_working_directory(
    tmp_path: Path,
    aws_env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import boto3

    here, there = tmp_path / "machine-a", tmp_path / "machine-b"
    here.mkdir()
    there.mkdir()
    artifacts = f"s3://{aws_env}/studies/digits"
    storage = f"sqlite:///{here}/optuna.db"
    data = minimal_study(storage=storage, n_trials=2, artifacts=artifacts, max_epochs=1)
    (here / "study.yaml").write_text(yaml.safe_dump(data))
    tuned = _cli("tune", "study.yaml", "--quiet", cwd=here)
    assert tuned.returncode == 0, tuned.stderr
    assert f"reloaded from {artifacts}" in tuned.stdout
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=aws_env)["Contents"]]
    # One checkpoint per trial under the prefix; the working copies were removed.
    assert len(keys) == 2 and all(k.startswith("studies/digits/") for k in keys)
    assert not (here / "artifacts").exists()
    assert [p.name for p in (here / "runs").iterdir()] == ["logs"]  # trials' output only

    # Another machine: only the storage URL and the artifact URL.
    monkeypatch.chdir(there)
    source = ["--study-name", data["study_name"], "--storage", storage, "--artifacts", artifacts]
    record = json.loads(_main(capsys, "best", *source, "--json"))
    assert record["checkpoint_path"] == f"{artifacts}/{record['checkpoint']}"
    assert f"studies/digits/{record['checkpoint']}" in keys
    evaluated = json.loads(_main(capsys, "evaluate", *source))
    assert evaluated["trial"] == record["trial"] and 0 <= evaluated["test_accuracy"] <= 1
    model = load_best(data["study_name"], storage, artifacts)
    assert not model.training and sum(p.numel() for p in model.parameters()) > 0
    _dashboard_serves_the_checkpoint(there, storage, artifacts, aws_env, record)
    assert list(there.iterdir()) == []  # nothing was written beside the commands


def _cli_here(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``pipeline ARGV`` in this process: its exit code, stdout and stderr (the signal
    handlers it sets are put back)."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        code = main(list(argv))
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
    out, err = capsys.readouterr()
    return code, out, err


def _main(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """``pipeline ARGV`` in this process, which must succeed; its stdout."""
    code, out, err = _cli_here(capsys, *argv)
    assert code == 0, err
    return out


def _dashboard_serves_the_checkpoint(
    cwd: Path, storage: str, artifacts: str, bucket: str, record: dict[str, Any]
) -> None:
    import boto3

    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "pipeline",
        "dashboard",
        "--storage",
        storage,
        "--artifacts",
        artifacts,
        "--port",
        str(port),
    ]
    proc = _serve(argv, f"http://127.0.0.1:{port}/api/studies", cwd / "dashboard.log", 60, **PATHS)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=10) as reply:
            study_id = json.load(reply)["study_summaries"][0]["study_id"]
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/studies/{study_id}?after=0", timeout=10
        ) as reply:
            trials = json.load(reply)["trials"]
        trial_id = next(t["trial_id"] for t in trials if t["number"] == record["trial"])
        path = f"/artifacts/{study_id}/{trial_id}/{record['checkpoint']}"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
            served = reply.read()
    finally:
        _stop(proc)
        (cwd / "dashboard.log").unlink()
    stored = boto3.client("s3").get_object(
        Bucket=bucket, Key=f"studies/digits/{record['checkpoint']}"
    )
    assert served == stored["Body"].read() and len(served) > 1000


def test_a_bucket_that_is_not_there_costs_checkpoints_not_trials(
    tmp_path: Path, aws_env: str
) -> None:
    study = _fit_line_study(tmp_path, n_trials=2, artifacts="s3://no-such-bucket-here/x")
    result = _cli("tune", str(study), "--quiet", "--set", "search_space.sleep=0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "NoSuchBucket" in warnings[0], result.stderr
    trials = optuna.load_study(
        study_name=yaml.safe_load(study.read_text())["study_name"],
        storage=f"sqlite:///{tmp_path}/optuna.db",
    ).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert all("NoSuchBucket" in t.user_attrs[Attr.CHECKPOINT_ERROR] for t in trials)


# --- MLflow and TensorBoard ------------------------------------------------------------


@pytest.fixture(scope="module")
def tracked(
    mlflow_server: tuple[str, subprocess.Popen[Any]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The default study, shrunk, tuned by two workers into PostgreSQL (its URL holding a
    password that must not reach MLflow) with both trackers on."""
    url, _ = mlflow_server
    tmp = tmp_path_factory.mktemp("tracked")
    name = f"test-tracked-{os.getpid()}-{time.time_ns() % 10**8}"
    # Two password forms at once: userinfo and a query parameter (trust auth ignores both).
    storage = POSTGRES_URL.replace("postgres@", "postgres:s3cret-pw@", 1) + "?password=q-s3cret"
    result = _cli(
        "tune",
        str(REPO / "studies" / "default.yaml"),
        "--storage",
        storage,
        "--n-trials",
        "4",
        "--workers",
        "2",
        "--set",
        f"study_name={name}",
        "--set",
        "max_epochs=2",
        "--set",
        "pruner.options={n_startup_trials: 1, n_warmup_steps: 0}",
        "--set",
        f"artifacts={tmp}/artifacts",
        "--set",
        f"tracking.mlflow={url}",
        "--set",
        f"tracking.tensorboard={tmp}/tb",
        cwd=tmp,
    )
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr, result.stderr
    study = optuna.load_study(study_name=name, storage=storage)
    return {
        "url": url,
        "name": name,
        "study": study,
        "tb": tmp / "tb",
        "tmp": tmp,
        "out": result.stdout,
    }


def _client(url: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=url)


def test_tune_names_the_experiment_s_runs_table_in_mlflow_s_ui(tracked: dict[str, Any]) -> None:
    """MLflow 3 opens an experiment on its GenAI overview; the runs table has an address
    of its own, which tune prints with the experiment's id (seen in headless Chromium)."""
    experiment = _client(tracked["url"]).get_experiment_by_name(tracked["name"])
    page = f"{tracked['url']}/#/experiments/{experiment.experiment_id}/runs  (MLflow's runs table)"
    assert f"\n      {page}\n" in tracked["out"]


def test_mlflow_keeps_one_nested_run_per_trial_with_every_epoch(tracked: dict[str, Any]) -> None:
    client = _client(tracked["url"])
    study: optuna.Study = tracked["study"]
    experiment = client.get_experiment_by_name(tracked["name"])
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("pipeline.role") == "study"]
    assert len(parents) == 1  # two workers, one parent run
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["sampler.name"] == "tpe"
    assert parent.data.params["max_epochs"] == "2"
    provenance = json.loads(
        Path(
            client.download_artifacts(parent.info.run_id, "provenance.json", str(tracked["tmp"]))
        ).read_text()
    )
    assert provenance["git_revision"] and provenance["versions"]["optuna"] == optuna.__version__

    by_trial = {
        int(r.data.tags["pipeline.trial"]): r
        for r in runs
        if r.data.tags.get("pipeline.role") == "trial"
    }
    trials = study.get_trials()
    assert sorted(by_trial) == [t.number for t in trials]
    assert len(trials) == 4
    for trial in trials:
        run = by_trial[trial.number]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["pipeline.study"] == tracked["name"]
        assert run.info.run_name == f"trial-{trial.number}"
        assert run.data.params == {
            k: str(v) for k, v in {**trial.params, "conv1": 6, "conv2": 16}.items()
        }
        outcome = outcome_of(trial)
        assert outcome is not None
        assert run.data.tags["pipeline.state"] == outcome.label
        assert run.info.status == {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}.get(
            outcome.label, "FAILED"
        )
        history = trial.user_attrs[Attr.HISTORY]
        for metric in ("train_loss", "val_loss", "val_accuracy", "val_macro_f1"):
            logged = client.get_metric_history(run.info.run_id, metric)
            assert [(m.step, m.value) for m in logged] == [
                (row["epoch"], pytest.approx(row[metric])) for row in history
            ]
        artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")]
        expected = [f"checkpoint/trial-{trial.number}.pt"] if outcome.label == "COMPLETE" else []
        assert artifacts == expected
    everything = json.dumps([r.to_dictionary() for r in runs]) + json.dumps(provenance)
    for secret in ("s3cret-pw", "q-s3cret"):  # the storage's passwords stay out of MLflow
        assert secret not in everything
    for path in tracked["tb"].rglob("*"):  # ... and out of TensorBoard's event files
        if path.is_file():
            assert b"s3cret" not in path.read_bytes(), path
    # MLflow's own UI, in a browser, lists the parent run and one run per trial.
    page = f"{tracked['url']}/#/experiments/{experiment.experiment_id}/runs"
    dom = _browse(page, tracked["tmp"] / "chromium")
    assert f"<strong>{len(trials) + 1}</strong> matching runs" in dom
    assert tracked["name"] in dom


def _browse(url: str, profile: Path) -> str:
    """The DOM of ``url`` once headless Chromium has run its scripts."""
    from browser import chromium

    result = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--window-size=1400,900",
            "--virtual-time-budget=15000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.stdout


def test_tensorboard_shows_each_trial_with_its_hyperparameters(tracked: dict[str, Any]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import api_pb2, metadata

    study: optuna.Study = tracked["study"]
    folder = tracked["tb"] / tracked["name"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"trial-{t.number}" for t in study.trials
    )
    for trial in study.trials:
        events = EventAccumulator(str(folder / f"trial-{trial.number}"))
        events.Reload()
        history = trial.user_attrs[Attr.HISTORY]
        for metric in ("train_loss", "val_loss", "val_accuracy"):
            scalars = [(s.step, s.value) for s in events.Scalars(metric)]
            assert scalars == [
                (row["epoch"], pytest.approx(row[metric], rel=1e-6)) for row in history
            ]
        content = events.PluginTagToContent(metadata.PLUGIN_NAME)
        start = metadata.parse_session_start_info_plugin_data(
            content[metadata.SESSION_START_INFO_TAG]
        )
        hparams = {k: v.number_value or v.string_value for k, v in start.hparams.items()}
        assert hparams == {**trial.params, "conv1": 6, "conv2": 16}
        end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
        assert end.status == api_pb2.Status.Value("STATUS_SUCCESS")
    _hparams_tab_lists(folder, study)


def _hparams_tab_lists(folder: Path, study: optuna.Study) -> None:
    """What TensorBoard's HParams tab shows, asked of a ``tensorboard`` server."""
    port = free_port()
    argv = [str(BIN / "tensorboard"), "--logdir", str(folder), "--host", "127.0.0.1"]
    proc = _serve(
        [*argv, "--port", str(port)],
        f"http://127.0.0.1:{port}/data/runs",
        folder.parent / "tb.log",
        120,
    )
    try:
        query = {"experimentName": "", "startIndex": 0, "sliceSize": 100, "colParams": []}
        query["allowedStatuses"] = ["STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/data/plugin/hparams/session_groups",
            data=json.dumps(query).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            groups = json.load(reply)["sessionGroups"]
    finally:
        _stop(proc)
    shown = {g["name"]: g for g in groups}
    assert sorted(shown) == sorted(f"trial-{t.number}" for t in study.trials)
    for trial in study.trials:
        group = shown[f"trial-{trial.number}"]
        assert group["hparams"]["lr"] == pytest.approx(trial.params["lr"])
        metrics = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
        last = trial.user_attrs[Attr.HISTORY][-1]
        assert metrics["val_loss"] == pytest.approx(last["val_loss"], rel=1e-6)


# --- last: it kills the module's MLflow server ------------------------------------------


def test_a_tracking_server_killed_mid_study_costs_nothing(
    mlflow_server: tuple[str, subprocess.Popen[Any]], tmp_path: Path
) -> None:
    url, server = mlflow_server
    study_file = _fit_line_study(tmp_path, n_trials=6, workers=2)
    name = yaml.safe_load(study_file.read_text())["study_name"]
    storage = f"sqlite:///{tmp_path}/optuna.db"
    env = {**os.environ, **PATHS}
    tune = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline",
            "tune",
            str(study_file),
            "--quiet",
            "--set",
            f"tracking.mlflow={url}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    client = _client(url)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and tune.poll() is None:
        experiment = client.get_experiment_by_name(name)
        if experiment and client.search_runs(
            [experiment.experiment_id], "tags.`pipeline.state` = 'COMPLETE'"
        ):
            break
        time.sleep(0.2)
    assert tune.poll() is None, "the study ended before the server could be killed"
    _stop(server)  # mid-study: a trial has finished and others are running or waiting
    killed = time.monotonic()
    _, err = tune.communicate(timeout=240)
    assert tune.returncode == 0, err
    trials = optuna.load_study(study_name=name, storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 6
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings and all(f"MLflow at {url}" in line for line in warnings), err
    # Once per process at most: the two workers, and tune itself closing the parent run.
    who = [line.split(":")[1] for line in warnings]
    assert len(who) == len(set(who)) and set(who) <= {" worker 0", " worker 1", " pipeline"}
    assert time.monotonic() - killed < 90  # each trial sleeps 0.9 s; no call waits for long


def _open_stores(uris: list[str], together: Any, errors: Any) -> None:
    from pipeline.tracking._mlflow import MLflowTracker

    for uri in uris:
        together.wait()  # every process opens this new store at the same moment
        try:
            MLflowTracker(uri, "race", "val_loss").client.search_experiments()
        except Exception as exc:  # what the tracker would turn into a warning
            errors.put(f"{type(exc).__name__}: {exc}"[:200])


@pytest.mark.slow
def test_processes_that_open_one_new_mlflow_sqlite_store_at_once_all_succeed(
    tmp_path: Path,
) -> None:
    """The parent and its workers open a new store together; without the lock MLflow's
    migrations collided in 2 of 3 runs of a 1-worker study."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    uris = [f"sqlite:///{tmp_path}/mlflow-{attempt}.db" for attempt in range(2)]
    together, errors = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_open_stores, args=(uris, together, errors)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * 4
    assert errors.empty(), errors.get()


def test_the_runs_table_hint_is_a_command_that_exists_and_hides_passwords() -> None:
    import shlex

    from pipeline.runner._hints import mlflow_hint

    local = mlflow_hint("sqlite:////tmp/m.db", "#/experiments/3/runs")
    command = shlex.split(local.split("  (")[0])
    assert Path(command[0]).is_file() and command[1:] == [
        "ui",
        "--backend-store-uri",
        "sqlite:////tmp/m.db",
    ]
    assert local.endswith("(then http://127.0.0.1:5000/#/experiments/3/runs: MLflow's runs table)")
    served = mlflow_hint("https://me:s3cret@mlflow.example", "#/experiments/3/runs")
    assert "s3cret" not in served
    assert served.startswith("https://") and "mlflow.example/#/experiments/3/runs" in served
