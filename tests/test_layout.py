"""The package's layout: imports flow one way, the schema is a leaf, modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"
# Code kept as its authors wrote it, so that the port reads as a small diff: the Ray Tune
# tutorial's train_cifar.
VERBATIM = {"pipeline.examples.ray_tutorial.train_cifar"}
MODULES = {
    ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): path
    for path in sorted(PACKAGE.rglob("*.py"))
}


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            # `from pipeline import space` imports the module pipeline.space.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _package_imports(name: str) -> set[str]:
    return {m for m in _imports(MODULES[name]) if m in MODULES and m != name and m != "pipeline"}


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("pipeline.strict", ()),
        ("pipeline.config_objectives", ("pipeline.strict",)),
        ("pipeline.config_running", ("pipeline.strict",)),
        (
            "pipeline.config",
            ("pipeline.strict", "pipeline.config_objectives", "pipeline.config_running"),
        ),
    ],
)
def test_the_schema_imports_nothing_from_the_package_torch_or_optuna(
    name: str, allowed: tuple[str, ...]
) -> None:
    imported = _imports(MODULES[name]) - {"pipeline"}
    offending = {
        m
        for m in imported
        if m.split(".")[0] in ("pipeline", "torch", "optuna") and not m.startswith(allowed or "-")
    }
    assert not offending


def test_no_import_cycle_among_the_modules() -> None:
    graph = {name: _package_imports(name) for name in MODULES}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = [*path[path.index(name) :], name]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for child in sorted(graph[name]):
            visit(child, [*path, name])
        done.add(name)

    for name in graph:
        visit(name, [])


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_and_functions_stay_readable(name: str) -> None:
    source = MODULES[name].read_text()
    assert len(source.splitlines()) <= 350, f"{name} has grown past 350 lines: split it"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.end_lineno is not None:
            length = node.end_lineno - node.lineno + 1
            if f"{name}.{node.name}" in VERBATIM:
                continue
            assert length <= 70, f"{name}.{node.name} is {length} lines long"
