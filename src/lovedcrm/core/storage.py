"""File storage for downloaded and uploaded files (message attachments).

Files are stored under a key ``<organization id>/<kind>/<uuid>[.ext]``; the database keeps the
key (``message_attachments.file_url``) and the app serves files to members of the
organization only, never by a public URL. Two backends: a local folder under
``data_dir/files`` (the default) and an S3-compatible bucket (``LOVEDCRM_STORAGE_BACKEND=s3``
with ``LOVEDCRM_S3_BUCKET``, ``_S3_ENDPOINT_URL`` for MinIO/R2/…, ``_S3_REGION``,
``_S3_ACCESS_KEY_ID``, ``_S3_SECRET_ACCESS_KEY``, ``_S3_PREFIX``), through boto3.
The calls are blocking: async callers run them in a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from lovedcrm.config import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def write_atomically(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary file in the same folder, so a reader
    sees the old file or the new one, never half of it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class FileStorage(Protocol):
    def save(self, key: str, data: bytes, content_type: str) -> str:
        """Store ``data`` under ``key`` and return the key to keep in the database."""
        ...

    def read(self, key: str) -> bytes: ...

    def local_path(self, key: str) -> Path | None:
        """A local file to serve directly, when the backend has one."""
        ...

    def delete(self, key: str) -> None: ...


class FileMissing(Exception):
    pass


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _target(self, key: str) -> Path:
        target = (self.root / key).resolve()
        # Keys are built by the app, but a stored key must never reach outside the root.
        if self.root not in target.parents:
            raise ValueError(f"invalid storage key: {key!r}")
        return target

    def save(self, key: str, data: bytes, content_type: str) -> str:
        write_atomically(self._target(key), data)
        return key

    def read(self, key: str) -> bytes:
        try:
            return self._target(key).read_bytes()
        except FileNotFoundError as exc:
            raise FileMissing(key) from exc

    def local_path(self, key: str) -> Path | None:
        path = self._target(key)
        return path if path.is_file() else None

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._target(key).unlink()


class S3Storage:
    def __init__(self, client: S3Client, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def save(self, key: str, data: bytes, content_type: str) -> str:
        self.client.put_object(
            Bucket=self.bucket, Key=self.prefix + key, Body=data, ContentType=content_type
        )
        return key

    def read(self, key: str) -> bytes:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
        except self.client.exceptions.NoSuchKey as exc:
            raise FileMissing(key) from exc
        return obj["Body"].read()

    def local_path(self, key: str) -> Path | None:
        return None

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)


@lru_cache(maxsize=8)
def _s3_client(
    endpoint: str | None, region: str, key_id: str | None, secret: str | None
) -> S3Client:
    import boto3
    from botocore.config import Config

    client: S3Client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        # Path-style works with every S3-compatible server (MinIO, R2, a local test server).
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
    )
    return client


def get_storage(settings: Settings) -> FileStorage:
    if settings.storage_backend == "s3":
        assert settings.s3_bucket  # checked by Settings
        secret = settings.s3_secret_access_key
        client = _s3_client(
            settings.s3_endpoint_url,
            settings.s3_region,
            settings.s3_access_key_id,
            secret.get_secret_value() if secret else None,
        )
        return S3Storage(client, settings.s3_bucket, settings.s3_prefix)
    return LocalStorage(Path(settings.data_dir) / "files")
