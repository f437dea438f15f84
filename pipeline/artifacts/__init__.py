"""Trial checkpoints as Optuna artifacts, in a local directory or an S3-compatible bucket,
the top K kept.
"""

from __future__ import annotations

from pipeline.artifacts._checkpoints import (
    ArtifactStore,
    artifact_dir_for,
    drop_working,
    keep_top,
    live_checkpoint,
    load_checkpoint,
    location,
    open_location,
    remove_quietly,
    where,
    write_working,
)
from pipeline.artifacts._s3 import check_s3_url, is_s3

__all__ = [
    "ArtifactStore",
    "artifact_dir_for",
    "check_s3_url",
    "drop_working",
    "is_s3",
    "keep_top",
    "live_checkpoint",
    "load_checkpoint",
    "location",
    "open_location",
    "remove_quietly",
    "where",
    "write_working",
]
