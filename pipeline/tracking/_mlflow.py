"""The MLflow backend: one experiment per study, a parent run with the study's
provenance, and one nested run per trial (its parameters, every metric per epoch, its
state and reason, its checkpoint).

Runs are addressed by id through ``MlflowClient``, never through MLflow's "active run"
(a per-process global), so workers in several processes and on several machines write
to the same experiment. The parent run is found by its tag; two workers that make one
at the same moment both keep the older, and the younger's maker deletes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from pipeline.storages import mask_url
from pipeline.trial import Attr, Outcome, best_trial, outcome_of, reason_of

# MLflow retries a failed request 7 times with a growing backoff and waits 120 s for an
# answer: minutes per call against a dead server. Here a call that fails is retried once,
# a second later, and an answer is awaited 10 s; the variables, when set, still win.
BOUNDED_REQUESTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
ROLE = "pipeline.role"  # "study" on the parent run, "trial" on a trial's
STUDY = "pipeline.study"
TRIAL = "pipeline.trial"
STATUS = {Outcome.COMPLETE: "FINISHED", Outcome.PRUNED: "KILLED"}  # anything else: FAILED
# MLflow's UI opens an experiment of this kind on its runs table (else on GenAI traces).
KIND = {"mlflow.experimentKind": "custom_model_development"}
MAX_PARAM = 6000  # MLflow's limit on a parameter's value (characters)


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Hold a lock beside a ``sqlite:`` store while MLflow opens it: the parent and its
    workers open a new store at the same moment, and MLflow's table creation and
    migrations, run by each of them at once, fail (a circular dependency, "expected to
    match one row"). A server's store is the server's business."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        yield
        return
    lock = Path(uri.removeprefix(prefix).split("?")[0] + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


class MLflowTracker:
    """A study's experiment on one MLflow tracking server (or ``file:``/``sqlite:`` store).

    Args:
        uri: The tracking URI.
        study_name: The experiment's and the parent run's name.
        metric: The study metric, logged as the trial run's ``value`` too.
    """

    def __init__(self, uri: str, study_name: str, metric: str) -> None:
        for name, value in BOUNDED_REQUESTS.items():
            os.environ.setdefault(name, value)
        if uri.startswith("file:"):
            # MLflow 3 refuses its file store unless asked; a study file that names one
            # asks. (sqlite: is what MLflow recommends instead.)
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.name = f"MLflow at {mask_url(uri)}"
        self.uri = uri
        self._client: Any = None
        self.study_name = study_name
        self.metric = metric
        self.experiment_id: str | None = None
        self.parent: str | None = None
        self.runs: dict[int, str] = {}  # trial number -> run id
        self.description = ""  # Markdown; MLflow's UI shows it on the parent run

    @property
    def client(self) -> Any:
        """The ``MlflowClient``, made on first use (inside the guard of every call)."""
        if self._client is None:
            from mlflow.tracking import MlflowClient

            # MLflow says at INFO that it creates or upgrades its tables: not news to a
            # user watching the live table. Its warnings still show.
            logging.getLogger("mlflow").setLevel(logging.WARNING)
            with _store_lock(self.uri):  # the first use creates (or migrates) the store
                client = MlflowClient(tracking_uri=self.uri)
                client.search_experiments(max_results=1)
            self._client = client
        return self._client

    # --- the study: experiment and parent run ------------------------------------------

    def start_study(self, study: optuna.Study) -> None:
        """Find or make the parent run; log the study's provenance on it."""
        attrs = study.user_attrs
        runs = attrs.get("runs") or []
        config = runs[-1]["config"] if runs else attrs.get("config") or {}
        if not self.client.get_run(self.parent_id).data.params:
            # MLflow parameters cannot change: the file of the run that began it is kept.
            self._log_params(self.parent_id, _flatten(config))
        self.client.update_run(self.parent_id, status="RUNNING")
        self.client.log_dict(self.parent_id, dict(attrs), "provenance.json")
        tags = {
            "git_revision": attrs.get("git_revision"),
            "host": runs[-1].get("host") if runs else attrs.get("host"),
            "study_file": runs[-1].get("study_file") if runs else attrs.get("study_file"),
            "direction": study.direction.name.lower(),
            "metric": self.metric,
        }
        if self.description:
            self.client.set_tag(self.parent_id, "mlflow.note.content", self.description)
        for key, value in tags.items():
            if value is not None:
                self.client.set_tag(self.parent_id, f"pipeline.{key}", str(value))

    def end_study(self, study: optuna.Study) -> None:
        """Summarize the study on the parent run and mark it finished."""
        from mlflow.entities import Metric

        states = [t.state for t in study.get_trials(deepcopy=False)]
        counts = {s.name.lower(): states.count(s) for s in set(states)}
        now = _now()
        metrics = [Metric(f"trials_{k}", float(v), now, 0) for k, v in counts.items()]
        best = best_trial(study)
        if best is not None and best.value is not None:
            metrics.append(Metric(f"best_{self.metric}", float(best.value), now, 0))
            self.client.set_tag(self.parent_id, "pipeline.best_trial", str(best.number))
        self.client.log_batch(self.parent_id, metrics=metrics)
        self.client.set_terminated(self.parent_id, "FINISHED")

    @property
    def runs_page(self) -> str | None:
        """The address of the experiment's runs table in MLflow's UI, relative to the
        UI's root: MLflow 3 opens an experiment on its GenAI overview instead."""
        return None if self.experiment_id is None else f"#/experiments/{self.experiment_id}/runs"

    @property
    def parent_id(self) -> str:
        """The parent run's id (found or made on first use)."""
        if self.parent is None:
            self._parent_run()
        assert self.parent is not None
        return self.parent

    def _experiment(self) -> str:
        from mlflow.exceptions import MlflowException

        if self.experiment_id is None:
            found = self.client.get_experiment_by_name(self.study_name)
            if found is None:
                try:
                    self.experiment_id = self.client.create_experiment(
                        self.study_name, tags={STUDY: self.study_name, **KIND}
                    )
                except MlflowException:  # another worker made it first
                    found = self.client.get_experiment_by_name(self.study_name)
                    if found is None:
                        raise
            if found is not None:
                if found.lifecycle_stage == "deleted":  # its name is taken until restored
                    self.client.restore_experiment(found.experiment_id)
                self.experiment_id = str(found.experiment_id)
        assert self.experiment_id is not None
        return self.experiment_id

    def _parent_run(self) -> None:
        """Find the parent run, or make it; set ``self.parent``."""
        found = self._find_parent()
        if found is not None:
            self.parent = found
            return
        mine = self.client.create_run(
            self._experiment(),
            run_name=self.study_name,
            tags={ROLE: "study", STUDY: self.study_name},
        ).info.run_id
        self.parent = self._find_parent() or mine
        if self.parent != mine:  # another worker's is older: keep that one
            self.client.delete_run(mine)

    def _find_parent(self) -> str | None:
        runs = self.client.search_runs(
            [self._experiment()],
            filter_string=f"tags.`{ROLE}` = 'study'",
            order_by=["attributes.start_time ASC", "attributes.run_id ASC"],
            max_results=1,
        )
        return str(runs[0].info.run_id) if runs else None

    # --- trials ----------------------------------------------------------------------

    def start_trial(self, number: int, params: Mapping[str, Any]) -> None:
        """A run nested under the study's, named ``trial-N``, with the parameters."""
        run = self.client.create_run(
            self._experiment(),
            run_name=f"trial-{number}",
            tags={
                "mlflow.parentRunId": self.parent_id,
                ROLE: "trial",
                STUDY: self.study_name,
                TRIAL: str(number),
            },
        )
        self.runs[number] = run.info.run_id
        self._log_params(run.info.run_id, {k: _text(v) for k, v in params.items()})

    def log_epoch(self, number: int, epoch: int, metrics: Mapping[str, float]) -> None:
        """Every metric of the epoch, at step = epoch."""
        from mlflow.entities import Metric

        now = _now()
        batch = [Metric(k, float(v), now, epoch) for k, v in metrics.items()]
        self.client.log_batch(self.runs[number], metrics=batch)

    def log_checkpoint(self, number: int, path: Path) -> None:
        """The checkpoint file, under the run's ``checkpoint/`` artifacts."""
        self.client.log_artifact(self.runs[number], str(path), artifact_path="checkpoint")

    def end_trial(self, trial: FrozenTrial) -> None:
        """The trial's state and reason as tags; the run ends FINISHED (complete),
        KILLED (pruned) or FAILED."""
        run_id = self.runs.pop(trial.number)
        outcome = outcome_of(trial) or Outcome.FAILED
        tags = {"pipeline.state": outcome.label, "pipeline.reason": reason_of(trial)}
        tags["pipeline.retry_of"] = trial.user_attrs.get(Attr.RETRY_OF)
        for key, value in tags.items():
            if value is not None:
                self.client.set_tag(run_id, key, str(value)[:MAX_PARAM])
        if trial.value is not None:
            self.client.log_metric(run_id, "value", float(trial.value), _now())
        self.client.set_terminated(run_id, STATUS.get(outcome, "FAILED"))

    def _log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k[:250], v[:MAX_PARAM]) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes 100 parameters a batch
            self.client.log_batch(run_id, params=items[start : start + 100])


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings as dotted keys (``sampler.name``), lists as JSON."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, f"{name}."))
        elif value is not None:
            out[name] = _text(value)
    return out


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _now() -> int:
    return int(time.time() * 1000)


__all__ = ["BOUNDED_REQUESTS", "MLflowTracker"]
