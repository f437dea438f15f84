"""Trial packing: a packed member trains exactly as its solo run of the one training loop.

Each case packs members of one family (different widths, learning rates, momenta, weight
decays, schedules) and compares every member with ``pipeline.train.fit`` on the same
hyperparameters and seed: the per-epoch metrics, the gradients and the final weights.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from pipeline.config import TaskConfig
from pipeline.packing import Pack, family
from pipeline.tasks import Splits, Task, resolve_task
from pipeline.tasks._digits import digits as digits_task
from pipeline.tasks._mnist1d import mnist1d as mnist1d_task
from pipeline.tasks._vision import cifar10 as cifar10_task
from pipeline.training import fit, hyperparameters

CPU = torch.device("cpu")
EPOCHS = 2


@pytest.fixture(scope="module")
def digits() -> tuple[Task, Splits]:
    task = resolve_task(TaskConfig("digits"))
    full = task.load(task.resolve_options({}))
    # 480 training images: 15 batches of 32 per epoch, enough for schedules to move.
    return task, Splits(
        full.train_x[:480], full.train_y[:480], full.val_x, full.val_y,
        full.test_x, full.test_y, num_classes=10,
    )  # fmt: skip


def _solo(task: Task, splits: Splits, hp: dict[str, Any], seed: int, epochs: int) -> Any:
    """The project's own loop on one member, seeded as TaskTrainable seeds a trial."""
    torch.manual_seed(seed)
    model = task.build_model(hp, splits)
    results = fit(
        model, task, splits.train, splits.val, hp, epochs, torch.Generator().manual_seed(seed)
    )
    return model, [r.metrics for r in results]


def _assert_member_equals_solo(
    pack: Pack, member: int, packed: list[dict[str, float]], task: Task, splits: Splits, seed: int
) -> None:
    k = pack.members.index(member)
    model, solo = _solo(task, splits, pack.hps[k], seed, len(packed))
    for epoch, (mine, theirs) in enumerate(zip(packed, solo, strict=True), start=1):
        assert mine.keys() == theirs.keys()
        for name in theirs:
            assert mine[name] == pytest.approx(theirs[name], rel=1e-4, abs=1e-5), (epoch, name)
    # A vmapped convolution rounds differently from a single one (gradients agree to 1e-7,
    # see the gradient test); over dozens of steps that moves a few weights by up to 1e-3.
    unpacked = pack.state_dict(member)
    for name, tensor in model.state_dict().items():

        def message(text: str, name: str = name) -> str:
            return f"{name}: {text}"

        torch.testing.assert_close(unpacked[name], tensor, rtol=1e-3, atol=1e-3, msg=message)


# Members of one family: the widths (padded to the widest) and the per-member settings
# differ; batch size and optimizer kind are shared.
CASES = {
    "sgd momentum, nesterov, weight decay, padded widths": [
        {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "l1": 16, "l2": 8},
        {"optimizer": "sgd", "lr": 0.02, "momentum": 0.5, "nesterov": True, "l1": 64, "conv2": 8},
        {"optimizer": "sgd", "lr": 0.1, "momentum": 0.0, "weight_decay": 1e-3, "conv1": 3},
    ],
    "adam, weight decay, padded widths": [
        {"optimizer": "adam", "lr": 0.003, "l1": 8, "l2": 40},
        {"optimizer": "adam", "lr": 0.001, "weight_decay": 1e-2, "conv1": 9, "l2": 4},
    ],
    "adamw, padded widths": [
        {"optimizer": "adamw", "lr": 0.002, "weight_decay": 0.05, "l1": 100},
        {"optimizer": "adamw", "lr": 0.004, "weight_decay": 0.0, "l1": 4, "conv2": 4},
    ],
    "schedules, warm-up and gradient clipping per member": [
        {"optimizer": "sgd", "lr": 0.05, "scheduler": "cosine", "grad_clip": 0.5},
        {"optimizer": "sgd", "lr": 0.05, "scheduler": "onecycle", "warmup_epochs": 1, "l1": 8},
        {"optimizer": "sgd", "lr": 0.08, "scheduler": "step", "step_size": 1, "gamma": 0.5},
    ],
}


@pytest.mark.parametrize("values", CASES.values(), ids=CASES.keys())
def test_a_packed_member_trains_as_its_solo_run(
    digits: tuple[Task, Splits], values: list[dict[str, Any]]
) -> None:
    task, splits = digits
    hps = [hyperparameters(task, v) for v in values]
    seeds = [7 + 10 * k for k in range(len(hps))]
    pack = Pack(task, splits, hps, seeds, EPOCHS, CPU)
    epochs = [pack.train_epoch() for _ in range(EPOCHS)]
    for k, seed in enumerate(seeds):
        _assert_member_equals_solo(pack, k, [e[k].metrics for e in epochs], task, splits, seed)


def test_members_start_from_their_solo_initialisation_with_zero_padding(
    digits: tuple[Task, Splits],
) -> None:
    task, splits = digits
    hps = [hyperparameters(task, {"l1": 8}), hyperparameters(task, {"l1": 32, "conv1": 2})]
    pack = Pack(task, splits, hps, [3, 4], 1, CPU)
    for k, seed in enumerate((3, 4)):
        torch.manual_seed(seed)
        solo = task.build_model(hps[k], splits).state_dict()
        for name, tensor in pack.state_dict(k).items():
            assert torch.equal(tensor, solo[name]), name
    fc1 = pack.params["head.1.weight"]  # (members, widest l1, inputs)
    assert fc1.shape[:2] == (2, 32)
    assert fc1[0, 8:].abs().sum() == 0  # member 0's padded units


def test_packed_gradients_equal_solo_gradients_and_padding_gets_none(
    digits: tuple[Task, Splits],
) -> None:
    task, splits = digits
    hps = [hyperparameters(task, {"l1": 12, "l2": 5}), hyperparameters(task, {"l1": 30})]
    pack = Pack(task, splits, hps, [1, 2], 1, CPU)
    assert splits.train.x is not None and splits.train.y is not None
    x, y = splits.train.x[:32], splits.train.y[:32]
    grads, losses = pack.gradients(torch.stack([x, x.flip(0)]), torch.stack([y, y.flip(0)]))
    for k, (xb, yb) in enumerate(((x, y), (x.flip(0), y.flip(0)))):
        model = pack.model(k)
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        assert losses[k].item() == pytest.approx(loss.item(), rel=1e-6)
        for name, param in model.named_parameters():
            own = tuple(slice(0, n) for n in param.shape)
            torch.testing.assert_close(grads[name][k][own], param.grad, rtol=1e-5, atol=1e-7)
    assert grads["head.1.weight"][0, 12:].abs().sum() == 0
    assert grads["head.3.weight"][0, 5:].abs().sum() == 0


def test_dropping_a_pruned_or_diverged_member_leaves_the_others_unchanged(
    digits: tuple[Task, Splits],
) -> None:
    task, splits = digits
    values = [
        {"lr": 0.05, "l1": 16},
        {"lr": 0.03, "l1": 128},  # pruned after epoch 1
        {"lr": 1e9, "l1": 24},  # diverges to NaN in epoch 1
        {"lr": 0.01, "momentum": 0.5},
    ]
    hps = [hyperparameters(task, v) for v in values]
    seeds = [5, 6, 7, 8]
    pack = Pack(task, splits, hps, seeds, EPOCHS, CPU)
    first = pack.train_epoch()
    assert not first[2].finite and first[0].finite
    pack.drop([1, 2])
    assert pack.members == [0, 3]
    second = pack.train_epoch()
    assert pack.params["head.1.weight"].shape[0] == 2  # two members left in the tensors
    for k, member in enumerate((0, 3)):
        history = [first[member].metrics, second[k].metrics]
        _assert_member_equals_solo(pack, member, history, task, splits, seeds[member])


def test_an_unpacked_member_loads_into_its_solo_model_with_the_same_outputs(
    digits: tuple[Task, Splits],
) -> None:
    task, splits = digits
    hps = [hyperparameters(task, {"l2": 6}), hyperparameters(task, {"l2": 48})]
    pack = Pack(task, splits, hps, [0, 1], 1, CPU)
    pack.train_epoch()
    x = splits.val.x
    assert x is not None
    packed_out = torch.func.vmap(pack._forward, in_dims=(0, 0, None))(pack.params, pack.buffers, x)
    for k, hp in enumerate(hps):
        solo = task.build_model(hp, splits)
        solo.load_state_dict(pack.state_dict(k))  # strict: exactly the solo model's keys
        solo.eval()
        with torch.no_grad():
            torch.testing.assert_close(solo(x), packed_out[k], rtol=1e-5, atol=1e-6)


def test_mnist1d_tutorial_members_pack_and_train_as_solo() -> None:
    task = resolve_task(TaskConfig("mnist1d"))
    full = task.load(task.resolve_options({}))
    splits = Splits(
        full.train_x[:640], full.train_y[:640], full.val_x[:200], full.val_y[:200],
        full.test_x[:10], full.test_y[:10], num_classes=10,
    )  # fmt: skip
    values = [
        {"arch": "tutorial", "l1": 8, "l2": 4, "optimizer": "adamw", "lr": 0.01},
        {"arch": "tutorial", "l1": 64, "l2": 16, "optimizer": "adamw", "lr": 0.003},
    ]
    hps = [hyperparameters(task, v) for v in values]
    pack = Pack(task, splits, hps, [1, 2], EPOCHS, CPU)
    epochs = [pack.train_epoch() for _ in range(EPOCHS)]
    for k in range(2):
        _assert_member_equals_solo(pack, k, [e[k].metrics for e in epochs], task, splits, k + 1)


def _hp(task_name: str, **values: Any) -> tuple[Task, dict[str, Any]]:
    # The factories themselves: resolving cifar10 would look for its files.
    task = {"digits": digits_task, "mnist1d": mnist1d_task, "cifar10": cifar10_task}[task_name]()
    return task, hyperparameters(task, values)


FAMILIES = [
    # (task, values of member a, values of member b, same family?)
    ("digits", {"l1": 8, "lr": 0.1}, {"l1": 64, "lr": 0.01, "momentum": 0.0}, True),
    ("digits", {"batch_size": 16}, {"batch_size": 32}, False),
    ("digits", {"optimizer": "adam"}, {"optimizer": "adamw"}, False),
    ("digits", {"label_smoothing": 0.1}, {}, False),
    ("mnist1d", {"arch": "tutorial", "l2": 8}, {"arch": "tutorial", "l2": 64}, True),
    ("mnist1d", {"arch": "cnn", "width": 8}, {"arch": "cnn", "width": 64}, True),
    ("mnist1d", {"arch": "cnn", "depth": 2}, {"arch": "cnn", "depth": 3}, False),
    ("cifar10", {"l1": 4, "l2": 256}, {"l1": 256, "l2": 4}, True),
]


@pytest.mark.parametrize(("name", "a", "b", "same"), FAMILIES)
def test_members_share_a_family_only_when_one_model_can_hold_them(
    name: str, a: dict[str, Any], b: dict[str, Any], same: bool
) -> None:
    task, hp_a = _hp(name, **a)
    _, hp_b = _hp(name, **b)
    assert family(task, hp_a) is not None and family(task, hp_b) is not None
    assert (family(task, hp_a) == family(task, hp_b)) is same


UNPACKABLE = [
    ("digits", {"optimizer": "rmsprop"}),  # no packed update for it
    ("mnist1d", {"arch": "cnn", "dropout": 0.2}),  # dropout masks cannot match the solo run
    ("cifar10", {"arch": "resnet18"}),
    ("cifar10", {"augment": True}),
]


@pytest.mark.parametrize(("name", "values"), UNPACKABLE)
def test_configurations_that_cannot_be_packed_have_no_family(
    name: str, values: dict[str, Any]
) -> None:
    task, hp = _hp(name, **values)
    assert family(task, hp) is None


def test_bf16_members_follow_their_solo_bf16_runs(digits: tuple[Task, Splits]) -> None:
    task, splits = digits
    hps = [hyperparameters(task, {"l1": 8}), hyperparameters(task, {"l1": 40, "lr": 0.05})]
    pack = Pack(task, splits, hps, [1, 2], EPOCHS, CPU, torch.bfloat16)
    epochs = [pack.train_epoch() for _ in range(EPOCHS)]
    for k, hp in enumerate(hps):
        torch.manual_seed(k + 1)
        model = task.build_model(hp, splits)
        generator = torch.Generator().manual_seed(k + 1)
        solo = fit(
            model, task, splits.train, splits.val, hp, EPOCHS, generator, autocast=torch.bfloat16
        )
        for mine, theirs in zip(epochs, solo, strict=True):
            for name in ("train_loss", "val_loss"):
                # bf16 rounds each product to 8 bits of mantissa, in a vmapped order
                assert mine[k].metrics[name] == pytest.approx(theirs.metrics[name], rel=2e-3)
