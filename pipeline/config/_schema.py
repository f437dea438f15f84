"""The study-file schema: typed dataclasses and the checks of their values.

A study file is data. :mod:`pipeline.study._file` reads it; :mod:`pipeline.config._strict` turns
it into the frozen dataclasses below, and the checks here refuse impossible values: each
mistake is a :class:`ConfigError` whose one-line message names the dotted key and what
was expected. Apart from :mod:`pipeline.config._strict`, this module imports nothing from the
package, nor torch or optuna, so anything may import it.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.config._control import CONTROL_KEYS, StopConfig, WarmStartConfig, resolve_control
from pipeline.config._objectives import (
    KNOWN_DIRECTIONS,
    MEASURED_DIRECTIONS,
    LimitConfig,
    ObjectiveConfig,
    check_objectives,
)
from pipeline.config._packing import CPU_PACKING, PackingConfig, check_packing
from pipeline.config._plugins import (
    LightningConfig,
    TransformersConfig,
    check_trainable_args,
    check_what_trains,
)
from pipeline.config._search import PrunerConfig, SamplerConfig, SchedulerConfig, check_scheduler
from pipeline.config._strict import convert as convert_value
from pipeline.config._tracking import TrackingConfig
from pipeline.exceptions import ConfigError

DEFAULT_STORAGE = "sqlite:///runs/optuna.db"
MAX_STEP = 2**31 - 1  # Optuna stores an epoch as a step in a 32-bit integer column


@dataclass(frozen=True)
class ParamSpec:
    """One entry of ``search_space``; see :mod:`pipeline.search._space` for its meaning."""

    type: Literal["float", "int", "categorical", "pow2", "fixed"]
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int | float | None = None
    choices: list[Any] | None = None
    value: Any = None
    grid: list[Any] | None = None
    when: dict[str, Any] | None = None


@dataclass(frozen=True)
class TaskConfig:
    """A registered task name or a ``package.module:function`` that returns a Task."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


# --- the study ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyConfig:
    """Everything one study needs: what to train, what to search and how to run it."""

    study_name: str
    search_space: dict[str, ParamSpec]
    task: TaskConfig | None = None
    trainable: str | None = None  # package.module:function(config, session)
    model: str | None = None  # a trainable's package.module:function(config) -> nn.Module
    test: str | None = None  # user code's package.module:function(model, config, device)
    trainable_args: dict[str, Any] | None = None  # fixed values for it, not hyperparameters
    lightning: LightningConfig | None = None  # a LightningModule and its Trainer's options
    transformers: TransformersConfig | None = None  # a Hugging Face model and Trainer
    metric: str = "val_loss"
    direction: Literal["minimize", "maximize"] | None = None  # None: the metric's own
    max_epochs: int = 10
    n_trials: int | None = 20
    timeout: float | None = None
    max_total_epochs: int | None = None
    trial_timeout: float | None = None  # seconds ("30m" in a file: see _control)
    stop: StopConfig | None = None  # target and plateau stops
    warm_start: WarmStartConfig | None = None  # an earlier study's best, queued or as history
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    pruner: PrunerConfig = field(default_factory=PrunerConfig)
    scheduler: SchedulerConfig | None = None  # population-based training; off unless set
    storage: str = DEFAULT_STORAGE
    workers: int | None = None
    device: str = "cpu"
    cpus_per_trial: int | None = None
    gpus_per_trial: float = 0.0
    precision: Literal["fp32", "bf16"] = "fp32"
    channels_last: bool = False
    seed: int = 0
    max_retries: int = 0
    heartbeat_interval: int | None = 10
    grace_period: int | None = None
    storage_retry_seconds: float = 120.0
    artifacts: str | None = None
    keep_checkpoints: int = 3
    trial_logs: str | None = (
        "runs/logs"  # what trials print: DIR/<study>/trial-N.log; null: console
    )
    enqueue: list[dict[str, Any]] = field(default_factory=list)
    # Several objectives (metric/direction is the one-objective short form, and after
    # loading always equals the first objective) and constraints on any metric.
    objectives: list[ObjectiveConfig] = field(default_factory=list)
    constraints: dict[str, LimitConfig] = field(default_factory=dict)
    inference_batch_size: int = 1  # the batch latency_ms is measured on
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    packing: PackingConfig | None = None  # off unless the study file sets it
    source: str = field(default="<memory>", compare=False)

    @property
    def multi_objective(self) -> bool:
        """Whether the study optimizes more than one objective."""
        return len(self.objectives) > 1

    @property
    def directions(self) -> list[Literal["minimize", "maximize"]]:
        """The direction of every objective, in order."""
        return [o.direction or "minimize" for o in self.objectives]

    @property
    def metric_names(self) -> list[str]:
        """The metric of every objective, in order."""
        return [o.metric for o in self.objectives]

    def to_dict(self) -> dict[str, Any]:
        """The resolved study as plain data (stored as provenance, printed by ``validate``).
        A one-objective study without constraints reads as before they existed."""
        data = dataclasses.asdict(self)
        data.pop("source")
        if not self.multi_objective:
            data.pop("objectives")
        data["constraints"] = {
            name: {k: v for k, v in limit.items() if v is not None}
            for name, limit in data["constraints"].items()
        }
        if not self.constraints:
            data.pop("constraints")
        if "latency_ms" not in [*self.metric_names, *self.constraints]:
            data.pop("inference_batch_size")
        if not self.tracking.enabled:  # off: the record reads as before tracking existed
            data.pop("tracking")
        for key in (
            "packing",
            "scheduler",
            "trainable_args",
            "lightning",
            "transformers",
            *CONTROL_KEYS,
        ):  # unset: as before they existed
            if data[key] is None:
                data.pop(key)
        data["search_space"] = {
            name: {
                k: v
                for k, v in spec.items()
                if v not in (None, False) or (k == "value" and spec["type"] == "fixed")
            }
            for name, spec in data["search_space"].items()
        }
        return data


def convert(raw: Mapping[str, Any]) -> StudyConfig:
    """Raw study data (as loaded from YAML) to a :class:`StudyConfig`, checked for types,
    unknown keys and the values that need no component (ranges, budgets, devices).

    Raises:
        ConfigError: naming the dotted key, without the file (see :meth:`ConfigError.located`).
    """
    raw = dict(raw)
    if isinstance(raw.get("search_space"), dict):
        # `name: value` is shorthand for `name: {type: fixed, value: value}`.
        raw["search_space"] = {
            name: spec if isinstance(spec, dict) else {"type": "fixed", "value": spec}
            for name, spec in raw["search_space"].items()
        }
    if "objectives" in raw and ("metric" in raw or "direction" in raw):
        raise ConfigError(
            "objectives", "replaces metric and direction; remove them (the first objective is both)"
        )
    config: StudyConfig = resolve_control(raw, lambda data: convert_value(StudyConfig, data, ""))
    check_values(config)
    if not config.objectives:
        short = ObjectiveConfig(config.metric, _direction(config.metric, config.direction, ""))
        return dataclasses.replace(config, direction=short.direction, objectives=[short])
    objectives = [
        ObjectiveConfig(o.metric, _direction(o.metric, o.direction, f"objectives[{i}]."))
        for i, o in enumerate(config.objectives)
    ]
    first = objectives[0]
    return dataclasses.replace(
        config, metric=first.metric, direction=first.direction, objectives=objectives
    )


def _direction(
    metric: str, direction: Literal["minimize", "maximize"] | None, prefix: str
) -> Literal["minimize", "maximize"]:
    known = KNOWN_DIRECTIONS.get(metric) or MEASURED_DIRECTIONS.get(metric)
    key = f"{prefix}direction"
    if direction is None:
        if known is None:
            raise ConfigError(
                key,
                f"is required: is a higher or a lower {metric} better? "
                f"Set {key}: minimize or {key}: maximize",
            )
        return "maximize" if known == "maximize" else "minimize"
    if known is not None and direction != known:
        raise ConfigError(key, f"{metric} is {known}d; use {key}: {known}")
    return direction


# --- checks that need more than types ------------------------------------------------

MAX_STUDY_NAME = 512  # Optuna's RDB schema: studies.study_name is VARCHAR(512)


def study_name_problem(name: str) -> str | None:
    """What is wrong with a study name, or None. Paths are built from it (``reports/<name>``),
    so it holds no path separator and no ``..``: nothing built from it leaves its folder."""
    if not name.strip():
        return "must not be empty"
    if any(ord(c) < 32 for c in name):
        return "must not hold control characters (a newline, a NUL...)"
    if len(name) > MAX_STUDY_NAME:
        return f"is {len(name)} characters long; storages keep at most {MAX_STUDY_NAME}"
    if "/" in name or "\\" in name or ".." in name:
        return f"{name!r} holds a path separator or '..'; paths are built from it (reports/<name>)"
    return None


def check_values(config: StudyConfig) -> None:
    """The checks that need only the values: budgets, counts, seconds, the device.
    (Checks against the task, sampler, pruner and storage live in ``study_file``.)"""
    problem = study_name_problem(config.study_name)
    if problem:
        raise ConfigError("study_name", problem)
    if not 1 <= config.max_epochs <= MAX_STEP:
        raise ConfigError(
            "max_epochs",
            f"must be at least 1 and at most {MAX_STEP} (Optuna's step range), "
            f"got {config.max_epochs}",
        )
    budgets = (config.n_trials, config.timeout, config.max_total_epochs)
    if all(b is None for b in budgets) and config.sampler.name != "grid" and not config.scheduler:
        raise ConfigError(
            "n_trials", "set n_trials, timeout or max_total_epochs, so the study can end"
        )
    if config.max_total_epochs is not None and config.max_total_epochs < config.max_epochs:
        raise ConfigError("max_total_epochs", "must allow at least one trial's max_epochs")
    if config.n_trials is not None and config.n_trials < 1:
        raise ConfigError("n_trials", f"must be at least 1, got {config.n_trials}")
    if config.timeout is not None and config.timeout <= 0:
        raise ConfigError("timeout", f"must be a positive number of seconds, got {config.timeout}")
    if config.workers is not None and config.workers < 1:
        raise ConfigError("workers", f"must be at least 1, got {config.workers}")
    if config.cpus_per_trial is not None and config.cpus_per_trial < 1:
        raise ConfigError("cpus_per_trial", f"must be at least 1, got {config.cpus_per_trial}")
    cores = os.cpu_count() or 1
    if config.cpus_per_trial is not None and config.cpus_per_trial > cores:
        raise ConfigError(
            "cpus_per_trial", f"is {config.cpus_per_trial}, but this machine has {cores} cores"
        )
    if config.gpus_per_trial < 0:
        raise ConfigError("gpus_per_trial", f"must be 0 or more, got {config.gpus_per_trial:g}")
    if config.gpus_per_trial > 1 and config.gpus_per_trial != int(config.gpus_per_trial):
        raise ConfigError("gpus_per_trial", "above 1 it must be a whole number of GPUs")
    for key, seed in (("seed", config.seed), ("sampler.seed", config.sampler.seed)):
        if seed is not None and not 0 <= seed < 2**32:
            raise ConfigError(key, f"must be between 0 and 2**32 - 1, got {seed}")
    if config.max_retries < 0:
        raise ConfigError("max_retries", f"must be 0 or more, got {config.max_retries}")
    if config.heartbeat_interval is not None and config.heartbeat_interval < 1:
        raise ConfigError("heartbeat_interval", "must be at least 1 second, or null to disable")
    if config.grace_period is not None and config.grace_period < 1:
        raise ConfigError("grace_period", "must be at least 1 second, or null for the default")
    if (
        config.heartbeat_interval is not None
        and config.grace_period is not None
        and config.grace_period < 2 * config.heartbeat_interval
    ):
        raise ConfigError(
            "grace_period",
            f"must be at least twice heartbeat_interval ({2 * config.heartbeat_interval} s), "
            f"got {config.grace_period}: a live trial would be failed as stale between beats",
        )
    if config.keep_checkpoints < 0:
        raise ConfigError("keep_checkpoints", "must be 0 (no checkpoints) or more")
    if config.storage_retry_seconds < 0:
        raise ConfigError("storage_retry_seconds", "must be 0 or more seconds")
    _check_what_to_train(config)
    check_scheduler(config.scheduler, config.search_space, config.max_epochs, config.pruner.name)
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", config.device):
        raise ConfigError("device", f"expected auto, cpu, cuda or cuda:N, got {config.device!r}")


def _check_what_to_train(config: StudyConfig) -> None:
    check_what_trains(config.task, config.trainable, config.lightning, config.transformers)
    if config.trainable is None and config.model is not None:
        raise ConfigError("model", "is for trainables; a task or framework builds its own model")
    if config.task is not None and config.test is not None:
        raise ConfigError("test", "is for your own code; a task tests its own model")
    check_trainable_args(config.trainable_args, config.search_space, config.trainable)
    if not config.metric.strip() or not config.metric.isidentifier():
        raise ConfigError(
            "metric", f"expected a metric name such as val_loss, got {config.metric!r}"
        )
    check_objectives(config.objectives, config.constraints, config.inference_batch_size)
    check_packing(
        config.packing,
        device=config.device,
        trainable=config.task is None,
        one_objective=not (config.multi_objective or config.constraints),
        tracking=config.tracking.enabled,
    )


__all__ = [
    "CPU_PACKING",
    "DEFAULT_STORAGE",
    "KNOWN_DIRECTIONS",
    "MEASURED_DIRECTIONS",
    "ConfigError",
    "LimitConfig",
    "ObjectiveConfig",
    "PackingConfig",
    "ParamSpec",
    "PrunerConfig",
    "SamplerConfig",
    "SchedulerConfig",
    "StudyConfig",
    "TaskConfig",
    "TrackingConfig",
    "check_packing",
    "check_values",
    "convert",
    "study_name_problem",
]
