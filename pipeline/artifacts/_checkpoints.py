"""Trial checkpoints as Optuna artifacts: upload, keep the top K, load back.

Each complete trial uploads its final weights, with what it takes to rebuild the model
(task, task options, hyperparameters), to an Optuna artifact store linked to the trial,
so optuna-dashboard lists them and offers them for download. Only the best
``keep_checkpoints`` trials keep theirs: the others' files are removed from the store.
(Optuna refuses to change a finished trial's attributes, so the link stays; a removed
checkpoint is one whose file is gone.)

The store is a directory (``artifacts: runs/artifacts``, by default beside a SQLite or
journal file) or a bucket (``artifacts: s3://bucket/prefix``, see :mod:`pipeline.s3`),
which every machine of a study reaches. :func:`open_location` opens either.
"""

from __future__ import annotations

import contextlib
import io
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState

from pipeline.artifacts._s3 import S3Store, is_s3
from pipeline.storages import scheme_of
from pipeline.trial import Attr, front, is_feasible, rank, retry_history


class ArtifactStore(Protocol):
    """What the pipeline needs of an Optuna artifact store: a directory or a bucket."""

    def open_reader(self, artifact_id: str) -> BinaryIO: ...

    def write(self, artifact_id: str, content_body: BinaryIO) -> None: ...

    def remove(self, artifact_id: str) -> None: ...


def location(storage: str, artifacts: str | None) -> str:
    """Where a study's checkpoints are: its ``artifacts`` (a directory or an ``s3://``
    URL), else the default directory for its ``storage``."""
    if is_s3(artifacts):
        return str(artifacts)
    return str(artifact_dir_for(storage, artifacts))


def artifact_dir_for(storage: str, artifacts: str | None = None) -> Path:
    """``artifacts`` if given, else ``artifacts/`` beside a SQLite or journal file, else
    ``runs/artifacts``."""
    if artifacts:
        return Path(artifacts)
    if scheme_of(storage) in ("sqlite", "journal") and ":///" in storage:
        return Path(storage.split(":///", 1)[1]).parent / "artifacts"
    return Path("runs/artifacts")


class CheckpointStore(FileSystemArtifactStore):
    """Optuna's file-system artifact store, which makes its directory again when it was
    deleted while the study ran."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.path = path

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        """Write one artifact, making the directory first if it is missing."""
        self.path.mkdir(parents=True, exist_ok=True)
        super().write(artifact_id, content_body)


def open_store(path: Path, create: bool = True) -> CheckpointStore:
    """The artifact store at ``path``, created if missing and possible (a directory that
    cannot be made costs checkpoints, see :func:`save`, never trials). Readers pass
    ``create=False``: a missing directory then simply holds no checkpoint."""
    if create:
        with contextlib.suppress(OSError):
            path.mkdir(parents=True, exist_ok=True)
    return CheckpointStore(path)


def open_location(storage: str, artifacts: str | None, create: bool = True) -> ArtifactStore:
    """The checkpoints' store of a study: the bucket ``artifacts`` names (``s3://``),
    else the directory :func:`artifact_dir_for` gives. Readers pass ``create=False``."""
    if artifacts and is_s3(artifacts):
        return S3Store(artifacts)
    return open_store(artifact_dir_for(storage, artifacts), create=create)


def where(store: ArtifactStore, artifact_id: str) -> str:
    """Where a person finds an artifact: its file, or its ``s3://`` URL."""
    if isinstance(store, S3Store):
        return store.location(artifact_id)
    folder = getattr(store, "path", None)
    return str(Path(folder) / artifact_id) if folder is not None else artifact_id


def live_checkpoint(trial: FrozenTrial, store: ArtifactStore) -> str | None:
    """The trial's checkpoint artifact id, unless it was removed from ``store``."""
    artifact_id = trial.user_attrs.get(Attr.CHECKPOINT)
    if artifact_id is None:
        return None
    try:
        if isinstance(store, S3Store):  # a HEAD request, not a download
            return str(artifact_id) if store.exists(str(artifact_id)) else None
        store.open_reader(str(artifact_id)).close()
    except (ArtifactNotFound, OSError):
        return None
    return str(artifact_id)


def keep_top(study: optuna.Study, store: ArtifactStore, keep: int) -> list[int]:
    """Remove the checkpoints of all but the ``keep`` best complete trials (feasible ones
    first; of several objectives, every Pareto-front member, however many, then the best
    in the first objective); return the numbers of the trials whose checkpoint was removed."""
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if live_checkpoint(t, store) is not None
    ]
    removed = []
    pareto = front(complete, study.directions) if len(study.directions) > 1 else []
    rest = rank([t for t in complete if t not in pareto], study.directions[0])
    ranked = pareto + sorted(rest, key=lambda t: not is_feasible(t))  # stable: rank kept
    for trial in ranked[max(keep, len(pareto)) :]:
        # Another worker may have removed it first; a file that cannot be removed stays.
        with contextlib.suppress(ArtifactNotFound, OSError):
            store.remove(str(trial.user_attrs[Attr.CHECKPOINT]))
        removed.append(trial.number)
    return removed


def load_checkpoint(store: ArtifactStore, artifact_id: str) -> Any:
    """What the trial checkpointed (tensors on the CPU): for a task, its weights with
    what rebuilds the model (``task``, ``task_options``, ``hyperparameters``,
    ``state_dict``, ``metrics``); for a trainable, the object it gave
    ``session.checkpoint``."""
    with store.open_reader(artifact_id) as reader:
        data = reader.read()
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def write_working(store: ArtifactStore, epoch: int, obj: Any) -> str:
    """Write a trial's working checkpoint (``obj`` at ``epoch``, what ``restore`` reads
    back) as a new artifact; returns its id.

    Raises:
        OSError: the store could not take it.
    """
    buffer = io.BytesIO()
    torch.save({"epoch": epoch, "object": obj}, buffer)
    buffer.seek(0)
    artifact_id = f"resume-{uuid.uuid4()}"
    store.write(artifact_id, buffer)
    return artifact_id


def remove_quietly(store: ArtifactStore, artifact_id: str) -> None:
    """Remove an artifact if it is still there (another worker may have removed it)."""
    with contextlib.suppress(ArtifactNotFound, OSError):
        store.remove(artifact_id)


def drop_working(study: optuna.Study, trial: FrozenTrial, store: ArtifactStore) -> None:
    """Remove the working checkpoints of a trial that no retry will resume, and of the
    earlier attempts it re-ran (its own kept checkpoint, if any, stays)."""
    earlier = retry_history(trial)
    trials = study.get_trials(deepcopy=False) if earlier else []  # a first attempt: no read
    records = [trials[n] for n in earlier if n < len(trials)] + [trial]
    for record in records:
        resume = record.user_attrs.get(Attr.RESUME)
        if isinstance(resume, dict):
            remove_quietly(store, str(resume.get("artifact")))


__all__ = [
    "ArtifactStore",
    "CheckpointStore",
    "artifact_dir_for",
    "drop_working",
    "keep_top",
    "live_checkpoint",
    "load_checkpoint",
    "location",
    "open_location",
    "open_store",
    "remove_quietly",
    "where",
    "write_working",
]
