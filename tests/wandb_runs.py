"""W&B offline runs read back from disk, as ``wandb sync`` would upload them.

An offline run is ``<dir>/wandb/offline-run-<time>-<id>/run-<id>.wandb``: wandb's own
protobuf ``Record`` messages (the run, its config, every ``log`` as a history row, summary
updates, artifacts, the exit) in LevelDB's log framing (32 KiB blocks of chunks, each with
a 7-byte header: CRC, length, type) after a 7-byte file header. wandb ships no reader of
it in Python any more; the framing is this small, and the messages are parsed with
wandb's own protobuf classes.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = struct.Struct("<4sHB")  # b":W&B", 0xBEE1, version
CHUNK = struct.Struct("<IHB")  # crc32c, length, type: 1 full, 2 first, 3 middle, 4 last


@dataclass
class OfflineRun:
    """What one offline run holds."""

    path: Path
    project: str = ""
    group: str = ""
    name: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)  # rows with "_step"
    summary: dict[str, Any] = field(default_factory=dict)
    artifacts: list[Any] = field(default_factory=list)  # ArtifactRecord messages
    exit_code: int | None = None


def records(path: Path) -> list[Any]:
    """Every Record in a ``.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    ident, magic, _ = HEADER.unpack_from(data)
    assert (ident, magic) == (b":W&B", 0xBEE1), f"{path} is not a .wandb file"
    found, pending, pos = [], b"", HEADER.size
    while pos + CHUNK.size <= len(data):
        if BLOCK - pos % BLOCK < CHUNK.size:  # a block's tail too short for a header
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = CHUNK.unpack_from(data, pos)
        pos += CHUNK.size
        if kind == 0:  # padding to the end of the block
            pos += (BLOCK - pos % BLOCK) % BLOCK
            continue
        pending += data[pos : pos + length]
        pos += length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()  # type: ignore[attr-defined]  # generated
            record.ParseFromString(pending)
            found.append(record)
            pending = b""
    return found


def _key(item: Any) -> str:
    return item.key or ".".join(item.nested_key)


def read_run(path: Path) -> OfflineRun:
    """The run whose ``.wandb`` file is ``path``."""
    run = OfflineRun(path)
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.project, run.group = record.run.project, record.run.run_group
            run.name = record.run.display_name
            run.config.update({_key(i): json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            run.config.update({_key(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "history":
            row = {_key(i): json.loads(i.value_json) for i in record.history.item}
            run.history.append(row)
        elif kind == "summary":
            run.summary.update({_key(i): json.loads(i.value_json) for i in record.summary.update})
        elif kind == "artifact":
            run.artifacts.append(record.artifact)
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    run.config.pop("_wandb", None)
    return run


def offline_runs(directory: Path) -> dict[str, OfflineRun]:
    """Every offline run under ``directory`` (a ``tracking.wandb.dir``), by run name."""
    paths = sorted((directory / "wandb").glob("offline-run-*/run-*.wandb"))
    runs = [read_run(path) for path in paths]
    return {run.name: run for run in runs}
