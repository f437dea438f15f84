"""The fast paths of the training loop: CPU convolutions chosen by timing, fused optimizer
steps. Each must leave what a trial computes as it would be without it."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from pipeline.tasks._mnist1d import TutorialNet1d
from pipeline.training import make_optimizer
from pipeline.training._kernels import _chosen, choose_onednn, onednn_convolutions


class _ConvBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3)
        self.bn = nn.BatchNorm1d(4)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(4 * 38, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.bn(self.conv(x))).flatten(1))


def _loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    return model(batch).square().mean()


def test_timing_the_kernels_leaves_the_model_and_the_random_stream_as_they_were() -> None:
    _chosen.clear()
    torch.manual_seed(0)
    model = _ConvBN().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = torch.randn(8, 1, 40)
    state = torch.get_rng_state()
    choice = choose_onednn(model, batch, _loss)
    assert choice in (True, False) if torch.backends.mkldnn.is_available() else choice is None
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics too
    assert all(p.grad is None for p in model.parameters())
    assert model.training
    assert torch.equal(torch.get_rng_state(), state)  # dropout drew nothing


def test_a_shape_is_timed_once_per_process_and_a_model_without_convolutions_never() -> None:
    _chosen.clear()
    if not torch.backends.mkldnn.is_available():
        pytest.skip("this torch has no oneDNN")
    model = TutorialNet1d(40, 8, 8, 10)
    first = choose_onednn(model, torch.randn(4, 1, 40), _loss)
    calls: list[int] = []

    def counted(net: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return _loss(net, batch)

    assert choose_onednn(model, torch.randn(4, 1, 40), counted) == first
    assert not calls  # remembered: not timed again
    choose_onednn(model, torch.randn(16, 1, 40), _loss)
    assert len(_chosen) == 2  # another batch shape is another choice
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(40, 3))
    assert choose_onednn(mlp, torch.randn(4, 1, 40), _loss) is None


def test_the_convolution_setting_is_restored_after_the_block_even_on_an_error() -> None:
    before = torch.backends.mkldnn.enabled
    with pytest.raises(RuntimeError), onednn_convolutions(not before):
        assert torch.backends.mkldnn.enabled == (not before)
        raise RuntimeError
    assert torch.backends.mkldnn.enabled == before
    with onednn_convolutions(None):
        assert torch.backends.mkldnn.enabled == before


def test_native_and_onednn_convolutions_train_the_same_model_to_the_same_numbers() -> None:
    # The choice is a kernel, not a different computation: the same steps on the same
    # batches agree to float32 rounding.
    weights = []
    for onednn in (True, False):
        torch.manual_seed(0)
        model = TutorialNet1d(40, 16, 8, 10)
        optimizer = make_optimizer("sgd", model.parameters(), {"lr": 0.05, "momentum": 0.9})
        data = torch.randn(64, 1, 40, generator=torch.Generator().manual_seed(1))
        with onednn_convolutions(onednn):
            for start in range(0, 64, 8):
                optimizer.zero_grad()
                _loss(model, data[start : start + 8]).backward()
                optimizer.step()
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.allclose(weights[0], weights[1], atol=1e-5)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_optimizers_with_a_fused_step_take_it_and_match_the_per_parameter_loop(name: str) -> None:
    results = []
    for fused in (True, False):
        torch.manual_seed(0)
        model = nn.Linear(6, 3)
        hp = {"lr": 0.01, "momentum": 0.9}
        if fused:
            optimizer = make_optimizer(name, model.parameters(), hp)
            assert optimizer.defaults["fused"] is True
        else:  # torch's default on a CPU: a loop over the parameters
            cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
            extra = {"momentum": 0.9} if name == "sgd" else {}
            optimizer = cls[name](model.parameters(), lr=0.01, weight_decay=0.0, **extra)
        for step in range(20):
            optimizer.zero_grad()
            model(torch.full((4, 6), step / 20)).square().mean().backward()
            optimizer.step()
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.allclose(results[0], results[1], atol=1e-5)


def test_rmsprop_and_parameter_groups_given_as_generators_still_work() -> None:
    model = nn.Linear(3, 2)
    assert not make_optimizer("rmsprop", model.parameters(), {"lr": 0.1}).defaults.get("fused")
    groups: list[dict[str, Any]] = [
        {"params": (p for p in [model.weight])},
        {"params": model.bias, "lr": 0.5},
    ]
    optimizer = make_optimizer("sgd", groups, {"lr": 0.1})
    assert [len(g["params"]) for g in optimizer.param_groups] == [1, 1]
    assert optimizer.param_groups[1]["lr"] == 0.5 and optimizer.defaults["fused"] is True
