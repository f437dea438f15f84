"""CIFAR-10 and Fashion-MNIST through torchvision's classes, on tiny data written in the
real formats; augmentation on tensors; the tutorial study; device placement."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import REPO, minimal_study, run_cli
from vision_data import write_cifar10, write_fashion_mnist

from pipeline.config import TaskConfig
from pipeline.exceptions import ConfigError
from pipeline.runner import Slot, plan
from pipeline.runner._placement import gpu_capacity
from pipeline.study._file import parse_study
from pipeline.tasks import resolve_task
from pipeline.tasks._vision import random_crop_flip


def test_cifar10_loads_through_torchvision_without_downloading(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    task = resolve_task(
        TaskConfig("cifar10", {"data_dir": str(tmp_path), "verify_checksums": False})
    )
    splits = task.load(task.resolve_options({"data_dir": str(tmp_path), "verify_checksums": False}))
    assert splits.sizes() == (90, 10, 40)
    assert splits.train_x.shape[1:] == (3, 32, 32) and splits.train_x.dtype == torch.float32
    assert abs(float(splits.train_x.mean())) < 2.0  # normalized, not 0..255
    model = task.build_model({**task.hyperparameters, "l1": 8, "l2": 4}, splits)
    assert model(splits.val_x).shape == (10, 10)


def test_cifar10_checksums_are_verified_by_default(tmp_path: Path) -> None:
    write_cifar10(tmp_path)  # right names and format, but not the original files
    task = resolve_task(TaskConfig("cifar10", {"data_dir": str(tmp_path)}))
    with pytest.raises(ConfigError, match=r"cifar10 data not found under .*corrupted"):
        task.load(task.resolve_options({"data_dir": str(tmp_path)}))


def test_fashion_mnist_loads_idx_files(tmp_path: Path) -> None:
    write_fashion_mnist(tmp_path)
    options = {"data_dir": str(tmp_path)}
    task = resolve_task(TaskConfig("fashion_mnist", options))
    splits = task.load(task.resolve_options(options))
    assert splits.sizes() == (90, 10, 40)
    assert splits.train_x.shape[1:] == (1, 28, 28)
    model = task.build_model({**task.hyperparameters, "l1": 8, "l2": 4}, splits)
    assert model(splits.val_x).shape == (10, 10)


@pytest.mark.parametrize("task", ["cifar10", "fashion_mnist"])
def test_missing_data_names_the_folder_and_the_way_to_get_it(tmp_path: Path, task: str) -> None:
    raw = minimal_study(task={"name": task, "options": {"data_dir": str(tmp_path / "nothing")}})
    with pytest.raises(ConfigError) as info:
        parse_study(raw, "s.yaml")
    message = str(info.value)
    assert message.startswith("s.yaml: task.options.data_dir: ")
    assert f"{task} data not found under {tmp_path / 'nothing'}" in message
    assert "--download" in message and "http" in message


def test_random_crop_flip_moves_pixels_per_sample_and_keeps_shape() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8) + 1
    out = random_crop_flip(x, g, padding=2)
    assert out.shape == x.shape
    # Every output pixel is an input pixel of the same sample and channel, or padding.
    for n in range(2):
        for c in range(3):
            values = set(out[n, c].flatten().tolist()) - {0.0}
            assert values <= set(x[n, c].flatten().tolist())
    # Sixteen copies of one image come out as different crops and flips: the pixels move,
    # and each sample draws its own.
    same = x[:1].repeat(16, 1, 1, 1)
    moved = random_crop_flip(same, torch.Generator().manual_seed(0), padding=2)
    assert not torch.equal(moved, same)
    assert len({moved[n].numpy().tobytes() for n in range(16)}) > 4
    # Without padding a crop is the image itself, so only flips remain, and both occur.
    flipped = random_crop_flip(same, torch.Generator().manual_seed(1), padding=0)
    kinds = set()
    for n in range(16):
        assert torch.equal(flipped[n], same[n]) or torch.equal(flipped[n], same[n].flip(-1))
        kinds.add(torch.equal(flipped[n], same[n]))
    assert kinds == {True, False}


@pytest.mark.slow
@pytest.mark.parametrize("task", ["cifar10", "fashion_mnist"])
def test_one_epoch_study_over_each_data_set(
    tmp_path: Path, write_study: Callable[..., Path], task: str
) -> None:
    (write_cifar10 if task == "cifar10" else write_fashion_mnist)(tmp_path / "data")
    options: dict[str, object] = {"data_dir": str(tmp_path / "data")}
    if task == "cifar10":
        options["verify_checksums"] = False
    path = write_study(
        task={"name": task, "options": options},
        max_epochs=1,
        n_trials=2,
        search_space={
            "l1": {"type": "pow2", "low": 4, "high": 16},
            "augment": True,
            "batch_size": 16,
        },
    )
    result = run_cli("tune", str(path))
    assert result.returncode == 0, result.stderr
    assert "Best trial #" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("study", ["cifar10_tutorial", "cifar10_resnet"])
def test_cifar10_study_files_smoke_run(tmp_path: Path, study: str) -> None:
    write_cifar10(tmp_path / "data", per_batch=8, test=16)
    result = run_cli(
        "tune",
        str(REPO / "studies" / f"{study}.yaml"),
        "--storage",
        f"sqlite:///{tmp_path}/s.db",
        "--n-trials",
        "2",
        "--workers",
        "1",
        "--set",
        "max_epochs=1",
        "--set",
        f"task.options.data_dir={tmp_path / 'data'}",
        "--set",
        "task.options.verify_checksums=false",
        "--set",
        "device=cpu",
        "--set",
        "gpus_per_trial=0",
        "--set",
        "search_space.batch_size=16",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Best trial #" in result.stdout


# --- resources per trial -------------------------------------------------------------


def test_cpu_workers_default_to_cores_over_cpus_per_trial() -> None:
    assert plan(workers=None, cores=16, cpus_per_trial=2) == [Slot(i, 2, None) for i in range(8)]
    assert plan(workers=None, cores=2) == [Slot(0, 1, None), Slot(1, 1, None)]
    assert plan(workers=3, cores=12) == [Slot(i, 4, None) for i in range(3)]


@pytest.mark.parametrize(
    ("n_gpus", "share", "expected"),
    [
        (1, 1.0, ["0"]),
        (2, 1.0, ["0", "1"]),
        (2, 0.5, ["0", "1", "0", "1"]),  # 2N trials at once with half a GPU each
        (4, 0.25, ["0", "1", "2", "3"] * 4),
        (3, 0.3, ["0", "1", "2"] * 3),  # 0.3 fits three per GPU, not 3.33
        (4, 2.0, ["0,1", "2,3"]),  # multi-GPU trials get whole groups
    ],
)
def test_gpu_workers_round_robin(n_gpus: int, share: float, expected: list[str]) -> None:
    slots = plan(
        workers=None, cores=16, gpu_ids=[str(i) for i in range(n_gpus)], gpus_per_trial=share
    )
    assert [s.visible_gpus for s in slots] == expected
    assert gpu_capacity(n_gpus, share) == len(expected)
    assert all(s.threads == max(1, 16 // len(expected)) for s in slots)


def test_gpu_ids_follow_the_visible_devices_and_pinning() -> None:
    slots = plan(workers=None, cores=8, gpu_ids=["3", "5"], gpus_per_trial=0.5, cpus_per_trial=2)
    assert [s.visible_gpus for s in slots] == ["3", "5", "3", "5"]
    assert {s.threads for s in slots} == {2}
    pinned = plan(workers=2, cores=8, gpu_ids=["3", "5"], pinned_gpu="5", gpus_per_trial=0.5)
    assert [s.visible_gpus for s in pinned] == ["5", "5"]


def test_more_gpus_per_trial_than_visible_is_refused() -> None:
    with pytest.raises(ValueError, match="needs more GPUs"):
        plan(workers=None, cores=8, gpu_ids=["0"], gpus_per_trial=2)


def test_bad_resource_values_are_refused() -> None:
    for key, value, message in [
        ("gpus_per_trial", -1, "0 or more"),
        ("gpus_per_trial", 1.5, "whole number"),
        ("cpus_per_trial", 0, "at least 1"),
        ("precision", "fp16", "expected one of 'fp32', 'bf16'"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_study(minimal_study(**{key: value}))
