"""MNIST-1D: the generated arrays are cached, so later processes skip the generator."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.tasks import _mnist1d as mnist1d


@pytest.fixture
def fake_generator(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Replace the seconds-long generator with a small seeded one; count its calls."""
    calls: list[int] = []

    def generate(data_seed: int) -> dict[str, torch.Tensor]:
        calls.append(data_seed)
        g = torch.Generator().manual_seed(data_seed)
        return {
            "x": torch.randn(50, 1, 40, generator=g),
            "y": torch.randint(0, 10, (50,), generator=g),
            "x_test": torch.randn(20, 1, 40, generator=g),
            "y_test": torch.randint(0, 10, (20,), generator=g),
        }

    monkeypatch.setattr(mnist1d, "generate", generate)
    return calls


def _options(cache_dir: Path | None, data_seed: int = 42) -> dict[str, object]:
    task = mnist1d.mnist1d()
    return task.resolve_options(
        {"cache_dir": None if cache_dir is None else str(cache_dir), "data_seed": data_seed}
    )


def test_second_load_reads_the_cache(tmp_path: Path, fake_generator: list[int]) -> None:
    first = mnist1d.load(_options(tmp_path))
    second = mnist1d.load(_options(tmp_path))
    assert fake_generator == [42]
    assert torch.equal(first.train_x, second.train_x)
    assert torch.equal(first.test_y, second.test_y)
    assert first.sizes() == (45, 5, 20)
    assert [p.name for p in tmp_path.iterdir()] == ["mnist1d-seed42-v1.pt"]


def test_each_data_seed_has_its_own_file(tmp_path: Path, fake_generator: list[int]) -> None:
    a = mnist1d.load(_options(tmp_path, data_seed=1))
    b = mnist1d.load(_options(tmp_path, data_seed=2))
    assert fake_generator == [1, 2]
    assert not torch.equal(a.test_x, b.test_x)


def test_a_damaged_cache_file_is_regenerated(tmp_path: Path, fake_generator: list[int]) -> None:
    (tmp_path / "mnist1d-seed42-v1.pt").write_bytes(b"half a file")
    splits = mnist1d.load(_options(tmp_path))
    assert fake_generator == [42]
    assert splits.sizes() == (45, 5, 20)
    assert torch.equal(mnist1d.load(_options(tmp_path)).train_x, splits.train_x)
    assert fake_generator == [42]


def test_cache_dir_null_always_generates(tmp_path: Path, fake_generator: list[int]) -> None:
    mnist1d.load(_options(None))
    mnist1d.load(_options(None))
    assert fake_generator == [42, 42]


def test_the_real_generator_matches_its_cached_copy(tmp_path: Path) -> None:
    fresh = mnist1d.generate(42)
    mnist1d.load(_options(tmp_path))
    cached = torch.load(tmp_path / "mnist1d-seed42-v1.pt", weights_only=True)
    assert all(torch.equal(fresh[k], cached[k]) for k in fresh)
    assert fresh["x"].shape == (4000, 1, 40)
