"""Reading a study file: YAML, ``--set`` overrides, the schema, then the components.

:func:`load_study_file` is the one way a file becomes a :class:`StudyConfig`. The schema
(:mod:`pipeline.config`) checks types and plain values; the checks here need the
components themselves: the task, the search space against it, the sampler, the pruner
and the storage URL. Every mistake ends in one ``ConfigError`` that names the file.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pipeline import pruners, samplers, space, storage, tasks
from pipeline.config import ConfigError, StudyConfig, convert


def load_study_file(
    path: str | os.PathLike[str], overrides: list[str] | None = None
) -> StudyConfig:
    """Read, override and validate a study file.

    Args:
        path: The YAML file.
        overrides: ``key=value`` strings (``--set``), dotted keys, YAML values.

    Raises:
        ConfigError: on any mistake in the file or the overrides, naming the file.
    """
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError("", f"cannot read the study file ({exc.strerror})", source) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        message = f"{line}not valid YAML ({getattr(exc, 'problem', exc)})"
        raise ConfigError("", message, source) from None
    if not isinstance(raw, dict):
        raise ConfigError("", "expected a mapping of study settings at the top level", source)
    try:
        for item in overrides or []:
            apply_override(raw, item)
    except ConfigError as exc:
        raise exc.located(source) from None
    return parse_study(raw, source)


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one ``dotted.key=value`` override to the raw study data, in place."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ConfigError("--set", f"expected key=value, got {item!r}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(key, f"cannot set a key inside {part!r}, which is not a mapping")
        node = child
    node[parts[-1]] = value


def parse_study(raw: Mapping[str, Any], source: str = "<memory>") -> StudyConfig:
    """Validate raw study data (as loaded from YAML) and build a :class:`StudyConfig`.

    Raises:
        ConfigError: naming ``source`` and the dotted key.
    """
    try:
        config = convert(raw)
        check_components(config)
    except ConfigError as exc:
        raise exc.located(source) from None
    return dataclasses.replace(config, source=source)


def check_components(config: StudyConfig) -> None:
    """The checks that need the components a study names."""
    storage.check_url(config.storage)
    task = tasks.resolve_task(config.task)
    space.check_space(config.search_space, task)
    space.check_enqueued(config.enqueue, config.search_space)
    if config.enqueue and config.sampler.name == "grid":
        raise ConfigError("enqueue", "grid search runs its grid; list extra values in grid:")
    samplers.check_sampler(config.sampler, config.search_space)
    pruners.check_pruner(config.pruner)


__all__ = ["apply_override", "check_components", "load_study_file", "parse_study"]
