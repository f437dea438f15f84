"""Ray Tune's CIFAR-10 tutorial, ``train_cifar``, run by the pipeline as a trainable.

The functions below are the tutorial's (PyTorch's "Hyperparameter tuning with Ray
Tune"), with the lines that talked to Ray changed to talk to the session; each changed
line says ``# pipeline:``. The rest is the tutorial as written: its transforms, its
DataLoaders, its loop (``range(start_epoch, 10)``), its checkpoint dictionary, its
restart at the saved epoch. What changed, and why:

- The signature takes the session; ``data_dir`` comes from the study file's
  ``trainable_args`` as ``partial(train_cifar, data_dir=...)`` gave it.
- ``get_checkpoint()`` -> ``session.restore()``, ``train.report(..., checkpoint=...)``
  -> ``session.report(epoch + 1, ...)`` and ``session.checkpoint(...)``.
- The device is the study's (``session.device``), not "cuda:0 if available".
- The data is read, never downloaded, unless the study sets ``download: true``; the
  validation split is the same in every trial (the tutorial's depends on each trial's
  random state), and the loaders' worker count comes from the study.

The loop runs to epoch 10 whatever the study's ``max_epochs``: the session ends the
trial, complete, when it reports past them (as Ray's ``max_t`` does). A retry restarts
at the saved epoch and reports it again; the new values replace the old.

``build_net`` and ``test_cifar`` are the tutorial's ``test_best_model`` cut in two: the
study file names them as ``model:`` and ``test:`` so that ``pipeline evaluate`` and
:func:`pipeline.load_best` rebuild and score the winner.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn, optim
from torch.utils.data import random_split
from torchvision import transforms
from torchvision.datasets import CIFAR10

from pipeline.training import Session


class _UncheckedCIFAR10(CIFAR10):
    """Checks that the files exist, not their MD5 sums (re-packed or test data)."""

    train_list: ClassVar = [[name, None] for name, _ in CIFAR10.train_list]
    test_list: ClassVar = [[name, None] for name, _ in CIFAR10.test_list]
    meta: ClassVar = {**CIFAR10.meta, "md5": None}


def load_data(
    data_dir: str | None = "./data", download: bool = False, verify_checksums: bool = True
) -> tuple[CIFAR10, CIFAR10]:
    """The tutorial's ``load_data``: CIFAR-10 with ToTensor and Normalize(0.5, 0.5)."""
    transform = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]
    )
    dataset = CIFAR10 if verify_checksums else _UncheckedCIFAR10
    root = str(Path(data_dir or "./data").expanduser())
    try:  # pipeline: one line naming the fix, rather than torchvision's traceback
        trainset = dataset(root=root, train=True, download=download, transform=transform)
        testset = dataset(root=root, train=False, download=download, transform=transform)
    except RuntimeError as exc:
        raise FileNotFoundError(
            f"CIFAR-10 is not under {root} ({exc}); run once with "
            "--set trainable_args.download=true, or put cifar-10-batches-py there"
        ) from None
    return trainset, testset


class Net(nn.Module):
    """The tutorial's network: conv 3->6 k5, pool, conv 6->16 k5, pool, fc l1, l2, 10."""

    def __init__(self, l1: int = 120, l2: int = 84) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, l1)
        self.fc2 = nn.Linear(l1, l2)
        self.fc3 = nn.Linear(l2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)  # flatten all dimensions except batch
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def train_cifar(config: Mapping[str, Any], session: Session, data_dir: str | None = None) -> None:
    """The tutorial's ``train_cifar(config, data_dir)``, reporting to the session."""
    net = Net(config["l1"], config["l2"])

    device = session.device  # pipeline: the study's device
    net.to(device)

    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(net.parameters(), lr=config["lr"], momentum=0.9)

    checkpoint_state = session.restore()  # pipeline: was get_checkpoint() and pickle.load
    if checkpoint_state:
        start_epoch = checkpoint_state["epoch"]
        net.load_state_dict(checkpoint_state["net_state_dict"])
        optimizer.load_state_dict(checkpoint_state["optimizer_state_dict"])
    else:
        start_epoch = 0

    trainset, testset = load_data(  # pipeline: read, not downloaded, unless asked
        data_dir, config["download"], config["verify_checksums"]
    )

    test_abs = int(len(trainset) * 0.8)
    train_subset, val_subset = random_split(
        trainset,
        [test_abs, len(trainset) - test_abs],
        generator=torch.Generator().manual_seed(0),  # pipeline: one split for every trial
    )

    workers = config["num_workers"]  # pipeline: the tutorial's num_workers=8
    trainloader = torch.utils.data.DataLoader(
        train_subset, batch_size=int(config["batch_size"]), shuffle=True, num_workers=workers
    )
    valloader = torch.utils.data.DataLoader(
        val_subset, batch_size=int(config["batch_size"]), shuffle=True, num_workers=workers
    )

    for epoch in range(start_epoch, 10):  # loop over the dataset multiple times
        running_loss = 0.0
        epoch_steps = 0
        for i, data in enumerate(trainloader, 0):
            # get the inputs; data is a list of [inputs, labels]
            inputs, labels = data
            inputs, labels = inputs.to(device), labels.to(device)

            # zero the parameter gradients
            optimizer.zero_grad()

            # forward + backward + optimize
            outputs = net(inputs)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()

            # print statistics
            running_loss += loss.item()
            epoch_steps += 1
            if i % 2000 == 1999:  # print every 2000 mini-batches
                print(f"[{epoch + 1}, {i + 1:5d}] loss: {running_loss / epoch_steps:.3f}")
                running_loss = 0.0

        # Validation loss
        val_loss = 0.0
        val_steps = 0
        total = 0
        correct = 0
        for data in valloader:
            with torch.no_grad():
                inputs, labels = data
                inputs, labels = inputs.to(device), labels.to(device)

                outputs = net(inputs)
                _, predicted = torch.max(outputs.data, 1)
                total += labels.size(0)
                correct += (predicted == labels).sum().item()

                loss = criterion(outputs, labels)
                val_loss += loss.cpu().numpy()
                val_steps += 1

        checkpoint_data = {
            "epoch": epoch,
            "net_state_dict": net.state_dict(),
            "optimizer_state_dict": optimizer.state_dict(),
        }
        session.report(epoch + 1, loss=val_loss / val_steps, accuracy=correct / total)  # pipeline
        session.checkpoint(checkpoint_data)  # pipeline: was Checkpoint.from_directory(...)

    print("Finished Training")


def build_net(config: Mapping[str, Any]) -> nn.Module:
    """The network of a configuration (the first line of ``test_best_model``)."""
    return Net(config["l1"], config["l2"])


def test_cifar(net: nn.Module, config: Mapping[str, Any], device: torch.device) -> dict[str, float]:
    """The tutorial's ``test_accuracy``: accuracy on the 10000 test images."""
    _, testset = load_data(config["data_dir"], False, config["verify_checksums"])
    testloader = torch.utils.data.DataLoader(testset, batch_size=4, shuffle=False, num_workers=2)
    correct = 0
    total = 0
    with torch.no_grad():
        for data in testloader:
            images, labels = data
            images, labels = images.to(device), labels.to(device)
            outputs = net(images)
            _, predicted = torch.max(outputs.data, 1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()
    return {"test_accuracy": correct / total}


__all__ = ["Net", "build_net", "load_data", "test_cifar", "train_cifar"]
