"""Grid values added to a float or int parameter between runs of a grid study: the new
points are queued, the old ones are not run again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from pipeline.config import ParamSpec
from pipeline.search import grid_points, grid_values


def grid_values_of(space: Mapping[str, ParamSpec]) -> dict[str, list[Any]]:
    """The values the grid takes per searched parameter (stored with a grid study)."""
    return {name: grid_values(name, spec) for name, spec in space.items() if spec.type != "fixed"}


def new_grid_points(
    stored: Mapping[str, list[Any]], space: Mapping[str, ParamSpec]
) -> list[dict[str, Any]]:
    """The points of the grid over ``space`` that a grid of the ``stored`` values lacked."""
    before = {
        name: dataclasses.replace(spec, grid=list(stored[name]))
        if spec.type in ("float", "int") and name in stored
        else spec
        for name, spec in space.items()
    }
    old = grid_points(before)
    return [p for p in grid_points(space) if p not in old]


__all__ = ["grid_values_of", "new_grid_points"]
