"""CIFAR-10 and Fashion-MNIST through torchvision's dataset classes.

The files are read once by torchvision's own classes (``download`` only when the study
opts in), their decoded uint8 arrays become one tensor per split, and everything after
that happens on tensors on the trial's device: scaling, normalization and, optionally,
random crops and flips for whole batches at once. Nothing goes through a per-sample PIL
pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.exceptions import ConfigError
from pipeline.tasks._base import Task, split_indices
from pipeline.tasks._data import Splits

# Per-channel statistics of the training sets, as used throughout the literature.
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
FASHION_MEAN, FASHION_STD = (0.2860,), (0.3530,)

_HOW_TO_GET = {
    "cifar10": (
        "cifar-10-batches-py/ (data_batch_1..5, test_batch, batches.meta)",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    ),
    "fashion_mnist": (
        "FashionMNIST/raw/ (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte)",
        "https://github.com/zalandoresearch/fashion-mnist",
    ),
}


def _check(name: str, relative: tuple[str, ...]) -> Any:
    def check(options: Mapping[str, Any]) -> None:
        root = Path(options["data_dir"]).expanduser()
        if options["download"]:
            return
        missing = [f for f in relative if not (root / f).is_file()]
        if missing:
            raise _missing(name, root, FileNotFoundError(f"no {missing[0]}"))

    return check


def _missing(name: str, data_dir: Path, exc: Exception) -> ConfigError:
    expected, source = _HOW_TO_GET[name]
    return ConfigError(
        "task.options.data_dir",
        f"{name} data not found under {data_dir} (expected {expected}; torchvision said: {exc}). "
        f"Download it once with `pipeline tune STUDY --download` (or task.options.download: true), "
        f"or put the files there from {source}",
    )


def _normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (x.float().div_(255.0) - m) / s


def _splits(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    options: Mapping[str, Any],
) -> Splits:
    train, val, _ = split_indices(
        len(train_y), (options["val_fraction"], 0.0), options["split_seed"]
    )
    return Splits(
        train_x[train], train_y[train], train_x[val], train_y[val], test_x, test_y, num_classes=10
    )


def load_cifar10(options: Mapping[str, Any]) -> Splits:
    """CIFAR-10 from torchvision's ``CIFAR10`` class: 50000 train (minus validation),
    10000 test, normalized float32 NCHW tensors."""
    from torchvision.datasets import CIFAR10

    dataset = CIFAR10
    if not options["verify_checksums"]:

        class UncheckedCIFAR10(CIFAR10):
            """Checks that the files exist, not their MD5 sums (re-packed or test data)."""

            train_list: ClassVar = [[name, None] for name, _ in CIFAR10.train_list]
            test_list: ClassVar = [[name, None] for name, _ in CIFAR10.test_list]
            meta: ClassVar = {**CIFAR10.meta, "md5": None}

        dataset = UncheckedCIFAR10
    root = Path(options["data_dir"]).expanduser()
    try:
        train = dataset(str(root), train=True, download=options["download"])
        test = dataset(str(root), train=False, download=False)
    except (RuntimeError, OSError) as exc:
        raise _missing("cifar10", root, exc) from None

    def tensors(ds: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2)  # HWC uint8 -> NCHW
        return _normalize(x, CIFAR10_MEAN, CIFAR10_STD), torch.as_tensor(
            ds.targets, dtype=torch.int64
        )

    (train_x, train_y), (test_x, test_y) = tensors(train), tensors(test)
    return _splits(train_x, train_y, test_x, test_y, options)


def load_fashion_mnist(options: Mapping[str, Any]) -> Splits:
    """Fashion-MNIST from torchvision's ``FashionMNIST`` class (IDX files): 60000 train
    (minus validation), 10000 test, normalized float32 N1HW tensors."""
    from torchvision.datasets import FashionMNIST

    root = Path(options["data_dir"]).expanduser()
    try:
        train = FashionMNIST(str(root), train=True, download=options["download"])
        test = FashionMNIST(str(root), train=False, download=False)
    except (RuntimeError, OSError) as exc:
        raise _missing("fashion_mnist", root, exc) from None
    norm = lambda ds: _normalize(ds.data.unsqueeze(1), FASHION_MEAN, FASHION_STD)  # noqa: E731
    return _splits(norm(train), train.targets.long(), norm(test), test.targets.long(), options)


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Per-sample random crop (after zero padding) and horizontal flip of a whole batch,
    as index arithmetic on the batch's device."""
    n, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=x.device, generator=generator)
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy).expand(n, h, w)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx).expand(n, h, w)
    flip = torch.rand((n, 1, 1), device=x.device, generator=generator) < 0.5
    cols = torch.where(flip, 2 * dx + w - 1 - cols, cols)  # mirror within the crop
    batch = torch.arange(n, device=x.device).view(n, 1, 1).expand(n, h, w)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


class TutorialNet(nn.Module):
    """The Ray Tune CIFAR-10 tutorial's network: conv 3->6 k5, pool, conv 6->16 k5, pool,
    fc 400->l1, fc l1->l2, fc l2->10 (for 28x28 inputs the first fc takes 256)."""

    def __init__(self, channels: int, size: int, l1: int, l2: int, classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        side = ((size - 4) // 2 - 4) // 2
        self.fc1 = nn.Linear(16 * side * side, l1)
        self.fc2 = nn.Linear(l1, l2)
        self.fc3 = nn.Linear(l2, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def resnet18_cifar(classes: int) -> nn.Module:
    """torchvision's ResNet-18 adapted to 32x32 images: a 3x3 stride-1 stem, no max-pool."""
    from torchvision.models import resnet18

    model = resnet18(num_classes=classes)
    model.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def _build(hp: Mapping[str, Any], splits: Splits) -> nn.Module:
    channels, size = splits.train_x.shape[1], splits.train_x.shape[-1]
    if hp["arch"] == "tutorial":
        return TutorialNet(channels, size, hp["l1"], hp["l2"], splits.num_classes)
    if hp["arch"] == "resnet18":
        if channels != 3:
            raise ValueError("arch resnet18 is for 3-channel images (cifar10)")
        return resnet18_cifar(splits.num_classes)
    raise ValueError(f"unknown arch {hp['arch']!r}; expected tutorial or resnet18")


_OPTIONS = {
    "data_dir": "data",  # relative to the working directory (git-ignored in this repo)
    "download": False,
    "verify_checksums": True,  # cifar10: compare the files' MD5 sums with the originals
    "val_fraction": 0.1,
    "split_seed": 0,
}
_HYPER = {"arch": "tutorial", "l1": 120, "l2": 84, "augment": False}


_CIFAR_FILES = tuple(
    f"cifar-10-batches-py/{f}"
    for f in (
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
        "test_batch",
        "batches.meta",
    )
)
_FASHION_FILES = tuple(
    f"FashionMNIST/raw/{f}"
    for f in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    )
)


def _pack_widths(hp: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The tutorial network packs with its l1/l2 padded; a ResNet-18 does not pack."""
    return ("l1", "l2") if hp["arch"] == "tutorial" else None


def cifar10() -> Task:
    """The ``cifar10`` task: the tutorial's data set and network (or a ResNet-18)."""
    return Task(
        name="cifar10",
        load=load_cifar10,
        build_model=_build,
        hyperparameters=_HYPER,
        options=_OPTIONS,
        training_defaults={"lr": 0.001, "batch_size": 4, "momentum": 0.9},
        augment=random_crop_flip,
        check=_check("cifar10", _CIFAR_FILES),
        pack_widths=_pack_widths,
    )


def fashion_mnist() -> Task:
    """The ``fashion_mnist`` task: 28x28 grey clothes images, the tutorial's network."""
    return Task(
        name="fashion_mnist",
        load=load_fashion_mnist,
        build_model=_build,
        hyperparameters=_HYPER,
        options=_OPTIONS,
        training_defaults={"lr": 0.01, "batch_size": 32, "momentum": 0.9},
        augment=random_crop_flip,
        check=_check("fashion_mnist", _FASHION_FILES),
        pack_widths=_pack_widths,
    )
