"""Reading a study file: YAML, ``--set`` overrides, the schema, then the components.

:func:`load_study_file` is the one way a file becomes a :class:`StudyConfig`. The schema
(:mod:`pipeline.config`) checks types and plain values; the checks here need the
components themselves: the task, the search space against it, the sampler, the pruner
and the storage URL. Every mistake ends in one ``ConfigError`` that names the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import yaml

from pipeline.artifacts import check_s3_url, is_s3
from pipeline.config import MEASURED_DIRECTIONS, StudyConfig, convert
from pipeline.exceptions import ConfigError
from pipeline.integrations import check_framework
from pipeline.schedulers import check_population
from pipeline.search import (
    check_enqueued,
    check_pruner,
    check_pruner_objectives,
    check_sampler,
    check_sampler_objectives,
    check_space,
)
from pipeline.storages import check_url, mask_url
from pipeline.tasks import resolve_task
from pipeline.tracking import check_tracking
from pipeline.training import check_trainable


def load_study_file(
    path: str | os.PathLike[str], overrides: list[str] | None = None, code: bool = True
) -> StudyConfig:
    """Read, override and validate a study file.

    Args:
        path: The YAML file.
        overrides: ``key=value`` strings (``--set``), dotted keys, YAML values.
        code: Check it against the code it names too (its task, trainable, model and test
            functions, imported). The result commands, which read only the study's name,
            storage and artifacts, pass False: they run without the user's package.

    Raises:
        ConfigError: on any mistake in the file or the overrides, naming the file.
    """
    source = str(path)
    raw = _yaml(_read(Path(path), source), source)
    if not isinstance(raw, dict):
        raise ConfigError("", "expected a mapping of study settings at the top level", source)
    try:
        for item in overrides or []:
            apply_override(raw, item)
    except ConfigError as exc:
        raise exc.located(source) from None
    return parse_study(raw, source, code)


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing duplicate keys and more aliases than a study file
    needs (an "alias bomb" expands a few lines into gigabytes)."""

    MAX_ALIASES = 100

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > self.MAX_ALIASES:
                raise yaml.YAMLError(f"more than {self.MAX_ALIASES} aliases (*name)")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                raise yaml.constructor.ConstructorError(
                    None, None, f"a key must be a name, not {key!r}", key_node.start_mark
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


MAX_FILE_BYTES = 1_000_000  # a study file is a page of settings, not data


def _read(path: Path, source: str) -> str:
    if not path.is_file():  # a directory, a device or a FIFO would fail or block
        if path.exists():
            raise ConfigError("", "cannot read the study file (it is not a regular file)", source)
        raise ConfigError(
            "", f"cannot read the study file (there is none); {_study_files_near(path)}", source
        )
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError("", f"cannot read the study file ({exc.strerror})", source) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError("", f"larger than {MAX_FILE_BYTES} bytes: not a study file", source)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("", "not a text file in UTF-8 (is it the study file?)", source) from None


def _study_files_near(path: Path) -> str:
    """The study files in the directory a mistyped path names (``studies/`` when it
    names none or one that does not exist), the closest first."""
    named = path.parent != Path(".") and path.parent.is_dir()
    folder = path.parent if named else Path("studies")
    found = sorted(p for p in folder.glob("*.y*ml") if p.is_file()) if folder.is_dir() else []
    if not found:
        return f"{folder}/ holds no study file"
    stems = {p.stem: p.name for p in found}
    close = difflib.get_close_matches(path.stem, list(stems), n=1)
    hint = f"did you mean {folder / stems[close[0]]}? " if close else ""
    return f"{hint}study files in {folder}/: {', '.join(p.name for p in found)}"


def _yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except RecursionError:
        raise ConfigError("", "nested too deeply to be a study file", source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        message = f"{line}not valid YAML ({getattr(exc, 'problem', None) or exc})"
        raise ConfigError("", message, source) from None


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one ``dotted.key=value`` override to the raw study data, in place."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ConfigError("--set", f"expected key=value, got {item!r}")
    try:
        value = yaml.load(text, Loader=_StrictLoader)
    except (yaml.YAMLError, RecursionError):
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


def parse_study(raw: Mapping[str, Any], source: str = "<memory>", code: bool = True) -> StudyConfig:
    """Validate raw study data (as loaded from YAML) and build a :class:`StudyConfig`;
    with ``code`` False, against the schema and the storage URL only.

    Raises:
        ConfigError: naming ``source`` and the dotted key.
    """
    try:
        _check_shape(raw)
        config = convert(raw)
        if code:
            check_components(config)
        else:
            check_url(config.storage)
    except ConfigError as exc:
        raise exc.located(source) from None
    return dataclasses.replace(config, source=source)


MAX_VALUES = 100_000  # values in the whole study, aliases expanded


def _check_shape(raw: Any) -> None:
    """Refuse a value that contains itself (``&a [*a]``) and aliases that expand to more
    values than any study needs: nothing could print, check or store them."""
    sizes: dict[int, int] = {}

    def size(value: Any, key: str, ancestors: frozenset[int]) -> int:
        if not isinstance(value, (dict, list)):
            return 1
        if id(value) in ancestors:
            raise ConfigError(key, "a YAML alias refers to the value it is in")
        if id(value) not in sizes:
            items = value.items() if isinstance(value, dict) else enumerate(value)
            total = 1
            for name, child in items:
                child_key = f"{key}.{name}" if isinstance(value, dict) else f"{key}[{name}]"
                total += size(child, child_key.lstrip("."), ancestors | {id(value)})
                if total > MAX_VALUES:
                    raise ConfigError(key, f"expands to more than {MAX_VALUES} values (aliases?)")
            sizes[id(value)] = total
        return sizes[id(value)]

    size(raw, "", frozenset())


def check_components(config: StudyConfig) -> None:
    """The checks that need the components a study names."""
    check_url(config.storage)
    if config.task is not None:
        task = resolve_task(config.task)
        check_space(config.search_space, task)
        if config.packing is not None and task.pack_widths is None:
            raise ConfigError(
                "packing",
                f"task {task.name} names no packable model family (Task.pack_widths); "
                "remove packing",
            )
        _check_metrics(config, task.name, task.metric_names())
    else:
        check_trainable(config)
        check_framework(config.lightning, config.transformers)
        check_space(config.search_space, None)
    check_enqueued(config.enqueue, config.search_space)
    if config.enqueue and config.sampler.name == "grid":
        raise ConfigError("enqueue", "grid search runs its grid; list extra values in grid:")
    check_sampler(config.sampler, config.search_space)
    check_sampler_objectives(config.sampler, len(config.objectives))
    check_pruner(config.pruner)
    check_pruner_objectives(config.pruner, config.objectives)
    check_population(config)
    if is_s3(config.artifacts):
        check_s3_url(str(config.artifacts))
    elif config.artifacts and "://" in config.artifacts:
        raise ConfigError(
            "artifacts",
            f"{mask_url(config.artifacts)!r}: checkpoints go to a local directory or "
            "s3://bucket/prefix",
        )
    elif config.artifacts and config.keep_checkpoints:
        _check_can_make(config.artifacts, "artifacts")
    check_tracking(config.tracking)


def _check_metrics(config: StudyConfig, task: str, reported: tuple[str, ...]) -> None:
    """Every objective and constraint names a metric the task reports or the pipeline
    measures."""
    known = [*reported, *MEASURED_DIRECTIONS]
    named = [("metric", config.metric)]
    if config.multi_objective:
        named = [(f"objectives[{i}].metric", o.metric) for i, o in enumerate(config.objectives)]
    named += [(f"constraints.{name}", name) for name in config.constraints]
    for key, metric in named:
        if metric not in known:
            raise ConfigError(
                key,
                f"task {task} reports {', '.join(reported)}; {metric!r} is not one of them, "
                f"nor one the pipeline measures ({', '.join(MEASURED_DIRECTIONS)})",
            )


def _check_can_make(path: str, key: str) -> None:
    """Refuse a directory that cannot be made (under /proc, a file in the way...); one
    that is made only to find out is removed again."""
    expanded = os.path.expanduser(path)
    if expanded.startswith("~"):
        raise ConfigError(key, f"cannot find the home directory in {path!r} (no such user)")
    folder = Path(os.path.abspath(expanded))
    if folder.is_dir():
        return
    missing = [p for p in [folder, *folder.parents] if not p.exists()]
    try:
        folder.mkdir(parents=True)
    except OSError as exc:
        raise ConfigError(key, f"cannot make the directory {folder} ({exc.strerror})") from None
    for made in missing:  # deepest first
        made.rmdir()


__all__ = ["apply_override", "check_components", "load_study_file", "parse_study"]
