"""The data a task hands to the training loop: three splits of tensors or Datasets.

Tensors are the fast path: held on the device, shuffled and sliced there, never copied
per batch. A :class:`torch.utils.data.Dataset` (images decoded from disk, a corpus too
large for memory) is streamed through a DataLoader instead and stays where it is.
"""

from __future__ import annotations

from collections.abc import Sized
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch.utils.data import Dataset


@dataclass(frozen=True)
class Split:
    """One split: inputs ``x`` and labels ``y`` as tensors of the same length, or a
    ``dataset`` whose items are ``(input, label)`` pairs."""

    x: torch.Tensor | None = None
    y: torch.Tensor | None = None
    dataset: Dataset[Any] | None = None

    def __post_init__(self) -> None:
        has_tensors = self.x is not None and self.y is not None
        if (self.x is None) != (self.y is None) or has_tensors == (self.dataset is not None):
            raise TypeError("a Split holds either x and y tensors or a dataset")
        if has_tensors and len(cast(torch.Tensor, self.x)) != len(cast(torch.Tensor, self.y)):
            raise ValueError(f"x has {len(cast(torch.Tensor, self.x))} rows but y has {len(self)}")

    def __len__(self) -> int:
        if self.y is not None:
            return len(self.y)
        return len(cast(Sized, self.dataset))

    def tensors(self, name: str = "this") -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)``; a TypeError for a Dataset split, which has no tensors to hand out."""
        if self.x is None or self.y is None:
            raise TypeError(f"the {name} split holds a Dataset, not tensors")
        return self.x, self.y

    def first_label(self) -> Any:
        """The label of the first example."""
        if self.y is not None:
            return self.y[0]
        return cast(Any, self.dataset)[0][1]

    def to(self, device: torch.device, memory_format: torch.memory_format | None = None) -> Split:
        """Tensors moved to ``device`` (inputs optionally in ``memory_format``); a Dataset
        split unchanged: its batches move as they are loaded."""
        if self.x is None or self.y is None:
            return self
        if memory_format is None:
            return Split(self.x.to(device), self.y.to(device))
        return Split(self.x.to(device, memory_format=memory_format), self.y.to(device))


@dataclass(frozen=True, init=False)
class Splits:
    """Fixed train, validation and test splits.

    Built from tensors with ``Splits(train_x, train_y, val_x, val_y, test_x, test_y,
    num_classes)`` (inputs float32; labels int64 for classification, floating for
    regression) or from Datasets with :meth:`from_datasets`.

    ``num_classes`` is the width of the model's output: the number of classes for
    classification; for regression the number of target columns (1 for labels of shape
    (N,)), or 0 to leave it unchecked.
    """

    train: Split
    val: Split
    test: Split
    num_classes: int

    def __init__(
        self,
        train_x: torch.Tensor,
        train_y: torch.Tensor,
        val_x: torch.Tensor,
        val_y: torch.Tensor,
        test_x: torch.Tensor,
        test_y: torch.Tensor,
        num_classes: int,
    ) -> None:
        self._set(Split(train_x, train_y), Split(val_x, val_y), Split(test_x, test_y), num_classes)

    def _set(self, train: Split, val: Split, test: Split, num_classes: int) -> None:
        for name, value in zip(
            ("train", "val", "test", "num_classes"), (train, val, test, num_classes), strict=True
        ):
            object.__setattr__(self, name, value)

    @classmethod
    def of(cls, train: Split, val: Split, test: Split, num_classes: int) -> Splits:
        """Splits from three :class:`Split` values (tensors, Datasets or a mix)."""
        splits = cls.__new__(cls)
        splits._set(train, val, test, num_classes)
        return splits

    @classmethod
    def from_datasets(
        cls, train: Dataset[Any], val: Dataset[Any], test: Dataset[Any], num_classes: int
    ) -> Splits:
        """Splits streamed from three Datasets of ``(input, label)`` pairs."""
        return cls.of(Split(dataset=train), Split(dataset=val), Split(dataset=test), num_classes)

    @property
    def train_x(self) -> torch.Tensor:
        return self.train.tensors("train")[0]

    @property
    def train_y(self) -> torch.Tensor:
        return self.train.tensors("train")[1]

    @property
    def val_x(self) -> torch.Tensor:
        return self.val.tensors("val")[0]

    @property
    def val_y(self) -> torch.Tensor:
        return self.val.tensors("val")[1]

    @property
    def test_x(self) -> torch.Tensor:
        return self.test.tensors("test")[0]

    @property
    def test_y(self) -> torch.Tensor:
        return self.test.tensors("test")[1]

    def named(self) -> tuple[tuple[str, Split], ...]:
        """``(("train", split), ("val", split), ("test", split))``."""
        return (("train", self.train), ("val", self.val), ("test", self.test))

    def to(self, device: torch.device, memory_format: torch.memory_format | None = None) -> Splits:
        """The same splits on ``device`` (moved once per worker, not per trial); inputs
        optionally in ``memory_format`` (channels-last). Dataset splits stay as they are."""
        train, val, test = (split.to(device, memory_format) for _, split in self.named())
        return Splits.of(train, val, test, self.num_classes)

    def sizes(self) -> tuple[int, int, int]:
        """Number of train, validation and test examples."""
        return len(self.train), len(self.val), len(self.test)


__all__ = ["Split", "Splits"]
