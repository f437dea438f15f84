"""The package's layout: rooms by concept, imports that flow one way, a schema that is a
leaf, private modules behind each room's public ``__init__``, modules and rooms that stay
small."""

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
# The rooms from the bottom up: a room imports only from rooms below it (docs/architecture.md).
LAYERS = [
    "exceptions",
    "signals",
    "config",
    "storages",
    "search",
    "tasks",
    "trial",
    "schedulers",
    "artifacts",
    "tracking",
    "training",
    "integrations",
    "examples",
    "study",
    "packing",
    "results",
    "runner",
    "visualization",
    "compare",
    "launch",
    "cli",
]
# Modules that stand alone at the top of the package, each a leaf every room may use.
LEAVES = ("exceptions", "signals")
ROOMS = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists())


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top, inside a function or for type checking."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            # `from pipeline.config import _strict` imports the module pipeline.config._strict.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _package_imports(name: str) -> set[str]:
    return {m for m in _imports(MODULES[name]) if m in MODULES and m != name and m != "pipeline"}


def _room(module: str) -> str | None:
    """``pipeline.search._space`` -> ``search``; None for the package and ``__main__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] != "__main__" else None


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for child in sorted(graph.get(node, ())):
            cycle = visit(child, [*path, node])
            if cycle:
                return cycle
        done.add(node)
        return None

    for node in sorted(graph):
        cycle = visit(node, [])
        if cycle:
            return cycle
    return None


def test_every_room_is_in_the_layer_order() -> None:
    assert sorted(set(LAYERS) - set(LEAVES)) == ROOMS


@pytest.mark.parametrize("name", sorted(m for m in MODULES if _room(m) == "config"))
def test_the_schema_imports_nothing_from_the_package_torch_or_optuna(name: str) -> None:
    imported = _imports(MODULES[name])
    offending = {
        m
        for m in imported
        if m.split(".")[0] in ("pipeline", "torch", "optuna")
        and _room(m) not in ("config", "exceptions")
    }
    assert not offending


def test_no_import_cycle_among_the_modules() -> None:
    cycle = _find_cycle({name: _package_imports(name) for name in MODULES})
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_import_cycle_among_the_rooms() -> None:
    graph: dict[str, set[str]] = {}
    for name in MODULES:
        room = _room(name)
        if room is not None:
            targets = {_room(m) for m in _package_imports(name)} - {room, None}
            graph.setdefault(room, set()).update(t for t in targets if t is not None)
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle between rooms: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("name", sorted(m for m in MODULES if _room(m) is not None))
def test_a_room_imports_only_from_rooms_below_it(name: str) -> None:
    room = _room(name)
    assert room is not None
    upward = {
        m
        for m in _package_imports(name)
        if (other := _room(m)) is not None and LAYERS.index(other) > LAYERS.index(room)
    }
    assert not upward, f"{name} reaches up to {sorted(upward)}; see LAYERS"


@pytest.mark.parametrize("name", sorted(m for m in MODULES if _room(m) is not None))
def test_other_rooms_are_reached_through_their_public_names(name: str) -> None:
    room = _room(name)
    private = {
        m
        for m in _package_imports(name)
        if _room(m) != room and any(part.startswith("_") for part in m.split(".")[2:])
    }
    assert not private, f"{name} imports private modules of another room: {sorted(private)}"


@pytest.mark.parametrize("room", ROOMS)
def test_a_room_is_private_modules_behind_a_public_init(room: str) -> None:
    if room == "examples":  # user code as a user writes it, named package.module:function
        return
    folder = PACKAGE / room
    init = ast.parse((folder / "__init__.py").read_text())
    exported = [
        node
        for node in init.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
    ]
    assert exported, f"pipeline/{room}/__init__.py declares no __all__"
    public = [p.name for p in folder.glob("*.py") if not p.name.startswith("_")]
    assert not public, f"pipeline/{room}: {public} should be private (_name.py)"
    assert all(isinstance(node, ast.ImportFrom | ast.Assign | ast.Expr) for node in init.body), (
        f"pipeline/{room}/__init__.py should only re-export"
    )


@pytest.mark.parametrize("room", ROOMS)
def test_rooms_stay_small(room: str) -> None:
    modules = [p for p in (PACKAGE / room).glob("*.py") if p.name != "__init__.py"]
    assert len(modules) <= 8, f"pipeline/{room} holds {len(modules)} modules: split the room"


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
