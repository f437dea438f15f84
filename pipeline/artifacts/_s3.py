"""Checkpoints in an S3-compatible bucket: ``artifacts: s3://bucket/prefix``.

With workers on several machines, a directory is one machine's unless it is a shared
file system; a bucket is every machine's. :class:`S3Store` is Optuna's
``Boto3ArtifactStore`` with two additions: its artifacts live under a key prefix, so one
bucket holds the checkpoints of many studies, and boto's errors reach callers as
``OSError``, the error every reader and writer of checkpoints already handles (a
checkpoint that cannot be written costs the checkpoint, never the trial).

The endpoint, region and credentials come from boto3's own sources, never from the
study file: ``AWS_ENDPOINT_URL`` (MinIO, Ceph, moto...), ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_PROFILE`` and ``~/.aws``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
from collections.abc import Iterator
from typing import Any, BinaryIO

from optuna.artifacts import Boto3ArtifactStore

from pipeline.exceptions import ConfigError, S3Error

SCHEME = "s3://"
# S3's rule for bucket names (MinIO and the others follow it): 3-63 characters of
# lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
CONNECT_TIMEOUT = 10  # seconds; boto3's default is 60, long for a trial to wait on
INSTALL_HINT = "pip install 'optuna-pipeline[s3]'"


def is_s3(location: str | None) -> bool:
    """Whether an ``artifacts`` value names a bucket rather than a directory."""
    return bool(location) and str(location).startswith(SCHEME)


def parse(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")``.

    Raises:
        ConfigError: the bucket name is not one S3 accepts.
    """
    bucket, _, prefix = url[len(SCHEME) :].partition("/")
    if not _BUCKET.match(bucket):
        raise ConfigError(
            "artifacts",
            f"expected s3://BUCKET/PREFIX with a bucket name of 3-63 lowercase letters, "
            f"digits, dots or hyphens, got {url!r}",
        )
    return bucket, prefix.strip("/")


def check_s3_url(url: str) -> None:
    """The study-file check of an ``s3://`` location: its form, and boto3 installed.

    Raises:
        ConfigError: naming ``artifacts`` and what to change.
    """
    parse(url)
    if importlib.util.find_spec("boto3") is None:
        raise ConfigError("artifacts", f"s3:// needs boto3, which is not installed: {INSTALL_HINT}")


class S3Store(Boto3ArtifactStore):
    """Optuna's S3 artifact store, under a key prefix, raising OSError for S3's errors.

    Args:
        url: ``s3://bucket`` or ``s3://bucket/prefix``.
        client: A boto3 S3 client; by default one configured from the environment.
    """

    def __init__(self, url: str, client: Any = None) -> None:
        bucket, self.prefix = parse(url)
        with _as_oserror(url):
            super().__init__(bucket, client or _client())
        self.url = f"{SCHEME}{bucket}" + (f"/{self.prefix}" if self.prefix else "")

    def key(self, artifact_id: str) -> str:
        """The object key of an artifact."""
        return f"{self.prefix}/{artifact_id}" if self.prefix else artifact_id

    def location(self, artifact_id: str) -> str:
        """``s3://bucket/prefix/artifact_id``: where a person finds the artifact."""
        return f"{self.url}/{artifact_id}"

    def exists(self, artifact_id: str) -> bool:
        """Whether the artifact is there, asked without downloading it.

        Raises:
            S3Error: the bucket cannot be reached or read.
        """
        from botocore.exceptions import ClientError

        with _as_oserror(self.location(artifact_id)):
            try:
                self.client.head_object(Bucket=self.bucket, Key=self.key(artifact_id))
            except ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                    return False
                raise
        return True

    def open_reader(self, artifact_id: str) -> BinaryIO:
        """A stream of the artifact's bytes.

        Raises:
            ArtifactNotFound: there is no such object (or no such bucket).
            S3Error: the bucket cannot be reached or read.
        """
        with _as_oserror(self.location(artifact_id)):
            return super().open_reader(self.key(artifact_id))

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        """Upload one artifact.

        Raises:
            S3Error: the bucket cannot be reached or written.
        """
        with _as_oserror(self.location(artifact_id)):
            super().write(self.key(artifact_id), content_body)

    def remove(self, artifact_id: str) -> None:
        """Delete one artifact (S3 deletes a missing key without complaint).

        Raises:
            S3Error: the bucket cannot be reached or written.
        """
        with _as_oserror(self.location(artifact_id)):
            super().remove(self.key(artifact_id))


def _client() -> Any:
    """An S3 client from the environment (boto3 reads ``AWS_ENDPOINT_URL`` itself)."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(connect_timeout=CONNECT_TIMEOUT))


@contextlib.contextmanager
def _as_oserror(where: str) -> Iterator[None]:
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError, Boto3Error) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise S3Error(f"{where}: {text}") from exc


__all__ = ["SCHEME", "S3Store", "check_s3_url", "is_s3", "parse"]
