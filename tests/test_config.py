"""The study-file schema: valid files load, each mistake gets one line naming the key."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import cli, minimal_study

from pipeline.exceptions import ConfigError
from pipeline.study import load_study_file
from pipeline.study._file import apply_override, parse_study


def _mutate(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(study: dict[str, Any]) -> None:
        node = study
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    return apply


VALID = [
    ("minimal", _mutate("study_name", "ok")),
    ("pow2", _mutate("search_space.l1", {"type": "pow2", "low": 4, "high": 256})),
    ("fixed scalar shorthand", _mutate("search_space.l2", 64)),
    ("int with step", _mutate("search_space.l1", {"type": "int", "low": 8, "high": 64, "step": 8})),
    (
        "float with step",
        _mutate("search_space.momentum", {"type": "float", "low": 0.5, "high": 0.9, "step": 0.1}),
    ),
    (
        "exponent written 1e-4",
        _mutate("search_space.lr", {"type": "float", "low": "1e-4", "high": 0.1, "log": True}),
    ),
    ("timeout only", lambda s: s.update(n_trials=None, timeout=30)),
    ("user task", _mutate("task", {"name": "tiny_task:tiny", "options": {"n": 50}})),
    ("patience", _mutate("pruner", {"name": "median", "patience": 2})),
    ("enqueue a partial configuration", _mutate("enqueue", [{"lr": 0.05}, {"batch_size": 32}])),
    (
        "conditional",
        lambda s: s["search_space"].update(
            optimizer={"type": "categorical", "choices": ["sgd", "adam"]},
            momentum={"type": "float", "low": 0.5, "high": 0.99, "when": {"optimizer": "sgd"}},
        ),
    ),
]


@pytest.mark.parametrize("mutate", [m for _, m in VALID], ids=[n for n, _ in VALID])
def test_valid_study_files_load(mutate: Callable[[dict[str, Any]], None]) -> None:
    raw = minimal_study()
    mutate(raw)
    config = parse_study(raw, "s.yaml")
    assert config.study_name == raw["study_name"]


INVALID = [
    (
        "unknown top-level key",
        _mutate("n_trial", 5),
        "n_trial",
        "unknown key; did you mean 'n_trials'?",
    ),
    ("wrong type", _mutate("max_epochs", "ten"), "max_epochs", "expected an integer, got 'ten'"),
    ("bool is not an int", _mutate("max_epochs", True), "max_epochs", "expected an integer"),
    ("zero epochs", _mutate("max_epochs", 0), "max_epochs", "at least 1"),
    ("zero trials", _mutate("n_trials", 0), "n_trials", "at least 1"),
    (
        "grace period under two heartbeats",
        lambda s: s.update(heartbeat_interval=10, grace_period=15),
        "grace_period",
        "at least twice heartbeat_interval",
    ),
    ("seed beyond 32 bits", _mutate("sampler.seed", 2**32), "sampler.seed", "2**32 - 1"),
    ("negative seed", _mutate("seed", -1), "seed", "between 0 and 2**32 - 1"),
    (
        "no budget",
        lambda s: s.update(n_trials=None),
        "n_trials",
        "set n_trials, timeout or max_total_epochs",
    ),
    ("missing required", lambda s: s.pop("study_name"), "study_name", "required key is missing"),
    ("nothing to train", lambda s: s.pop("task"), "task", "is missing: set task"),
    (
        "unknown sampler",
        _mutate("sampler.name", "tpee"),
        "sampler.name",
        "unknown sampler 'tpee'; expected one of grid, random, tpe, gp, cmaes, qmc",
    ),
    ("unknown pruner", _mutate("pruner.name", "asha2"), "pruner.name", "unknown pruner 'asha2'"),
    (
        "unknown sampler option",
        _mutate("sampler.options", {"n_startup": 3}),
        "sampler.options",
        "unexpected keyword argument 'n_startup'",
    ),
    (
        "seed inside options",
        _mutate("sampler.options", {"seed": 3}),
        "sampler.options.seed",
        "set by the pipeline",
    ),
    (
        "unknown pruner option",
        _mutate("pruner.options", {"warmup": 3}),
        "pruner.options",
        "unexpected keyword argument 'warmup'",
    ),
    (
        "bad pruner option value",
        _mutate("pruner", {"name": "percentile", "options": {"percentile": 150.0}}),
        "pruner.options",
        "percentile",
    ),
    (
        "negative patience",
        _mutate("pruner", {"name": "median", "patience": -1}),
        "pruner.patience",
        "0 or more",
    ),
    (
        "patience without pruner",
        _mutate("pruner", {"name": "none", "patience": 2}),
        "pruner.patience",
        "needs a pruner",
    ),
    ("unknown task", _mutate("task.name", "cifar100"), "task.name", "unknown task 'cifar100'"),
    (
        "task module missing",
        _mutate("task.name", "no_such_module:task"),
        "task.name",
        "cannot import 'no_such_module'",
    ),
    (
        "task function missing",
        _mutate("task.name", "tiny_task:nope"),
        "task.name",
        "has no function 'nope'",
    ),
    (
        "task returns no Task",
        _mutate("task.name", "tiny_task:not_a_task"),
        "task.name",
        "expected pipeline.tasks.Task",
    ),
    (
        "unknown task option",
        _mutate("task.options", {"val_frac": 0.1}),
        "task.options.val_frac",
        "unknown option for task digits",
    ),
    (
        "inverted range",
        _mutate("search_space.lr", {"type": "float", "low": 0.1, "high": 0.01}),
        "search_space.lr.low/high",
        "is inverted",
    ),
    (
        "empty range",
        _mutate("search_space.lr", {"type": "float", "low": 0.1, "high": 0.1}),
        "search_space.lr.low/high",
        "is empty",
    ),
    (
        "log of zero",
        _mutate("search_space.lr", {"type": "float", "low": 0.0, "high": 0.1, "log": True}),
        "search_space.lr.low",
        "positive with log",
    ),
    (
        "log and step",
        _mutate(
            "search_space.lr",
            {"type": "float", "low": 0.01, "high": 0.1, "log": True, "step": 0.01},
        ),
        "search_space.lr.step",
        "cannot be combined",
    ),
    (
        "missing high",
        _mutate("search_space.lr", {"type": "float", "low": 0.01}),
        "search_space.lr.high",
        "required for type float",
    ),
    (
        "non-integer int bound",
        _mutate("search_space.l1", {"type": "int", "low": 1.5, "high": 8}),
        "search_space.l1.low",
        "must be an integer",
    ),
    (
        "unknown param type",
        _mutate("search_space.lr", {"type": "uniform", "low": 0.01, "high": 0.1}),
        "search_space.lr.type",
        "expected one of 'float'",
    ),
    (
        "field of another type",
        _mutate("search_space.lr", {"type": "float", "low": 0.01, "high": 0.1, "choices": [1]}),
        "search_space.lr.choices",
        "not used by type float",
    ),
    (
        "empty choices",
        _mutate("search_space.batch_size", {"type": "categorical", "choices": []}),
        "search_space.batch_size.choices",
        "at least one value",
    ),
    (
        "duplicate choices",
        _mutate("search_space.batch_size", {"type": "categorical", "choices": [8, 8]}),
        "search_space.batch_size.choices",
        "distinct",
    ),
    (
        "pow2 bound not a power",
        _mutate("search_space.l1", {"type": "pow2", "low": 5, "high": 256}),
        "search_space.l1.low",
        "power of two",
    ),
    (
        "unknown hyperparameter",
        _mutate("search_space.lr2", {"type": "float", "low": 0.01, "high": 0.1}),
        "search_space.lr2",
        "unknown hyperparameter for task digits",
    ),
    (
        "grid value out of range",
        _mutate("search_space.lr", {"type": "float", "low": 0.01, "high": 0.1, "grid": [0.5]}),
        "search_space.lr.grid",
        "outside",
    ),
    (
        "grid needs values",
        _mutate("sampler.name", "grid"),
        "search_space.lr.grid",
        "needs an explicit `grid: [...]`",
    ),
    (
        "condition on unknown parameter",
        _mutate(
            "search_space.momentum",
            {"type": "float", "low": 0.5, "high": 0.9, "when": {"optimizer": "sgd"}},
        ),
        "search_space.momentum.when.optimizer",
        "listed above",
    ),
    (
        "condition on a value never chosen",
        lambda s: s["search_space"].update(
            optimizer={"type": "categorical", "choices": ["sgd"]},
            momentum={"type": "float", "low": 0.5, "high": 0.9, "when": {"optimizer": "adam"}},
        ),
        "search_space.momentum.when.optimizer",
        "'adam' is not one of",
    ),
    (
        "nothing to search",
        _mutate("search_space", {"lr": 0.1}),
        "search_space",
        "at least one parameter",
    ),
    (
        "direction against metric",
        _mutate("direction", "maximize"),
        "direction",
        "val_loss is minimized",
    ),
    (
        "unknown metric",
        _mutate("metric", "loss"),
        "metric",
        "task digits reports train_loss, val_loss, val_accuracy, val_macro_f1; 'loss' is not",
    ),
    ("bad storage", _mutate("storage", "mongodb://x"), "storage", "unsupported storage URL"),
    (
        "enqueue outside the range",
        _mutate("enqueue", [{"lr": 0.05}, {"lr": 0.5}]),
        "enqueue[1].lr",
        "0.5 is outside the search space",
    ),
    (
        "enqueue a choice not offered",
        _mutate("enqueue", [{"batch_size": 48}]),
        "enqueue[0].batch_size",
        "48 is outside the search space",
    ),
    (
        "enqueue a parameter not searched",
        _mutate("enqueue", [{"momentum": 0.9}]),
        "enqueue[0].momentum",
        "not a searched parameter",
    ),
    (
        "enqueue with grid search",
        lambda s: s.update(
            sampler={"name": "grid"},
            search_space={"batch_size": {"type": "categorical", "choices": [32, 64]}},
            enqueue=[{"batch_size": 32}],
        ),
        "enqueue",
        "grid search runs its grid",
    ),
    ("bad device", _mutate("device", "gpu"), "device", "expected auto, cpu, cuda or cuda:N"),
]


@pytest.mark.parametrize(
    ("mutate", "key", "message"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_study_files_name_key_and_fix(
    mutate: Callable[[dict[str, Any]], None], key: str, message: str
) -> None:
    raw = copy.deepcopy(minimal_study())
    mutate(raw)
    with pytest.raises(ConfigError) as info:
        parse_study(raw, "studies/x.yaml")
    assert info.value.key == key
    assert message in info.value.message
    assert str(info.value).startswith(f"studies/x.yaml: {key}: ")
    assert "\n" not in str(info.value)


def test_overrides_use_dotted_keys_and_yaml_values(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(minimal_study()))
    config = load_study_file(
        path,
        [
            "sampler.name=tpe",
            "n_trials=7",
            "search_space.lr.high=0.5",
            "pruner.options.n_warmup_steps=1",
            "pruner.name=median",
        ],
    )
    assert (config.sampler.name, config.n_trials, config.search_space["lr"].high) == ("tpe", 7, 0.5)
    assert config.pruner.options == {"n_warmup_steps": 1}


@pytest.mark.parametrize(
    ("item", "message"),
    [("n_trials", "expected key=value"), ("n_trials.x=3", "not a mapping")],
)
def test_bad_overrides(item: str, message: str) -> None:
    raw = minimal_study()
    with pytest.raises(ConfigError, match=message):
        apply_override(raw, item)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("study_name: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "mapping of study settings"),
        ("!!python/object:os.system {}\n", "not valid YAML"),
    ],
)
def test_unreadable_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_study_file(path)


def test_cli_reports_one_line_and_exit_code_2(write_study: Callable[..., Path]) -> None:
    path = write_study(sampler={"name": "tpee"})
    result = cli("validate", str(path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {path}: sampler.name: unknown sampler 'tpee'; expected one of grid, random, tpe, gp, cmaes, qmc, nsga2, nsga3"
    ]
    result = cli("tune", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_cli_flag_values_are_validated_too(write_study: Callable[..., Path]) -> None:
    result = cli("tune", str(write_study()), "--n-trials", "0")
    assert result.returncode == 2
    assert "n_trials: must be at least 1, got 0" in result.stderr


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = cli("validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "cannot read the study file" in result.stderr


def test_cuda_without_a_gpu_is_refused_before_workers_start(
    write_study: Callable[..., Path],
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = cli("tune", str(write_study(device="cuda")))
    assert result.returncode == 2
    assert "device: 'cuda' was asked for but CUDA is not available" in result.stderr
