"""The built-in loop's recipes: each task kind's metrics, the schedules, the optimizer
settings, the task hooks, Dataset splits and the label checks. Tiny real runs, CPU."""

from __future__ import annotations

import math
from collections import namedtuple
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import minimal_study, run_cli
from sklearn.metrics import f1_score, mean_absolute_error, mean_squared_error, r2_score
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from pipeline.exceptions import ConfigError
from pipeline.study._file import parse_study
from pipeline.tasks import Split, Splits, Task, check_labels
from pipeline.training import EpochResult, evaluate, fit, make_optimizer, make_scheduler
from pipeline.training._loop import model_outputs

Kind = Literal["classification", "regression"]


def _no_load(options: Mapping[str, Any]) -> Splits:
    raise AssertionError("these tests pass their splits themselves")


def _no_model(hp: Mapping[str, Any], splits: Splits) -> nn.Module:
    raise AssertionError("these tests build their models themselves")


def _task(kind: Kind = "classification", **hooks: Any) -> Task:
    return Task(name="t", load=_no_load, build_model=_no_model, kind=kind, **hooks)


def _separable(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return x, (x[:, 0] > 0).long()


def _fit(
    model: nn.Module, task: Task, hp: Mapping[str, Any], epochs: int = 2, n: int = 64
) -> list[EpochResult]:
    x, y = _separable(n)
    split = Split(x, y) if task.kind == "classification" else Split(x, x[:, :1] * 2.0)
    torch.manual_seed(0)
    hp = {"batch_size": 8, **hp}
    return fit(model, task, split, split, hp, epochs, torch.Generator().manual_seed(0))


# --- metrics over a whole split, against scikit-learn ------------------------------------


def test_classification_metrics_match_sklearn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pipeline.training._loop.EVAL_BATCH", 7)  # sums must carry across batches
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 5, generator=g)
    labels = torch.randint(0, 4, (50,), generator=g)  # class 4 never occurs: still predicted
    scores = evaluate(nn.Identity(), _task(), Split(logits, labels))
    predicted = logits.argmax(1).numpy()
    assert set(scores) == {"loss", "accuracy", "macro_f1"}
    assert scores["loss"] == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)
    assert scores["accuracy"] == pytest.approx(float((predicted == labels.numpy()).mean()))
    assert scores["macro_f1"] == pytest.approx(f1_score(labels, predicted, average="macro"))


@pytest.mark.parametrize(
    ("outputs_shape", "labels_shape"), [((40, 1), (40,)), ((40,), (40,)), ((40, 3), (40, 3))]
)
def test_regression_metrics_match_sklearn(
    monkeypatch: pytest.MonkeyPatch, outputs_shape: tuple[int, ...], labels_shape: tuple[int, ...]
) -> None:
    monkeypatch.setattr("pipeline.training._loop.EVAL_BATCH", 6)
    g = torch.Generator().manual_seed(1)
    y = torch.randn(labels_shape, generator=g) * 3 + 1
    predictions = (y.reshape(outputs_shape) + torch.randn(outputs_shape, generator=g)).float()
    scores = evaluate(nn.Identity(), _task("regression"), Split(predictions, y))
    p, t = predictions.reshape(labels_shape).numpy(), y.numpy()
    assert set(scores) == {"loss", "rmse", "mae", "r2"}
    assert scores["loss"] == pytest.approx(mean_squared_error(t, p), rel=1e-5)
    assert scores["rmse"] == pytest.approx(math.sqrt(mean_squared_error(t, p)), rel=1e-5)
    assert scores["mae"] == pytest.approx(mean_absolute_error(t, p), rel=1e-5)
    assert scores["r2"] == pytest.approx(r2_score(t, p), rel=1e-5)


def test_metric_names_list_what_an_epoch_reports() -> None:
    custom = _task("regression", metrics={"max_error": lambda p, t: 0.0})
    assert _task().metric_names() == ("train_loss", "val_loss", "val_accuracy", "val_macro_f1")
    assert custom.metric_names() == (
        *("train_loss", "val_loss", "val_rmse", "val_mae", "val_r2", "val_max_error"),
    )
    result = _fit(nn.Linear(4, 1), custom, {"lr": 0.05}, epochs=1)[0]
    assert tuple(result.metrics) == custom.metric_names()


# --- schedules, stepped per batch ---------------------------------------------------------

COS = [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
SCHEDULES = [
    ({"scheduler": "none"}, [1.0] * 6),
    ({"scheduler": "step", "step_size": 1, "gamma": 0.5}, [1, 1, 0.5, 0.5, 0.25, 0.25]),
    ({"scheduler": "cosine"}, [0.5 * (1 + math.cos(math.pi * k / 6)) for k in range(6)]),
    ({"scheduler": "none", "warmup_epochs": 1}, [0.5, 1, 1, 1, 1, 1]),
    ({"scheduler": "cosine", "warmup_epochs": 1}, [0.5, 1, *COS]),
    (
        {"scheduler": "step", "warmup_epochs": 1, "step_size": 1, "gamma": 0.5},
        [0.5, 1, 1, 1, 0.5, 0.5],
    ),
]


def _lrs(hp: dict[str, Any], steps_per_epoch: int = 2, epochs: int = 3) -> list[float]:
    optimizer = make_optimizer("sgd", [nn.Parameter(torch.zeros(1))], {"lr": 1.0, **hp})
    scheduler = make_scheduler(optimizer, {"lr": 1.0, **hp}, steps_per_epoch, epochs)
    lrs = []
    for _ in range(steps_per_epoch * epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return lrs


@pytest.mark.parametrize(("hp", "expected"), SCHEDULES, ids=[str(hp) for hp, _ in SCHEDULES])
def test_schedule_lr_per_batch(hp: dict[str, Any], expected: list[float]) -> None:
    assert _lrs(hp) == pytest.approx(expected)


def test_onecycle_rises_to_the_lr_over_the_warm_up_then_anneals() -> None:
    lrs = _lrs({"scheduler": "onecycle", "warmup_epochs": 1}, steps_per_epoch=5, epochs=4)
    peak = lrs.index(max(lrs))
    assert peak == 4 and max(lrs) == pytest.approx(1.0)  # end of the first epoch
    assert lrs[0] == pytest.approx(1.0 / 25)  # torch's div_factor
    assert lrs[-1] < lrs[0] and lrs[peak:] == sorted(lrs[peak:], reverse=True)
    default = _lrs({"scheduler": "onecycle"}, steps_per_epoch=5, epochs=4)
    assert default.index(max(default)) == 5  # torch's 30% rise when warmup_epochs is 0


class _Recording(torch.optim.SGD):
    """SGD that records, at every step, the lr it uses and the gradients' total norm."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lrs: list[float] = []
        self.norms: list[float] = []

    def step(self, closure: Any = None) -> Any:
        self.lrs.append(self.param_groups[0]["lr"])
        grads = [p.grad for group in self.param_groups for p in group["params"]]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        return super().step(closure)


def _recording_hook(kept: list[_Recording]) -> Callable[[nn.Module, Mapping[str, Any]], Any]:
    def build(model: nn.Module, hp: Mapping[str, Any]) -> _Recording:
        decay = [p for n, p in model.named_parameters() if not n.endswith("bias")]
        no_decay = [p for n, p in model.named_parameters() if n.endswith("bias")]
        optimizer = _Recording(
            [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=hp["lr"],
            weight_decay=hp["weight_decay"],
        )
        kept.append(optimizer)
        return optimizer

    return build


def test_fit_follows_the_schedule_through_an_optimizer_hook_with_parameter_groups() -> None:
    kept: list[_Recording] = []
    task = _task(optimizer=_recording_hook(kept))
    hp = {"lr": 0.1, "weight_decay": 0.01, "batch_size": 32, "scheduler": "cosine"}
    hp |= {"warmup_epochs": 1}
    _fit(nn.Linear(4, 2), task, hp, epochs=3)  # 64 rows: 2 batches an epoch
    (optimizer,) = kept
    assert optimizer.lrs == pytest.approx([0.1 * f for f in [0.5, 1, *COS]])
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.01, 0.0]


# --- loss and optimizer settings ---------------------------------------------------------


def test_label_smoothing_changes_the_training_loss_not_the_reported_val_loss() -> None:
    runs = {}
    for smoothing in (0.0, 0.3):
        hp = {"lr": 1e-12, "label_smoothing": smoothing, "optimizer": "sgd"}
        runs[smoothing] = _fit(nn.Linear(4, 2), _task(), hp, epochs=1)[0].metrics
    assert runs[0.3]["train_loss"] != pytest.approx(runs[0.0]["train_loss"], rel=1e-3)
    assert runs[0.3]["val_loss"] == pytest.approx(runs[0.0]["val_loss"])


def test_grad_clip_bounds_the_gradient_norm() -> None:
    norms = {}
    for clip in (0.0, 0.05):
        kept: list[_Recording] = []
        model = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 2))
        _fit(model, _task(optimizer=_recording_hook(kept)), {"lr": 0.1, "grad_clip": clip})
        norms[clip] = max(kept[0].norms)
    assert norms[0.0] > 0.05
    assert norms[0.05] <= 0.05 * (1 + 1e-4)


def test_rmsprop_and_nesterov_build_and_nesterov_without_momentum_fails_the_trial() -> None:
    param = [nn.Parameter(torch.zeros(1))]
    assert isinstance(make_optimizer("rmsprop", param, {"lr": 0.1}), torch.optim.RMSprop)
    sgd = make_optimizer("sgd", param, {"nesterov": True, "momentum": 0.9})
    assert sgd.param_groups[0]["nesterov"] is True
    with pytest.raises(ValueError, match="Nesterov"):
        make_optimizer("sgd", param, {"nesterov": True, "momentum": 0.0})
    results = _fit(nn.Linear(4, 2), _task(), {"optimizer": "rmsprop", "lr": 0.05}, epochs=5)
    assert results[-1].metrics["val_accuracy"] > 0.9


# --- task hooks and structured model outputs ----------------------------------------------


def test_custom_loss_and_metric_hooks_are_used() -> None:
    def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets) * 0 + 7.0

    task = _task(loss=loss, metrics={"rows": lambda p, t: float(len(t) + p.shape[1])})
    result = _fit(nn.Linear(4, 2), task, {"lr": 0.1}, epochs=1)[0]
    assert result.metrics["train_loss"] == pytest.approx(7.0)
    assert result.metrics["val_loss"] == pytest.approx(7.0)
    assert result.metrics["val_rows"] == 64 + 2  # whole split, outputs with their columns


Pair = namedtuple("Pair", ["logits", "aux_logits"])


class _Structured(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.net, self.how = nn.Linear(4, 2), how

    def forward(self, x: torch.Tensor) -> Any:
        logits = self.net(x)
        if self.how == "namedtuple":
            return Pair(logits, torch.zeros_like(logits))
        return type("Output", (), {"logits": logits, "loss": None})()


@pytest.mark.parametrize("how", ["namedtuple", "logits attribute"])
def test_models_returning_a_structure_train(how: str) -> None:
    results = _fit(_Structured(how), _task(), {"lr": 0.1, "optimizer": "adam"}, epochs=3)
    assert results[-1].metrics["val_accuracy"] > 0.9


def test_outputs_hook_overrides_the_default() -> None:
    out = Pair(torch.ones(2, 2), torch.zeros(2, 2))
    assert torch.equal(model_outputs(_task(), out), out.logits)
    assert torch.equal(model_outputs(_task(outputs=lambda o: o.aux_logits), out), out.aux_logits)


# --- Dataset splits -----------------------------------------------------------------------


def test_a_dataset_split_trains_through_a_dataloader_and_scores_like_tensors() -> None:
    x, y = _separable(96)
    splits = Splits.from_datasets(
        TensorDataset(x[:64], y[:64]), TensorDataset(x[64:], y[64:]), TensorDataset(x, y), 2
    )
    assert splits.to(torch.device("cpu")).train.dataset is splits.train.dataset
    assert splits.sizes() == (64, 32, 96)
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    hp = {"lr": 0.1, "batch_size": 16, "loader_workers": 2}
    generator = torch.Generator().manual_seed(0)
    results = fit(model, _task(), splits.train, splits.val, hp, 2, generator)
    assert results[-1].metrics["val_accuracy"] > 0.8
    streamed = evaluate(model, _task(), splits.test, loader_workers=2)
    in_memory = evaluate(model, _task(), Split(x, y))
    assert streamed == pytest.approx(in_memory, rel=1e-5)
    with pytest.raises(TypeError, match="holds a Dataset"):
        _ = splits.train_x


# --- labels checked against the kind ------------------------------------------------------


class _Items(Dataset[tuple[torch.Tensor, Any]]):
    def __init__(self, label: Any) -> None:
        self.label = label

    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        return torch.zeros(4), self.label


def _splits(y: torch.Tensor, num_classes: int = 3) -> Splits:
    x = torch.zeros(len(y), 4)
    return Splits(x, y, x, y, x, y, num_classes)


def _streamed(label: Any, num_classes: int) -> Splits:
    """Splits streamed from Datasets whose every item has ``label``."""
    items = _Items(label)
    return Splits.from_datasets(items, items, items, num_classes)


FLOAT_COLUMN = torch.rand(5, 1)
LABEL_PROBLEMS = [
    (
        "classification",
        _splits(FLOAT_COLUMN),
        "float32 of shape (N, 1) but the task is classification",
    ),
    (
        "classification",
        _splits(torch.tensor([0, 1, 3])),
        "run from 0 to 3; expected class indices 0..2",
    ),
    ("classification", _streamed(0.5, 3), "are float32 of shape (N,)"),
    ("regression", _splits(torch.tensor([0, 1, 2])), "regression needs floating labels"),
    ("regression", _splits(torch.rand(5, 2), num_classes=1), "have 2 column(s)"),
]


@pytest.mark.parametrize(("kind", "splits", "message"), LABEL_PROBLEMS)
def test_labels_that_do_not_fit_the_kind_are_refused_in_one_line(
    kind: Kind, splits: Splits, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        check_labels(_task(kind), splits)
    assert info.value.key == "task" and message in info.value.message
    assert "\n" not in str(info.value)


def test_float_column_labels_for_classification_say_what_to_do() -> None:
    with pytest.raises(ConfigError, match=r"set kind='regression'.*integer class labels"):
        check_labels(_task(), _splits(FLOAT_COLUMN))


@pytest.mark.parametrize(
    ("kind", "splits"),
    [
        ("classification", _splits(torch.tensor([0, 1, 2]))),
        ("classification", _streamed(2, 3)),
        ("regression", _splits(FLOAT_COLUMN, num_classes=1)),
        ("regression", _splits(torch.rand(5, 2), num_classes=0)),
        ("regression", _streamed(torch.rand(2), 2)),
    ],
)
def test_labels_that_fit_pass(kind: Kind, splits: Splits) -> None:
    check_labels(_task(kind), splits)


def test_regression_with_column_labels_trains() -> None:
    hp = {"lr": 0.05, "optimizer": "adam"}
    results = _fit(nn.Linear(4, 1), _task("regression"), hp, epochs=8)
    assert results[-1].metrics["val_r2"] > 0.9 and results[-1].finite


# --- loop values refused when the study file loads ----------------------------------------


@pytest.mark.parametrize(
    ("name", "spec", "message"),
    [
        ("scheduler", "linear", "expected one of none, cosine, onecycle, step"),
        ("label_smoothing", 1.5, "expected a number in 0..1"),
        ("grad_clip", -1, "expected 0 (off) or a positive number"),
        ("warmup_epochs", {"type": "int", "low": -1, "high": 2}, "expected a whole number"),
        ("optimizer", {"type": "categorical", "choices": ["sgd", "lion"]}, "'lion' cannot"),
        ("nesterov", True, "nesterov needs momentum above 0"),
    ],
)
def test_loop_values_the_loop_cannot_use_are_refused_at_load(
    name: str, spec: Any, message: str
) -> None:
    space = dict(minimal_study()["search_space"], **{name: spec})
    if name == "nesterov":
        space |= {"optimizer": "sgd", "momentum": 0.0}
    with pytest.raises(ConfigError) as info:
        parse_study(minimal_study(search_space=space), "s.yaml")
    assert info.value.key == f"search_space.{name}"
    assert message in info.value.message


def test_nesterov_with_searched_momentum_loads() -> None:
    space = dict(minimal_study()["search_space"], nesterov=True, optimizer="sgd")
    space["momentum"] = {"type": "float", "low": 0.0, "high": 0.9}
    parse_study(minimal_study(search_space=space), "s.yaml")


def test_label_smoothing_on_a_regression_task_is_refused_at_load() -> None:
    space = {"lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True}}
    study = minimal_study(task={"name": "pipeline.examples.diabetes:diabetes"}, metric="val_r2")
    study.pop("direction")
    parse_study({**study, "search_space": space}, "s.yaml")
    space["label_smoothing"] = {"type": "float", "low": 0.0, "high": 0.2}
    with pytest.raises(ConfigError, match="applies to classification"):
        parse_study({**study, "search_space": space}, "s.yaml")


def test_split_refuses_mismatched_or_mixed_data() -> None:
    with pytest.raises(ValueError, match="x has 3 rows but y has 2"):
        Split(torch.zeros(3, 1), torch.zeros(2))
    with pytest.raises(TypeError, match="either x and y tensors or a dataset"):
        Split(torch.zeros(2, 1), torch.zeros(2), TensorDataset(torch.zeros(2)))
    assert np.isnan(
        evaluate(nn.Identity(), _task(), Split(torch.zeros(0, 2), torch.zeros(0).long()))["loss"]
    )


@pytest.mark.slow
def test_float_labels_in_a_classification_task_are_refused_before_any_trial(
    tmp_path: Path,
) -> None:
    study = minimal_study(
        task={"name": "tiny_task:float_labels"},
        storage=f"sqlite:///{tmp_path}/optuna.db",
        search_space={"lr": {"type": "float", "low": 0.01, "high": 0.1}},
    )
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    result = run_cli("tune", str(path))
    errors = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "float32 of shape (N, 1) but the task is classification" in errors[0]
    trials = optuna.load_study(study_name=study["study_name"], storage=study["storage"]).trials
    assert trials == []  # nothing trained, nothing stored
